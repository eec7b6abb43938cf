"""Scale-out benchmark: several `pssync worker` processes and `pssync gateway` processes on one
PostgreSQL store and one Temporal dev server; won deals, approved time entries and a change
order flow through them with 0 duplicates and 0 losses. Runs each worker count in turn.

    PSSYNC_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
    python bench/scale_out.py [--quick] [--workers 1,2] [--gateways 2] [--deals 40]
        [--entries 400] [--projects 4] [--chaos]

Per configuration, in a fresh temp home and a fresh PostgreSQL schema (dropped afterwards):
`running_stack` (embedded dev server, the seeded twins in this process) with its webhooks
pointed at a tiny round-robin balancer on loopback (`bench/_harness/balancer.py`) in front of
`--gateways` `pssync gateway` processes, and `--worker-processes` `pssync worker` processes (as
compose replicas would be: each its own process on the same task queues). The store's URL
reaches every process through PSSYNC_DATABASE_URL (schema via libpq `options=-csearch_path`).

1. `--projects` projects linked in PSA and ERP (as the saga leaves them) for the time entries;
2. the flow, timed: `--deals` deals won in the CRM twin and `--entries` time entries approved in
   the PSA twin (their signed webhooks reach the gateways through the balancer), in two halves;
   with `--chaos`, between the halves one worker process is SIGKILLed and one gateway stopped;
   until every deal's saga has completed and every entry has its ERP timebill;
3. a change order on one provisioned deal, approved through the balancer;
4. the count, on the twins' own tables: per deal one PSA workspace and one ERP job, per entry
   one timebill (and no externalId twice), the change order's delta once in the ERP budget.

The last line of stdout is one JSON object: `configurations`, a list with `worker_processes`,
`gateways`, `deals`, `entries`, `duplicates`, `lost`, `throughput` (deals + entries per second
of the flow) each, and `machine`. No sleeps tune anything: the waits poll for outcomes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bench._harness import (  # noqa: E402
    TempHome,
    Twins,
    add_flags,
    add_options,
    cpu_delta,
    gather_limited,
    link_projects,
    load_average,
    log,
    machine,
    print_json,
    process_cpu,
    serve_app,
    start_worker_process,
    stop_worker_process,
)
from bench._harness.balancer import RoundRobin  # noqa: E402
from bench._harness.linking import LinkedProject  # noqa: E402
from connectors.crm import SalesforceCrm  # noqa: E402
from connectors.erp import NetSuiteErp  # noqa: E402
from connectors.psa import KantataPsa  # noqa: E402
from contracts.naming import opportunity_workflow_id  # noqa: E402
from contracts.settings import load_settings  # noqa: E402
from contracts.v1.processes import ProvisionProjectResult  # noqa: E402
from demo import DealOutcome, deal_from_template, provisionable_templates  # noqa: E402
from demo.change_order import erp_budget, submit_change_order  # noqa: E402
from demo.waits import actor_token, wait_for_workflow  # noqa: E402
from sandbox.seed import build_firm  # noqa: E402
from stack import Stack, running_stack, stop_process  # noqa: E402
from stack.processes import start_gateway_process  # noqa: E402

PG_ENV = "PSSYNC_TEST_DATABASE_URL"
SCHEMA_PREFIX = "pssync_test_"  # swept by tests/store/conftest.py once an hour old
SEED = 7
FIRM = build_firm(SEED)
QUICK = {"deals": 6, "entries": 20, "projects": 2}
FULL = {"deals": 40, "entries": 400, "projects": 4}
CO_DELTA = 25_000
PROCESS_ENV = {
    # Webhooks drive everything: the sweeps and the HCM poller stay out of the way, so a lost
    # webhook would show as a loss instead of being repaired behind the count's back.
    "PSSYNC_TIME_SWEEP_INTERVAL_S": str(30 * 86_400),
    "PSSYNC_RATE_CARD_SWEEP_INTERVAL_S": str(30 * 86_400),
    "PSSYNC_HCM_POLL_INTERVAL_S": "86400",
    "PSSYNC_TIME_LINGER_MS": "100",
}


# --------------------------------------------------------------------------- the store


@contextlib.contextmanager
def pg_schema(admin_url: str) -> Any:
    """A fresh PostgreSQL schema for one run; yields the store URL selecting it."""
    from store import make_engine, normalize_url

    admin = make_engine(admin_url)
    schema = f"{SCHEMA_PREFIX}{int(time.time())}_{uuid.uuid4().hex[:8]}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = normalize_url(admin.url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


# --------------------------------------------------------------------------- the topology


@dataclass
class Topology:
    """The stack, its gateway and worker processes and the balancer in front of the gateways."""

    stack: Stack
    balancer: RoundRobin
    url: str
    """The balancer: where the twins' webhooks and the approvals go."""
    home: Path
    gateways: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[asyncio.subprocess.Process] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        self.events.append(message)
        log(f"  {message}")

    async def kill_worker(self, index: int) -> None:
        proc = self.workers[index]
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        self.note(f"worker process {index} (pid {proc.pid}) SIGKILLed")

    async def stop_gateway(self, index: int) -> None:
        proc = self.gateways[index]
        await asyncio.to_thread(stop_process, proc)
        self.note(f"gateway {index} (pid {proc.pid}) stopped ({proc.returncode})")

    def alive(self) -> dict[str, int]:
        return {
            "workers": sum(1 for p in self.workers if p.returncode is None),
            "gateways": sum(1 for p in self.gateways if p.poll() is None),
        }


