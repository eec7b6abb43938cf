"""Forecast alignment, the comparison itself (pure: no I/O): one PSA project's assignments, what
its assignment sync knows, and the ERP labor forecast per period -> the drifts.

    findings = compare_forecast(context, side)

The forecast a project should have is the one the assignment sync computes
(`contracts.v1.assignment_sync.labor_forecast`, the one definition: assignment minutes spread
over weekdays, summed per month, priced at the workers' ERP cost rates), over the project's
current PSA assignments. Per period (the periods the staffing covers and those the sync has
forecast before: a period whose assignments all went must read zero):

- staffed, no ERP forecast -> `forecast_missing`: repair;
- the ERP forecast's hours or labor cost differ:
  - the sync does not know the PSA's staffing (an `assignment.changed` it never received: a
    lost webhook, a change made behind pssync's back) -> `forecast_stale`;
  - the sync knows it (the ERP record was edited by hand, or a write never landed) ->
    `forecast_hours_mismatch`;
  both repaired (the sync re-runs, and writes the forecast again); a period finance approved
  or locked is never overwritten: `forecast_hours_mismatch` (whatever the sync knows, so the
  drift stays one while the sync catches up), escalated;
- the staffing's labor cost over all periods exceeds the project's budget by more than
  `budget_variance` (a fraction) -> `assignment_budget_variance`: escalated, a person decides.

Repair: the project's `AssignmentSync` is told of every assignment it does not know at the
PSA's version (thin changes: it re-reads them), and of every assignment it holds that the PSA
no longer has (at the next version: the re-read finds it gone); when it knows the staffing
exactly, one thin change at the next version of one assignment makes it re-read and write the
forecast again (the re-read finds nothing newer; the forecast is compared and written). A
project with no assignment anywhere has nothing to recompute from: escalated.

A sync that is not running (terminated, timed out: its `staffing` query still answers with
what it last held) is started afresh by the first signal, knowing nothing: the changes that
would bring a running one up to date would leave a new one with part of the staffing and no
memory of the months it forecast. So a new run is started knowing the periods to cover (those
the ERP or the closed run forecast: a month whose assignments all went is written as zero) and
told of every PSA assignment, and of those the closed run held that the PSA no longer has
(`restart_of`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from contracts.money import Money
from contracts.systems import System
from contracts.v1.assignment_sync import (
    AssignmentFacts,
    PeriodForecast,
    SyncSettings,
    labor_forecast,
)
from contracts.v1.reconciliation import Disposition, Domain, Drift, DriftKind

DEFAULT_BUDGET_VARIANCE = Decimal("0.10")
"""Labor cost above the budget by more than this fraction is a variance."""
_HOURS = Decimal("0.01")


@dataclass(frozen=True)
class ErpForecast:
    """One period's forecast as the ERP holds it."""

    period: str
    hours: Decimal
    labor_cost: Decimal
    currency: str
    status: str = "draft"
    """draft | approved | locked (only a draft is ever written by pssync)."""

    @property
    def writable(self) -> bool:
        return self.status == "draft"


@dataclass(frozen=True)
class SyncView:
    """What the project's assignment sync knows (its `staffing` query)."""

    assignments: Mapping[str, int]
    """Assignment id -> the version it holds."""
    periods: Sequence[str] = ()
    """Every period it has forecast."""
    pending: bool = False
    """Changes waiting for its next forecast write."""


@dataclass(frozen=True)
class ForecastSide:
    """One project as the systems hold it."""

    psa_project_id: str
    assignments: Sequence[AssignmentFacts]
    """The PSA's assignments of the project now."""
    rates: Mapping[str, Money | None]
    """Worker -> cost rate per hour (the ERP's)."""
    erp: Mapping[str, ErpForecast | None]
    """Period -> the ERP forecast (None: none), for every period compared."""
    sync: SyncView | None = None
    """None: the project has no assignment sync."""
    budget: Money | None = None
    changed_at: datetime | None = None
    """When an assignment of the project last changed in the PSA."""
    settings: SyncSettings = field(default_factory=SyncSettings)


