"""The gateway stack fixtures of test_gateway.py (`settings` serving its CRM tenant, `engine`,
`store`, `gw`), shared with the other gateway test modules; a module's own fixture of the same
name still wins."""

from tests.gateway.test_gateway import engine, gw, settings, store

__all__ = ["engine", "gw", "settings", "store"]
