"""Seeding the HCM twin from a generated firm (workers with their hire/termination events)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from sandbox._ids import workday_id
from sandbox._twin import TwinState, seed_session
from sandbox.hcm.bodies import _utc
from sandbox.hcm.tables import EVENT_HIRE, EVENT_TERMINATE, HcmEvent, HcmWorker

if TYPE_CHECKING:
    from sandbox.seed import Firm, Worker


def _seeded_event(
    fw: Worker, kind: str, effective: date, entered: datetime, **data: Any
) -> HcmEvent:
    """A seeded worker's event `kind`, with an id stable across reseeds."""
    return HcmEvent(
        id=workday_id(kind, fw.id),
        worker_wid=fw.wid,
        type=kind,
        effective_date=effective,
        entry_moment=entered,
        **data,
    )


def load_firm(app_or_state: FastAPI | TwinState, firm: Firm) -> None:
    """Workers from `firm.workers`, each with its hire event (entered two weeks before the
    hire, never after the firm's `today`) and its termination event when it has one.
    Workers already present are left as they are: a reseed never undoes an HR action."""
    latest_entry = datetime.combine(firm.today - timedelta(days=1), time(9, 0), tzinfo=UTC)
    cost_centers = {c.id: c.name for c in firm.cost_centers}
    with seed_session(app_or_state) as session:
        for fw in firm.workers:
            if session.get(HcmWorker, fw.wid) is not None:
                # Seeding again (every `pssync up`) keeps what HR has done since.
                continue
            hire_entry = min(
                datetime.combine(fw.hire_date - timedelta(days=14), time(9, 0), tzinfo=UTC),
                latest_entry,
            )
            last_day = fw.last_day_worked or fw.termination_date
            events = [_seeded_event(fw, EVENT_HIRE, fw.hire_date, hire_entry)]
            if fw.termination_date is not None:
                entered = _utc(fw.termination_entered_at or hire_entry)
                events.append(
                    _seeded_event(
                        fw,
                        EVENT_TERMINATE,
                        fw.termination_date,
                        entered,
                        termination_date=fw.termination_date,
                        last_day_of_work=last_day,
                        reason=fw.termination_reason,
                    )
                )
            session.merge(
                HcmWorker(
                    wid=fw.wid,
                    worker_id=fw.id,
                    first_name=fw.first_name,
                    last_name=fw.last_name,
                    email=fw.email,
                    business_title=fw.role,
                    job_profile=fw.role,
                    location=fw.location,
                    cost_center_id=fw.cost_center,
                    cost_center_name=cost_centers.get(fw.cost_center, fw.cost_center),
                    hire_date=fw.hire_date,
                    original_hire_date=fw.hire_date,
                    on_leave=fw.status == "leave",
                    termination_date=fw.termination_date,
                    last_day_of_work=last_day,
                    termination_reason=fw.termination_reason,
                    last_updated=max(e.entry_moment for e in events),
                )
            )
            for e in events:
                session.merge(e)