@dataclass(frozen=True)
class ForecastContext:
    tenant: str
    now: datetime
    settle_s: float = 300.0
    since_period: str | None = None
    budget_variance: Decimal = DEFAULT_BUDGET_VARIANCE


@dataclass(frozen=True)
class SyncNudge:
    """Thin `assignment_changed` signals that make the project's sync re-read and re-write."""

    psa_project_id: str
    changes: tuple[tuple[str, int], ...]
    """(assignment id, version) per signal."""


@dataclass(frozen=True)
class SyncRestart:
    """What a new run of the project's sync needs when none is running."""

    psa_project_id: str
    changes: tuple[tuple[str, int], ...]
    """(assignment id, version) per signal: every PSA assignment, and those the closed run held
    that the PSA no longer has (at the next version)."""
    periods: tuple[str, ...]
    """The periods it must cover, whatever is staffed in them now."""


@dataclass(frozen=True)
class ForecastFinding:
    drift: Drift
    repair: SyncNudge | None = None
    evidence: dict[str, str | None] = field(default_factory=dict)


def periods_to_read(assignments: Sequence[AssignmentFacts], sync: SyncView | None) -> list[str]:
    """The periods whose ERP forecast a comparison needs: those the staffing covers and those
    the sync forecast before."""
    wanted, _ = labor_forecast(list(assignments), {}, SyncSettings())
    return sorted({f.period for f in wanted} | set(sync.periods if sync else ()))


def nudge_of(side: ForecastSide) -> SyncNudge | None:
    """The thin changes that bring the sync to the PSA's staffing and make it write (None: no
    assignment to name)."""
    psa = {a.assignment_id: a.version for a in side.assignments}
    known = dict(side.sync.assignments) if side.sync else {}
    changes = [(aid, v) for aid, v in sorted(psa.items()) if known.get(aid, -1) < v]
    changes += [(aid, v + 1) for aid, v in sorted(known.items()) if aid not in psa]
    if not changes and known:
        aid, v = sorted(known.items())[0]
        changes = [(aid, v + 1)]
    if not changes:
        return None
    return SyncNudge(side.psa_project_id, tuple(changes))


def restart_of(side: ForecastSide) -> SyncRestart | None:
    """The start of a new sync run that writes the project's whole forecast (None: no
    assignment to name, in the PSA or in the closed run)."""
    psa = {a.assignment_id: a.version for a in side.assignments}
    held = dict(side.sync.assignments) if side.sync else {}
    changes = sorted(psa.items()) + [
        (aid, v + 1) for aid, v in sorted(held.items()) if aid not in psa
    ]
    if not changes:
        return None
    forecast = {p for p, f in side.erp.items() if f is not None}
    periods = forecast | set(side.sync.periods if side.sync else ())
    return SyncRestart(side.psa_project_id, tuple(changes), tuple(sorted(periods)))


def sync_is_behind(side: ForecastSide) -> bool:
    psa = {a.assignment_id: a.version for a in side.assignments}
    known = dict(side.sync.assignments) if side.sync else {}
    return psa != known


def compare_forecast(ctx: ForecastContext, side: ForecastSide) -> list[ForecastFinding]:
    """Every forecast drift of one project (none while its staffing changed within the settle
    window, or its sync has changes waiting: the webhook-driven sync is on it)."""
    if side.sync is not None and side.sync.pending:
        return []
    if side.changed_at is not None and ctx.now - side.changed_at < timedelta(seconds=ctx.settle_s):
        return []
    periods = sorted(set(side.erp) | set(side.sync.periods if side.sync else ()))
    wanted, unpriced = labor_forecast(
        list(side.assignments), dict(side.rates), side.settings, periods=periods
    )
    by_period = {f.period: f for f in wanted}
    behind = sync_is_behind(side)
    nudge = nudge_of(side)
    evidence: dict[str, str | None] = {
        "assignments": str(len(side.assignments)),
        "sync": "none" if side.sync is None else f"{len(side.sync.assignments)} assignments",
        "sync_behind": str(behind).lower(),
        "unpriced": ", ".join(unpriced) or None,
    }
    keys = {"tenant": ctx.tenant, "psa_project_id": side.psa_project_id}
    findings: list[ForecastFinding] = []
    for period in sorted(by_period):
        if ctx.since_period is not None and period < ctx.since_period:
            continue
        found = _period_drift(ctx, side, by_period[period], side.erp.get(period), behind, nudge)
        if found is not None:
            kind, disposition, detail, values = found
            drift = Drift(
                domain=Domain.FORECAST_ALIGNMENT,
                kind=kind,
                keys={**keys, "period": period},
                values=values,
                owner=System.ERP,
                disposition=disposition,
                detail=detail,
            )
            repair = nudge if disposition is Disposition.REPAIR else None
            findings.append(ForecastFinding(drift, repair, evidence))
    variance = budget_variance(ctx, side, wanted)
    if variance is not None:
        findings.append(ForecastFinding(variance, None, evidence))
    return findings


