"""For operators: `/healthz`, the inbox backlog, `/metrics`."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from gateway.auth import METRICS_ROLES, OPS_ROLES, require_roles
from gateway.errors import GatewayError
from gateway.metrics import CONTENT_TYPE_LATEST
from gateway.routes._deps import (
    ActorDep,
    MetricsDep,
    ProcessesDep,
    ReceiverDep,
    RelayDep,
    StoreDep,
)
from gateway.views import inbox_view
from gateway.webhooks import in_thread
from store import InboxState

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz(store: StoreDep, processes: ProcessesDep, relay: RelayDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        await in_thread(store.inbox_get, "healthz", "probe")
        checks["store"] = {"ok": True}
    except GatewayError as exc:
        checks["store"] = {"ok": False, "error": exc.message}
    checks["temporal"] = await processes.check_health()
    checks["relay"] = await relay.status()
    ok = all(check["ok"] for check in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks},
        status_code=200 if ok else 503,
    )


@router.get("/api/inbox")
async def list_inbox(
    actor: ActorDep,
    store: StoreDep,
    receiver: ReceiverDep,
    state: Annotated[InboxState, Query()] = InboxState.PENDING,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Webhook events in the inbox by state, oldest first: `pending` (the relay's backlog)
    or `failed` (refused for good, with the reason; a sender's retry may still process
    them). Bodies are not shown. Operators only."""
    require_roles(actor, OPS_ROLES, "read the inbox")
    rows = await in_thread(
        functools.partial(store.inbox_list, sources=tuple(receiver.sources)), state, limit
    )
    now = datetime.now(UTC)
    return {"items": [inbox_view(row, now) for row in rows], "count": len(rows)}


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus_metrics(actor: ActorDep, metrics: MetricsDep) -> Response:
    """Prometheus text format; scrape with a bearer token of an `ops` or `metrics` actor."""
    require_roles(actor, METRICS_ROLES, "read metrics")
    # In a thread: the store-computed gauges query the store (~80 ms at 100,000 postings),
    # which must not hold up the webhooks on the event loop.
    return Response(await in_thread(metrics.render), media_type=CONTENT_TYPE_LATEST)
