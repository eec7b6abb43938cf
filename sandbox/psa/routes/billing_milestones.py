"""Kantata billing milestones: list, read, create, update (completion emits its event)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from sqlmodel import Session

from sandbox._twin import TwinState
from sandbox.psa.bodies import MilestoneBody
from sandbox.psa.responses import ids_in
from sandbox.psa.routes import _crud as crud
from sandbox.psa.routes._shared import Include, State, emit_event
from sandbox.psa.rules import _invalid, _workspace_open
from sandbox.psa.tables import PsaBillingMilestone, _now

router = APIRouter()


def milestone_filters(
    workspace_id: str | None = None, state_: str | None = Query(None, alias="state")
) -> list[Any]:
    clauses = ids_in(PsaBillingMilestone.workspace_id, workspace_id, "workspace_id")
    if state_:
        clauses.append(PsaBillingMilestone.state == state_)
    return clauses


crud.add_list_route(router, "/billing_milestones.json", PsaBillingMilestone, milestone_filters)
crud.add_get_route(
    router, "/billing_milestones/{milestone_id}.json", PsaBillingMilestone, "billing milestone"
)


@router.post("/billing_milestones.json", tags=["billing_milestones"])
async def create_milestone(body: MilestoneBody, params: Include, state: State) -> dict[str, Any]:
    f = body.billing_milestone
    if not f.title or not f.title.strip():
        raise _invalid("Please give the milestone a title", "title")
    if f.state == "completed":
        raise _invalid("a new milestone starts planned", "state")
    with state.session() as s:
        ws = _workspace_open(s, f.workspace_id)
        row = PsaBillingMilestone(
            workspace_id=ws.id,
            title=f.title,
            description=f.description or "",
            amount_in_cents=f.amount_in_cents or 0,
            currency=f.currency or ws.currency,
            target_date=f.target_date,
        )
        crud.insert(s, row)
        return crud.reply(s, row, params)


def milestone_update_rules(s: Session, row: PsaBillingMilestone, changes: dict[str, Any]) -> None:
    if row.state == "invoiced":
        raise _invalid(f"milestone {row.id} has been invoiced", "state")
    if "workspace_id" in changes:
        raise _invalid("a milestone cannot move to another project", "workspace_id")
    # `completed_at` follows the state the update leaves the milestone in.
    completed = changes.get("state", row.state) == "completed"
    row.completed_at = _now() if completed else None


def milestone_saved(state: TwinState, row: PsaBillingMilestone, changes: dict[str, Any]) -> None:
    if changes.get("state") == "completed":
        emit_event(state, "billing_milestone.completed", row)


crud.add_update_route(
    router,
    "/billing_milestones/{milestone_id}.json",
    PsaBillingMilestone,
    "billing milestone",
    MilestoneBody,
    milestone_update_rules,
    on_saved=milestone_saved,
)
