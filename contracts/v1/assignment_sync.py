"""Assignment sync: the entity state of one project's staffing, the signal that changes it, and
the labor-cost forecast it becomes. Pure functions and models; no I/O here.

Forecast, defined once: an assignment's allocated minutes are spread evenly over the weekdays
(Monday-Friday) from its start to its end date (over all its days if it has no weekday), and
summed per calendar month; the month's labor cost is the sum over assignments of its hours in
that month x its cost rate. The cost rate of a named assignment is the worker's cost rate as
the ERP holds it; role demand without a worker, or a worker the ERP has no rate for, costs the
role's standard rate (`standard_cost_rates`), else `fallback_cost_rate`; an assignment with no
rate at all is counted in hours, not in cost, and listed as unpriced.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from contracts.money import Money
from contracts.v1.processes import DeskState

ASSIGNMENT_SYNC = "AssignmentSync"
"""Workflow type name."""
ASSIGNMENT_CHANGED_SIGNAL = "assignment_changed"
STAFFING_QUERY = "staffing"
PROCESS_ASSIGNMENT_SYNC = "assignment_sync"


class Message(BaseModel):
    """A workflow input, signal, update, query answer or carried state.

    Unknown fields are ignored, not refused: during a rolling deploy an older worker must
    still accept a message that a newer gateway or workflow sent with a field it added."""

    model_config = ConfigDict(extra="ignore")


class AssignmentFacts(Message):
    """What the forecast needs of one PSA assignment, at one PSA record version."""

    assignment_id: str
    version: int = Field(ge=0)
    role: str
    worker_id: str | None = None
    """None: role demand without a named worker."""
    start_date: date
    end_date: date
    allocated_minutes: int = Field(ge=0)


class AssignmentChange(Message):
    """The signal `assignment_changed`: a PSA assignment changed (or was deleted) at `version`.

    The PSA webhook is thin: without `assignment` the workflow re-reads the record from the PSA
    before the next forecast (and keeps what it reads only if it is newer than what it knows).
    """

    assignment_id: str
    version: int = Field(ge=0)
    deleted: bool = False
    assignment: AssignmentFacts | None = None


class PeriodForecast(Message):
    period: str
    hours: Decimal
    labor_cost: Money


class ForecastRefusal(Message):
    """The ERP would not take a period's forecast (finance approved or locked it)."""

    period: str
    code: str
    detail: str
    wanted_hours: Decimal
    wanted_cost: Money
    item_id: str | None = None


class SyncSettings(Message):
    debounce_s: float = Field(default=5.0, gt=0)
    """Changes arriving within this window after the first one go out as one ERP update."""
    max_history_events: int = Field(default=10_000, ge=100, le=40_000)
    """Continue-as-new at this history length (or when the server suggests it), well under
    Temporal's 51,200-event limit."""
    currency: str = "USD"
    standard_cost_rates: dict[str, Money] = Field(default_factory=dict)
    fallback_cost_rate: Money | None = None
    activity_timeout_s: int = Field(default=60, ge=1, le=3600)


class AssignmentSyncState(Message):
    """Everything one project's sync knows; carried whole through continue-as-new."""

    psa_tenant: str
    psa_project_id: str
    erp_project: str | None = None
    """`eid:<enterprise id>`; resolved from the store's xref on first use when None."""
    settings: SyncSettings = Field(default_factory=SyncSettings)
    assignments: dict[str, AssignmentFacts] = Field(default_factory=dict)
    deleted: dict[str, int] = Field(default_factory=dict)
    """Tombstones: assignment id -> the version it was deleted at (older changes are stale)."""
    reread: dict[str, int] = Field(default_factory=dict)
    """Thin changes to read from the PSA before the next forecast: id -> signalled version."""
    dirty: bool = False
    periods: list[str] = Field(default_factory=list)
    """Every period ever forecast (a period whose assignments all went is written as zero)."""
    forecast_version: int = 0
    """How many forecast updates were applied (the last applied one's number)."""
    last_forecast: list[PeriodForecast] = Field(default_factory=list)
    open_refusals: list[ForecastRefusal] = Field(default_factory=list)
    desk: DeskState | None = None
    """The exception desk's open and recently closed refusal items."""
    changes_received: int = 0
    changes_applied: int = 0
    changes_dropped: int = 0
    runs: int = 1


class AssignmentSyncInput(Message):
    psa_tenant: str
    psa_project_id: str
    erp_project: str | None = None
    settings: SyncSettings = Field(default_factory=SyncSettings)
    state: AssignmentSyncState | None = None
    """Set by continue-as-new, or by reconciliation restarting a sync that is not running (only
    `periods` set: the months it must cover); otherwise None."""


class Staffing(Message):
    """What the `staffing` query answers: the project's staffing as the sync knows it."""

    psa_project_id: str
    assignments: list[AssignmentFacts]
    pending: bool
    forecast_version: int
    forecast: list[PeriodForecast]
    open_refusals: list[ForecastRefusal]
    changes_received: int
    changes_applied: int
    changes_dropped: int
    runs: int


