"""The HCM twin's SQLite tables (workers, completed business process events) and event types."""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Field as SqlField
from sqlmodel import SQLModel

EVENT_HIRE = "hire"
EVENT_TERMINATE = "terminate"
EVENT_RESCIND = "rescind"
EVENT_REHIRE = "rehire"
# lifecycle business processes (Change Job, Request Compensation Change, Leave of Absence)
EVENT_TRANSFER = "transfer"
EVENT_JOB_CHANGE = "job_change"
EVENT_FTE_CHANGE = "fte_change"
EVENT_COST_RATE_CHANGE = "cost_rate_change"
EVENT_LEAVE_START = "leave_start"
EVENT_LEAVE_END = "leave_end"


# --------------------------------------------------------------------------- tables


class HcmWorker(SQLModel, table=True):
    __tablename__ = "hcm_worker"

    wid: str = SqlField(primary_key=True)
    worker_id: str = SqlField(index=True, unique=True)
    first_name: str
    last_name: str
    email: str | None = None
    business_title: str | None = None
    job_profile: str | None = None
    location: str | None = None
    cost_center_id: str | None = None
    cost_center_name: str | None = None
    worker_type: str = "Employee"
    hire_date: date
    original_hire_date: date
    on_leave: bool = False
    termination_date: date | None = None
    last_day_of_work: date | None = None
    termination_reason: str | None = None
    last_updated: datetime
    time_zone: str | None = None
    """IANA; Workday keeps it on the location's time profile."""
    practice: str | None = None
    manager_worker_id: str | None = None
    fte: str | None = None
    cost_rate: str | None = None
    """`{"amount": "80.00", "currency": "USD"}` as JSON."""


class HcmEvent(SQLModel, table=True):
    """A completed business process event (the transaction log the window reads)."""

    __tablename__ = "hcm_event"

    id: str = SqlField(primary_key=True)
    worker_wid: str = SqlField(index=True)
    type: str
    effective_date: date
    entry_moment: datetime = SqlField(index=True)
    termination_date: date | None = None
    last_day_of_work: date | None = None
    reason: str | None = None
    changes: str | None = None
    """What a lifecycle event changed, as JSON (Workday field names)."""


TABLES = [
    HcmWorker.__table__,  # type: ignore[attr-defined]
    HcmEvent.__table__,  # type: ignore[attr-defined]
]
