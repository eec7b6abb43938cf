"""Exception items: list, read, and a person's resolution (routed to the owning run)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from contracts import scopes
from contracts.scopes import workflow_scopes
from contracts.settings import Actor
from contracts.v1.processes import RESOLVER_ROLES, ExceptionResolution, ResolutionAction
from gateway.audit import RESOLUTION, audited
from gateway.auth import READ_ROLES, require_roles
from gateway.errors import GatewayError
from gateway.metrics import GatewayMetrics
from gateway.processes import Processes
from gateway.routes._deps import ActorDep, MetricsDep, ProcessesDep, ScoperDep, StoreDep
from gateway.routes.from_console import call_from_console
from gateway.scoping import Scoper, require_scope
from gateway.views import exception_view, outcome_label
from gateway.webhooks import in_thread
from store import ExceptionItemRow, ExceptionStatus, Store

log = logging.getLogger("pssync.gateway")


router = APIRouter(tags=["exceptions"])


class ResolutionRequest(BaseModel):
    """A person's decision on an exception item (the actor comes from the bearer token)."""

    model_config = ConfigDict(extra="forbid")

    action: ResolutionAction
    corrections: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=64)],
        Annotated[str, StringConstraints(max_length=1000)],
    ] = Field(default_factory=dict, max_length=20)
    """Field -> corrected value (`retry_with_data`): at most 20, names up to 64 characters,
    values up to 1,000."""
    note: str = Field(default="", max_length=4000)


@router.get("/api/exceptions")
async def list_exceptions(
    actor: ActorDep,
    store: StoreDep,
    scoper: ScoperDep,
    status: Annotated[ExceptionStatus | None, Query()] = None,
    process: Annotated[str | None, Query(max_length=200)] = None,
    workflow_id: Annotated[str | None, Query(max_length=1000)] = None,
) -> dict[str, Any]:
    """The items the caller's scopes reach (any reader role); others are simply not listed."""
    require_roles(actor, READ_ROLES, "read exception items")
    rows = await in_thread(
        store.list_exceptions, status.value if status else None, process, workflow_id
    )
    rows = await scoper.visible_items(actor, rows)
    now = datetime.now(UTC)
    return {"items": [exception_view(row, now) for row in rows], "count": len(rows)}


@router.get("/api/exceptions/{item_id}")
async def get_exception(
    item_id: str, actor: ActorDep, store: StoreDep, scoper: ScoperDep
) -> dict[str, Any]:
    """One item; out of the caller's scopes it is 404, as if it did not exist."""
    require_roles(actor, READ_ROLES, "read exception items")
    row = await exception_in_scope(store, scoper, actor, item_id)
    return exception_view(row, datetime.now(UTC))


@router.post("/api/exceptions/{item_id}/resolution")
@audited(RESOLUTION)
async def resolve_exception(
    item_id: str,
    body: ResolutionRequest,
    actor: ActorDep,
    store: StoreDep,
    processes: ProcessesDep,
    metrics: MetricsDep,
    scoper: ScoperDep,
) -> dict[str, Any]:
    """Route a person's decision to the run that owns the item (audited: `gateway.audit`)."""
    return await resolve_item(item_id, body, actor, store, processes, metrics, scoper)


async def resolve_from_console(
    request: Request, item_id: str, body: ResolutionRequest, actor: Actor
) -> dict[str, Any]:
    """The same resolution, through the same audited route function, for the console's forms
    (`gateway.console`): the app's parts come from `app.state` as the route's dependencies do."""
    state = request.app.state
    return await call_from_console(
        request,
        resolve_exception,
        item_id=item_id,
        body=body,
        actor=actor,
        store=state.store,
        processes=state.processes,
        metrics=state.metrics,
    )


async def resolve_item(
    item_id: str,
    body: ResolutionRequest,
    actor: Actor,
    store: Store,
    processes: Processes,
    metrics: GatewayMetrics,
    scoper: Scoper,
) -> dict[str, Any]:
    """Scope, state and role checks, then the `resolve_exception` update to the owning run;
    the answer of `POST /api/exceptions/{item_id}/resolution` (refusals as `GatewayError`)."""
    action = body.action.value
    try:
        row = await exception_in_scope(store, scoper, actor, item_id)
        keys = await scoper.item_keys(row)
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
            actor_scopes=workflow_scopes(actor.scopes, keys),
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
        raise _not_found(item_id)
    return row


async def exception_in_scope(
    store: Store, scoper: Scoper, actor: Actor, item_id: str
) -> ExceptionItemRow:
    """The item, or the same 404 a missing item gets when the actor's scopes miss it."""
    row = await exception_or_404(store, item_id)
    if scopes.EVERYTHING not in actor.scopes:
        require_scope(actor, await scoper.item_keys(row), _not_found(item_id))
    return row


def _not_found(item_id: str) -> GatewayError:
    return GatewayError(404, "exception_not_found", f"no exception item {item_id!r}")
