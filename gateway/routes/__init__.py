"""The gateway's routes, one module per resource; `create_app` includes every router here.

Handlers reach the app's parts (store, processes, metrics, the webhook receiver, the relay)
through the dependencies in `gateway.routes._deps`, which read them from `app.state`.
"""

from __future__ import annotations

from fastapi import APIRouter

from gateway.routes import (
    billing,
    decisions,
    exceptions,
    operations,
    projects,
    reconciliations,
    webhooks,
)

ROUTERS: tuple[APIRouter, ...] = (
    webhooks.router,
    projects.router,
    exceptions.router,
    decisions.router,
    billing.router,
    operations.router,
    reconciliations.router,
)

__all__ = ["ROUTERS"]