def is_newer(state: AssignmentSyncState, change: AssignmentChange) -> bool:
    """True unless the change's version is at or below what the state already knows."""
    known = -1
    if change.assignment_id in state.assignments:
        known = state.assignments[change.assignment_id].version
    known = max(
        known,
        state.deleted.get(change.assignment_id, -1),
        state.reread.get(change.assignment_id, -1),
    )
    return change.version > known


def apply_change(state: AssignmentSyncState, change: AssignmentChange) -> bool:
    """Apply a change to the state if it is newer; True if applied (stale ones are dropped)."""
    state.changes_received += 1
    if not is_newer(state, change):
        state.changes_dropped += 1
        return False
    aid = change.assignment_id
    if change.deleted:
        state.assignments.pop(aid, None)
        state.reread.pop(aid, None)
        state.deleted[aid] = change.version
    elif change.assignment is not None:
        state.assignments[aid] = change.assignment.model_copy(update={"version": change.version})
        state.reread.pop(aid, None)
        state.deleted.pop(aid, None)
    else:
        state.reread[aid] = change.version
    state.changes_applied += 1
    state.dirty = True
    return True


def apply_reread(
    state: AssignmentSyncState, aid: str, asked: int, found: AssignmentFacts | None
) -> None:
    """Merge what the PSA answered for a thin change signalled at version `asked` (None: the
    assignment is gone). A newer thin change that arrived meanwhile stays pending."""
    if state.reread.get(aid) == asked:
        del state.reread[aid]
    if found is None:
        if aid in state.reread:
            return
        known = state.assignments.pop(aid, None)
        state.deleted[aid] = max(asked, known.version if known else 0)
        return
    current = state.assignments.get(aid)
    newer = current is None or found.version > current.version
    if newer and found.version > state.deleted.get(aid, -1):
        state.assignments[aid] = found
        state.deleted.pop(aid, None)


def _weekdays(start: date, end: date) -> list[date]:
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    working = [d for d in days if d.weekday() < 5]
    return working or days


def hours_by_period(assignment: AssignmentFacts) -> dict[str, Decimal]:
    """The assignment's hours per calendar month (see the module docstring)."""
    days = _weekdays(assignment.start_date, assignment.end_date)
    per_month: dict[str, int] = defaultdict(int)
    for d in days:
        per_month[f"{d.year:04d}-{d.month:02d}"] += 1
    total = Decimal(assignment.allocated_minutes) / Decimal(60)
    n = Decimal(len(days))
    return {period: total * Decimal(count) / n for period, count in sorted(per_month.items())}


def cost_rate_for(
    assignment: AssignmentFacts, worker_rates: dict[str, Money | None], settings: SyncSettings
) -> Money | None:
    if assignment.worker_id is not None:
        rate = worker_rates.get(assignment.worker_id)
        if rate is not None:
            return rate
    return settings.standard_cost_rates.get(assignment.role) or settings.fallback_cost_rate


def labor_forecast(
    assignments: list[AssignmentFacts],
    worker_rates: dict[str, Money | None],
    settings: SyncSettings,
    *,
    periods: Sequence[str] = (),
) -> tuple[list[PeriodForecast], list[str]]:
    """Hours and labor cost per period, and the ids of assignments with no cost rate.

    Every period in `periods` appears, zero if nothing is staffed in it any more."""
    hours: dict[str, Decimal] = {p: Decimal(0) for p in periods}
    cost: dict[str, Money] = {p: Money.zero(settings.currency) for p in periods}
    unpriced: list[str] = []
    for a in sorted(assignments, key=lambda x: x.assignment_id):
        rate = cost_rate_for(a, worker_rates, settings)
        if rate is None:
            unpriced.append(a.assignment_id)
        for period, h in hours_by_period(a).items():
            hours[period] = hours.get(period, Decimal(0)) + h
            cost.setdefault(period, Money.zero(settings.currency))
            if rate is not None:
                cost[period] = cost[period] + rate * h
    forecasts = [
        PeriodForecast(
            period=p,
            hours=hours[p].quantize(Decimal("0.01")),
            labor_cost=cost[p].rounded(),
        )
        for p in sorted(hours)
    ]
    return forecasts, unpriced


def staffing_view(state: AssignmentSyncState) -> Staffing:
    return Staffing(
        psa_project_id=state.psa_project_id,
        assignments=[state.assignments[k] for k in sorted(state.assignments)],
        pending=state.dirty,
        forecast_version=state.forecast_version,
        forecast=state.last_forecast,
        open_refusals=state.open_refusals,
        changes_received=state.changes_received,
        changes_applied=state.changes_applied,
        changes_dropped=state.changes_dropped,
        runs=state.runs,
    )