@contextlib.asynccontextmanager
async def topology(
    home: Path, database_url: str, *, workers: int, gateways: int
) -> AsyncIterator[Topology]:
    """Dev server + twins (`running_stack`, its webhooks to the balancer), `gateways` gateway
    processes behind the balancer and `workers` worker processes, all on `database_url`;
    every child is stopped by its id on exit."""
    settings = load_settings(home=home, database_url=database_url)
    balancer = RoundRobin()
    async with (
        serve_app(balancer) as url,
        running_stack(settings, ephemeral_ports=True, run_worker=False, webhook_base=url) as stack,
    ):
        topo = Topology(stack=stack, balancer=balancer, url=url, home=home)
        try:
            for i in range(gateways):
                proc, gateway_url = await start_gateway_process(
                    stack.settings, home / f"gateway-{i}.log", PROCESS_ENV
                )
                topo.gateways.append(proc)
                balancer.targets.append(gateway_url)
            for i in range(workers):
                with (home / f"worker-{i}.log").open("ab") as out:
                    topo.workers.append(
                        await start_worker_process(
                            stack.settings,
                            stdout=out,
                            stderr=asyncio.subprocess.STDOUT,
                            extra_env={"PSSYNC_DATABASE_URL": database_url, **PROCESS_ENV},
                        )
                    )
            yield topo
        finally:
            for w in topo.workers:
                await stop_worker_process(w, 40)
            for g in topo.gateways:
                await asyncio.to_thread(stop_process, g)
            await balancer.aclose()


# --------------------------------------------------------------------------- the flow


@dataclass
class Flow:
    """What was sent, and when the flow was done."""

    deals: list[DealOutcome] = field(default_factory=list)
    entries: list[int] = field(default_factory=list)
    used: set[tuple[int, int, date, int]] = field(default_factory=set)
    rng: random.Random = field(default_factory=lambda: random.Random(11))


async def win_deals(topo: Topology, crm: SalesforceCrm, flow: Flow, count: int, tag: str) -> None:
    """`count` deals won in the CRM twin: each one's signed webhook goes through the balancer."""
    templates = provisionable_templates(FIRM)
    start = len(flow.deals)

    async def one(n: int) -> DealOutcome:
        index = templates[n % len(templates)]
        new = deal_from_template(FIRM, index, name=f"Scale-out {tag} deal {n}")
        opp_id = await crm.create_opportunity(new)
        await crm.set_stage(opp_id, "Closed Won")
        wf = opportunity_workflow_id(topo.stack.settings.crm.tenant, opp_id)
        return DealOutcome(opportunity_id=opp_id, name=new.name, workflow_id=wf)

    flow.deals += await gather_limited(range(start, start + count), 8, one)


def plan_entries(flow: Flow, projects: list[LinkedProject], count: int) -> list[dict[str, Any]]:
    """`count` new entries spread over the projects, this month and last (both open), on
    distinct worker/day/duration combinations (the pipeline holds a same-combo as Duplicate)."""
    today = date.today()
    this_month = today.replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    days = [last_month + timedelta(days=i) for i in range((today - last_month).days + 1)]
    out = []
    for n in range(count):
        p = projects[n % len(projects)]
        while True:
            combo = (p.psa_id, flow.rng.choice(p.users), flow.rng.choice(days))
            combo4 = (*combo, 15 * flow.rng.randint(1, 40))
            if combo4 not in flow.used:
                flow.used.add(combo4)
                break
        out.append(
            {
                "workspace_id": p.psa_id,
                "user_id": combo4[1],
                "date_performed": combo4[2].isoformat(),
                "time_in_minutes": combo4[3],
            }
        )
    return out


