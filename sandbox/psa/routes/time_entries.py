"""Kantata time entries: list, read, create, update (approve / unapprove, with events), delete."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter
from sqlmodel import Session, col

from sandbox._twin import TwinError, TwinState
from sandbox.psa.bodies import TimeEntryBody
from sandbox.psa.routes import _crud as crud
from sandbox.psa.routes._shared import Include, State, emit_event
from sandbox.psa.rules import (
    _check_entry_edit,
    _check_minutes,
    _check_story,
    _entry_filters,
    _get,
    _invalid,
    _rate_for,
    _resource_can_work,
    _stamp_approval,
    _workspace_open,
)
from sandbox.psa.tables import PsaTimeEntry

router = APIRouter()


def time_entry_filters(
    workspace_id: str | None = None,
    user_id: str | None = None,
    approved: bool | None = None,
    is_invoiced: bool | None = None,
    updated_after: str | None = None,
    date_performed_between: str | None = None,
) -> list[Any]:
    clauses = _entry_filters(
        PsaTimeEntry, workspace_id, user_id, approved, is_invoiced, updated_after
    )
    if date_performed_between:
        start, _, end = date_performed_between.partition(":")
        try:
            clauses.append(col(PsaTimeEntry.date_performed) >= date.fromisoformat(start))
            clauses.append(col(PsaTimeEntry.date_performed) <= date.fromisoformat(end))
        except ValueError:
            raise TwinError(
                400,
                "validation",
                "date_performed_between must be YYYY-MM-DD:YYYY-MM-DD",
                "date_performed_between",
            ) from None
    return clauses


crud.add_list_route(
    router,
    "/time_entries.json",
    PsaTimeEntry,
    time_entry_filters,
    orderable=("id", "updated_at", "date_performed"),
)
crud.add_get_route(router, "/time_entries/{entry_id}.json", PsaTimeEntry, "time entry")


@router.post("/time_entries.json", tags=["time_entries"])
async def create_time_entry(body: TimeEntryBody, params: Include, state: State) -> dict[str, Any]:
    f = body.time_entry
    if f.approved:
        raise _invalid("a new time entry cannot be created approved", "approved")
    if f.date_performed is None:
        raise _invalid("Please enter the date performed", "date_performed")
    _check_minutes(f.time_in_minutes)
    with state.session() as s:
        ws = _workspace_open(s, f.workspace_id, for_time=True)
        user = _resource_can_work(s, f.user_id, f.date_performed)
        _check_story(s, f.story_id, ws.id)
        role = f.role or user.role
        rate = f.rate_in_cents
        if rate is None:
            rate = _rate_for(s, ws.rate_card_id, role, f.date_performed) or 0
        entry = PsaTimeEntry(
            workspace_id=ws.id,
            user_id=user.id,
            story_id=f.story_id,
            role=role,
            date_performed=f.date_performed,
            time_in_minutes=f.time_in_minutes,
            billable=True if f.billable is None else f.billable,
            notes=f.notes or "",
            rate_in_cents=rate,
            cost_rate_in_cents=(
                f.cost_rate_in_cents
                if f.cost_rate_in_cents is not None
                else user.cost_rate_in_cents or 0
            ),
            currency=f.currency or ws.currency,
        )
        crud.insert(s, entry)
        return crud.reply(s, entry, params)


def time_entry_update_rules(s: Session, entry: PsaTimeEntry, changes: dict[str, Any]) -> None:
    _check_entry_edit(entry, changes, "time entry")
    if "time_in_minutes" in changes:
        _check_minutes(changes["time_in_minutes"])
    if "date_performed" in changes:
        if changes["date_performed"] is None:
            raise _invalid("Please enter the date performed", "date_performed")
        _workspace_open(s, entry.workspace_id, for_time=True)
        _resource_can_work(s, entry.user_id, changes["date_performed"])
    if "story_id" in changes:
        _check_story(s, changes["story_id"], entry.workspace_id)
    _stamp_approval(entry, changes.get("approved"))


def time_entry_saved(state: TwinState, entry: PsaTimeEntry, changes: dict[str, Any]) -> None:
    approved = changes.get("approved")
    if approved is not None:
        emit_event(state, "time_entry.approved" if approved else "time_entry.unapproved", entry)


crud.add_update_route(
    router,
    "/time_entries/{entry_id}.json",
    PsaTimeEntry,
    "time entry",
    TimeEntryBody,
    time_entry_update_rules,
    on_saved=time_entry_saved,
)


@router.delete("/time_entries/{entry_id}.json", status_code=204, tags=["time_entries"])
async def delete_time_entry(entry_id: int, state: State) -> None:
    with state.session() as s:
        entry = _get(s, PsaTimeEntry, entry_id, "time entry")
        if entry.is_invoiced or entry.approved:
            raise _invalid(
                f"time entry {entry_id} is approved or invoiced and cannot be deleted",
                "approved",
            )
        s.delete(entry)
        s.commit()
