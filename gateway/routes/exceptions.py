"""Exception items: list, read, and a person's resolution (routed to the owning run)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from contracts.v1.processes import RESOLVER_ROLES, ExceptionResolution, ResolutionAction
from gateway.errors import GatewayError
from gateway.routes._deps import ActorDep, MetricsDep, ProcessesDep, StoreDep
from gateway.views import exception_view, outcome_label
from gateway.webhooks import in_thread
from store import ExceptionItemRow, ExceptionStatus, Store

log = logging.getLogger("pssync.gateway")

router = APIRouter(tags=["exceptions"])


class ResolutionRequest(BaseModel):
    """A person's decision on an exception item (the actor comes from the bearer token)."""

    model_config = ConfigDict(extra="forbid")

    action: ResolutionAction
    corrections: dict[str, str] = Field(default_factory=dict)
    note: str = Field(default="", max_length=4000)


@router.get("/api/exceptions")
async def list_exceptions(
    store: StoreDep,
    status: Annotated[ExceptionStatus | None, Query()] = None,
    process: Annotated[str | None, Query(max_length=200)] = None,
    workflow_id: Annotated[str | None, Query(max_length=1000)] = None,
) -> dict[str, Any]:
    rows = await in_thread(
        store.list_exceptions, status.value if status else None, process, workflow_id
    )
    now = datetime.now(UTC)
    return {"items": [exception_view(row, now) for row in rows], "count": len(rows)}


@router.get("/api/exceptions/{item_id}")
async def get_exception(item_id: str, store: StoreDep) -> dict[str, Any]:
    row = await exception_or_404(store, item_id)
    return exception_view(row, datetime.now(UTC))


@router.post("/api/exceptions/{item_id}/resolution")
async def resolve_exception(
    item_id: str,
    body: ResolutionRequest,
    actor: ActorDep,
    store: StoreDep,
    processes: ProcessesDep,
    metrics: MetricsDep,
) -> dict[str, Any]:
    action = body.action.value
    try:
        row = await exception_or_404(store, item_id)
        if row.status == ExceptionStatus.RESOLVED.value:
            raise GatewayError(
                409, "already_resolved", f"exception item {item_id!r} is already resolved"
            )
        allowed = RESOLVER_ROLES.get(row.process, frozenset())
        if not allowed.intersection(actor.roles):
            raise GatewayError(
                403,
                "forbidden",
                f"{actor.name} may not resolve {row.process} items "
                f"(needs one of: {', '.join(sorted(allowed)) or 'no role is allowed'})",
            )
        resolution = ExceptionResolution(
            item_id=item_id,
            action=body.action,
            actor=actor.name,
            actor_roles=list(actor.roles),
            actor_scopes=list(actor.scopes),
            corrections=body.corrections,
            note=body.note,
        )
        result = await processes.resolve(row.workflow_id, resolution)
    except GatewayError as exc:
        metrics.resolutions.labels(action=action, outcome=outcome_label(exc)).inc()
        raise
    metrics.resolutions.labels(action=action, outcome="accepted").inc()
    log.info("resolution %s of %s by %s accepted", action, item_id, actor.name)
    return {
        "status": "accepted",
        "item_id": item_id,
        "workflow_id": row.workflow_id,
        "result": result,
    }


async def exception_or_404(store: Store, item_id: str) -> ExceptionItemRow:
    row = await in_thread(store.get_exception, item_id)
    if row is None:
        raise GatewayError(404, "exception_not_found", f"no exception item {item_id!r}")
    return row
