"""Who is calling: the actor a bearer token names (`settings.actors`)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Header, Request

from contracts.settings import Actor, Settings
from gateway.errors import GatewayError
from gateway.metrics import GatewayMetrics


async def current_actor(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Actor:
    """The actor named by the bearer token (401 otherwise); runs before the body is read."""
    actor = _actor_for(request.app.state.settings, authorization)
    if actor is None:
        metrics: GatewayMetrics = request.app.state.metrics
        metrics.resolutions.labels(action="unknown", outcome="unauthorized").inc()
        raise GatewayError(
            401,
            "unauthorized",
            "a valid 'Authorization: Bearer <token>' header is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return actor


def _actor_for(settings: Settings, authorization: str | None) -> Actor | None:
    """The actor whose token the bearer header carries; tokens compared in constant time."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    found: Actor | None = None
    for known, actor in settings.actors.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            found = actor
    return found
