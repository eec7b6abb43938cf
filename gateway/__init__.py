"""gateway: signed webhooks in, exception resolutions in, status out, `/metrics`, `/healthz`.

    from gateway import create_app

    app = create_app(settings, store, client)

May import contracts, store and the Temporal client; never workflows, activities or connectors.
"""

from gateway.app import create_app

__all__ = ["create_app"]
