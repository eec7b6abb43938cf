"""Saga chaos: the whole stack under vendor faults — every business key must end as exactly one
object in every system (no duplicate, nothing missing).

    python bench/saga_chaos.py [--quick] [--scenarios chaos,same_customer,psa_lost_30]
        [--deals 100] [--entries 500] [--time-projects 20] [--change-orders 10]
        [--terminations 5] [--pairs 20] [--psa-lost-deals 20] [--psa-lost-rate 0.3]
        [--error-rate 0.2] [--rate-limit-rate 0.1] [--lost-response-rate 0.05] [--seed 42]
        [--concurrency 20] [--time-currencies USD] [--stall-s 60] [--quiet-timeout-s 90]
        [--worker-in-process] [--keep-home]

What it runs on 127.0.0.1 (OS-assigned ports), in a fresh temp home: `starter.running_stack`
with the twins in their own process (`pssync sandbox`, seeded firm 7, webhooks pointed at the
gateway), the Temporal dev server (its SQLite file under the temp home) and the gateway in this
process, and the worker as `pssync worker` in its own process (`tests._servers`, as
`bench/temporal_outage.py` runs it; `--worker-in-process` runs it in this one). The time sweep
is pushed out to a day, so approved time reaches the ERP through the webhooks only; the HCM
poll Schedule runs every `--hcm-poll-s` seconds. Everything travels the real path: twin ->
signed webhook -> gateway -> Temporal -> worker -> connectors -> twins over HTTP.

The bench's own moves are the ones the demo and the other benches make, imported from them:
deals are built with `starter.deal_from_template` and won through `SalesforceCrm`
(`create_opportunity` keyed by a business key, then `set_stage("Closed Won")`: the CRM twin's
`opportunity.won` webhook starts the saga); approved time is inserted with the PSA twin's bulk
admin endpoint with one `time_entry.approved` webhook per entry (`bench.time_to_invoice.Twins`,
`EntryFactory`); change orders are submitted in the PSA twin (its `change_order.submitted`
webhook starts the saga) and approved through the gateway by the roles the run asks for (as
`starter.change_order_scene`); terminations are entered with `WorkdayHcm.terminate`, effective
today with yesterday as the last day, on a worker staffed on a provisioned project with approved
time (as `starter.termination_scene`), and found by the HCM poll Schedule. Under faults the
bench's own writes go through the connectors' lost-answer-safe creates (keyed upserts, or
look-up before re-send), so the bench never duplicates anything itself.

Scenarios (each on the same stack, one after the other, faults off in between):

1. `chaos`: every twin answers 20% of vendor requests 5xx and 10% 429 (`--error-rate`,
   `--rate-limit-rate`), and 5% are processed and then answered 504 (`--lost-response-rate`,
   lost responses, on every twin). `--deals` won deals (`--concurrency` in flight), then at
   the same time: `--entries` approved entries over `--time-projects` of the new projects,
   `--change-orders` change orders (alternately +5,000, which the delivery manager approves, and
   +25,000, which finance approves too) and `--terminations` terminations, each on projects of
   its own (`--time-currencies USD` gives time only to projects in those currencies). The
   time phase waits until every entry has an ERP posting, or none came for `--stall-s`.
2. `same_customer`: no faults. `--pairs` new CRM accounts (not yet in the ERP), two deals each;
   all deals are won at the same moment, so both sagas of a pair race to reserve the customer's
   enterprise ID and to create its ERP customer.
3. `psa_lost_30`: only the PSA twin loses `--psa-lost-rate` (30%) of its answers;
   `--psa-lost-deals` won deals.

After each scenario the faults are turned off and the bench waits until no workflow the
scenario started has an activity pending (at most `--quiet-timeout-s`; what is still pending is
reported under `quiesce.stuck` with its attempt and last failure), then reads the twins' own
databases (SQLite files of the twins process) and the store, and counts per business key:

- CRM: opportunities and line items per key; the enterprise ID written back to each won deal
  (the one the store links to it);
- PSA: workspaces per deal (archived ones too: a compensated duplicate is still one), WBS
  stories and billing milestones per (deal, line), provisioning resource requests per (deal,
  role); change orders: the submitted record, its `applied` state, the workspace budget moved by
  the delta exactly once, one resource request per `co:{id}:{role}`; terminations: the
  assignment ended on the last day, one backfill request per `backfill:{worker}:{assignment}`,
  time entry closed after the last day;
- ERP: jobs per deal (by name, and the one carrying the deal's enterprise ID), one customer per
  CRM account pointing at the enterprise customer ID, every job of a pair on that customer;
  live timebills per approved entry (not reversed; hours = minutes / 60, cost = the ERP labor
  cost x hours), the job budget moved by the change order's delta exactly once;
- HCM: one `terminate` event per leaver;
- store: one enterprise ID per opportunity and per account;
- runs: the sagas' Temporal statuses, open exception items.

`duplicates` counts records beyond one per key (and records moved twice), `missing` keys with
none (or an effect not applied), `wrong` amounts that are neither.

Progress goes to stderr; the last line of stdout is one JSON object: per scenario `systems`
{crm, psa, erp, hcm, store: {duplicates, missing, wrong, by_kind}}, `runs`, `faults` (what each
twin injected), `exceptions_open`, `wall_s`; the totals `duplicates`, `missing`, `ok`; `machine`,
`config`, `wall_s`. Exit status 0 when `ok`. Every process it starts is stopped by its id, also
on failure or Ctrl-C; a failed run keeps its temp home (logs, databases) and names it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

import starter  # noqa: E402
from bench.connector_chaos import summary as kinds_summary  # noqa: E402
from bench.connector_chaos import tally  # noqa: E402
from bench.opportunity_to_project import bounded  # noqa: E402
from bench.time_to_invoice import EntryFactory, Twins  # noqa: E402
from bench.time_to_invoice import Project as TimeProject  # noqa: E402
from connectors.crm import SalesforceCrm  # noqa: E402
from connectors.hcm import WorkdayHcm  # noqa: E402
from connectors.psa import DEMAND_MARKER, MILESTONE_MARKER, WBS_MARKER, KantataPsa  # noqa: E402
from contracts.errors import PssyncError  # noqa: E402
from contracts.naming import (  # noqa: E402
    change_order_workflow_id,
    opportunity_workflow_id,
    termination_workflow_id,
)
from contracts.settings import Settings, load_settings  # noqa: E402
from contracts.v1 import LineType  # noqa: E402
from contracts.v1.change_orders import ChangeOrderResult  # noqa: E402
from contracts.v1.processes import ProvisionProjectResult  # noqa: E402
from contracts.v1.worker_termination import HCM_SCHEDULE_ID  # noqa: E402
from sandbox.seed import build_firm  # noqa: E402
from tests._servers import start_worker_process, stop_process  # noqa: E402

SEED = 7
FIRM = build_firm(SEED)
TEMPLATES = starter.provisionable_templates(FIRM)
SYSTEMS = ("crm", "psa", "erp", "hcm")
SCENARIOS = ("chaos", "same_customer", "psa_lost_30")
CRM_API = "/crm/services/data/v61.0"
STATIC_AUTH = {"Authorization": "Bearer dev-static-token"}
FULL = {
    "deals": 100,
    "entries": 500,
    "time_projects": 20,
    "change_orders": 10,
    "terminations": 5,
    "pairs": 20,
    "psa_lost_deals": 20,
}
QUICK = {
    "deals": 10,
    "entries": 50,
    "time_projects": 4,
    "change_orders": 2,
    "terminations": 1,
    "pairs": 5,
    "psa_lost_deals": 8,
}
CO_SMALL, CO_LARGE = 5_000, 25_000
"""Change-order deltas: below the finance threshold (delivery manager only), and above it."""
T = TypeVar("T")
Counts = dict[str, Any]
"""What a count gives: {system: {kind: tally}}, and "_detail": {...} for the report."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def persist(call: Callable[[], Awaitable[T]], attempts: int = 8) -> T:
    """A person (or a Temporal activity) trying again after a retryable failure. Only for
    calls that are safe to repeat: keyed upserts, look-up-before-create, idempotent updates."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except PssyncError as exc:
            if not exc.retryable or attempt == attempts:
                raise
            await asyncio.sleep(min(5.0, 0.25 * 2**attempt))
    raise AssertionError("unreachable")


async def until(check: Callable[[], Any], timeout_s: float, every_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every_s)


def effect(requested: int, applied: int, duplicates: int = 0, wrong: int = 0) -> dict[str, int]:
    """A tally for an effect (a budget moved, an assignment ended) rather than a record."""
    return {
        "requested": requested,
        "records": applied + duplicates,
        "duplicates": duplicates,
        "missing": requested - applied - duplicates - wrong,
        "unexpected": 0,
        "wrong": wrong,
    }


def system_summary(kinds: dict[str, dict[str, int]], **extra: Any) -> dict[str, Any]:
    """`bench.connector_chaos.summary` plus the effects' wrong values."""
    out = kinds_summary(kinds, **extra)
    out["wrong"] = sum(k.get("wrong", 0) for k in kinds.values())
    out["ok"] = out["ok"] and out["wrong"] == 0
    return out


