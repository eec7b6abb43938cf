"""The business indicators' figures, read from the store in a few aggregate queries.

    figures = indicator_figures(store, now=datetime.now(UTC), thresholds=IndicatorThresholds())

Each query is one ``GROUP BY`` (or a filtered read of standing forecast drifts only) returning a
handful of rows whatever the size of the tables: the gateway runs them at every Prometheus
scrape (``gateway.indicators.BusinessIndicators``). No business rule here: the figures are what
the tables record, with their ages measured from ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, func
from sqlalchemy import select as core_select

from store.models import (
    DriftRow,
    ExceptionItemRow,
    ExceptionStatus,
    InvoiceRow,
    TimePostingRow,
    TimePostingState,
    XrefRow,
    XrefStatus,
)
from store.repository._base import StoreBase

_TIME_POSTING: Table = TimePostingRow.__table__  # type: ignore[attr-defined]
_ITEM: Table = ExceptionItemRow.__table__  # type: ignore[attr-defined]
_XREF: Table = XrefRow.__table__  # type: ignore[attr-defined]
_DRIFT: Table = DriftRow.__table__  # type: ignore[attr-defined]
_INVOICE: Table = InvoiceRow.__table__  # type: ignore[attr-defined]

UNPOSTED_STATES = (TimePostingState.POSTING.value, TimePostingState.EXCEPTION.value)
"""Approved labor pssync holds but the ERP does not: a posting under way, or an entry waiting
for a person (an exception item)."""
_UNRESOLVED = (ExceptionStatus.OPEN.value, ExceptionStatus.ESCALATED.value)
_STANDING = ("open", "repaired", "escalated")
FORECAST_DOMAIN = "forecast_alignment"
BUDGET_VARIANCE_KIND = "assignment_budget_variance"
INVOICE_WINDOW = timedelta(days=30)
"""Invoices whose trigger delay the indicators summarise: those billed this recently."""


@dataclass(frozen=True, slots=True)
class IndicatorThresholds:
    """Service levels, in seconds (from ``contracts.settings.IndicatorSettings``)."""

    posting_within_s: int = 15 * 60
    invoice_within_s: int = 24 * 3600
    exception_within_s: int = 4 * 3600
    stale_after_s: int = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Unposted:
    """Approved labor (time entries) not live in the ERP, by ledger state."""

    entries: int
    hours: Decimal
    oldest: datetime | None
    """``updated_at`` of the oldest such row: when it reached its state."""


@dataclass(frozen=True, slots=True)
class ExceptionGroup:
    open: int
    oldest: datetime


@dataclass(frozen=True, slots=True)
class SyncAge:
    """A system's active project records in the ID map."""

    records: int
    oldest: datetime
    """The least recent ``last_synced_at``."""
    stale: int
    """Records not synced within ``stale_after_s``."""


@dataclass(frozen=True, slots=True)
class InvoiceDelays:
    """Closed periods -> invoice: billed in the window, and still waiting."""

    delays_s: list[float]
    """Per invoice billed in the last ``INVOICE_WINDOW`` for closed periods: from the close
    of its latest period to its billing in the ledger; and per milestone invoice created in
    that window (not voided) whose milestone's completion is known: from the completion to the
    ERP invoice."""
    pending_periods: int
    """(project, period) pairs of closed periods with posted, billable, unbilled entries."""
    oldest_pending_close: datetime | None
    """When the oldest such period closed."""


@dataclass(frozen=True, slots=True)
class ForecastVariance:
    """From the standing drifts of the forecast-alignment domain."""

    drifts: dict[str, int]
    """kind -> standing drifts."""
    forecast_hours: Decimal
    """Sum over standing forecast drifts of |staffed hours - ERP forecast hours|."""
    budget_overrun: Decimal
    """Sum over standing budget-variance drifts of (assignments' cost - budget)."""
    budget_overrun_ratio_max: Decimal
    """The largest (cost - budget) / budget among them (0 when none)."""


@dataclass(frozen=True, slots=True)
class IndicatorFigures:
    now: datetime
    unposted: dict[str, Unposted]
    """ledger state (posting, exception) -> approved time not posted."""
    posting_breaches: int
    exceptions: dict[tuple[str, str], ExceptionGroup]
    """(process, cause) -> unresolved exception items."""
    exception_breaches: dict[str, int]
    """process -> unresolved items older than ``exception_within_s``."""
    sync: dict[str, SyncAge]
    """system -> its active project records."""
    invoices: InvoiceDelays
    invoice_breaches: int
    forecast: ForecastVariance
    reversals: int
    """Ledger rows reversed in the ERP (compensations of posted time)."""


