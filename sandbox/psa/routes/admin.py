"""Twin admin, not a Kantata endpoint (no auth, for benchmarks and tests):
`POST /_admin/time_entries/bulk` and the function behind it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from sqlalchemy import func
from sqlmodel import col, select

from sandbox._twin import TwinError, TwinState
from sandbox.psa.bodies import BulkTimeEntries
from sandbox.psa.routes._shared import State
from sandbox.psa.rules import (
    _card_roles,
    _check_minutes,
    _check_story,
    _rate_on,
    _resource_can_work,
    _workspace_open,
)
from sandbox.psa.tables import PsaRateCardRole, PsaStory, PsaTimeEntry, PsaUser, PsaWorkspace, _now


def bulk_time_entries(state: TwinState, bulk: BulkTimeEntries) -> list[int]:
    """Insert many time entries in one transaction with `create_time_entry`'s defaults and
    rules (rate from the workspace's rate card, cost rate from the user); all or none. The
    new ids, in input order. An approved entry is at lock_version 2, as if created and then
    approved; with `emit`, each approved entry sends its `time_entry.approved` event."""
    now = _now()
    with state.session() as s:
        # Hold every referenced row here: the session's identity map is weak, and the shared
        # rules below then find them there instead of reading them once per entry.
        held: list[Any] = []
        for model, wanted in (
            (PsaWorkspace, {e.workspace_id for e in bulk.entries}),
            (PsaUser, {e.user_id for e in bulk.entries}),
            (PsaStory, {e.story_id for e in bulk.entries} - {None}),
        ):
            held += s.exec(select(model).where(col(model.id).in_(wanted))).all()  # type: ignore[attr-defined]
        card_roles: dict[tuple[int, str], Sequence[PsaRateCardRole]] = {}
        rows: list[dict[str, Any]] = []
        for i, e in enumerate(bulk.entries):
            try:
                _check_minutes(e.time_in_minutes)
                ws = _workspace_open(s, e.workspace_id, for_time=True)
                user = _resource_can_work(s, e.user_id, e.date_performed)
                _check_story(s, e.story_id, ws.id)
            except TwinError as exc:
                exc.message = f"entries[{i}]: {exc.message}"
                exc.field = f"entries[{i}].{exc.field}" if exc.field else f"entries[{i}]"
                raise
            role = e.role or user.role
            rate = None
            if ws.rate_card_id is not None and role is not None:
                key = (ws.rate_card_id, role)
                if key not in card_roles:
                    card_roles[key] = _card_roles(s, *key)
                rate = _rate_on(card_roles[key], e.date_performed)
            rows.append(
                {
                    "workspace_id": ws.id,
                    "user_id": user.id,
                    "story_id": e.story_id,
                    "role": role,
                    "date_performed": e.date_performed,
                    "time_in_minutes": e.time_in_minutes,
                    "billable": e.billable,
                    "notes": "",
                    "rate_in_cents": rate or 0,
                    "cost_rate_in_cents": user.cost_rate_in_cents or 0,
                    "currency": ws.currency,
                    "approved": bulk.approved,
                    "approved_at": now if bulk.approved else None,
                    "is_invoiced": False,
                    "invoice_id": None,
                    "lock_version": 2 if bulk.approved else 1,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        del held
        # Writes never interleave (handlers touch SQLite synchronously), so the ids SQLite
        # would give are max + 1 onwards; setting them makes the insert one executemany.
        first = (s.exec(select(func.max(PsaTimeEntry.id))).one() or 0) + 1
        ids = list(range(first, first + len(rows)))
        for ident, row in zip(ids, rows, strict=True):
            row["id"] = ident
        if rows:
            s.connection().execute(PsaTimeEntry.__table__.insert(), rows)  # type: ignore[attr-defined]
        s.commit()
    if bulk.emit and bulk.approved and state.webhooks is not None:
        for ident, row in zip(ids, rows, strict=True):
            state.webhooks.emit(
                "time_entry.approved",
                {
                    "workspace_id": str(row["workspace_id"]),
                    "time_entry_id": str(ident),
                    "version": row["lock_version"],
                },
            )
    return ids


router = APIRouter(prefix="/_admin", tags=["admin"])


@router.post(
    "/time_entries/bulk",
    summary="Insert many time entries at once (benchmarks, tests): {'ids': [...]}",
)
async def bulk(body: BulkTimeEntries, state: State) -> dict[str, list[str]]:
    return {"ids": [str(i) for i in bulk_time_entries(state, body)]}
