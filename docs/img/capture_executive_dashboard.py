"""Take docs/img/executive-dashboard.png: the executive dashboard's indicators rendered from a
store, without Grafana.

    .venv/bin/python docs/img/capture_executive_dashboard.py [--out <png>]

A demo-like store (SQLite, in a temporary directory) is filled with what a few weeks of the
demo's processes leave behind: time postings in every ledger state, invoices for closed
periods, exception items, project records of each system, forecast drifts and reconciliation
runs. The gateway's own collectors (`BusinessIndicators`, `ReconciliationGauges`) then read it
exactly as a Prometheus scrape would, and the values are laid out like the panels of
deploy/grafana/dashboards/executive.json, rendered by a headless Chromium (Playwright,
`/usr/bin/chromium`). The worker-only posting-latency histogram is shown from the same
observations the worker would make (the ledger's approval and posting times of the demo rows).
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from playwright.async_api import async_playwright  # noqa: E402
from prometheus_client import CollectorRegistry, Histogram  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from gateway.indicators import BusinessIndicators  # noqa: E402
from gateway.routes.reconciliations import ReconciliationGauges  # noqa: E402
from store import Store, make_engine, upgrade  # noqa: E402
from store.models import (  # noqa: E402
    DriftRow,
    ExceptionItemRow,
    ReconciliationRunRow,
    TimePostingRow,
    XrefRow,
)
from store.repository.indicators import IndicatorThresholds  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
NOW = datetime(2026, 6, 10, 9, 30, tzinfo=UTC)


CSS = """<!doctype html><meta charset=utf-8><style>
body{background:#111217;color:#ccccdc;font:14px Inter,Helvetica,Arial,sans-serif;
  margin:0;padding:18px}
