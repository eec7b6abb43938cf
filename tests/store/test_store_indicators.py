"""The business indicators on a known scenario: time postings, exception items, project records
and forecast drifts written with known timestamps, then the figures `/metrics` would render at
an injected `now`, compared with the figures worked out by hand. Runs on SQLite and PostgreSQL
like every store test; a scrape over 100,000 postings and 10,000 items is timed."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine, Table, insert

from gateway.indicators import BusinessIndicators
from store import Store
from store.models import DriftRow, ExceptionItemRow, InvoiceRow, TimePostingRow, XrefRow
from store.repository.indicators import IndicatorThresholds, indicator_figures, period_close

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
H = 3600.0

_TP: Table = TimePostingRow.__table__  # type: ignore[attr-defined]
_ITEM: Table = ExceptionItemRow.__table__  # type: ignore[attr-defined]
_XREF: Table = XrefRow.__table__  # type: ignore[attr-defined]
_DRIFT: Table = DriftRow.__table__  # type: ignore[attr-defined]


def posting(key: str, state: str, *, at: datetime, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "entry_key": key,
        "kind": "time",
        "entry_id": key.split(":")[-1],
        "psa_project_id": "P1",
        "entry_version": "1",
        "state": state,
        "hours": Decimal(1),
        "billable": True,
        "period": "2026-06",
        "bill_amount": None,
        "invoice_ref": None,
        "updated_at": at,
    }
    row.update(fields)
    return row


def item(
    iid: str, process: str, cause: str, *, at: datetime, status: str = "open"
) -> dict[str, Any]:
    return {
        "id": iid,
        "workflow_id": f"wf-{iid}",
        "process": process,
        "cause_code": cause,
        "detail": "-",
        "owner": "ops",
        "context": {},
        "status": status,
        "created_at": at,
    }


def xref(n: int, system: str, *, at: datetime, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "enterprise_id": f"E{n}",
        "entity_type": "project",
        "system": system,
        "tenant": "acme",
        "object_type": "project",
        "external_id": f"{system}-{n}",
        "status": "active",
        "last_synced_at": at,
    }
    row.update(fields)
    return row


def drift(fp: str, kind: str, values: dict[str, str | None], **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "fingerprint": fp,
        "domain": "forecast_alignment",
        "kind": kind,
        "tenant": "acme",
        "project": "P1",
        "period": "2026-06",
        "keys": {},
        "values": values,
        "owner": "PSA",
        "disposition": "escalate",
        "detail": "",
        "state": "open",
        "first_seen": NOW - timedelta(days=1),
        "last_seen": NOW,
        "first_run": "r1",
        "last_run": "r1",
    }
    row.update(fields)
    return row


def write(engine: Engine, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(table), list(rows))


def scenario(engine: Engine) -> None:
    m = timedelta(minutes=1)
    write(
        engine,
        _TP,
        [
            # unposted approved labor: one posting under way, two waiting for a person
            posting("time:1", "posting", at=NOW - 10 * m, hours=Decimal("1.5")),
            posting("time:2", "exception", at=NOW - 180 * m, hours=Decimal("2.25")),
            posting("time:3", "exception", at=NOW - 20 * m, hours=Decimal("0.333333")),
            posting("expense:4", "exception", at=NOW - 999 * m, kind="expense"),  # not labor
            # closed periods with posted, billable, unbilled time (April for P1, May for P2)
            posting("time:5", "posted", at=NOW, period="2026-04", bill_amount=Decimal(100)),
            posting(
                "time:6",
                "posted",
                at=NOW,
                period="2026-05",
                bill_amount=Decimal(1),
                psa_project_id="P2",
            ),
            # invoices for closed May: billed 6 h and 48 h after it closed
            posting(
                "time:7",
                "posted",
                at=datetime(2026, 6, 1, 6, tzinfo=UTC),
                period="2026-05",
                bill_amount=Decimal(1),
                invoice_ref="inv-a",
            ),
            posting(
                "time:8",
                "posted",
                at=datetime(2026, 6, 3, tzinfo=UTC),
                period="2026-05",
                bill_amount=Decimal(1),
                invoice_ref="inv-b",
            ),
            # a milestone invoice mid-June (the period is not closed: no trigger delay)
            posting(
                "time:9", "posted", at=NOW - 60 * m, bill_amount=Decimal(1), invoice_ref="inv-c"
            ),
            # a compensation: posted, then reversed
            posting("time:10", "reversed", at=NOW - 60 * m),
        ],
    )
    write(
        engine,
        _ITEM,
        [
            item("i1", "time_to_invoice", "missing_cost_center", at=NOW - timedelta(hours=5)),
            item(
                "i2",
                "time_to_invoice",
                "missing_cost_center",
                at=NOW - timedelta(hours=1),
                status="escalated",
            ),
            item("i3", "change_order", "finance_approval", at=NOW - 30 * m),
            item("i4", "change_order", "finance_approval", at=NOW - 900 * m, status="resolved"),
        ],
    )
    write(
        engine,
        _XREF,
        [
            xref(1, "ERP", at=NOW - timedelta(days=8)),
            xref(2, "ERP", at=NOW - timedelta(days=1)),
            xref(3, "PSA", at=NOW - timedelta(hours=2)),
            xref(4, "PSA", at=NOW - timedelta(days=30), status="archived"),
            xref(5, "CRM", at=NOW - timedelta(days=30), entity_type="customer"),
        ],
    )
    write(
        engine,
        _DRIFT,
        [
            drift("f1", "forecast_hours_mismatch", {"psa": "40.00", "erp": "32.50"}),
            drift("f2", "forecast_missing", {"psa": "8.00", "erp": None}),
            drift("f3", "assignment_budget_variance", {"psa": "12000.00", "erp": "10000.00"}),
            drift("f4", "forecast_stale", {"psa": "1.00", "erp": "9.00"}, state="gone"),
            drift("f5", "missing_in_erp", {"psa": "8.0", "erp": None}, domain="labor_actuals"),
        ],
    )


def samples(store: Store) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What a scrape at NOW yields: (metric name, labels) -> value."""
    registry = CollectorRegistry()
    registry.register(BusinessIndicators(store, IndicatorThresholds(), clock=lambda: NOW))
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in registry.collect():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_each_indicator_on_a_known_scenario(engine: Engine, store: Store) -> None:
    scenario(engine)
    got = samples(store)

    def v(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    # unposted approved labor (expenses are not labor)
    assert v("pssync_unposted_labor_entries", state="posting") == 1
    assert v("pssync_unposted_labor_hours", state="posting") == 1.5
    assert v("pssync_unposted_labor_oldest_seconds", state="posting") == 10 * 60
    assert v("pssync_unposted_labor_entries", state="exception") == 2
    assert v("pssync_unposted_labor_hours", state="exception") == float(Decimal("2.583333"))
    assert v("pssync_unposted_labor_oldest_seconds", state="exception") == 3 * H
    # invoice trigger delay: May closed 2026-06-01 00:00; invoices 6 h and 48 h later
    assert v("pssync_invoice_trigger_delay_max_seconds") == 48 * H
    assert v("pssync_invoice_trigger_delay_mean_seconds") == 27 * H
    assert v("pssync_invoice_trigger_delay_invoices") == 2
    assert v("pssync_invoice_pending_periods") == 2
    assert (
        v("pssync_invoice_pending_oldest_seconds")
        == (NOW - period_close("2026-04")).total_seconds()
    )
    assert v("pssync_invoice_pending_oldest_seconds") == (40 * 24 + 12) * H
    # stale project records (archived records and customers left out)
    assert v("pssync_project_records", system="ERP") == 2
    assert v("pssync_project_records_stale", system="ERP") == 1
    assert v("pssync_project_record_sync_oldest_seconds", system="ERP") == 8 * 24 * H
    assert v("pssync_project_records", system="PSA") == 1
    assert v("pssync_project_records_stale", system="PSA") == 0
    assert v("pssync_project_record_sync_oldest_seconds", system="PSA") == 2 * H
    assert ("pssync_project_records", (("system", "CRM"),)) not in got
    # forecast and assignment-to-budget variance (standing forecast drifts only)
    assert v("pssync_forecast_drifts", kind="forecast_hours_mismatch") == 1
    assert v("pssync_forecast_drifts", kind="forecast_missing") == 1
    assert v("pssync_forecast_drifts", kind="assignment_budget_variance") == 1
    assert ("pssync_forecast_drifts", (("kind", "forecast_stale"),)) not in got
    assert v("pssync_forecast_variance_hours") == 7.5 + 8
    assert v("pssync_assignment_budget_overrun_amount") == 2000
    assert v("pssync_assignment_budget_overrun_ratio") == 0.2
    # open exception items by process and cause, with age
    tti = {"process": "time_to_invoice", "cause": "missing_cost_center"}
    assert v("pssync_exception_items_open", **tti) == 2
    assert v("pssync_exception_items_oldest_seconds", **tti) == 5 * H
    co = {"process": "change_order", "cause": "finance_approval"}
    assert v("pssync_exception_items_open", **co) == 1
    assert v("pssync_exception_items_oldest_seconds", **co) == 30 * 60
    # SLA breaches: posting 15 min (time:2, time:3), invoice 1 day (April P1, May P2),
    # exceptions 4 h (i1)
    assert v("pssync_sla_breaches", process="time_to_invoice", sla="posting") == 2
    assert v("pssync_sla_breaches", process="time_to_invoice", sla="invoice") == 2
    assert v("pssync_sla_breaches", process="time_to_invoice", sla="exception_resolution") == 1
    assert v("pssync_sla_breaches", process="change_order", sla="exception_resolution") == 0
    assert v("pssync_sla_threshold_seconds", sla="posting") == 15 * 60
    # compensations
    assert v("pssync_time_postings_reversed") == 1


def test_milestone_invoices_count_from_the_milestone_completion(
    engine: Engine, store: Store
) -> None:
    """A milestone invoice's trigger delay runs from when the PSA said the milestone completed
    to the ERP invoice; a voided one, or one whose completion is unknown, is no sample."""
    rows = [
        ("inv-ms-1", NOW - timedelta(hours=10), NOW - timedelta(hours=4), None),  # 6 h
        ("inv-ms-2", NOW - timedelta(hours=40), NOW - timedelta(hours=10), None),  # 30 h
        ("inv-ms-3", NOW - timedelta(hours=50), NOW - timedelta(hours=1), NOW),  # voided
        ("inv-ms-4", None, NOW - timedelta(hours=2), None),  # asked by a person
    ]
    write(
        engine,
        InvoiceRow.__table__,  # type: ignore[attr-defined]
        (
            {
                "invoice_ref": ref,
                "psa_project_id": "P9",
                "trigger": "milestone",
                "milestone_code": ref[-4:],
                "milestone_completed_at": done,
                "entries": 0,
                "created_at": at,
                "voided_at": voided,
            }
            for ref, done, at, voided in rows
        ),
    )
    got = samples(store)
    assert got[("pssync_invoice_trigger_delay_max_seconds", ())] == 30 * H
    assert got[("pssync_invoice_trigger_delay_mean_seconds", ())] == 18 * H
    assert got[("pssync_invoice_trigger_delay_invoices", ())] == 2


def test_an_empty_store_says_zero_not_nothing(store: Store) -> None:
    got = samples(store)
    assert got[("pssync_invoice_pending_periods", ())] == 0
    assert got[("pssync_invoice_trigger_delay_max_seconds", ())] == 0
    assert got[("pssync_time_postings_reversed", ())] == 0
    assert got[("pssync_sla_breaches", (("process", "time_to_invoice"), ("sla", "posting")))] == 0


def test_a_store_that_cannot_answer_leaves_the_indicators_out() -> None:
    registry = CollectorRegistry()
    no_engine = Store.__new__(Store)  # every query raises
    registry.register(BusinessIndicators(no_engine, IndicatorThresholds(), clock=lambda: NOW))
    assert b"pssync_unposted_labor" not in generate_latest(registry)


@pytest.mark.skipif(
    not os.environ.get("PSSYNC_INDICATOR_SCALE"),
    reason="the 100,000-posting scrape timing runs with PSSYNC_INDICATOR_SCALE=1 (slow setup)",
)
def test_a_scrape_over_100k_postings_and_10k_items_is_cheap(engine: Engine, store: Store) -> None:
    states = ("posted", "posted", "posted", "exception", "posting", "reversed")
    base = NOW - timedelta(days=60)
    for start in range(0, 100_000, 10_000):
        write(
            engine,
            _TP,
            (
                posting(
                    f"time:{n}",
                    states[n % len(states)],
                    at=base + timedelta(minutes=n),
                    period=f"2026-0{4 + n % 3}",
                    bill_amount=Decimal(1),
                    invoice_ref=f"inv-{n // 50}" if n % 2 else None,
                    psa_project_id=f"P{n % 500}",
                )
                for n in range(start, start + 10_000)
            ),
        )
    write(
        engine,
        _ITEM,
        (
            item(
                f"i{n}",
                f"p{n % 6}",
                f"c{n % 20}",
                at=base + timedelta(minutes=n),
                status=("open", "escalated", "resolved")[n % 3],
            )
            for n in range(10_000)
        ),
    )
    indicator_figures(store, now=NOW, thresholds=IndicatorThresholds())  # warm the caches
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        figures = indicator_figures(store, now=NOW, thresholds=IndicatorThresholds())
        timings.append(time.perf_counter() - started)
    print(f"\nindicator scrape ({engine.dialect.name}): best {min(timings) * 1000:.0f} ms")
    assert sum(u.entries for u in figures.unposted.values()) == sum(
        1 for n in range(100_000) if n % 6 in (3, 4)
    )
    assert sum(g.open for g in figures.exceptions.values()) == sum(
        1 for n in range(10_000) if n % 3 != 2
    )
    assert min(timings) < 1.0
