"""People's decisions on running processes: a change order's approval, a termination's rescind."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from contracts import scopes
from contracts.scopes import workflow_scopes
from contracts.settings import Actor
from contracts.v1.change_orders import ChangeOrderDecision
from contracts.v1.worker_termination import RescindRequest
from gateway.audit import CHANGE_ORDER_DECISION, RESCIND, audited
from gateway.processes import not_running
from gateway.routes._deps import ActorDep, ProcessesDep, ScoperDep
from gateway.routes.from_console import call_from_console
from gateway.scoping import Scoper, require_scope

log = logging.getLogger("pssync.gateway")

router = APIRouter()


class DecisionRequest(BaseModel):
    """An approver's decision on a change order (the actor comes from the bearer token)."""

    model_config = ConfigDict(extra="forbid")

    approve: bool
    as_role: str | None = Field(default=None, max_length=100)
    note: str = Field(default="", max_length=4000)


class RescindBody(BaseModel):
    """An operator's rescind of a termination (the actor comes from the bearer token)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=4000)


@router.post("/api/change-orders/{change_order_id}/decision", tags=["change orders"])
@audited(CHANGE_ORDER_DECISION)
async def decide_change_order(
    change_order_id: str,
    body: DecisionRequest,
    actor: ActorDep,
    processes: ProcessesDep,
    scoper: ScoperDep,
) -> dict[str, Any]:
    """Approve or reject; the run's validator checks role, scope and what is still needed."""
    keys = await _run_in_scope(scoper, actor, processes.change_order_run(change_order_id))
    decision = ChangeOrderDecision(
        actor=actor.name,
        roles=list(actor.roles),
        scopes=workflow_scopes(actor.scopes, keys),
        approve=body.approve,
        as_role=body.as_role,
        note=body.note,
    )
    result = await processes.decide_change_order(change_order_id, decision)
    log.info("change order %s: %s by %s", change_order_id, body.approve, actor.name)
    return {"status": "accepted", "change_order_id": change_order_id, "result": result}


async def decide_from_console(
    request: Request, change_order_id: str, body: DecisionRequest, actor: Actor
) -> dict[str, Any]:
    """The same decision, through the same audited route function, for the console's forms
    (`gateway.console.approvals`): the app's parts come from `app.state` as the route's
    dependencies do. Refusals are the route's `GatewayError`s."""
    return await call_from_console(
        request,
        decide_change_order,
        change_order_id=change_order_id,
        body=body,
        actor=actor,
        processes=request.app.state.processes,
    )


async def change_order_in_scope(scoper: Scoper, actor: Actor, workflow_id: str) -> set[str]:
    """A change order's run keys when the actor reaches it; otherwise the 404 of a run that
    does not exist (what the decision route answers; the console's pages use it too)."""
    return await _run_in_scope(scoper, actor, workflow_id)


@router.post("/api/terminations/{worker_id}/{termination_date}/rescind", tags=["terminations"])
@audited(RESCIND)
async def rescind_termination(
    worker_id: str,
    termination_date: str,
    body: RescindBody,
    actor: ActorDep,
    processes: ProcessesDep,
    scoper: ScoperDep,
) -> dict[str, Any]:
    """Undo a worker's termination: the run reverses its completed steps."""
    await _run_in_scope(scoper, actor, processes.termination_run(worker_id, termination_date))
    request = RescindRequest(actor=actor.name, actor_roles=list(actor.roles), reason=body.reason)
    result = await processes.rescind_termination(worker_id, termination_date, request)
    return {"status": "accepted", "worker_id": worker_id, "result": result}


async def _run_in_scope(scoper: Scoper, actor: Actor, workflow_id: str) -> set[str]:
    """The run's keys; out of the actor's scopes, a run answers as one that does not exist."""
    if scopes.EVERYTHING in actor.scopes:
        return set()
    keys = await scoper.run_keys(workflow_id)
    require_scope(actor, keys, not_running(workflow_id))
    return keys
