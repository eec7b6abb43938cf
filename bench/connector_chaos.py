"""Connector chaos benchmark: ERP time postings through `NetSuiteErp` into the ERP twin while
the twin answers 20% of requests with a 5xx and 10% with a 429 — then the creates of the other
connectors (PSA, CRM, HCM) under the same faults.

    python bench/connector_chaos.py [--postings 500] [--batch-size 20] [--seed 42]
        [--projects 20] [--deals 20] [--terminations 10] [--systems erp,psa,crm,hcm]

The twin runs in process on 127.0.0.1 (an OS-assigned port) and is stopped at the end. The run
posts the same number of postings twice: once without faults (the baseline), once with them.
Besides the 5xx and 429 answers, 5% of requests (`--lost-response-rate`) are processed and then
answered 504, as if the response were lost: the case where a naive retry duplicates records.
It then reads the ERP back through its REST API and checks that every posting is there exactly
once.

Then every other twin gets the same faults (5xx, 429 and lost responses at the same rates),
and each connector makes its records the way pssync's activities call it, each call retried
whole after a retryable error as Temporal retries an activity:

- PSA (`KantataPsa`): `--projects` project shells (workspace, WBS stories, billing milestones)
  and their staffing demand (resource requests);
- CRM (`SalesforceCrm`): `--deals` keyed opportunities with three line items each, then the
  enterprise ID written back to each;
- HCM (`WorkdayHcm`): `--terminations` terminations, each rescinded and entered again.

Each twin is read back (its database, in process) and every business key counted: a key with
more than one record is a duplicate, a key with none is missing.

Progress goes to stderr; the last line of stdout is one JSON object:

    requested, records_in_erp, duplicates, missing, failed_results, retries (connector-level),
    activity_retries (whole post_time calls retried, as a Temporal activity would be),
    lost_responses, idempotency_replays (400 IDEMPOTENCY_ERROR answers the connector followed),
    seconds, baseline_seconds, chaos_over_baseline, erp_stats,
    systems: {erp|psa|crm|hcm: {requested, duplicates, missing, failed, lost_responses,
              retries, recovered, activity_retries, seconds, ok, ...}},
    machine, config, ok

The top-level counts are the ERP's (as before). The exit status is 0 when `ok`: every system
has every record once (no duplicates, nothing missing, nothing failed).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from sqlmodel import select

from bench._harness import add_options, log, machine, marked, print_json, serve_app, tally
from bench._harness import kinds_summary as summary
from connectors.crm import NewOpportunity, NewOpportunityLine, SalesforceCrm
from connectors.erp import NetSuiteErp
from connectors.hcm import WorkdayHcm
from connectors.psa import DEMAND_MARKER, MILESTONE_MARKER, PROJECT_MARKER, WBS_MARKER, KantataPsa
from contracts.errors import PssyncError
from contracts.money import Money
from contracts.settings import SystemSettings
from contracts.systems import System
from contracts.v1.models import (
    BillingRule,
    CostPosting,
    Customer,
    Milestone,
    PostingKind,
    Project,
    WbsNode,
    WbsNodeType,
)
from contracts.v1.provisioning import staffing_demand
from sandbox import crm as crm_twin
from sandbox import erp as erp_twin
from sandbox import hcm as hcm_twin
from sandbox import psa as psa_twin
from sandbox._twin import TwinState
from sandbox.seed import STATUS_ACTIVE, Firm, build_firm

__all__ = ["Activity", "main", "run", "summary", "tally"]

TODAY = date(2025, 6, 15)
PROJECTS = 5
ACTIVITY_ATTEMPTS = 5
RECORD = "/services/rest/record/v1"
AUTH = {"Authorization": "Bearer dev-static-token"}
T = TypeVar("T")
C = TypeVar("C", KantataPsa, SalesforceCrm, WorkdayHcm)


# --------------------------------------------------------------------------- the ERP


async def provision(erp: NetSuiteErp, firm: Firm) -> list[tuple[str, str]]:
    """Five projects on the firm's active cost centers: (ERP id, cost center)."""
    customers = [c for c in firm.customers if not c.credit_hold]
    centers = [c.id for c in firm.cost_centers if c.active]
    projects = []
    for n in range(PROJECTS):
        account = customers[n % len(customers)]
        customer_id = await erp.upsert_customer(
            Customer(
                source_system=System.CRM,
                external_id=account.id,
                name=account.name,
                currency=account.currency,
            ),
            enterprise_id=f"01JBENCHCUST00000000000{n:03d}",
        )
        cost_center = centers[n % len(centers)]
        enterprise_id = f"01JBENCHPRJ000000000000{n:03d}"
        erp_id = await erp.upsert_project(
            Project(
                source_system=System.PSA,
                name=f"Chaos bench project {n}",
                customer_id=account.id,
                billing_rule=BillingRule.TIME_AND_MATERIALS,
                contract_value=Money("250000", "USD"),
                start_date=TODAY - timedelta(days=30),
                cost_center=cost_center,
            ),
            enterprise_id=enterprise_id,
            customer_erp_id=customer_id,
            budget=Money("200000", "USD"),
        )
        projects.append((erp_id, cost_center))
    return projects


