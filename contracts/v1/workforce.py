"""The worker lifecycle: effective-dated changes from HCM, the worker's state they build, and
the messages of the `WorkerLifecycle` process (one run per worker).

    change = WorkerChange(event_id="evt-9", sequence=9, worker_id="W-1", kind=..., ...)
    when = change.effective_at          # the worker's midnight on the effective date, in UTC
    state = apply(state, change)        # a new WorkerState, or Stale when nothing is newer

HCM states an effective *date*; it takes effect at the start of that day where the worker
works (`time_zone`, IANA), not where the integration runs: a worker in Sydney whose change is
effective "today" is changed at Sydney's midnight, which is the previous afternoon in New York.

Order: each change carries HCM's ordering key (`sequence`, HCM's event sequence, and the
moment it was entered). Changes are ordered by effective instant, then sequence. Each field of
the state remembers the key of the change that set it, so a stale or out-of-order event never
overwrites what a newer one set: `apply` takes only the fields it is newer for, and answers
`Stale` when it is newer for none. Terminations are not lifecycle changes: they stay with the
`WorkerTermination` process. No I/O here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.ids import canonical_hcm_id, canonical_tenant
from contracts.money import Money
from contracts.v1.processes import RESOLVER_ROLES, DeskState, Message, OpenException

WORKER_LIFECYCLE = "WorkerLifecycle"
PROCESS_WORKER_LIFECYCLE = "worker_lifecycle"
WORKER_CHANGE_SIGNAL = "worker_change"
"""Signal (`WorkerChange`): an HCM lifecycle event, from the HCM poller (signal-with-start)."""
LIFECYCLE_RESOLVER_ROLES = RESOLVER_ROLES[PROCESS_WORKER_LIFECYCLE]
"""Roles that may resolve this process's exception items (conflicts for the resource
manager)."""


def lifecycle_workflow_id(hcm_tenant: str, worker_id: str) -> str:
    """The one run per worker: every lifecycle change of the worker signals it."""
    return f"worker/{canonical_tenant(hcm_tenant)}/{canonical_hcm_id(worker_id)}"


class WorkerChangeKind(StrEnum):
    HIRE = "hire"
    REHIRE = "rehire"
    TRANSFER = "transfer"
    JOB_CHANGE = "job_change"
    COST_RATE_CHANGE = "cost_rate_change"
    LEAVE_START = "leave_start"
    LEAVE_END = "leave_end"
    FTE_CHANGE = "fte_change"


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError when the name is not one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"not an IANA time zone: {name!r}") from exc


def effective_instant(day: date, time_zone: str) -> datetime:
    """The moment (UTC) a change effective on `day` takes effect for a worker in `time_zone`:
    the first instant of that day there. DST-correct: the offset is the one in force at that
    local midnight; where a DST gap swallows midnight, the day starts at the transition."""
    local = datetime.combine(day, time(0), tzinfo=zone(time_zone))
    return local.astimezone(UTC)


def local_day(moment: datetime, time_zone: str) -> date:
    """The calendar day `moment` falls on for a worker in `time_zone`."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone(time_zone)).date()