h1{font-size:18px;margin:0 0 4px}
.sub{color:#8e8e9e;margin-bottom:14px;font-size:12px}
.grid{display:grid;grid-template-columns:repeat(4,1fr);gap:10px}
.card,.panel{background:#181b1f;border:1px solid #2a2d35;border-radius:4px;padding:10px 12px}
.t{font-size:12px;color:#9fa7b3}
.v{font-size:30px;color:#73bf69;font-weight:500;margin-top:6px}
.panels{display:grid;grid-template-columns:1.2fr 1.6fr 1fr;gap:10px;margin-top:10px}
table{width:100%;border-collapse:collapse;font-size:12px}
td,th{padding:4px 6px;border-bottom:1px solid #2a2d35;text-align:left}
th{color:#9fa7b3;font-weight:500}
.num{text-align:right}
h2{font-size:13px;margin:0 0 6px;font-weight:500}
</style>
"""


def seed(store_url: str, rng: random.Random) -> list[float]:
    """The demo-like rows; returns the approval -> posting latencies of the posted entries."""
    engine = make_engine(store_url)
    latencies: list[float] = []
    postings: list[dict[str, Any]] = []
    for n in range(1, 1201):
        project = f"PRJ-{100 + n % 12}"
        period = ("2026-04", "2026-05", "2026-06")[n % 3]
        state = rng.choices(["posted", "posting", "exception", "reversed"], weights=[90, 4, 5, 1])[
            0
        ]
        age = timedelta(minutes=rng.randint(1, 60 * 24 * 20))
        if state == "posting":
            age = timedelta(minutes=rng.randint(1, 40))
        billed = state == "posted" and period != "2026-06" and n % 12 != 4  # PRJ-104: May open
        closed = datetime(int(period[:4]), int(period[5:]) + 1, 1, tzinfo=UTC)
        invoiced_at = closed + timedelta(hours=2 + (n % 12) * 5)  # per project and period
        if state == "posted":
            latencies.append(rng.lognormvariate(1.0, 0.6))
        postings.append(
            {
                "entry_key": f"time:{n}",
                "kind": "time",
                "entry_id": str(n),
                "psa_project_id": project,
                "entry_version": "1",
                "state": state,
                "hours": Decimal(rng.choice([2, 4, 6, 7, 8])) + Decimal("0.25") * rng.randint(0, 3),
                "billable": True,
                "period": period,
                "bill_amount": Decimal(rng.randint(300, 1400)),
                "invoice_ref": f"inv-{project}-{period}" if billed else None,
                "updated_at": invoiced_at if billed else NOW - age,
            }
        )
    causes = [
        ("time_to_invoice", "COST_CENTER_INVALID"),
        ("time_to_invoice", "DUPLICATE_ENTRY"),
        ("opportunity_to_project", "RATE_CARD_MISSING"),
        ("change_order", "FINANCE_APPROVAL"),
        ("worker_termination", "OPEN_TIME_ENTRY"),
    ]
    items = [
        {
            "id": f"exc-{n}",
            "workflow_id": f"wf-{n}",
            "process": causes[n % len(causes)][0],
            "cause_code": causes[n % len(causes)][1],
            "detail": "-",
            "owner": "ops",
            "context": {},
            "status": rng.choice(["open", "open", "escalated", "resolved", "resolved"]),
            "created_at": NOW - timedelta(minutes=rng.randint(5, 60 * 30)),
        }
        for n in range(60)
    ]
    xrefs = [
        {
            "enterprise_id": f"E{n}",
            "entity_type": "project",
            "system": system,
            "tenant": "acme",
            "object_type": "project",
            "external_id": f"{system}-{n}",
            "status": "active",
            "last_synced_at": NOW
            - timedelta(hours=rng.randint(1, 24 * (12 if system == "ERP" else 5))),
        }
        for n in range(40)
        for system in ("CRM", "PSA", "ERP")
    ]
    drifts = [
        _drift("f1", "forecast_hours_mismatch", {"psa": "160.00", "erp": "142.50"}),
        _drift("f2", "forecast_missing", {"psa": "32.00", "erp": None}),
        _drift("f3", "forecast_stale", {"psa": "80.00", "erp": "88.00"}, state="repaired"),
        _drift("f4", "assignment_budget_variance", {"psa": "118400.00", "erp": "100000.00"}),
        _drift("f5", "missing_in_erp", {"psa": "8.0", "erp": None}, domain="labor_actuals"),
    ]
    runs = [
        {
            "id": f"reconcile/{domain}/acme/all/20260610T020000",
            "domain": domain,
            "tenant": "acme",
            "requested_by": "schedule",
            "state": "finished",
            "started_at": NOW - timedelta(hours=7, minutes=30),
            "finished_at": NOW - timedelta(hours=7, minutes=20),
        }
        for domain in ("labor_actuals", "billing_status", "forecast_alignment", "workforce")
    ]
    with engine.begin() as conn:
        conn.execute(insert(TimePostingRow.__table__), postings)  # type: ignore[arg-type]
        conn.execute(insert(ExceptionItemRow.__table__), items)  # type: ignore[arg-type]
        conn.execute(insert(XrefRow.__table__), xrefs)  # type: ignore[arg-type]
        conn.execute(insert(DriftRow.__table__), drifts)  # type: ignore[arg-type]
        conn.execute(insert(ReconciliationRunRow.__table__), runs)  # type: ignore[arg-type]
    engine.dispose()
    return latencies


def _drift(fp: str, kind: str, values: dict[str, str | None], **more: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "fingerprint": fp, "domain": "forecast_alignment", "kind": kind, "tenant": "acme",
        "project": "PRJ-104", "period": "2026-06", "keys": {}, "values": values, "owner": "PSA",
        "disposition": "escalate", "detail": "", "state": "escalated",
        "first_seen": NOW - timedelta(days=2), "last_seen": NOW - timedelta(hours=7),
        "first_run": "r1", "last_run": "r2",
    }  # fmt: skip
    row.update(more)
    return row


def scrape(store: Store, latencies: list[float]) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry()
    registry.register(BusinessIndicators(store, IndicatorThresholds(), clock=lambda: NOW))
    registry.register(ReconciliationGauges(store))
    latency = Histogram(
        "pssync_time_posting_latency_seconds",
        "From the PSA approval event to the entry's posting in the ERP",
        buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300, 3600),
        registry=registry,
    )
    for value in latencies:
        latency.observe(value)
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def quantile(buckets: list[tuple[dict[str, str], float]], q: float) -> float:
    """histogram_quantile over cumulative buckets, as PromQL computes it."""
    pairs = sorted((float(labels["le"]), count) for labels, count in buckets)
    total = pairs[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in pairs:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-9)
        prev_le, prev_count = le, count
    return prev_le


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def page(m: dict[str, list[tuple[dict[str, str], float]]]) -> str:
    def total(name: str) -> float:
        return sum(v for _l, v in m.get(name, []))

    def top(name: str) -> float:
        return max((v for _l, v in m.get(name, [])), default=0.0)

    overrun = 100 * top("pssync_assignment_budget_overrun_ratio")

    def dur(name: str) -> str:
        return duration(top(name))

    cards = [
        ("Posting latency p95 (approval → ERP)",
         duration(quantile(m["pssync_time_posting_latency_seconds_bucket"], 0.95))),
        ("Unposted approved labor", f"{total('pssync_unposted_labor_hours'):.2f} h"),
        ("Unposted entries", f"{total('pssync_unposted_labor_entries'):.0f}"),
        ("Oldest unposted labor", dur("pssync_unposted_labor_oldest_seconds")),
        ("Invoice trigger delay (max, 30 d)", dur("pssync_invoice_trigger_delay_max_seconds")),
        ("Invoice trigger delay (mean, 30 d)", dur("pssync_invoice_trigger_delay_mean_seconds")),
        ("Closed periods not invoiced", f"{total('pssync_invoice_pending_periods'):.0f}"),
        ("Oldest closed period not invoiced", dur("pssync_invoice_pending_oldest_seconds")),
        ("Forecast variance", f"{total('pssync_forecast_variance_hours'):.1f} h"),
        ("Assignment-to-budget overrun", f"{overrun:.1f} %"),
        ("Compensations: posted time reversed", f"{total('pssync_time_postings_reversed'):.0f}"),
        ("Standing reconciliation drifts", f"{total('pssync_reconciliation_drift_open'):.0f}"),
    ]  # fmt: skip

    def rows(name: str, keys: list[str], fmt: Any = lambda v: f"{v:.0f}") -> str:
        return "".join(
            "<tr>" + "".join(f"<td>{html.escape(labels[k])}</td>" for k in keys)
            + f"<td class=num>{fmt(v)}</td></tr>"
            for labels, v in sorted(m.get(name, []), key=lambda lv: [lv[0][k] for k in keys])
        )  # fmt: skip

    ages = {
        (labels["process"], labels["cause"]): v
        for labels, v in m.get("pssync_exception_items_oldest_seconds", [])
    }
    exception_rows = "".join(
        f"<tr><td>{html.escape(labels['process'])}</td><td>{html.escape(labels['cause'])}</td>"
        f"<td class=num>{v:.0f}</td>"
        f"<td class=num>{duration(ages[(labels['process'], labels['cause'])])}</td></tr>"
        for labels, v in sorted(m.get("pssync_exception_items_open", []), key=lambda lv: -lv[1])
    )
    sync_age = {
        labels["system"]: v for labels, v in m.get("pssync_project_record_sync_oldest_seconds", [])
    }
    stale_rows = "".join(
        f"<tr><td>{html.escape(labels['system'])}</td><td class=num>{v:.0f}</td>"
        f"<td class=num>{duration(sync_age[labels['system']])}</td></tr>"
        for labels, v in sorted(
            m.get("pssync_project_records_stale", []), key=lambda lv: lv[0]["system"]
        )
    )
    card_html = "".join(
        f"<div class=card><div class=t>{html.escape(t)}</div>"
        f"<div class=v>{html.escape(v)}</div></div>"
        for t, v in cards
    )
    return (
        CSS
        + f"""<h1>pssync — executive</h1>
<div class=sub>Rendered from a demo-like store by the gateway's collectors at
{NOW:%Y-%m-%d %H:%M} UTC (the queries of deploy/grafana/dashboards/executive.json;
Grafana not running)</div>
<div class=grid>{card_html}</div>
<div class=panels>
<div class=panel><h2>SLA breaches by process</h2><table>
<tr><th>process</th><th>SLA</th><th class=num>now</th></tr>
{rows("pssync_sla_breaches", ["process", "sla"])}</table></div>
<div class=panel><h2>Open exception items by process and cause</h2><table>
<tr><th>process</th><th>cause</th><th class=num>open</th><th class=num>oldest</th></tr>
{exception_rows}</table></div>
<div class=panel><h2>Stale project records by system</h2><table>
<tr><th>system</th><th class=num>stale</th><th class=num>oldest sync</th></tr>{stale_rows}</table>
<h2 style="margin-top:12px">Forecast drifts by kind</h2>
<table>{rows("pssync_forecast_drifts", ["kind"])}</table></div>
</div>"""
    )


async def capture(out: Path) -> None:
    directory = Path(tempfile.mkdtemp(prefix="pssync-exec-"))
    url = f"sqlite:///{directory}/store.db"
    upgrade(url)
    latencies = seed(url, random.Random(17))
    engine = make_engine(url)
    try:
        metrics = scrape(Store(engine), latencies)
    finally:
        engine.dispose()
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    source = directory / "executive.html"
    source.write_text(page(metrics))
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        context = await browser.new_context(viewport={"width": 1500, "height": 760})
        tab = await context.new_page()
        await tab.goto(source.as_uri())
        await tab.screenshot(path=str(out), full_page=True)
        await browser.close()
    print(f"wrote {out} (values: {directory / 'metrics.json'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "executive-dashboard.png")
    asyncio.run(capture(parser.parse_args().out))


if __name__ == "__main__":
    main()