async def approve_entries(twins: Twins, flow: Flow, entries: list[dict[str, Any]]) -> None:
    """Enter the time unapproved, then approve each entry through the PSA API: each approval's
    signed webhook goes through the balancer."""
    ids = [int(i) for i in await twins.bulk(entries, approved=False)]
    await gather_limited(ids, 16, lambda i: twins.approve(str(i)))
    flow.entries += ids


async def provisioned(topo: Topology, flow: Flow, timeout_s: float) -> list[str]:
    """Wait for every deal's saga; fills in each deal's ids; returns the failures."""
    client = topo.stack.client

    async def one(deal: DealOutcome) -> str | None:
        try:
            handle = await wait_for_workflow(
                client, deal.workflow_id, timeout_s, result_type=ProvisionProjectResult
            )
            result = await asyncio.wait_for(handle.result(), timeout_s)
        except Exception as exc:  # counted as lost, reported
            return f"{deal.name}: {exc!r}"
        deal.enterprise_id = result.enterprise_id
        deal.psa_project_id, deal.erp_project_id = result.psa_project_id, result.erp_project_id
        deal.status = "provisioned"
        return None

    return [e for e in await gather_limited(flow.deals, 20, one) if e]


def erp_rows(topo: Topology, sql: str) -> list[Any]:
    with topo.stack.sandbox.state("erp").engine.connect() as conn:
        return list(conn.execute(text(sql)).all())


def psa_rows(topo: Topology, sql: str) -> list[Any]:
    with topo.stack.sandbox.state("psa").engine.connect() as conn:
        return list(conn.execute(text(sql)).all())


def timebills(topo: Topology, projects: list[LinkedProject]) -> list[Any]:
    jobs = ",".join(str(p.job_id) for p in projects)
    return erp_rows(
        topo,
        "SELECT id, external_id, source_entry, reverses_id FROM erp_timebill "
        f"WHERE job_id IN ({jobs})",
    )


async def all_posted(
    topo: Topology, projects: list[LinkedProject], flow: Flow, timeout_s: float
) -> bool:
    """Poll the ERP twin until every approved entry has a timebill (or `timeout_s`)."""
    wanted = {str(i) for i in flow.entries}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        bills = await asyncio.to_thread(timebills, topo, projects)
        if wanted <= {str(b.source_entry) for b in bills if b.reverses_id is None}:
            return True
        await asyncio.sleep(0.5)
    return False


async def pipelines(topo: Topology, projects: list[LinkedProject]) -> dict[str, Any]:
    """Each project's time-to-invoice status and the open time items, through the balancer
    (what to read when entries did not post)."""
    import httpx

    ops = {"Authorization": f"Bearer {actor_token(topo.stack, 'ops')}"}
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=topo.url, timeout=30, headers=ops) as http:
        for p in projects:
            r = await http.get(f"/api/projects/{p.psa_id}/time-to-invoice")
            out[str(p.psa_id)] = r.json() if r.is_success else r.status_code
        r = await http.get("/api/exceptions", params={"process": "time_to_invoice"})
        out["items"] = [
            (i.get("kind"), i.get("summary")) for i in (r.json()["items"] if r.is_success else [])
        ][:10]
    return out


# --------------------------------------------------------------------------- one configuration


async def change_order(topo: Topology, deal: DealOutcome) -> dict[str, Any]:
    """Submit a change order in the PSA twin for `deal` (its webhook through the balancer),
    approve it as each role it asks for through the balancer; the ERP budget before and after."""
    import httpx

    before = await erp_budget(topo.stack, deal)
    co_id, handle, status = await submit_change_order(topo.stack, deal, CO_DELTA)
    codes = []
    async with httpx.AsyncClient(timeout=60) as http:
        for role in status["required_roles"]:
            answer = await http.post(
                f"{topo.url}/api/change-orders/{co_id}/decision",
                headers={"Authorization": f"Bearer {actor_token(topo.stack, role)}"},
                json={"approve": True, "note": f"approved as {role}"},
            )
            codes.append(answer.status_code)
    result = await asyncio.wait_for(handle.result(), 180)
    after = await erp_budget(topo.stack, deal)
    applied = float((after.amount.amount - before.amount.amount) / CO_DELTA)
    return {"id": co_id, "outcome": str(result.outcome), "codes": codes, "applied": applied}