class OrderKey(BaseModel):
    """Where a change stands in a worker's history: effective instant, then HCM's sequence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    effective_at: datetime
    sequence: int
    event_id: str

    def newer_than(self, other: OrderKey | None) -> bool:
        if other is None:
            return True
        return (self.effective_at, self.sequence) > (other.effective_at, other.sequence)


class WorkerChange(BaseModel):
    """One effective-dated lifecycle event as HCM entered it, with the fields it changes
    (None: not changed by this event)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: str
    """HCM's event id: the same event read twice is the same change."""
    sequence: int = Field(ge=0)
    """HCM's event sequence (entry order); breaks ties between changes effective together."""
    entered_at: datetime
    worker_id: str
    kind: WorkerChangeKind
    effective_date: date
    """As HCM states it: a calendar day in the worker's zone."""
    time_zone: str
    """The worker's IANA time zone (after this change, for a transfer)."""
    name: str | None = None
    email: str | None = None
    location: str | None = None
    cost_center: str | None = None
    practice: str | None = None
    manager_id: str | None = None
    role: str | None = None
    cost_rate: Money | None = None
    """Labor cost per hour."""
    fte: Decimal | None = Field(default=None, gt=0, le=1)
    leave_until: date | None = None
    """A leave's expected last day (None: open-ended)."""

    @field_validator("time_zone")
    @classmethod
    def _iana(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("entered_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)

    @model_validator(mode="after")
    def _leave(self) -> WorkerChange:
        if self.leave_until and self.leave_until < self.effective_date:
            raise ValueError("leave_until is before the effective date")
        return self

    @property
    def effective_at(self) -> datetime:
        return effective_instant(self.effective_date, self.time_zone)

    @property
    def key(self) -> OrderKey:
        return OrderKey(
            effective_at=self.effective_at, sequence=self.sequence, event_id=self.event_id
        )

    def fields(self) -> dict[str, Any]:
        """The state fields this change sets (field -> value)."""
        changed: dict[str, Any] = {
            name: getattr(self, name) for name in _DATA_FIELDS if getattr(self, name) is not None
        }
        changed["time_zone"] = self.time_zone
        if self.kind in (WorkerChangeKind.HIRE, WorkerChangeKind.REHIRE):
            changed["employed_from"] = self.effective_date
            changed["on_leave"] = False
            changed["leave_from"] = None
            changed["leave_until"] = None
        elif self.kind is WorkerChangeKind.LEAVE_START:
            changed["on_leave"] = True
            changed["leave_from"] = self.effective_date
            changed["leave_until"] = self.leave_until
        elif self.kind is WorkerChangeKind.LEAVE_END:
            changed["on_leave"] = False
            changed["leave_from"] = None
            changed["leave_until"] = None
        return changed


_DATA_FIELDS = (
    "name",
    "email",
    "location",
    "cost_center",
    "practice",
    "manager_id",
    "role",
    "cost_rate",
    "fte",
)
_LEAVE_FIELDS = ("on_leave", "leave_from", "leave_until")


class WorkerState(BaseModel):
    """A worker as the applied changes left it, with the key of the change behind each field."""

    model_config = ConfigDict(extra="ignore")

    worker_id: str
    time_zone: str = "UTC"
    employed_from: date | None = None
    name: str | None = None
    email: str | None = None
    location: str | None = None
    cost_center: str | None = None
    practice: str | None = None
    manager_id: str | None = None
    role: str | None = None
    cost_rate: Money | None = None
    fte: Decimal | None = None
    on_leave: bool = False
    leave_from: date | None = None
    leave_until: date | None = None
    stamps: dict[str, OrderKey] = Field(default_factory=dict)
    """field -> the key of the change that set it last."""
    applied: int = 0


class Stale(BaseModel):
    """A change every field of which a newer change already set: nothing to apply."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    newer: list[str]
    """The event ids that set its fields later (in effective order)."""


def apply(state: WorkerState, change: WorkerChange) -> WorkerState | Stale:
    """The state after `change`, taking only the fields it is newer for; `Stale` when a newer
    change already set every one of them. Pure: `state` is not modified.

    A leave's fields (on leave, from, until) move together: a leave either wins as a whole or
    not at all, so a stale return never half-ends a newer leave."""
    if change.worker_id != state.worker_id:
        raise ValueError(f"change {change.event_id} is for {change.worker_id}")
    key = change.key
    updates: dict[str, Any] = {}
    stamps = dict(state.stamps)
    newer: list[str] = []
    fields = change.fields()
    leave = {k: fields.pop(k) for k in _LEAVE_FIELDS if k in fields}
    if leave:
        stamp = state.stamps.get("leave")
        if key.newer_than(stamp):
            updates.update(leave)
            stamps["leave"] = key
        elif stamp is not None:
            newer.append(stamp.event_id)
    for name, value in fields.items():
        stamp = state.stamps.get(name)
        if key.newer_than(stamp):
            updates[name] = value
            stamps[name] = key
        elif stamp is not None:
            newer.append(stamp.event_id)
    if not updates:
        return Stale(event_id=change.event_id, newer=sorted(set(newer)))
    return state.model_copy(update={**updates, "stamps": stamps, "applied": state.applied + 1})


def changed_fields(before: WorkerState, after: WorkerState) -> set[str]:
    """The data fields whose value differs between two states."""
    names = (*_DATA_FIELDS, *_LEAVE_FIELDS, "employed_from", "time_zone")
    return {n for n in names if getattr(before, n) != getattr(after, n)}


# --------------------------------------------------------------------------- the process


class LifecycleConflict(BaseModel):
    """An assignment a change collides with (found at once when the change arrives)."""

    code: str
    """ASSIGNMENT_DURING_LEAVE or ASSIGNMENT_OTHER_PRACTICE."""
    assignment_id: str
    project_id: str
    start_date: date
    end_date: date
    detail: str


class AppliedChange(BaseModel):
    event_id: str
    kind: WorkerChangeKind
    effective_date: date
    effective_at: datetime
    applied_at: datetime
    fields: list[str]
    stale: bool = False


class LifecycleInput(Message):
    """Start of a worker's run, or what a continue-as-new carries."""

    hcm_tenant: str
    worker_id: str
    state: WorkerState | None = None
    pending: list[WorkerChange] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)
    """Event ids received (duplicates are dropped by these)."""
    history: list[AppliedChange] = Field(default_factory=list)
    desk: DeskState | None = None
    activity_timeout_s: float = 60.0
    escalation_after_s: float = 3 * 24 * 3600.0
    continue_after: int = 200
    """Continue as new after this many changes received in one run."""
    seen_kept: int = 5000
    history_kept: int = 50


class LifecycleStatus(Message):
    worker_id: str
    state: WorkerState
    pending: list[WorkerChange]
    history: list[AppliedChange]
    duplicates: int = 0
    open_items: list[OpenException] = Field(default_factory=list)
