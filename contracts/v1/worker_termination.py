"""Inputs, outputs and messages of the worker-termination process and of the HCM poller.

    from contracts.v1.worker_termination import TerminationInput, RescindRequest

The HCM poller (`HcmChangesPoller`, run by a Temporal Schedule) turns HCM termination events
into one `WorkerTermination` run per worker and effective date; rescinds and rehires become
the `rescind` message of that run. No I/O here.

Dates are days in the worker's time zone (`TerminationInput.time_zone`, IANA, from HCM): a
termination effective on a day takes effect at the worker's midnight (`start_of_day`), not at
UTC's or the integration's. Without a zone (HCM gave none) the days are UTC days, as before.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from contracts.v1.models import Assignment
from contracts.v1.processes import RESOLVER_ROLES, Message, OpenException
from contracts.v1.workforce import effective_instant, zone

WORKER_TERMINATION = "WorkerTermination"
HCM_CHANGES_POLLER = "HcmChangesPoller"
PROCESS_WORKER_TERMINATION = "worker_termination"
RESCIND_SIGNAL = "rescind"
"""Signal: a rescind (or a rehire) detected by the poller — fire and forget."""
RESCIND_UPDATE = "rescind_termination"
"""Update: an operator's rescind (CLI, gateway) — the caller learns it was accepted."""
HCM_SCHEDULE_ID = "hcm-changes-poller"

TERMINATION_RESOLVER_ROLES = RESOLVER_ROLES[PROCESS_WORKER_TERMINATION]
"""Roles that may resolve this process's exception items."""
RESCIND_ROLES = frozenset({"ops", "hr", "resource_manager"})
"""Roles that may rescind a termination by hand (HCM's own rescind needs no role)."""

DEFAULT_PAYROLL_CUTOFF_DAYS = 3

LOCAL_MIDNIGHT_PATCH = "termination-local-midnight"
"""`workflow.patched` id: runs from before it keep waiting for 00:00 UTC."""


def start_of_day(day: date, time_zone: str | None) -> datetime:
    """The moment (UTC) `day` begins for a worker in `time_zone` (IANA; None: UTC). DST-correct:
    the offset in force at that local midnight (`contracts.v1.workforce.effective_instant`)."""
    return effective_instant(day, time_zone or "UTC")


class RescindSource(StrEnum):
    HCM_RESCIND = "hcm_rescind"
    """The poller saw HCM's Rescind Termination event."""
    HCM_REHIRE = "hcm_rehire"
    """The poller saw a rehire: a rescind only while the termination is not yet effective."""
    HCM_REREAD = "hcm_reread"
    """On the effective date HCM no longer holds this termination."""
    OPERATOR = "operator"


class TerminationInput(Message):
    """Start of one worker's termination (from the HCM poller or an operator)."""

    hcm_tenant: str
    worker_id: str
    worker_name: str = ""
    termination_date: date
    """The effective date, a day in the worker's `time_zone`: the workflow acts at the worker's
    midnight that day (00:00 UTC without a zone)."""
    last_day_worked: date
    payroll_cutoff: date | None = None
    """Approved time up to the last day must be in the ERP by then; default: the last day
    plus `payroll_cutoff_days`."""
    payroll_cutoff_days: int = Field(default=DEFAULT_PAYROLL_CUTOFF_DAYS, ge=0, le=60)
    rescind_window_days: int = Field(default=30, ge=0, le=365)
    """How long after the payroll cutoff a rescind can still undo the steps (the run stays
    open that long)."""
    event_id: str | None = None
    cost_center: str | None = None
    escalation_after_s: int = Field(default=24 * 3600, ge=1)
    activity_timeout_s: int = Field(default=60, ge=1, le=3600)
    time_zone: str | None = None
    """The worker's IANA time zone (HCM's `timeZone`): the termination date, the payroll cutoff
    and the end of the rescind window are days there. None: UTC days (HCM gave no zone)."""

    @field_validator("time_zone")
    @classmethod
    def _iana(cls, value: str | None) -> str | None:
        if value is not None:
            zone(value)  # ValueError "not an IANA time zone: 'X'"
        return value

    @model_validator(mode="after")
    def _dates(self) -> TerminationInput:
        if self.last_day_worked > self.termination_date:
            raise ValueError("last_day_worked is after termination_date")
        return self

    @property
    def cutoff(self) -> date:
        return self.payroll_cutoff or self.last_day_worked + timedelta(
            days=self.payroll_cutoff_days
        )