def count(
    topo: Topology, projects: list[LinkedProject], flow: Flow, co: dict[str, Any]
) -> dict[str, Any]:
    """Duplicates and losses, on the twins' own tables."""
    opps = ",".join(f"'{d.opportunity_id}'" for d in flow.deals)
    names = ",".join(f"'{d.name}'" for d in flow.deals)
    workspaces = Counter(
        r.opportunity_ref
        for r in psa_rows(
            topo, f"SELECT opportunity_ref FROM psa_workspace WHERE opportunity_ref IN ({opps})"
        )
    )
    jobs = Counter(
        r.company_name
        for r in erp_rows(topo, f"SELECT company_name FROM erp_job WHERE company_name IN ({names})")
    )
    bills = timebills(topo, projects)
    live = Counter(str(b.source_entry) for b in bills if b.reverses_id is None)
    external = Counter(b.external_id for b in bills)
    wanted = [str(i) for i in flow.entries]
    dup = {
        "workspaces": sum(n - 1 for n in workspaces.values()),
        "erp_jobs": sum(n - 1 for n in jobs.values()),
        "timebills": sum(n - 1 for n in live.values() if n > 1),
        "external_ids": sum(n - 1 for n in external.values() if n > 1),
        "reversals": sum(1 for b in bills if b.reverses_id is not None),
        "timebills_of_other_entries": sum(n for e, n in live.items() if e not in set(wanted)),
        "change_order": max(0, int(co["applied"]) - 1),
    }
    lost = {
        "deals": sum(1 for d in flow.deals if d.status != "provisioned"),
        "workspaces": sum(1 for d in flow.deals if not workspaces[d.opportunity_id]),
        "erp_jobs": sum(1 for d in flow.deals if not jobs[d.name]),
        "entries": sum(1 for e in wanted if not live[e]),
        "change_order": 0 if co["applied"] >= 1 else 1,
    }
    return {"duplicates_by_kind": dup, "lost_by_kind": lost}


async def run_configuration(
    admin_url: str,
    home: Path,
    *,
    workers: int,
    gateways: int,
    deals: int,
    entries: int,
    projects: int,
    chaos: bool,
    timeout_s: float = 300,
) -> dict[str, Any]:
    """One configuration, end to end; its report."""
    with pg_schema(admin_url) as database_url:
        async with topology(home, database_url, workers=workers, gateways=gateways) as topo:
            return await drive(topo, deals, entries, projects, chaos, timeout_s)


async def drive(
    topo: Topology, deals: int, entries: int, projects: int, chaos: bool, timeout_s: float
) -> dict[str, Any]:
    stack = topo.stack
    psa, erp = KantataPsa(stack.settings.psa), NetSuiteErp(stack.settings.erp)
    crm = SalesforceCrm(stack.settings.crm.model_copy(update={"max_concurrency": 16}))
    twins = Twins(stack)
    flow = Flow()
    try:
        linked = await link_projects(
            psa, erp, FIRM.workers, projects, name="Scale-out", tag="SO", ulid_prefix="01JSC"
        )
        planned = plan_entries(flow, linked, entries)
        half_d, half_e = deals // 2, entries // 2
        log(f"flow: {deals} deals, {entries} entries, {topo.alive()} (chaos: {chaos})")
        started, cpu_before = time.perf_counter(), process_cpu()
        await asyncio.gather(
            win_deals(topo, crm, flow, half_d, "a"), approve_entries(twins, flow, planned[:half_e])
        )
        if chaos:
            await topo.kill_worker(0)
            await topo.stop_gateway(len(topo.gateways) - 1)
        await asyncio.gather(
            win_deals(topo, crm, flow, deals - half_d, "b"),
            approve_entries(twins, flow, planned[half_e:]),
        )
        failures = await provisioned(topo, flow, timeout_s)
        posted = await all_posted(topo, linked, flow, timeout_s)
        wall = time.perf_counter() - started
        cpu = cpu_delta(cpu_before, process_cpu(), wall)
        log(f"flow done in {wall:.1f} s (every entry posted: {posted}); a change order")
        done = [d for d in flow.deals if d.status == "provisioned"]
        stuck = {} if posted else await pipelines(topo, linked)
        co = await change_order(topo, done[0]) if done else {"applied": 0, "outcome": "none"}
        counted = count(topo, linked, flow, co)
    finally:
        for closable in (psa, erp, crm, twins):
            await closable.aclose()
    return {
        "worker_processes": len(topo.workers),
        "gateways": len(topo.gateways),
        "deals": len(flow.deals),
        "entries": len(flow.entries),
        "change_orders": 1,
        "duplicates": sum(counted["duplicates_by_kind"].values()),
        "lost": sum(counted["lost_by_kind"].values()),
        "throughput": round((len(flow.deals) + len(flow.entries)) / wall, 2),
        "throughput_unit": "deals provisioned + entries posted per second of the flow",
        "flow_s": round(wall, 2),
        **capacity(cpu, len(flow.deals) + len(flow.entries), len(topo.workers)),
        **counted,
        "change_order": co,
        "chaos": chaos,
        "chaos_events": topo.events,
        "alive_at_end": topo.alive(),
        "balancer": {
            "forwarded": dict(topo.balancer.forwarded),
            "refused": dict(topo.balancer.refused),
        },
        "deal_failures": failures[:5],
        "unposted_pipelines": stuck,
    }