def make_postings(
    prefix: str, count: int, firm: Firm, projects: list[tuple[str, str]], seed: int
) -> list[CostPosting]:
    rng = random.Random(seed)
    open_days = [
        p.start + timedelta(days=d)
        for p in firm.periods
        if not p.closed
        for d in range((p.end - p.start).days + 1)
        if p.start + timedelta(days=d) <= TODAY
    ]
    workers = [w for w in firm.workers if w.status == "active"]
    postings = []
    for i in range(count):
        project_id, cost_center = projects[i % len(projects)]
        worker = rng.choice(workers)
        day = rng.choice(open_days)
        hours = Decimal(rng.choice([2, 4, 6, 7, 8])) + Decimal(rng.choice([0, 25, 50, 75])) / 100
        postings.append(
            CostPosting(
                source_system=System.PSSYNC,
                idempotency_key=f"{prefix}-{i:05d}",
                kind=PostingKind.TIME,
                project_id=project_id,
                worker_id=worker.id,
                source_entry_id=f"TE-{prefix}-{i:05d}",
                posting_date=day,
                period=f"{day.year:04d}-{day.month:02d}",
                hours=hours,
                cost_amount=Money(worker.cost_rate * hours, worker.currency).rounded(),
                cost_center=cost_center,
            )
        )
    return postings


async def post_all(
    erp: NetSuiteErp, postings: list[CostPosting], batch_size: int
) -> tuple[int, int]:
    """Post concurrently in batches; retry a failed call whole (it is idempotent).
    (failed results, whole-call retries)."""
    failed = 0
    call_retries = 0

    async def one_batch(batch: list[CostPosting]) -> None:
        nonlocal failed, call_retries
        for attempt in range(1, ACTIVITY_ATTEMPTS + 1):
            try:
                results = await erp.post_time(batch)
            except PssyncError as exc:
                if not exc.retryable or attempt == ACTIVITY_ATTEMPTS:
                    raise
                call_retries += 1
                log(f"  post_time gave up after its retry budget ({exc}); retrying the call")
                continue
            failed += sum(1 for r in results if not r.ok)
            for r in results:
                if not r.ok:
                    log(f"  refused: {r.idempotency_key}: {r.error}")
            return

    batches = [postings[i : i + batch_size] for i in range(0, len(postings), batch_size)]
    await asyncio.gather(*(one_batch(b) for b in batches))
    return failed, call_retries


async def read_back(erp: NetSuiteErp, projects: list[tuple[str, str]], prefix: str) -> Counter[str]:
    """Keys of the prefix's postings found in the ERP, with their multiplicity."""
    keys: Counter[str] = Counter()
    for project_id, _cc in projects:
        for posting in await erp.list_postings(project_id):
            if posting.idempotency_key.startswith(f"{prefix}-"):
                keys[posting.idempotency_key] += 1
    return keys