def _period_drift(
    ctx: ForecastContext,
    side: ForecastSide,
    want: PeriodForecast,
    have: ErpForecast | None,
    behind: bool,
    nudge: SyncNudge | None,
) -> tuple[DriftKind, Disposition, str, dict[str, str | None]] | None:
    values: dict[str, str | None] = {
        "psa": str(want.hours.quantize(_HOURS)),
        "erp": str(have.hours.quantize(_HOURS)) if have else None,
        "psa_cost": str(want.labor_cost.amount),
        "erp_cost": str(have.labor_cost) if have else None,
    }
    where = f"project {side.psa_project_id}, {want.period}"
    if have is None:
        if want.hours == 0:
            return None
        detail = f"{where}: staffed {values['psa']} h, the ERP has no forecast"
        disposition = Disposition.REPAIR if nudge else Disposition.ESCALATE
        return DriftKind.FORECAST_MISSING, disposition, detail, values
    same_cost = (
        have.currency != want.labor_cost.currency or have.labor_cost == want.labor_cost.amount
    )
    if have.hours.quantize(_HOURS) == want.hours.quantize(_HOURS) and same_cost:
        return None
    kind = DriftKind.FORECAST_STALE if behind else DriftKind.FORECAST_HOURS_MISMATCH
    detail = (
        f"{where}: the ERP forecasts {values['erp']} h ({values['erp_cost']}), the staffing "
        f"gives {values['psa']} h ({values['psa_cost']})"
        + ("; the assignment sync missed a staffing change" if behind else "")
    )
    if not have.writable:
        # Finance's figure, whatever the sync knows: one kind, so the drift keeps its identity
        # (and its item) while the sync catches up.
        detail += f"; the forecast is {have.status}: never overwritten, finance decides"
        return DriftKind.FORECAST_HOURS_MISMATCH, Disposition.ESCALATE, detail, values
    if nudge is None:
        detail += "; no assignment to recompute it from"
        return kind, Disposition.ESCALATE, detail, values
    return kind, Disposition.REPAIR, detail, values


def budget_variance(
    ctx: ForecastContext, side: ForecastSide, wanted: Sequence[PeriodForecast]
) -> Drift | None:
    """The staffing's labor cost over all periods against the project's budget."""
    budget = side.budget
    if budget is None or budget.amount <= 0:
        return None
    cost = sum(
        (f.labor_cost.amount for f in wanted if f.labor_cost.currency == budget.currency),
        Decimal(0),
    )
    limit = budget.amount * (1 + ctx.budget_variance)
    if cost <= limit:
        return None
    over = ((cost - budget.amount) / budget.amount * 100).quantize(Decimal("0.1"))
    return Drift(
        domain=Domain.FORECAST_ALIGNMENT,
        kind=DriftKind.FORECAST_ASSIGNMENT_BUDGET_VARIANCE,
        keys={"tenant": ctx.tenant, "psa_project_id": side.psa_project_id},
        values={"psa": str(cost.quantize(Decimal("0.01"))), "erp": str(budget.amount)},
        owner=System.PSA,
        disposition=Disposition.ESCALATE,
        detail=(
            f"project {side.psa_project_id}: the assignments cost {cost:.2f} "
            f"{budget.currency}, {over}% over the budget of {budget.amount} "
            f"(threshold {ctx.budget_variance * 100:.0f}%)"
        ),
    )