class RescindRequest(Message):
    actor: str
    source: RescindSource = RescindSource.OPERATOR
    actor_roles: list[str] = Field(default_factory=list)
    reason: str = ""
    event_id: str | None = None
    rehire_date: date | None = None


class RescindAccepted(Message):
    accepted: bool
    detail: str


class TerminationStep(StrEnum):
    FLAGGING_CONFLICTS = "flagging_conflicts"
    WAITING_FOR_EFFECTIVE_DATE = "waiting_for_effective_date"
    ENDING_ASSIGNMENTS = "ending_assignments"
    RAISING_BACKFILL = "raising_backfill"
    CLOSING_TIME_ENTRY = "closing_time_entry"
    POSTING_TIME = "posting_time"
    NOTIFYING = "notifying"
    WAITING_FOR_PAYROLL_CUTOFF = "waiting_for_payroll_cutoff"
    WAITING_FOR_RESOLUTION = "waiting_for_resolution"
    OPEN_FOR_RESCIND = "open_for_rescind"
    RESCINDING = "rescinding"
    DONE = "done"
    RESCINDED = "rescinded"


class EndedAssignment(Message):
    """An assignment as it was before the termination changed it, and what was done."""

    before: Assignment
    action: str
    """`end_dated` or `deleted` (it started after the last day)."""


class TerminationStatus(Message):
    """What the `status` query answers."""

    step: TerminationStep
    worker_id: str
    termination_date: date
    last_day_worked: date
    payroll_cutoff: date
    time_zone: str = "UTC"
    """The zone the run's days are days in (the worker's; UTC without one, or for a run begun
    before days were local)."""
    effective_at: datetime | None = None
    """The moment the termination takes effect (UTC): the start of its day in `time_zone`."""
    completed: list[str] = Field(default_factory=list)
    conflict_items: list[str] = Field(default_factory=list)
    open_items: list[OpenException] = Field(default_factory=list)
    ended_assignments: list[EndedAssignment] = Field(default_factory=list)
    backfill_request_ids: list[str] = Field(default_factory=list)
    posted_entry_ids: list[str] = Field(default_factory=list)
    rescinded_by: str | None = None
    notes: list[str] = Field(default_factory=list)
    compensation_failures: list[str] = Field(default_factory=list)


class TerminationOutcome(StrEnum):
    COMPLETED = "completed"
    RESCINDED = "rescinded"


class TerminationResult(Message):
    outcome: TerminationOutcome
    worker_id: str
    termination_date: date
    ended_assignments: int = 0
    backfill_request_ids: list[str] = Field(default_factory=list)
    posted_entry_ids: list[str] = Field(default_factory=list)
    exception_items: list[str] = Field(default_factory=list)
    rescinded_by: str | None = None
    compensation_failures: list[str] = Field(default_factory=list)
    """Undos that failed during a rescind ("label: reason"): a person must finish them."""


class PollerInput(Message):
    """One run of the HCM poller (one Schedule action)."""

    hcm_tenant: str | None = None
    """Default: the tenant the deployment is configured with."""
    overlap_s: int = Field(default=300, ge=0)
    """Each window starts this long before the stored cursor, so an entry committed late (or
    stamped by a skewed clock) is still seen; the inbox drops what was seen before."""
    initial_lookback_s: int = Field(default=24 * 3600, ge=0)
    """Where the very first window starts (no cursor in the store yet)."""
    termination_task_queue: str | None = None
    """Queue of the termination runs; default: the poller's own."""
    payroll_cutoff_days: int = Field(default=DEFAULT_PAYROLL_CUTOFF_DAYS, ge=0, le=60)
    activity_timeout_s: int = Field(default=60, ge=1, le=3600)


class PollResult(Message):
    window_from: datetime
    window_through: datetime
    changes: int = 0
    duplicates: int = 0
    started: list[str] = Field(default_factory=list)
    signalled: list[str] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    """Events routed with a caveat (a termination whose HCM zone is not IANA: UTC days)."""