async def erp_phase(args: argparse.Namespace, firm: Firm) -> dict[str, Any]:
    """The baseline, then the same number of postings under the faults; the ERP read back.
    The top-level report's ERP figures, `system` among them (`systems.erp`)."""
    app = erp_twin.create_app(async_pending_polls=1)
    erp_twin.load_firm(app, firm)
    async with serve_app(app) as base_url:
        async with (
            NetSuiteErp(
                connector_settings(base_url, args),
                backoff_base_s=0.02,
                backoff_cap_s=1.0,
                poll_interval_s=0.01,
            ) as erp,
            httpx.AsyncClient(base_url=base_url, headers=AUTH) as admin,
        ):
            projects = await provision(erp, firm)
            log(f"provisioned {len(projects)} projects; baseline: {args.postings} postings")

            baseline = make_postings("base", args.postings, firm, projects, args.seed)
            started = time.perf_counter()
            base_failed, _ = await post_all(erp, baseline, args.batch_size)
            baseline_seconds = time.perf_counter() - started
            log(f"baseline took {baseline_seconds:.2f}s ({base_failed} refused)")

            (await admin.post("/_admin/stats/reset")).raise_for_status()
            await chaos_on(admin, "erp", args)
            retries_before = erp.retries
            chaos = make_postings("chaos", args.postings, firm, projects, args.seed + 1)
            faults, lost = fault_config(args)
            log(f"chaos: {args.postings} postings with {faults}, lost responses {lost}")
            started = time.perf_counter()
            failed, call_retries = await post_all(erp, chaos, args.batch_size)
            seconds = time.perf_counter() - started
            retries = erp.retries - retries_before
            stats, dropped = await chaos_off(admin, "erp")
            log(f"chaos took {seconds:.2f}s with {retries} connector retries")

            found = await read_back(erp, projects, "chaos")
            listed = await admin.get(f"{RECORD}/timebill", params={"limit": 1})
            total_timebills = int(listed.json()["totalResults"])

    requested = len({p.idempotency_key for p in chaos})
    records = sum(found.values())
    duplicates = sum(n - 1 for n in found.values() if n > 1)
    # Anything beyond the two runs' postings would be an extra (duplicate) record too.
    extra = max(0, total_timebills - requested - len(baseline))
    missing = requested - len(found)
    ok = records == requested and duplicates == 0 and extra == 0 and failed == 0
    return {
        "requested": requested,
        "records_in_erp": records,
        "duplicates": duplicates + extra,
        "missing": missing,
        "failed_results": failed,
        "retries": retries,
        "activity_retries": call_retries,
        "seconds": round(seconds, 3),
        "baseline_seconds": round(baseline_seconds, 3),
        "chaos_over_baseline": round(seconds / baseline_seconds, 2) if baseline_seconds else None,
        "timebills_in_erp": total_timebills,
        "lost_responses": dropped,
        "idempotency_replays": stats["by_status"].get("400", 0),
        "erp_stats": stats,
        "system": {
            "requested": requested,
            "duplicates": duplicates + extra,
            "missing": missing,
            "failed": failed,
            "activity_retries": call_retries,
            "retries": retries,
            "lost_responses": dropped,
            "seconds": round(seconds, 3),
            "ok": ok,
        },
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    firm = build_firm(args.seed, workers=40, today=TODAY)
    report = await erp_phase(args, firm)
    systems: dict[str, Any] = {"erp": report.pop("system")}
    faults, lost = fault_config(args)
    others = [name for name in args.systems.split(",") if name and name != "erp"]
    for name in others:
        log(f"{name}: connector creates with {faults}, lost responses {lost}")
        if name == "psa":
            systems[name] = await psa_phase(args)
        elif name == "crm":
            systems[name] = await crm_phase(args, firm)
        elif name == "hcm":
            systems[name] = await hcm_phase(args, firm)
        else:
            raise SystemExit(f"unknown system {name}")
        log(
            f"{name}: {systems[name]['requested']} keys, "
            f"{systems[name]['duplicates']} duplicates, {systems[name]['missing']} missing, "
            f"{systems[name]['lost_responses']} lost responses, "
            f"{systems[name]['recovered']} found again after a lost answer"
        )
    return report | {
        "systems": systems,
        "machine": machine(usable=False, load=False),
        "config": {
            "error_rate": args.error_rate,
            "rate_limit_rate": args.rate_limit_rate,
            "lost_response_rate": args.lost_response_rate,
            "seed": args.seed,
            "batch_size": args.batch_size,
            "max_concurrency": args.max_concurrency,
            "batches": -(-args.postings // args.batch_size),
            "projects": args.projects,
            "deals": args.deals,
            "terminations": args.terminations,
            "systems": args.systems,
        },
        "ok": all(system["ok"] for system in systems.values()),
    }


# --------------------------------------------------------------------------- the other twins


def fault_config(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The faults (5xx, 429) and the lost responses every twin gets."""
    faults = {
        "error_rate": args.error_rate,
        "rate_limit_rate": args.rate_limit_rate,
        "seed": args.seed,
    }
    return faults, {"rate": args.lost_response_rate, "seed": args.seed}


async def chaos_on(admin: httpx.AsyncClient, system: str, args: argparse.Namespace) -> None:
    """The ERP's faults, on another twin: 5xx, 429 and lost responses at the same rates."""
    faults, lost = fault_config(args)
    (await admin.post("/_admin/faults", json=faults)).raise_for_status()
    (await admin.post(f"/_admin/{system}/lost-responses", json=lost)).raise_for_status()


async def chaos_off(admin: httpx.AsyncClient, system: str) -> tuple[dict[str, Any], int]:
    """Turn the faults off; the twin's stats and how many answers it lost."""
    stats: dict[str, Any] = (await admin.get("/_admin/stats")).json()
    (await admin.post("/_admin/faults", json={})).raise_for_status()
    lost = await admin.post(f"/_admin/{system}/lost-responses", json={})
    return stats, int(lost.json()["dropped"])


class Activity:
    """Retries a failed call whole, as Temporal retries an activity; counts what happened."""

    def __init__(self) -> None:
        self.retries = 0
        self.failed = 0

    async def run(self, call: Callable[[], Awaitable[T]]) -> T | None:
        for attempt in range(1, ACTIVITY_ATTEMPTS + 1):
            try:
                return await call()
            except PssyncError as exc:
                if not exc.retryable or attempt == ACTIVITY_ATTEMPTS:
                    log(f"  gave up: {exc}")
                    self.failed += 1
                    return None
                self.retries += 1
        return None  # pragma: no cover


@dataclass
class ChaosRun:
    """One connector's work under the faults: the connector, how long, the twin's stats and
    how many answers it lost, and the whole-call retries."""

    connector: Any
    activity: Activity
    seconds: float = 0.0
    stats: dict[str, Any] | None = None
    dropped: int = 0

    def summary(
        self, kinds: dict[str, dict[str, int]], *, failed: int = 0, **extra: Any
    ) -> dict[str, Any]:
        """`summary` of the kinds with what the run counted."""
        return summary(
            kinds,
            failed=self.activity.failed + failed,
            **extra,
            activity_retries=self.activity.retries,
            retries=self.connector.http.retries,
            recovered=self.connector.http.recovered,
            lost_responses=self.dropped,
            seconds=round(self.seconds, 3),
            stats=self.stats,
        )


async def under_chaos(
    app: Any,
    system: str,
    args: argparse.Namespace,
    connector: type[C],
    work: Callable[[C, Activity], Awaitable[Any]],
    **settings: Any,
) -> ChaosRun:
    """`app` served, its faults on, `work` done with a `connector` to it (each call retried
    whole by an `Activity`), the faults off; the connector is closed."""
    async with (
        serve_app(app) as base_url,
        httpx.AsyncClient(base_url=base_url, headers=AUTH) as admin,
    ):
        conn = connector(
            connector_settings(base_url, args, **settings), backoff_base_s=0.02, backoff_cap_s=1.0
        )
        done = ChaosRun(conn, Activity())
        try:
            await chaos_on(admin, system, args)
            started = time.perf_counter()
            await work(done.connector, done.activity)
            done.seconds = time.perf_counter() - started
            done.stats, done.dropped = await chaos_off(admin, system)
        finally:
            await done.connector.aclose()
    return done


def bench_eid(tag: str, n: int) -> str:
    """A valid enterprise ID (ULID) per bench record."""
    return f"01JBENCH{tag}".ljust(23, "0") + f"{n:03d}"


def connector_settings(base_url: str, args: argparse.Namespace, **extra: Any) -> SystemSettings:
    return SystemSettings(
        base_url=base_url,
        max_concurrency=args.max_concurrency,
        timeout_s=10,
        retry_budget_s=30,
        **extra,
    )


def psa_project(n: int) -> Project:
    usd = "USD"
    return Project(
        source_system=System.CRM,
        name=f"Chaos bench project {n}",
        customer_id=f"ACC-{n}",
        billing_rule=BillingRule.MILESTONE,
        contract_value=Money("90000", usd),
        start_date=TODAY,
        end_date=TODAY + timedelta(days=120),
        cost_center="CC-100",
        wbs=[
            WbsNode(code="1", name="Discovery", node_type=WbsNodeType.PHASE, budget=Money(0, usd)),
            WbsNode(
                code="1.1",
                name="Workshops",
                parent_code="1",
                role="Consultant",
                estimated_minutes=4800,
                budget=Money("12000", usd),
            ),
            WbsNode(
                code="1.2",
                name="Report",
                parent_code="1",
                role="Analyst",
                estimated_minutes=2400,
                budget=Money("5000", usd),
            ),
        ],
        milestones=[
            Milestone(code="M1", name="Kickoff", amount=Money("20000", usd)),
            Milestone(code="M2", name="Go-live", amount=Money("70000", usd)),
        ],
    )


async def psa_phase(args: argparse.Namespace) -> dict[str, Any]:
    """Project shells and their staffing demand through `KantataPsa`, as the provisioning
    activities make them."""
    app = psa_twin.create_app()

    async def work(psa: KantataPsa, activity: Activity) -> None:
        async def one(n: int) -> None:
            eid, project = bench_eid("PSA", n), psa_project(n)
            ws = await activity.run(lambda: psa.create_project_shell(project, enterprise_id=eid))
            if ws is not None:
                demands = staffing_demand(project, eid)
                await activity.run(lambda: psa.create_resource_requests(ws, demands))

        await asyncio.gather(*(one(n) for n in range(args.projects)))

    done = await under_chaos(app, "psa", args, KantataPsa, work)
    state: TwinState = app.state.twin
    with state.session() as s:
        workspaces = s.exec(select(psa_twin.PsaWorkspace)).all()
        stories = s.exec(select(psa_twin.PsaStory)).all()
        milestones = s.exec(select(psa_twin.PsaBillingMilestone)).all()
        requests = s.exec(select(psa_twin.PsaResourceRequest)).all()
    eid_of = {w.id: marked(w.description, PROJECT_MARKER) for w in workspaces}
    projects = [(bench_eid("PSA", n), psa_project(n)) for n in range(args.projects)]
    kinds = {
        "workspaces": tally([e for e, _ in projects], list(eid_of.values())),
        "stories": tally(
            [(e, node.code) for e, p in projects for node in p.wbs],
            [(eid_of.get(x.workspace_id), marked(x.description, WBS_MARKER)) for x in stories],
        ),
        "billing_milestones": tally(
            [(e, m.code) for e, p in projects for m in p.milestones],
            [
                (eid_of.get(x.workspace_id), marked(x.description, MILESTONE_MARKER))
                for x in milestones
            ],
        ),
        "resource_requests": tally(
            [(e, d.external_id) for e, p in projects for d in staffing_demand(p, e)],
            [(eid_of.get(x.workspace_id), marked(x.notes, DEMAND_MARKER)) for x in requests],
        ),
    }
    return done.summary(kinds)


async def crm_phase(args: argparse.Namespace, firm: Firm) -> dict[str, Any]:
    """Keyed opportunities with line items through `SalesforceCrm`, then the enterprise ID
    written back to each."""
    app = crm_twin.create_app(None, tenant="bench")
    crm_twin.load_firm(app, firm)
    accounts = [c.id for c in firm.customers if not c.credit_hold]
    written: dict[str, str] = {}

    async def work(crm: SalesforceCrm, activity: Activity) -> None:
        async def one(n: int) -> None:
            new = NewOpportunity(
                name=f"Chaos bench deal {n}",
                account_id=accounts[n % len(accounts)],
                close_date=TODAY + timedelta(days=30),
                key=f"bench-deal-{n:04d}",
                lines=[
                    NewOpportunityLine(
                        product_code=f"SVC-{k}",
                        role="Consultant",
                        quantity=Decimal(10 * k),
                        unit_price=Decimal("150"),
                    )
                    for k in (1, 2, 3)
                ],
            )
            opp_id = await activity.run(lambda: crm.create_opportunity(new))
            if opp_id is not None:
                eid = bench_eid("CRM", n)
                await activity.run(lambda: crm.write_back_enterprise_id(opp_id, eid))
                written[opp_id] = eid

        await asyncio.gather(*(one(n) for n in range(args.deals)))

    done = await under_chaos(app, "crm", args, SalesforceCrm, work, tenant="bench")
    state: TwinState = app.state.twin
    with state.session() as s:
        opps = [o for o in s.exec(select(crm_twin.CrmOpportunity)).all() if o.Pssync_Key__c]
        lines = [
            li for li in s.exec(select(crm_twin.CrmOpportunityLineItem)).all() if li.Pssync_Key__c
        ]
    keys = [f"bench-deal-{n:04d}" for n in range(args.deals)]
    wrong_eid = sum(1 for o in opps if written.get(o.Id) not in (None, o.Enterprise_Project_Id__c))
    kinds = {
        "opportunities": tally(keys, [o.Pssync_Key__c for o in opps]),
        "line_items": tally(
            [f"{k}:{i}" for k in keys for i in (1, 2, 3)], [li.Pssync_Key__c for li in lines]
        ),
    }
    return done.summary(kinds, failed=wrong_eid, wrong_enterprise_id=wrong_eid)


async def hcm_phase(args: argparse.Namespace, firm: Firm) -> dict[str, Any]:
    """HR actions through `WorkdayHcm`: per worker a termination, its rescind, and a second
    termination — three events, each entered once."""
    clock = datetime(TODAY.year, TODAY.month, TODAY.day, 12, tzinfo=UTC)
    app = hcm_twin.create_app(None, tenant="bench", clock=lambda: clock)
    hcm_twin.load_firm(app, firm)
    workers = [
        w.id
        for w in firm.workers
        if w.status == STATUS_ACTIVE and w.termination_date is None and w.hire_date < TODAY
    ][: args.terminations]
    first, second = TODAY + timedelta(days=45), TODAY + timedelta(days=60)

    async def work(hcm: WorkdayHcm, activity: Activity) -> None:
        async def one(worker_id: str) -> None:
            if await activity.run(lambda: hcm.terminate(worker_id, first)) is None:
                return
            if await activity.run(lambda: hcm.rescind_termination(worker_id)) is None:
                return
            await activity.run(lambda: hcm.terminate(worker_id, second))

        await asyncio.gather(*(one(w) for w in workers))

    done = await under_chaos(app, "hcm", args, WorkdayHcm, work, tenant="bench")
    state: TwinState = app.state.twin
    with state.session() as s:
        wids = {w.wid: w.worker_id for w in s.exec(select(hcm_twin.HcmWorker)).all()}
        events = [
            (wids[e.worker_wid], e.type, e.effective_date.isoformat())
            for e in s.exec(select(hcm_twin.HcmEvent)).all()
            if wids[e.worker_wid] in set(workers) and e.type != "hire"
        ]
    expected = [
        event
        for w in workers
        for event in (
            (w, "terminate", first.isoformat()),
            (w, "rescind", first.isoformat()),
            (w, "terminate", second.isoformat()),
        )
    ]
    return done.summary({"events": tally(expected, events)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_options(
        parser,
        [
            ("--postings", int, 500),
            ("--batch-size", int, 20),
            ("--max-concurrency", int, 8),
            ("--error-rate", float, 0.2),
            ("--rate-limit-rate", float, 0.1),
            (
                "--lost-response-rate",
                float,
                0.05,
                "requests processed whose response is then lost (504), on every twin; 0: off",
            ),
            ("--seed", int, 42),
            ("--projects", int, 20, "PSA project shells"),
            ("--deals", int, 20, "CRM opportunities"),
            ("--terminations", int, 10, "HCM workers"),
        ],
    )
    parser.add_argument(
        "--systems",
        default="erp,psa,crm,hcm",
        help="which connectors to run (the ERP's postings always run)",
    )
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print_json(result, sort_keys=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
