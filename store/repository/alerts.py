"""SLA breaches as `alert.raised` events: who must act on what, raised once per breach.

    raised = raise_sla_alerts(store, now=datetime.now(UTC), thresholds=IndicatorThresholds())

The same service levels as the indicators (`store.repository.indicators`, `pssync_sla_breaches`):
approved labor not posted within ``posting_within_s``, an exception item unresolved after
``exception_within_s``, a closed period's billable time not invoiced ``invoice_within_s`` after
it closed. Each breach is keyed by what breached — the oldest unposted entry, the overdue item,
the (project, period) — so a check repeated every minute raises one alert per breach; the alert
names the oldest thing to act on and how many more there are.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, and_, func
from sqlalchemy import select as core_select

from contracts.v1.events import AlertRaised
from store.models import ExceptionItemRow
from store.repository._base import StoreBase
from store.repository.exceptions import _subject as item_subject
from store.repository.indicators import (
    _ITEM,
    _TIME_POSTING,
    _UNRESOLVED,
    _XREF,
    UNPOSTED_STATES,
    IndicatorThresholds,
    _aware,
    period_close,
    unbilled_closed_periods,
)
from store.repository.records import DomainEvent, queue_events

PROCESS_TIME_TO_INVOICE = "time_to_invoice"


def sla_alerts(
    store: StoreBase, *, now: datetime, thresholds: IndicatorThresholds
) -> list[DomainEvent]:
    """The `alert.raised` events of the breaches standing at ``now`` (not recorded)."""
    tp = _TIME_POSTING.c
    it = _ITEM.c
    posting_due = now - timedelta(seconds=thresholds.posting_within_s)
    exception_due = now - timedelta(seconds=thresholds.exception_within_s)
    invoice_due = now - timedelta(seconds=thresholds.invoice_within_s)
    current_period = now.strftime("%Y-%m")
    alerts: list[DomainEvent] = []
    with store._reader.connect() as conn:
        late = and_(tp.kind == "time", tp.state.in_(UNPOSTED_STATES), tp.updated_at < posting_due)
        count, hours = conn.execute(core_select(func.count(), func.sum(tp.hours)).where(late)).one()
        if count:
            oldest = conn.execute(
                core_select(tp.entry_key, tp.entry_id, tp.psa_project_id, tp.state, tp.updated_at)
                .where(late)
                .order_by(tp.updated_at, tp.entry_key)
                .limit(1)
            ).one()
            since = _aware(oldest.updated_at)
            subject = _enterprise_id(conn, oldest.psa_project_id)
            alerts.append(
                (
                    "alert.raised",
                    f"sla.posting:{oldest.entry_key}",
                    subject,
                    AlertRaised(
                        alert="sla.posting",
                        severity="warning",
                        process=PROCESS_TIME_TO_INVOICE,
                        summary=f"{count} approved time entries ({_hours(hours)} h) not "
                        f"posted to the ERP within {_duration(thresholds.posting_within_s)}; "
                        f"the oldest, "
                        f"entry {oldest.entry_id} of PSA project {oldest.psa_project_id}, for "
                        f"{_duration((now - since).total_seconds())}",
                        context={
                            "sla_s": thresholds.posting_within_s,
                            "breached": int(count),
                            "hours": _hours(hours),
                            "oldest_entry_key": oldest.entry_key,
                            "oldest_entry_id": oldest.entry_id,
                            "psa_project_id": oldest.psa_project_id,
                            "state": oldest.state,
                            "since": since.isoformat(),
                            "age_s": int((now - since).total_seconds()),
                        },
                    ),
                )
            )
        items = conn.execute(
            core_select(_ITEM)
            .where(it.status.in_(_UNRESOLVED), it.created_at < exception_due)
            .order_by(it.process, it.created_at, it.id)
        ).all()
        by_process: dict[str, list[ExceptionItemRow]] = {}
        for raw in items:
            by_process.setdefault(raw.process, []).append(ExceptionItemRow(**raw._mapping))
        for process, rows in by_process.items():
            item = rows[0]
            since = _aware(item.created_at)
            alerts.append(
                (
                    "alert.raised",
                    f"sla.exception_resolution:{item.id}",
                    item_subject(item),
                    AlertRaised(
                        alert="sla.exception_resolution",
                        severity="warning",
                        process=process,
                        summary=f"{len(rows)} {process} exception items unresolved after "
                        f"{_duration(thresholds.exception_within_s)}; the oldest, {item.id} "
                        f"({item.cause_code}, owner {item.owner}), open for "
                        f"{_duration((now - since).total_seconds())}",
                        owner=item.owner,
                        item_id=item.id,
                        workflow_id=item.workflow_id,
                        context={
                            "sla_s": thresholds.exception_within_s,
                            "breached": len(rows),
                            "cause_code": item.cause_code,
                            "field": item.field,
                            "since": since.isoformat(),
                            "age_s": int((now - since).total_seconds()),
                            "item_ids": [r.id for r in rows[:20]],
                        },
                    ),
                )
            )
        pending = conn.execute(
            core_select(tp.psa_project_id, tp.period, func.count(), func.sum(tp.bill_amount))
            .where(unbilled_closed_periods(current_period))
            .group_by(tp.psa_project_id, tp.period)
            .order_by(tp.period, tp.psa_project_id)
        ).all()
        overdue = [row for row in pending if period_close(str(row[1])) < invoice_due]
        if overdue:
            project, period, entries, amount = overdue[0]
            closed = period_close(str(period))
            alerts.append(
                (
                    "alert.raised",
                    f"sla.invoice:{project}:{period}",
                    _enterprise_id(conn, str(project)),
                    AlertRaised(
                        alert="sla.invoice",
                        severity="warning",
                        process=PROCESS_TIME_TO_INVOICE,
                        summary=f"{len(overdue)} closed periods not invoiced within "
                        f"{_duration(thresholds.invoice_within_s)}; the oldest, {period} of PSA "
                        f"project {project} ({entries} entries, {amount} to bill), closed "
                        f"{_duration((now - closed).total_seconds())} ago",
                        context={
                            "sla_s": thresholds.invoice_within_s,
                            "breached": len(overdue),
                            "psa_project_id": project,
                            "period": period,
                            "entries": int(entries),
                            "bill_amount": str(amount),
                            "closed_at": closed.isoformat(),
                            "age_s": int((now - closed).total_seconds()),
                        },
                    ),
                )
            )
    return alerts


def raise_sla_alerts(store: StoreBase, *, now: datetime, thresholds: IndicatorThresholds) -> int:
    """Record an `alert.raised` event for each standing breach not alerted yet; returns how
    many breaches stand (those already alerted record nothing more)."""
    alerts = sla_alerts(store, now=now, thresholds=thresholds)
    if alerts:
        with store._write_conn() as conn:
            queue_events(conn, store._dialect, now, alerts)
    return len(alerts)


def _enterprise_id(conn: Connection, psa_project_id: str) -> str:
    """The enterprise id linked to a PSA project, else the PSA project id."""
    x = _XREF.c
    found = conn.execute(
        core_select(x.enterprise_id)
        .where(x.system == "PSA", x.external_id == psa_project_id, x.entity_type == "project")
        .limit(1)
    ).scalar_one_or_none()
    return str(found) if found else psa_project_id


def _hours(value: object) -> str:
    hours = Decimal(str(value or 0)).normalize()
    return f"{hours:f}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} d"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} h"
    if seconds >= 120:
        return f"{seconds // 60} min"
    return f"{seconds} s"