def indicator_figures(
    store: StoreBase, *, now: datetime, thresholds: IndicatorThresholds
) -> IndicatorFigures:
    """Every indicator's figures at ``now``, in one read transaction of seven small queries."""
    tp = _TIME_POSTING.c
    it = _ITEM.c
    x = _XREF.c
    d = _DRIFT.c
    posting_due = now - timedelta(seconds=thresholds.posting_within_s)
    exception_due = now - timedelta(seconds=thresholds.exception_within_s)
    stale_before = now - timedelta(seconds=thresholds.stale_after_s)
    current_period = now.strftime("%Y-%m")
    with store._reader.connect() as conn:  # the store package's own engine
        unposted_rows = conn.execute(
            core_select(
                tp.state,
                func.count(),
                func.sum(tp.hours),
                func.min(tp.updated_at),
                func.count().filter(tp.updated_at < posting_due),
            )
            .where(tp.kind == "time", tp.state.in_(UNPOSTED_STATES))
            .group_by(tp.state)
        ).all()
        reversals = conn.execute(
            core_select(func.count()).where(tp.state == TimePostingState.REVERSED.value)
        ).scalar_one()
        item_rows = conn.execute(
            core_select(
                it.process,
                it.cause_code,
                func.count(),
                func.min(it.created_at),
                func.count().filter(it.created_at < exception_due),
            )
            .where(it.status.in_(_UNRESOLVED))
            .group_by(it.process, it.cause_code)
        ).all()
        sync_rows = conn.execute(
            core_select(
                x.system,
                func.count(),
                func.min(x.last_synced_at),
                func.count().filter(x.last_synced_at < stale_before),
            )
            .where(x.entity_type == "project", x.status == XrefStatus.ACTIVE.value)
            .group_by(x.system)
        ).all()
        billed = conn.execute(
            core_select(tp.invoice_ref, func.max(tp.period), func.min(tp.updated_at))
            .where(
                tp.invoice_ref.is_not(None),
                tp.period.is_not(None),
                tp.updated_at >= now - INVOICE_WINDOW,
            )
            .group_by(tp.invoice_ref)
        ).all()
        milestones = conn.execute(
            core_select(_INVOICE.c.milestone_completed_at, _INVOICE.c.created_at).where(
                _INVOICE.c.milestone_completed_at.is_not(None),
                _INVOICE.c.voided_at.is_(None),
                _INVOICE.c.created_at >= now - INVOICE_WINDOW,
            )
        ).all()
        pending = conn.execute(
            core_select(tp.period, func.count(func.distinct(tp.psa_project_id)))
            .where(unbilled_closed_periods(current_period))
            .group_by(tp.period)
        ).all()
        forecast_rows = conn.execute(
            core_select(d.kind, d["values"]).where(
                d.domain == FORECAST_DOMAIN, d.state.in_(_STANDING)
            )
        ).all()
    unposted = {
        str(state): Unposted(int(n), Decimal(hours), _aware(oldest) if oldest else None)
        for state, n, hours, oldest, _late in unposted_rows
    }
    exceptions: dict[tuple[str, str], ExceptionGroup] = {}
    exception_breaches: dict[str, int] = {}
    for process, cause, n, oldest, late in item_rows:
        exceptions[(str(process), str(cause))] = ExceptionGroup(int(n), _aware(oldest))
        exception_breaches[str(process)] = exception_breaches.get(str(process), 0) + int(late)
    delays: list[float] = []
    for _ref, period, billed_at in billed:
        closed = period_close(str(period))
        at = _aware(billed_at)
        if closed <= at:
            delays.append((at - closed).total_seconds())
    for completed_at, created_at in milestones:
        done, at = _aware(completed_at), _aware(created_at)
        if done <= at:
            delays.append((at - done).total_seconds())
    pending_periods = sum(int(n) for _p, n in pending)
    closes = [period_close(str(p)) for p, _n in pending]
    invoice_due = now - timedelta(seconds=thresholds.invoice_within_s)
    return IndicatorFigures(
        now=now,
        unposted=unposted,
        posting_breaches=sum(int(late) for *_rest, late in unposted_rows),
        exceptions=exceptions,
        exception_breaches=exception_breaches,
        sync={
            str(system): SyncAge(int(n), _aware(oldest), int(stale))
            for system, n, oldest, stale in sync_rows
        },
        invoices=InvoiceDelays(delays, pending_periods, min(closes) if closes else None),
        invoice_breaches=sum(int(n) for p, n in pending if period_close(str(p)) < invoice_due),
        forecast=_forecast(forecast_rows),
        reversals=int(reversals),
    )


def unbilled_closed_periods(current_period: str) -> ColumnElement[bool]:
    """Ledger rows of posted, billable time with an amount to bill but no invoice yet, of a
    period closed before ``current_period`` ("YYYY-MM")."""
    tp = _TIME_POSTING.c
    return and_(
        tp.state == TimePostingState.POSTED.value,
        tp.billable.is_(True),
        tp.invoice_ref.is_(None),
        tp.bill_amount.is_not(None),
        tp.period.is_not(None),
        tp.period < current_period,
    )


def period_close(period: str) -> datetime:
    """When a ``"YYYY-MM"`` period closed: the first instant of the next month, UTC."""
    year, month = (int(part) for part in period.split("-", 1))
    if month == 12:
        return datetime(year + 1, 1, 1, tzinfo=UTC)
    return datetime(year, month + 1, 1, tzinfo=UTC)


def _forecast(rows: Sequence[Any]) -> ForecastVariance:
    drifts: dict[str, int] = {}
    hours = Decimal(0)
    overrun = Decimal(0)
    ratio = Decimal(0)
    for row in rows:
        kind, values = row
        drifts[str(kind)] = drifts.get(str(kind), 0) + 1
        values = values or {}
        psa = _number(values.get("psa"))
        erp = _number(values.get("erp"))
        if kind == BUDGET_VARIANCE_KIND:
            if psa is not None and erp is not None and erp > 0:
                overrun += psa - erp
                ratio = max(ratio, (psa - erp) / erp)
        elif psa is not None:
            hours += abs(psa - (erp or Decimal(0)))
    return ForecastVariance(drifts, hours, overrun, ratio)


def _number(value: object) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