def capacity(cpu: dict[str, Any], items: int, workers: int) -> dict[str, Any]:
    """CPU seconds by process kind during the flow (`python…` children are the gateways), and
    what the worker processes spent per item: the machine-independent part of their capacity."""
    worker_s = cpu.get("worker_process", {}).get("cpu_s") or 0.0
    return {
        "cpu_during_flow": cpu,
        "worker_cpu_s_per_item": round(worker_s / items, 4) if items else None,
        "items_per_worker_core_s": round(items / worker_s, 1) if worker_s else None,
        "worker_cores_used": round(
            sum(v["cores"] or 0 for k, v in cpu.items() if k == "worker_process") / workers, 2
        ),
    }


# --------------------------------------------------------------------------- the bench


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    size = QUICK if args.quick else FULL
    sizes = {k: getattr(args, k) or v for k, v in size.items()}
    configurations = []
    at_start = {**machine(), "nproc": os.cpu_count(), "cpu_model": cpu_model()}
    for n in [int(w) for w in args.workers.split(",")]:
        tmp = TempHome(f"pssync-scale-{n}-")
        log(f"configuration: {n} worker process(es), {args.gateways} gateway(s); home {tmp.home}")
        try:
            configurations.append(
                await run_configuration(
                    args.database_url,
                    tmp.home,
                    workers=n,
                    gateways=args.gateways,
                    chaos=args.chaos and n > 1,
                    **sizes,
                )
            )
        finally:
            if not args.keep_home:
                tmp.remove()
        log(f"  -> {configurations[-1]['throughput']}/s, dup {configurations[-1]['duplicates']}")
    return {
        "bench": "scale_out",
        "configurations": configurations,
        "ok": all(c["duplicates"] == 0 and c["lost"] == 0 for c in configurations),
        "machine": {**at_start, "load_average_at_end": load_average()},
        "config": {**sizes, "gateways": args.gateways, "chaos": args.chaos, "seed": SEED},
        "topology": "Temporal dev server (SQLite) and the twins in the bench's process; "
        "the store on PostgreSQL (a schema per configuration); gateways and workers each "
        "their own process; a round-robin balancer on loopback in front of the gateways",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(
        parser,
        [
            ("--workers", str, "1,2", "worker process counts to run, in turn"),
            ("--gateways", int, 2),
            ("--deals", int, None, f"default {FULL['deals']} ({QUICK['deals']} with --quick)"),
            ("--entries", int, None, f"default {FULL['entries']} ({QUICK['entries']} quick)"),
            ("--projects", int, None, "projects the entries go to"),
            ("--database-url", str, os.environ.get(PG_ENV), f"PostgreSQL (default ${PG_ENV})"),
        ],
    )
    add_flags(
        parser,
        {
            "--quick": "the e2e test's size",
            "--chaos": "SIGKILL one worker process and stop one gateway between the halves "
            "(only where there are 2 or more worker processes)",
            "--keep-home": "keep the temp homes (logs of every process)",
        },
    )
    args = parser.parse_args()
    if not args.database_url or not args.database_url.startswith("postgresql"):
        parser.error(f"a PostgreSQL URL is needed: set {PG_ENV} or --database-url")
    result = asyncio.run(run(args))
    print_json(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
