"""Twin admin, not Kantata endpoints (no auth): tampering with the PSA behind pssync's back,
the way people do it in Kantata's UI, so tests and the reconciliation bench can inject drift.

Every tamper writes the database as the vendor's own change would leave it — the same
fields, `updated_at` now and `lock_version` one up, as a `PUT` would — and sends **no
event** (a person's change in the UI, or an event never sent). Afterwards the normal API
shows the change and nothing else: no flag a connector could see.

- `POST /_admin/tamper/time_entries/{id}/unapprove` — the entry is no longer approved
  (`approved_at` cleared). An invoiced entry is refused (422, as Kantata locks it).
- `POST /_admin/tamper/time_entries/{id}/edit` `{"time_in_minutes": n, "notes"?: "..."}` —
  the entry's time is changed; an approved entry stays approved (as if unapproved, edited and
  approved again in one step). 0 < n <= 1440; an invoiced entry is refused.
- `POST /_admin/tamper/time_entries/{id}/delete` — the entry is gone, approved or not (an
  invoiced one is refused).
- `POST /_admin/tamper/assignments/{id}/delete` — the assignment is gone.
- `POST /_admin/tamper/billing_milestones/{id}/complete` — the milestone is `completed`
  (`completed_at` now); an invoiced one is refused.
- `POST /_admin/tamper/workspaces/{id}/archive` — the workspace is archived (`archived`,
  `status: archived`).
- `POST|GET|DELETE /_admin/tamper/drop-webhooks` — lose the next events (`sandbox._tamper`).

Each answers the record as `GET /api/v1/<collection>/{id}.json` would (deletes answer
`{"deleted": "<id>"}`); an unknown id is a 404 in Kantata's error shape.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from sandbox._tamper import drop_webhooks_router
from sandbox.psa.responses import include_params
from sandbox.psa.routes import _crud as crud
from sandbox.psa.routes._shared import State
from sandbox.psa.rules import _check_minutes, _get, _invalid
from sandbox.psa.tables import (
    PsaAssignment,
    PsaBillingMilestone,
    PsaTimeEntry,
    PsaWorkspace,
    _now,
)

router = APIRouter(prefix="/_admin/tamper", tags=["tamper"])


class EditTimeEntry(BaseModel):
    """`POST /_admin/tamper/time_entries/{id}/edit`."""

    model_config = ConfigDict(extra="forbid")

    time_in_minutes: int
    notes: str | None = Field(default=None, max_length=10_000)


def _reply(s: Any, row: Any) -> dict[str, Any]:
    return crud.reply(s, row, include_params(None))


def _not_invoiced(invoiced: bool, what: str, ident: int) -> None:
    """Kantata locks what was invoiced until its invoice is cancelled: so does a person."""
    if invoiced:
        raise _invalid(f"{what} {ident} has been invoiced and cannot be changed", "is_invoiced")


@router.post(
    "/time_entries/{entry_id}/unapprove",
    summary="Unapprove a time entry behind pssync's back (no event)",
)
async def unapprove_time_entry(entry_id: int, state: State) -> dict[str, Any]:
    with state.session() as s:
        entry = _get(s, PsaTimeEntry, entry_id, "time entry")
        _not_invoiced(entry.is_invoiced, "time entry", entry_id)
        if entry.approved:
            crud.save(s, entry, {"approved": False, "approved_at": None})
        return _reply(s, entry)


@router.post(
    "/time_entries/{entry_id}/edit",
    summary="Change a time entry's minutes by hand, approved or not (no event)",
)
async def edit_time_entry(entry_id: int, body: EditTimeEntry, state: State) -> dict[str, Any]:
    _check_minutes(body.time_in_minutes)
    with state.session() as s:
        entry = _get(s, PsaTimeEntry, entry_id, "time entry")
        _not_invoiced(entry.is_invoiced, "time entry", entry_id)
        changes: dict[str, Any] = {"time_in_minutes": body.time_in_minutes}
        if body.notes is not None:
            changes["notes"] = body.notes
        changes = {k: v for k, v in changes.items() if getattr(entry, k) != v}
        if changes:
            crud.save(s, entry, changes)
        return _reply(s, entry)


@router.post(
    "/time_entries/{entry_id}/delete",
    summary="Delete a time entry, approved or not (no event)",
)
async def delete_time_entry(entry_id: int, state: State) -> dict[str, str]:
    with state.session() as s:
        entry = _get(s, PsaTimeEntry, entry_id, "time entry")
        _not_invoiced(entry.is_invoiced, "time entry", entry_id)
        s.delete(entry)
        s.commit()
    return {"deleted": str(entry_id)}


@router.post(
    "/assignments/{assignment_id}/delete",
    summary="Delete an assignment (no assignment.changed event)",
)
async def delete_assignment(assignment_id: int, state: State) -> dict[str, str]:
    with state.session() as s:
        s.delete(_get(s, PsaAssignment, assignment_id, "assignment"))
        s.commit()
    return {"deleted": str(assignment_id)}


@router.post(
    "/billing_milestones/{milestone_id}/complete",
    summary="Complete a billing milestone (no billing_milestone.completed event)",
)
async def complete_milestone(milestone_id: int, state: State) -> dict[str, Any]:
    with state.session() as s:
        row = _get(s, PsaBillingMilestone, milestone_id, "billing milestone")
        _not_invoiced(row.state == "invoiced", "billing milestone", milestone_id)
        if row.state != "completed":
            row.completed_at = _now()
            crud.save(s, row, {"state": "completed"})
        return _reply(s, row)


@router.post("/workspaces/{workspace_id}/archive", summary="Archive a workspace by hand")
async def archive_workspace(workspace_id: int, state: State) -> dict[str, Any]:
    with state.session() as s:
        ws = _get(s, PsaWorkspace, workspace_id, "workspace")
        if not ws.archived:
            crud.save(s, ws, {"archived": True, "status": "archived"})
        return _reply(s, ws)


router.include_router(drop_webhooks_router(prefix=""))