def marked(text_: str | None, marker: str) -> str | None:
    for line in (text_ or "").splitlines():
        if line.startswith(marker):
            return line[len(marker) :]
    return None


def cents(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# --------------------------------------------------------------------------- what systems hold


class Databases:
    """Read-only looks into the twins' SQLite files (their own process writes them) and the
    store. Nothing here goes through the faults."""

    def __init__(self, settings: Settings) -> None:
        self.dir = settings.home / "twins-process" / "sandbox"
        self.store = create_engine(settings.resolved_database_url)

    def rows(self, system: str, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        conn = sqlite3.connect(self.dir / f"{system}.db", timeout=30)
        try:
            return list(conn.execute(sql, params or {}).fetchall())
        finally:
            conn.close()

    def store_rows(self, sql: str, **params: Any) -> list[Any]:
        with self.store.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def close(self) -> None:
        self.store.dispose()


def in_list(values: list[Any]) -> str:
    return ",".join("'" + str(v).replace("'", "''") + "'" for v in values) or "''"


# --------------------------------------------------------------------------- the world


@dataclass
class Deal:
    key: str
    name: str
    new: Any
    """The `NewOpportunity` it was created from."""
    opp_id: str | None = None
    workflow_id: str | None = None
    result: ProvisionProjectResult | None = None
    error: str | None = None
    won_at: float = 0.0
    seconds: float | None = None


@dataclass
class Context:
    stack: starter.Stack
    args: argparse.Namespace
    db: Databases
    twins: Twins
    crm: SalesforceCrm
    psa: KantataPsa
    hcm: WorkdayHcm
    users: dict[str, str]
    """HCM worker id -> PSA user id."""
    time_workers: list[Any]
    leavers: list[Any]
    days: list[date]
    workflows: dict[str, list[str]] = field(default_factory=dict)
    """The scenario's runs by workflow type."""
    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    """When the scenario started."""

    @property
    def client(self) -> Any:
        return self.stack.client

    @property
    def settings(self) -> Settings:
        return self.stack.settings


def new_deal(scenario: str, n: int, template_n: int | None = None, **overrides: Any) -> Deal:
    """Deal `n` of a scenario, shaped like a provisionable seeded deal (the `template_n`-th,
    default the `n`-th), keyed and named after the scenario and `n`."""
    index = TEMPLATES[(n if template_n is None else template_n) % len(TEMPLATES)]
    template = FIRM.opportunities[index]
    key = f"saga-chaos-{scenario}-{n:04d}"
    name = f"{template.name} ({scenario} {n})"
    new = starter.deal_from_template(FIRM, index, name=name, key=key, **overrides)
    return Deal(key=key, name=name, new=new)


async def create_deal(ctx: Context, deal: Deal) -> None:
    deal.opp_id = await persist(lambda: ctx.crm.create_opportunity(deal.new))
    deal.workflow_id = opportunity_workflow_id(ctx.settings.crm.tenant, deal.opp_id)


async def win_deal(ctx: Context, deal: Deal) -> None:
    assert deal.opp_id is not None
    deal.won_at = time.monotonic()
    await persist(lambda: ctx.crm.set_stage(deal.opp_id or "", "Closed Won"))


async def await_deal(ctx: Context, deal: Deal) -> None:
    """The saga's result, or why there is none (its status, its open exception)."""
    assert deal.workflow_id is not None
    timeout = ctx.args.deal_timeout_s
    try:
        handle = await starter.wait_for_workflow(
            ctx.client, deal.workflow_id, timeout_s=timeout, result_type=ProvisionProjectResult
        )
        deal.result = await asyncio.wait_for(handle.result(), timeout)
        deal.seconds = time.monotonic() - deal.won_at
    except Exception as exc:  # a failed saga is a finding, reported with the counts
        deal.error = f"{type(exc).__name__}: {exc}"[:300]
        with contextlib.suppress(Exception):
            status = await ctx.client.get_workflow_handle(deal.workflow_id).query("status")
            deal.error += f" | step {status.get('step')}, exception {status.get('open_exception')}"
        log(f"  deal {deal.key} ({deal.opp_id}) did not provision: {deal.error}")


async def run_deal(ctx: Context, deal: Deal) -> Deal:
    await create_deal(ctx, deal)
    await win_deal(ctx, deal)
    await await_deal(ctx, deal)
    return deal


# --------------------------------------------------------------------------- faults


async def set_faults(ctx: Context, faults: dict[str, dict[str, Any]]) -> None:
    """`{system: {"faults": FaultConfig, "lost": {"rate", "seed"}}}`; other twins get none."""
    for system in SYSTEMS:
        spec = faults.get(system, {})
        await ctx.twins.faults(system, spec.get("faults", {}))
        r = await ctx.twins.http.post(
            f"{ctx.twins.base}/{system}/_admin/lost-responses", json=spec.get("lost", {})
        )
        r.raise_for_status()


async def lost_counts(ctx: Context) -> dict[str, int]:
    out = {}
    for system in SYSTEMS:
        r = await ctx.twins.http.get(f"{ctx.twins.base}/{system}/_admin/lost-responses")
        r.raise_for_status()
        out[system] = int(r.json()["dropped"])
    return out


async def fault_report(ctx: Context, lost_before: dict[str, int]) -> dict[str, Any]:
    lost_after = await lost_counts(ctx)
    out: dict[str, Any] = {}
    for system in SYSTEMS:
        s = await ctx.twins.stats(system)
        out[system] = {
            "requests": s["requests"],
            "injected_errors": s["injected_errors"],
            "errors_5xx": s["errors_5xx"],
            "throttled_429": s["throttled_429"],
            "lost_responses": lost_after[system] - lost_before[system],
        }
    return out


def chaos_faults(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out = {}
    for n, system in enumerate(SYSTEMS):
        faults: dict[str, Any] = {
            "error_rate": args.error_rate,
            "rate_limit_rate": args.rate_limit_rate,
            "seed": args.seed + n,
        }
        if system == "hcm":
            faults["retry_after_s"] = 1  # Workday sends Retry-After with its 429s
        out[system] = {
            "faults": faults,
            "lost": {"rate": args.lost_response_rate, "seed": args.seed + 10 + n},
        }
    return out


# --------------------------------------------------------------------------- quiet


async def quiesce(ctx: Context, since: datetime, timeout_s: float) -> dict[str, Any]:
    """Wait until no running workflow the scenario started (start time after `since`) has an
    activity pending (twice in a row), so nothing still in flight can add a record after the
    count. The HCM poller and the time sweep run on their own and are left out. What is
    still pending at the deadline is reported with its attempt and last failure: an activity
    that retries forever is a finding of its own."""
    skip = {"HcmChangesPoller", "TimeToInvoiceSweep"}
    started = time.monotonic()
    calm = 0
    stuck: list[dict[str, Any]] = []
    while True:
        stuck = []
        async for wf in ctx.client.list_workflows("ExecutionStatus = 'Running'"):
            if wf.workflow_type in skip or wf.start_time < since:
                continue
            with contextlib.suppress(Exception):
                desc = await ctx.client.get_workflow_handle(wf.id, run_id=wf.run_id).describe()
                for act in desc.raw_description.pending_activities:
                    stuck.append(
                        {
                            "workflow_id": wf.id,
                            "activity": act.activity_type.name,
                            "attempt": act.attempt,
                            "last_failure": act.last_failure.message[:300],
                        }
                    )
        calm = calm + 1 if not stuck else 0
        if calm >= 2 or time.monotonic() - started > timeout_s:
            break
        await asyncio.sleep(1.0)
    for s in stuck[:10]:
        log(
            f"  still pending: {s['workflow_id']} {s['activity']} attempt {s['attempt']}: "
            f"{s['last_failure'][:160]}"
        )
    return {
        "seconds": round(time.monotonic() - started, 1),
        "pending_activities": len(stuck),
        "stuck": stuck[:10],
    }


async def run_statuses(ctx: Context, workflow_ids: list[str]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for wid in workflow_ids:
        try:
            desc = await ctx.client.get_workflow_handle(wid).describe()
            out[desc.status.name if desc.status else "UNKNOWN"] += 1
        except Exception:
            out["NOT_FOUND"] += 1
    return dict(out)


def open_exceptions(ctx: Context, workflow_ids: list[str]) -> list[dict[str, Any]]:
    wanted = set(workflow_ids)
    return [
        {"workflow_id": i.workflow_id, "cause": i.cause_code, "detail": (i.detail or "")[:160]}
        for i in ctx.stack.store.list_exceptions(status="open")
        if i.workflow_id in wanted
    ]


# --------------------------------------------------------------------------- counting deals


def expected_shape(deal: Deal) -> tuple[list[str], list[str], list[str]]:
    """WBS story codes, milestone codes and demand roles `project_from_opportunity` and
    `staffing_demand` make of the deal's lines."""
    stories, milestones, roles = [], [], set()
    for i, line in enumerate(deal.new.lines, start=1):
        if line.line_type is LineType.MILESTONE:
            milestones.append(f"M{i:02d}")
            continue
        stories.append(f"{i:02d}")
        if line.line_type is LineType.TIME_AND_MATERIALS and line.role and line.quantity > 0:
            roles.add(line.role)
    return stories, milestones, sorted(roles)


def count_deals(ctx: Context, deals: list[Deal]) -> Counts:
    """Per system, per kind: what the deals should have made against what is there."""
    db = ctx.db
    tenant = ctx.settings.crm.tenant
    keys = [d.key for d in deals]
    opp_ids = [d.opp_id for d in deals if d.opp_id]
    eid_of = {
        d.opp_id: db.store_rows(
            "SELECT enterprise_id FROM xref WHERE system = 'CRM' AND object_type = 'Opportunity' "
            "AND tenant = :t AND external_id = :o",
            t=tenant,
            o=d.opp_id,
        )
        for d in deals
        if d.opp_id
    }
    # CRM: one opportunity and one line item per key; the enterprise ID written back.
    opps = db.rows(
        "crm",
        "SELECT Pssync_Key__c, Id, Enterprise_Project_Id__c FROM crm_opportunity "
        f"WHERE Pssync_Key__c IN ({in_list(keys)})",
    )
    line_keys = [f"{d.key}:{n}" for d in deals for n in range(1, len(d.new.lines) + 1)]
    lines = db.rows(
        "crm",
        "SELECT Pssync_Key__c FROM crm_opportunity_line_item "
        f"WHERE Pssync_Key__c IN ({in_list(line_keys)})",
    )
    written = {row[1]: row[2] for row in opps}
    write_back_ok = sum(
        1
        for d in deals
        if d.opp_id
        and len(eid_of[d.opp_id]) == 1
        and written.get(d.opp_id) == eid_of[d.opp_id][0][0]
    )
    write_back_wrong = sum(
        1
        for d in deals
        if d.opp_id
        and written.get(d.opp_id) is not None
        and [r[0] for r in eid_of[d.opp_id]] != [written.get(d.opp_id)]
    )
    crm = {
        "opportunities": tally(keys, [row[0] for row in opps]),
        "line_items": tally(line_keys, [row[0] for row in lines]),
        "enterprise_id_written_back": effect(len(deals), write_back_ok, wrong=write_back_wrong),
    }
    # Store: one enterprise ID per opportunity.
    store = {
        "project_enterprise_ids": tally(opp_ids, [o for o, rows in eid_of.items() for _ in rows]),
    }
    # PSA: one workspace per deal; its stories, milestones and staffing demand once each.
    workspaces = db.rows(
        "psa",
        "SELECT id, opportunity_ref, archived FROM psa_workspace "
        f"WHERE opportunity_ref IN ({in_list(opp_ids)})",
    )
    deal_of_ws = {int(w[0]): w[1] for w in workspaces}
    ws_ids = list(deal_of_ws)
    stories = db.rows(
        "psa", f"SELECT workspace_id, description FROM psa_story WHERE workspace_id IN "
        f"({in_list(ws_ids)})",
    )  # fmt: skip
    milestones = db.rows(
        "psa", f"SELECT workspace_id, description FROM psa_billing_milestone WHERE workspace_id "
        f"IN ({in_list(ws_ids)})",
    )  # fmt: skip
    requests = db.rows(
        "psa", f"SELECT workspace_id, role, notes FROM psa_resource_request WHERE workspace_id "
        f"IN ({in_list(ws_ids)})",
    )  # fmt: skip
    shapes = {d.opp_id: expected_shape(d) for d in deals if d.opp_id}
    eid_single = {o: rows[0][0] for o, rows in eid_of.items() if rows}
    psa = {
        "workspaces": tally(opp_ids, [w[1] for w in workspaces]),
        "stories": tally(
            [(o, c) for o, s in shapes.items() for c in s[0]],
            [(deal_of_ws[int(s[0])], marked(s[1], WBS_MARKER)) for s in stories],
        ),
        "billing_milestones": tally(
            [(o, c) for o, s in shapes.items() for c in s[1]],
            [(deal_of_ws[int(m[0])], marked(m[1], MILESTONE_MARKER)) for m in milestones],
        ),
        "resource_requests": tally(
            [(o, r, f"{eid_single.get(o)}:{r}") for o, s in shapes.items() for r in s[2]],
            [
                (deal_of_ws[int(r[0])], r[1], marked(r[2], DEMAND_MARKER))
                for r in requests
                if (marked(r[2], DEMAND_MARKER) or "").startswith(
                    f"{eid_single.get(deal_of_ws[int(r[0])])}:"
                )
            ],
        ),
    }
    # ERP: one job per deal (by name: a second enterprise ID would make a second job), the
    # one carrying the deal's enterprise ID among them.
    names = [d.name for d in deals]
    jobs = db.rows(
        "erp",
        "SELECT company_name, external_id, status FROM erp_job "
        f"WHERE company_name IN ({in_list(names)})",
    )
    job_eids = {row[1] for row in jobs}
    erp = {
        "jobs": tally(names, [row[0] for row in jobs]),
        "jobs_with_enterprise_id": effect(
            len(deals), sum(1 for o in opp_ids if eid_single.get(o) in job_eids)
        ),
    }
    return {
        "crm": crm,
        "psa": psa,
        "erp": erp,
        "store": store,
        "_detail": {
            "workspaces_archived": sum(1 for w in workspaces if w[2]),
            "jobs_closed": sum(1 for j in jobs if str(j[2]) != "2"),
            "deals_with_two_workspaces": [
                o for o, n in Counter(w[1] for w in workspaces).items() if n > 1
            ][:10],
        },
    }


def merge_systems(*parts: Counts) -> dict[str, dict[str, Any]]:
    systems: dict[str, dict[str, dict[str, int]]] = {}
    for part in parts:
        for system, kinds in part.items():
            systems.setdefault(system, {}).update(kinds)
    return {name: system_summary(kinds) for name, kinds in systems.items()}


def deal_runs(deals: list[Deal]) -> dict[str, Any]:
    seconds = sorted(d.seconds for d in deals if d.seconds is not None)
    return {
        "won": len(deals),
        "provisioned": sum(1 for d in deals if d.result is not None),
        "failed": sum(1 for d in deals if d.result is None),
        "won_to_provisioned_p50_s": round(seconds[len(seconds) // 2], 2) if seconds else None,
        "won_to_provisioned_max_s": round(seconds[-1], 2) if seconds else None,
        "errors": [f"{d.key}: {d.error}" for d in deals if d.error][:5],
    }


# --------------------------------------------------------------------------- time


@dataclass
class TimeWork:
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    """PSA entry id -> the bulk spec it was created from (workspace, user, day, minutes)."""
    posted_s: float | None = None


async def approve_time(ctx: Context, deals: list[Deal], count: int) -> TimeWork:
    """`count` approved entries over the deals' projects, one signed webhook each."""
    work = TimeWork()
    if count <= 0 or not deals:
        return work
    factory = EntryFactory(
        users=[ctx.users[w.id] for w in ctx.time_workers],
        worker_of_user={ctx.users[w.id]: w.id for w in ctx.time_workers},
        days=ctx.days,
    )
    projects = [TimeProject(psa_id=str(d.result.psa_project_id)) for d in deals if d.result]
    specs = [factory.next_entry(projects[i % len(projects)]) for i in range(count)]
    started = time.monotonic()
    ids = await ctx.twins.bulk(specs, approved=True, emit=True)
    work.entries = {str(i): s for i, s in zip(ids, specs, strict=True)}
    log(f"  time: {len(ids)} entries approved over {len(projects)} projects (webhooks)")

    posted = [0, time.monotonic()]
    """How many entries have a posting, and since when that number has not grown."""

    def all_posted() -> bool:
        found = len(
            ctx.db.rows(
                "erp",
                "SELECT DISTINCT source_entry FROM erp_timebill WHERE reverses_id IS NULL "
                f"AND source_entry IN ({in_list(list(work.entries))})",
            )
        )
        if found > posted[0]:
            posted[:] = [found, time.monotonic()]
        # Done, or stalled: nothing more posted for `--stall-s` (what is stuck is reported).
        return found >= len(work.entries) or time.monotonic() - posted[1] > ctx.args.stall_s

    if await until(all_posted, ctx.args.settle_timeout_s, every_s=1.0) and posted[0] >= len(
        work.entries
    ):
        work.posted_s = round(time.monotonic() - started, 1)
        log(f"  time: every entry has an ERP posting after {work.posted_s} s")
    else:
        log(
            f"  time: {posted[0]} of {len(work.entries)} entries posted; none more in "
            f"{ctx.args.stall_s:g} s"
        )
    return work


def count_time(ctx: Context, work: TimeWork) -> Counts:
    """ERP: one live timebill per approved entry, hours = minutes / 60, cost = labor cost x
    hours (the ERP's own labor cost for the worker)."""
    if not work.entries:
        return {}
    ids = list(work.entries)
    rows = ctx.db.rows(
        "erp",
        "SELECT id, source_entry, hours, cost_amount, reverses_id FROM erp_timebill "
        f"WHERE source_entry IN ({in_list(ids)})",
    )
    reversed_ids = {r[4] for r in rows if r[4] is not None}
    live = [r for r in rows if r[4] is None and r[0] not in reversed_ids]
    worker_of = {u: w for w, u in ctx.users.items()}
    rates = dict(ctx.db.rows("erp", "SELECT external_id, labor_cost FROM erp_employee"))
    wrong = 0
    hours_expected = hours_posted = Decimal(0)
    for spec in work.entries.values():
        hours_expected += Decimal(spec["time_in_minutes"]) / 60
    for r in live:
        spec = work.entries[str(r[1])]
        hours = Decimal(str(r[2]))
        hours_posted += hours
        expected_hours = Decimal(spec["time_in_minutes"]) / 60
        rate = rates.get(worker_of.get(str(spec["user_id"]), ""))
        expected_cost = cents(Decimal(str(rate)) * expected_hours) if rate is not None else None
        if hours != expected_hours or (expected_cost is not None and cents(r[3]) != expected_cost):
            wrong += 1
    counts = Counter(str(r[1]) for r in live)
    totals = effect(len(live), len(live) - wrong, wrong=wrong)
    return {
        "erp": {
            "time_postings": tally(ids, [str(r[1]) for r in live]),
            # every live posting: hours and cost as the entry and the ERP's labor cost say
            "time_posting_amounts": totals
            | {"hours_expected": float(hours_expected), "hours_posted": float(hours_posted)},
            # a reversal is a record the ledger should not hold here (nothing was unapproved)
            "time_reversals": {**effect(0, 0), "unexpected": len(reversed_ids)},
        },
        "_detail": {"entries_posted_twice": [e for e, n in counts.items() if n > 1][:10]},
    }


# --------------------------------------------------------------------------- change orders


@dataclass
class ChangeOrderWork:
    deal: Deal
    title: str
    delta: int
    currency: str = "USD"
    co_id: str | None = None
    erp_before: tuple[Decimal, int] | None = None
    psa_before: int | None = None
    roles: list[str] = field(default_factory=list)
    outcome: str | None = None
    error: str | None = None


def erp_budget(ctx: Context, eid: str) -> tuple[Decimal, int] | None:
    rows = ctx.db.rows(
        "erp",
        "SELECT b.amount, b.budget_version FROM erp_job_budget b JOIN erp_job j "
        "ON j.id = b.job_id WHERE j.external_id = :e",
        {"e": eid},
    )
    return (Decimal(str(rows[0][0])), int(rows[0][1])) if rows else None


def moved_by(moved: Decimal, delta: Decimal) -> str:
    """How a budget moved against the change order's delta: once, twice or more, not at all,
    or by something else."""
    if moved == delta:
        return "once"
    if moved == 0:
        return "not at all"
    if moved % delta == 0 and moved / delta > 1:
        return "twice or more"
    return "wrong"


async def submit_change_order(ctx: Context, work: ChangeOrderWork) -> None:
    """Submitted in the PSA twin (its webhook starts the saga), approved through the gateway
    by every role the run asks for, as `starter.change_order_scene` does."""
    assert work.deal.result is not None
    ws = str(work.deal.result.psa_project_id)
    eid = work.deal.result.enterprise_id
    [(budget, work.currency)] = ctx.db.rows(
        "psa", "SELECT budget_in_cents, currency FROM psa_workspace WHERE id = :w", {"w": int(ws)}
    )
    work.psa_before = int(budget)
    work.erp_before = erp_budget(ctx, eid)
    fields = {
        "workspace_id": int(ws),
        "title": work.title,
        "budget_delta_in_cents": work.delta * 100,
        "currency": work.currency,
        "lines": [{"role": "Consultant", "minutes_delta": 40 * 60}],
        "requested_by": "dana.manager",
    }

    async def find() -> dict[str, Any] | None:
        for co in await ctx.psa._all("/change_orders.json", {"workspace_id": ws}):
            if co.get("title") == work.title:
                return co
        return None

    async def create() -> dict[str, Any]:
        # Look first (a repeat after a failure may find the one made before), then create
        # through the connector's lost-answer-safe create (look up again before a re-send).
        return await find() or await ctx.psa._create(
            "/change_orders.json", "change_order", fields, find
        )

    try:
        created = await persist(create)
        work.co_id = str(created["id"])
        wid = change_order_workflow_id(ctx.settings.psa.tenant, work.co_id)
        ctx.workflows.setdefault("ChangeOrder", []).append(wid)
        timeout = ctx.args.deal_timeout_s
        handle = await starter.wait_for_workflow(
            ctx.client, wid, timeout_s=timeout, result_type=ChangeOrderResult
        )
        status = await starter.wait_for_step(handle, "waiting_for_approval", timeout)
        work.roles = list(status["required_roles"])
        async with httpx.AsyncClient(timeout=60) as http:
            for role in work.roles:
                for attempt in range(10):
                    answer = await http.post(
                        f"{ctx.stack.urls['gateway']}/api/change-orders/{work.co_id}/decision",
                        headers={"Authorization": f"Bearer {starter._token(ctx.stack, role)}"},
                        json={"approve": True, "note": f"saga chaos: approved as {role}"},
                    )
                    if answer.status_code < 500:
                        break
                    await asyncio.sleep(min(5.0, 0.5 * 2**attempt))
                if answer.status_code != 200:
                    raise RuntimeError(f"decision as {role}: {answer.status_code} {answer.text}")
        result: ChangeOrderResult = await asyncio.wait_for(handle.result(), timeout)
        work.outcome = result.outcome.value
    except Exception as exc:  # reported with the counts
        work.error = f"{type(exc).__name__}: {exc}"[:300]
        log(f"  change order {work.title} ({work.co_id}): {work.error}")


def count_change_orders(ctx: Context, works: list[ChangeOrderWork]) -> Counts:
    if not works:
        return {}
    titles = [w.title for w in works]
    cos = ctx.db.rows(
        "psa", f"SELECT title, state, id FROM psa_change_order WHERE title IN ({in_list(titles)})"
    )
    state_of = {str(c[2]): c[1] for c in cos}
    erp_moves: Counter[str] = Counter()
    psa_moves: Counter[str] = Counter()
    versions: list[int] = []
    for w in works:
        if w.deal.result is None:
            continue
        after = erp_budget(ctx, w.deal.result.enterprise_id)
        if after is not None and w.erp_before is not None:
            erp_moves[moved_by(after[0] - w.erp_before[0], Decimal(w.delta))] += 1
            versions.append(after[1] - w.erp_before[1])
        [(budget,)] = ctx.db.rows(
            "psa",
            "SELECT budget_in_cents FROM psa_workspace WHERE id = :w",
            {"w": int(w.deal.result.psa_project_id)},
        )
        if w.psa_before is not None:
            psa_moves[moved_by(Decimal(int(budget) - w.psa_before), Decimal(w.delta * 100))] += 1
    keys = [f"co:{w.co_id}:Consultant" for w in works if w.co_id]
    requests = ctx.db.rows(
        "psa",
        "SELECT notes, status FROM psa_resource_request WHERE notes LIKE :m",
        {"m": f"%{DEMAND_MARKER}co:%"},
    )
    found = [marked(r[0], DEMAND_MARKER) for r in requests]
    return {
        "_detail": {"erp_budget_versions_moved": versions},
        "psa": {
            "change_orders_submitted": tally(titles, [c[0] for c in cos]),
            "change_orders_applied": effect(
                len(works), sum(1 for w in works if state_of.get(str(w.co_id)) == "applied")
            ),
            "change_order_budgets": effect(
                len(works), psa_moves["once"], psa_moves["twice or more"], psa_moves["wrong"]
            ),
            "change_order_resource_requests": tally(keys, [k for k in found if k in set(keys)]),
        },
        "erp": {
            "change_order_budget_revisions": effect(
                len(works), erp_moves["once"], erp_moves["twice or more"], erp_moves["wrong"]
            ),
        },
    }


# --------------------------------------------------------------------------- terminations


@dataclass
class TerminationWork:
    deal: Deal
    leaver: Any
    last_day: date
    assignment_id: str | None = None
    entry_id: str | None = None
    workflow_id: str | None = None
    reached: bool = False
    error: str | None = None


async def terminate(ctx: Context, work: TerminationWork) -> None:
    """As `starter.termination_scene`: the leaver staffed on a provisioned project with
    approved time, terminated in the HCM (effective today, last day yesterday); the poll
    Schedule finds it; the run must reach `open_for_rescind`."""
    assert work.deal.result is not None
    ws = str(work.deal.result.psa_project_id)
    user = ctx.users[work.leaver.id]
    today = work.last_day + timedelta(days=1)
    fields = {
        "workspace_id": int(ws),
        "user_id": int(user),
        "role": work.leaver.role,
        "start_date": (today - timedelta(days=14)).isoformat(),
        "end_date": (today + timedelta(days=60)).isoformat(),
        "allocated_minutes": 9600,
    }

    async def find() -> dict[str, Any] | None:
        for a in await ctx.psa._all("/assignments.json", {"workspace_id": ws, "user_id": user}):
            return a
        return None

    async def create() -> dict[str, Any]:
        return await find() or await ctx.psa._create(
            "/assignments.json", "assignment", fields, find
        )

    try:
        assignment = await persist(create)
        work.assignment_id = str(assignment["id"])
        [entry] = await ctx.twins.bulk(
            [
                {
                    "workspace_id": int(ws),
                    "user_id": int(user),
                    "date_performed": (today - timedelta(days=2)).isoformat(),
                    "time_in_minutes": 420,
                }
            ],
            approved=True,
            emit=True,
        )
        work.entry_id = str(entry)
        await persist(lambda: ctx.hcm.terminate(work.leaver.id, today, work.last_day))
        with contextlib.suppress(Exception):  # the Schedule polls anyway; this is sooner
            await ctx.client.get_schedule_handle(HCM_SCHEDULE_ID).trigger()
        work.workflow_id = termination_workflow_id(
            ctx.settings.hcm.tenant, work.leaver.id, today.isoformat()
        )
        ctx.workflows.setdefault("WorkerTermination", []).append(work.workflow_id)
        timeout = ctx.args.deal_timeout_s
        handle = await starter.wait_for_workflow(ctx.client, work.workflow_id, timeout_s=timeout)
        await starter.wait_for_step(handle, "open_for_rescind", timeout)
        work.reached = True
    except Exception as exc:
        work.error = f"{type(exc).__name__}: {exc}"[:300]
        log(f"  termination of {work.leaver.id}: {work.error}")


def count_terminations(ctx: Context, works: list[TerminationWork]) -> Counts:
    if not works:
        return {}
    db = ctx.db
    leavers = [w.leaver.id for w in works]
    wid_of = dict(  # worker id -> WID (the HCM's events name the WID)
        db.rows(
            "hcm",
            f"SELECT worker_id, wid FROM hcm_worker WHERE worker_id IN ({in_list(leavers)})",
        )
    )
    events = db.rows(
        "hcm",
        "SELECT worker_wid, type, effective_date FROM hcm_event WHERE type = 'terminate' "
        f"AND worker_wid IN ({in_list(list(wid_of.values()))})",
    )
    ended = closed = 0
    assignments: list[tuple[str, str]] = []
    for w in works:
        if w.deal.result is None:
            continue
        user = ctx.users[w.leaver.id]
        rows = db.rows(
            "psa",
            "SELECT id, end_date FROM psa_assignment WHERE workspace_id = :w AND user_id = :u",
            {"w": int(w.deal.result.psa_project_id), "u": int(user)},
        )
        assignments += [(w.leaver.id, str(r[0])) for r in rows]
        ended += any(str(r[1]) == w.last_day.isoformat() for r in rows)
        [(after,)] = db.rows(
            "psa", "SELECT time_entry_closed_after FROM psa_user WHERE id = :u", {"u": int(user)}
        )
        closed += str(after) == w.last_day.isoformat()
    backfill_keys = [f"backfill:{w.leaver.id}:{w.assignment_id}" for w in works if w.assignment_id]
    requests = db.rows(
        "psa",
        "SELECT notes FROM psa_resource_request WHERE notes LIKE :m",
        {"m": f"%{DEMAND_MARKER}backfill:%"},
    )
    found = [marked(r[0], DEMAND_MARKER) for r in requests]
    entries = [w.entry_id for w in works if w.entry_id]
    postings = db.rows(
        "erp",
        "SELECT id, source_entry, reverses_id FROM erp_timebill "
        f"WHERE source_entry IN ({in_list(entries)})",
    )
    reversed_ids = {r[2] for r in postings if r[2] is not None}
    return {
        "hcm": {
            "terminations": tally([wid_of.get(x) for x in leavers], [e[0] for e in events]),
        },
        "psa": {
            "leaver_assignments": tally(
                [w.leaver.id for w in works if w.assignment_id], [a[0] for a in assignments]
            ),
            "assignments_ended_on_last_day": effect(len(works), ended),
            "backfill_requests": tally(
                backfill_keys, [k for k in found if k in set(backfill_keys)]
            ),
            "time_entry_closed_after_last_day": effect(len(works), closed),
        },
        "erp": {
            "leaver_time_postings": tally(
                entries,
                [str(r[1]) for r in postings if r[2] is None and r[0] not in reversed_ids],
            ),
        },
    }


# --------------------------------------------------------------------------- scenarios


async def win_many(ctx: Context, deals: list[Deal], concurrency: int) -> float:
    results, wall = await bounded(len(deals), concurrency, lambda i: run_deal(ctx, deals[i]))
    for d, r in zip(deals, results, strict=True):
        if isinstance(r, BaseException):
            d.error = d.error or f"{type(r).__name__}: {r}"[:300]
            log(f"  deal {d.key}: {d.error}")
    ctx.workflows.setdefault("OpportunityToProject", []).extend(
        d.workflow_id for d in deals if d.workflow_id
    )
    return wall


async def finish(
    ctx: Context,
    name: str,
    started: float,
    lost_before: dict[str, int],
    parts: list[Callable[[], Counts]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Faults off, wait for quiet, count, report."""
    faults = await fault_report(ctx, lost_before)
    await set_faults(ctx, {})
    quiet = await quiesce(ctx, ctx.since, ctx.args.quiet_timeout_s)
    log(f"{name}: quiet after {quiet['seconds']} s; counting")
    counted = [count() for count in parts]
    details = {k: v for c in counted for k, v in c.pop("_detail", {}).items()}
    systems = merge_systems(*counted)
    wids = [w for ws in ctx.workflows.values() for w in ws]
    runs = {kind: await run_statuses(ctx, ids) for kind, ids in ctx.workflows.items()}
    exceptions = open_exceptions(ctx, wids)
    blocking = [e for e in exceptions if not e["workflow_id"].startswith("termination/")]
    failed_runs = sum(
        n
        for kind, statuses in runs.items()
        for status, n in statuses.items()
        if status != ("RUNNING" if kind == "WorkerTermination" else "COMPLETED")
    )
    report = {
        "ok": all(s["ok"] for s in systems.values()) and failed_runs == 0 and not blocking,
        "duplicates": sum(s["duplicates"] for s in systems.values()),
        "missing": sum(s["missing"] for s in systems.values()),
        "wrong": sum(s["wrong"] for s in systems.values()),
        "failed_runs": failed_runs,
        "systems": systems,
        "runs": runs,
        "exceptions_open": exceptions[:20],
        "faults": faults,
        "quiesce": quiet,
        **extra,
        "details": details,
        "wall_s": round(time.monotonic() - started, 1),
    }
    for system, s in systems.items():
        log(
            f"{name}: {system}: {s['duplicates']} duplicates, {s['missing']} missing, "
            f"{s['wrong']} wrong"
        )
    log(f"{name}: runs {runs}; open exception items {len(exceptions)}; wall {report['wall_s']} s")
    return report


async def scenario_chaos(ctx: Context) -> dict[str, Any]:
    a = ctx.args
    started = time.monotonic()
    ctx.workflows = {}
    ctx.since = datetime.now(UTC)
    await ctx.twins.reset_stats()
    lost_before = await lost_counts(ctx)
    await set_faults(ctx, chaos_faults(a))
    log(
        f"chaos: every twin {a.error_rate:.0%} 5xx, {a.rate_limit_rate:.0%} 429, "
        f"{a.lost_response_rate:.0%} lost responses; {a.deals} deals, {a.concurrency} in flight"
    )
    deals = [new_deal("chaos", n) for n in range(a.deals)]
    deals_wall = await win_many(ctx, deals, a.concurrency)
    done = [d for d in deals if d.result is not None]
    log(f"chaos: {len(done)}/{len(deals)} provisioned in {deals_wall:.1f} s")
    # Projects of their own for time, change orders and terminations.
    wanted = {c for c in a.time_currencies.split(",") if c}
    priced = [d for d in done if not wanted or d.new.currency in wanted]
    time_deals = priced[: a.time_projects]
    rest = [d for d in done if d not in time_deals] or done
    co_deals = (rest * (1 + a.change_orders // max(1, len(rest))))[: a.change_orders]
    rest2 = rest[a.change_orders :] or rest
    term_deals = (rest2 * (1 + a.terminations // max(1, len(rest2))))[: a.terminations]
    cos = [
        ChangeOrderWork(
            deal=d, title=f"Saga chaos CO {n:03d} ({d.key})", delta=CO_SMALL if n % 2 else CO_LARGE
        )
        for n, d in enumerate(co_deals)
    ]
    yesterday = date.today() - timedelta(days=1)
    terms = [
        TerminationWork(deal=d, leaver=leaver, last_day=yesterday)
        for d, leaver in zip(term_deals, ctx.leavers, strict=False)
    ]
    log(
        f"chaos: {a.entries} entries over {len(time_deals)} projects, {len(cos)} change orders, "
        f"{len(terms)} termination(s), at the same time"
    )
    phase = time.monotonic()
    time_work, *_ = await asyncio.gather(
        approve_time(ctx, time_deals, a.entries),
        asyncio.gather(*(submit_change_order(ctx, c) for c in cos)),
        asyncio.gather(*(terminate(ctx, t) for t in terms)),
    )
    phase_s = time.monotonic() - phase
    log(f"chaos: time, change orders and terminations done in {phase_s:.1f} s")
    return await finish(
        ctx,
        "chaos",
        started,
        lost_before,
        [
            lambda: count_deals(ctx, deals),
            lambda: count_time(ctx, time_work),
            lambda: count_change_orders(ctx, cos),
            lambda: count_terminations(ctx, terms),
        ],
        {
            "deals": deal_runs(deals),
            "deals_phase_s": round(deals_wall, 1),
            "deals_per_s": round(len(done) / deals_wall, 2) if deals_wall else None,
            "time": {
                "entries": len(time_work.entries),
                "projects_by_currency": dict(Counter(d.new.currency for d in time_deals)),
                "all_posted_after_s": time_work.posted_s,
            },
            "change_orders": {
                "submitted": len(cos),
                "applied": sum(1 for c in cos if c.outcome == "applied"),
                "finance_required": sum(1 for c in cos if "finance_controller" in c.roles),
                "errors": [c.error for c in cos if c.error][:5],
            },
            "terminations": {
                "entered": len(terms),
                "reached_open_for_rescind": sum(1 for t in terms if t.reached),
                "errors": [t.error for t in terms if t.error][:5],
            },
            "second_phase_s": round(phase_s, 1),
        },
    )


async def scenario_same_customer(ctx: Context) -> dict[str, Any]:
    a = ctx.args
    started = time.monotonic()
    ctx.workflows = {}
    ctx.since = datetime.now(UTC)
    await ctx.twins.reset_stats()
    lost_before = await lost_counts(ctx)
    await set_faults(ctx, {})
    tag = datetime.now(UTC).strftime("%H%M%S")
    log(f"same_customer: {a.pairs} new CRM accounts, two deals each, all won at once")
    accounts: list[str] = []
    deals: list[Deal] = []
    for n in range(a.pairs):
        currency = FIRM.opportunities[TEMPLATES[n % len(TEMPLATES)]].currency
        r = await ctx.twins.http.post(  # a new account: not in the ERP yet
            f"{ctx.twins.base}{CRM_API}/sobjects/Account",
            json={"Name": f"Twin Accounts {n} ({tag})", "CurrencyIsoCode": currency},
        )
        r.raise_for_status()
        account = str(r.json()["id"])
        accounts.append(account)
        # Both deals of the pair are shaped like the same seeded deal (its currency).
        deals += [new_deal("same-customer", k, n, account_id=account) for k in (2 * n, 2 * n + 1)]
    await asyncio.gather(*(create_deal(ctx, d) for d in deals))
    # Every deal of every pair won at the same moment.
    phase = time.monotonic()
    await asyncio.gather(*(win_deal(ctx, d) for d in deals))
    await asyncio.gather(*(await_deal(ctx, d) for d in deals))
    wall = time.monotonic() - phase
    ctx.workflows["OpportunityToProject"] = [d.workflow_id for d in deals if d.workflow_id]
    log(f"same_customer: {sum(1 for d in deals if d.result)}/{len(deals)} in {wall:.1f} s")

    def customers() -> Counts:
        db = ctx.db
        tenant = ctx.settings.crm.tenant
        erp_customers = db.rows(
            "erp",
            "SELECT external_id, id, enterprise_id FROM erp_customer "
            f"WHERE external_id IN ({in_list(accounts)})",
        )
        xrefs = db.store_rows(
            "SELECT external_id, enterprise_id FROM xref WHERE system = 'CRM' "
            "AND object_type = 'Account' AND tenant = :t AND external_id IN "
            f"({in_list(accounts)})",
            t=tenant,
        )
        eid_of = {acc: eid for acc, eid in xrefs}
        customer_of = {acc: (int(i), e) for acc, i, e in erp_customers}
        jobs = dict(
            db.rows(
                "erp",
                "SELECT company_name, customer_id FROM erp_job "
                f"WHERE company_name IN ({in_list([d.name for d in deals])})",
            )
        )
        names = {d.name for d in deals}
        wrong_eid = sum(
            1 for acc, (_i, e) in customer_of.items() if eid_of.get(acc) not in (None, e)
        )
        on_customer = sum(
            1
            for d in deals
            if d.name in jobs
            and d.new.account_id in customer_of
            and int(jobs[d.name]) == customer_of[d.new.account_id][0]
        )
        return {
            "erp": {
                "customers": tally(accounts, [c[0] for c in erp_customers]),
                "customer_enterprise_id": effect(
                    len(accounts), len(customer_of) - wrong_eid, wrong=wrong_eid
                ),
                "jobs_on_the_account_customer": effect(
                    len(deals), on_customer, wrong=len(set(jobs) & names) - on_customer
                ),
            },
            "store": {
                "customer_enterprise_ids": tally(accounts, [x[0] for x in xrefs]),
            },
        }

    return await finish(
        ctx,
        "same_customer",
        started,
        lost_before,
        [lambda: count_deals(ctx, deals), customers],
        {
            "deals": deal_runs(deals),
            "accounts": len(accounts),
            "projects": sum(1 for d in deals if d.result is not None),
            "customers": len(
                ctx.db.rows(
                    "erp",
                    f"SELECT id FROM erp_customer WHERE external_id IN ({in_list(accounts)})",
                )
            ),
            "deals_phase_s": round(wall, 1),
        },
    )


async def scenario_psa_lost(ctx: Context) -> dict[str, Any]:
    a = ctx.args
    started = time.monotonic()
    ctx.workflows = {}
    ctx.since = datetime.now(UTC)
    await ctx.twins.reset_stats()
    lost_before = await lost_counts(ctx)
    await set_faults(ctx, {"psa": {"lost": {"rate": a.psa_lost_rate, "seed": a.seed}}})
    log(
        f"psa_lost_30: the PSA loses {a.psa_lost_rate:.0%} of its answers, {a.psa_lost_deals} deals"
    )
    deals = [new_deal("psa-lost", n) for n in range(a.psa_lost_deals)]
    wall = await win_many(ctx, deals, a.concurrency)
    log(f"psa_lost_30: {sum(1 for d in deals if d.result)}/{len(deals)} in {wall:.1f} s")
    return await finish(
        ctx,
        "psa_lost_30",
        started,
        lost_before,
        [lambda: count_deals(ctx, deals)],
        {
            "deals": deal_runs(deals),
            "workspaces": len(
                ctx.db.rows(
                    "psa",
                    "SELECT id FROM psa_workspace WHERE opportunity_ref IN "
                    f"({in_list([d.opp_id for d in deals if d.opp_id])})",
                )
            ),
            "erp_jobs": len(
                ctx.db.rows(
                    "erp",
                    "SELECT id FROM erp_job WHERE company_name IN "
                    f"({in_list([d.name for d in deals])})",
                )
            ),
            "deals_phase_s": round(wall, 1),
        },
    )


RUNNERS = {
    "chaos": scenario_chaos,
    "same_customer": scenario_same_customer,
    "psa_lost_30": scenario_psa_lost,
}


# --------------------------------------------------------------------------- the stack


def pick_people(users: dict[str, str], args: argparse.Namespace) -> tuple[list[Any], list[Any]]:
    """Workers for time (active since before last month, in the PSA) and leavers (others)."""
    first = (date.today().replace(day=1) - timedelta(days=1)).replace(day=1)
    fit = [
        w
        for w in FIRM.workers
        if w.status == "active"
        and w.termination_date is None
        and w.hire_date < first - timedelta(days=7)
        and w.id in users
    ]
    leavers = fit[-args.terminations :] if args.terminations else []
    rest = [w for w in fit if w not in leavers]
    return rest[: args.time_workers], leavers


@contextlib.asynccontextmanager
async def chaos_stack(args: argparse.Namespace, home: Path) -> Any:
    """`starter.running_stack` (twins in their own process) and the worker as `pssync worker`
    (or in this process); every process is stopped by its id on the way out."""
    settings = load_settings(
        home=home / ".pssync",
        time_sweep_interval_s=86_400.0,
        hcm_poll_interval_s=args.hcm_poll_s,
    )
    log(f"home {home}; starting the stack (dev server, gateway, twins process, worker process)")
    # The twins and worker processes import the project from their working directory.
    with contextlib.chdir(ROOT):
        async with starter.running_stack(
            settings,
            seed=SEED,
            ephemeral_ports=True,
            run_worker=args.worker_in_process,
            twins_process=True,
        ) as stack:
            proc = None
            if not args.worker_in_process:
                proc = start_worker_process(
                    stack.settings,
                    stack.settings.home / "worker.log",
                    {
                        "PSSYNC_TIME_SWEEP_INTERVAL_S": "86400",
                        "PSSYNC_HCM_POLL_INTERVAL_S": str(args.hcm_poll_s),
                    },
                )
            try:
                yield stack
            finally:
                if proc is not None:
                    stop_process(proc)
                with contextlib.suppress(Exception):
                    await faults_off(stack)
                for schedule in ("time-to-invoice-sweep", HCM_SCHEDULE_ID):
                    with contextlib.suppress(Exception):
                        await stack.client.get_schedule_handle(schedule).delete()


async def faults_off(stack: starter.Stack) -> None:
    """Every twin's faults off (on the way out, also after a failure)."""
    async with httpx.AsyncClient(timeout=10) as http:
        for system in SYSTEMS:
            await http.post(f"{stack.urls['sandbox']}/{system}/_admin/faults", json={})
            await http.post(f"{stack.urls['sandbox']}/{system}/_admin/lost-responses", json={})


def connector_settings(settings: Any) -> Any:
    """The bench's own connectors: room for its concurrency, a longer retry budget."""
    return settings.model_copy(update={"max_concurrency": 32, "retry_budget_s": 120})


async def run(args: argparse.Namespace, home: Path | None = None) -> dict[str, Any]:
    """The scenarios of `args` on one stack; the report. `home` (kept) instead of a temp home
    (removed when the run is ok, kept otherwise)."""
    started = time.monotonic()
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    temp = home is None
    home = Path(tempfile.mkdtemp(prefix="pssync-saga-chaos-")) if home is None else home
    report: dict[str, Any] = {"bench": "saga_chaos", "scenarios": {}}
    ok = False
    try:
        async with chaos_stack(args, home) as stack:
            twins = Twins(stack)
            s = stack.settings
            crm = SalesforceCrm(connector_settings(s.crm))
            psa = KantataPsa(connector_settings(s.psa))
            hcm = WorkdayHcm(connector_settings(s.hcm))
            db = Databases(s)
            try:
                users = await twins.worker_users()  # before any fault
                time_workers, leavers = pick_people(users, args)
                today = date.today()
                first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
                ctx = Context(
                    stack=stack,
                    args=args,
                    db=db,
                    twins=twins,
                    crm=crm,
                    psa=psa,
                    hcm=hcm,
                    users=users,
                    time_workers=time_workers,
                    leavers=leavers,
                    days=[first + timedelta(days=d) for d in range((today - first).days)],
                )
                for name in args.scenarios:
                    report["scenarios"][name] = await RUNNERS[name](ctx)
            finally:
                for closing in (crm, psa, hcm, twins):
                    with contextlib.suppress(Exception):
                        await closing.aclose()
                db.close()
        scenarios = report["scenarios"]
        report["duplicates"] = sum(r["duplicates"] for r in scenarios.values())
        report["missing"] = sum(r["missing"] for r in scenarios.values())
        report["wrong"] = sum(r["wrong"] for r in scenarios.values())
        report["failed_runs"] = sum(r["failed_runs"] for r in scenarios.values())
        ok = all(r["ok"] for r in scenarios.values()) and len(scenarios) == len(args.scenarios)
    finally:
        report["ok"] = ok
        report["wall_s"] = round(time.monotonic() - started, 1)
        report["machine"] = {
            "platform": platform.platform(),
            "cores": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "python": platform.python_version(),
            "load_average_at_start": load,
        }
        report["config"] = {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(vars(args).items())
        } | {
            "twins": "own process (pssync sandbox), zero latency",
            "worker": "in process" if args.worker_in_process else "own process (pssync worker)",
            "temporal": "embedded dev server, SQLite file under the temp home",
            "time_sweep": "pushed out to a day (webhooks only)",
        }
        report["date"] = datetime.now(UTC).isoformat(timespec="seconds")
        if ok and temp and not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)
        else:
            report["home"] = str(home)
            log(f"kept {home} (worker.log, twins.log, the twins' and the store's databases)")
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"smaller sizes: {QUICK}")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, run in this order (default {','.join(SCENARIOS)})",
    )
    for name in FULL:
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=None, help=f"default {FULL[name]}"
        )
    parser.add_argument("--time-workers", type=int, default=20, help="workers entering time")
    parser.add_argument("--psa-lost-rate", type=float, default=0.3)
    parser.add_argument("--error-rate", type=float, default=0.2)
    parser.add_argument("--rate-limit-rate", type=float, default=0.1)
    parser.add_argument("--lost-response-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--concurrency", type=int, default=20, help="deals in flight")
    parser.add_argument("--deal-timeout-s", type=float, default=300.0)
    parser.add_argument(
        "--settle-timeout-s", type=float, default=300.0, help="longest wait for the postings"
    )
    parser.add_argument(
        "--stall-s", type=float, default=60.0, help="stop waiting once no posting came for this"
    )
    parser.add_argument(
        "--quiet-timeout-s",
        type=float,
        default=90.0,
        help="longest wait for the scenario's runs to have no activity pending",
    )
    parser.add_argument(
        "--time-currencies",
        default="",
        help="only projects in these currencies get time (e.g. USD); default: any",
    )
    parser.add_argument("--hcm-poll-s", type=int, default=5, help="HCM poll Schedule interval")
    parser.add_argument(
        "--worker-in-process",
        action="store_true",
        help="run the worker in this process instead of as `pssync worker`",
    )
    parser.add_argument("--keep-home", action="store_true")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for name, value in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    return args


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    loop = asyncio.new_event_loop()
    task = loop.create_task(run(args))
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop through the context managers
        loop.add_signal_handler(sig, task.cancel)
    try:
        report = loop.run_until_complete(task)
    finally:
        loop.close()
    print(json.dumps(report, default=str))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
