"""AssignmentSync benchmark: PSA staffing changes into ERP labor forecasts, coalesced by the
per-project entity workflow, against a naive sync that updates the ERP once per change.

    python bench/assignment_sync.py [--changes 5000] [--projects 100] [--per-project 100]
                                    [--debounce-s 0.5] [--naive-changes 1000]

What it runs, all in this process, in a fresh temp home: the embedded Temporal dev server
(in memory, no UI), the real `AssignmentSyncWorkflow` and its activities over the in-memory
PSA and ERP fakes (the ERP wrapped to count every call) and a SQLite store. Then:

1. one project: `--changes` assignment changes (20 assignments, increasing versions, sent as
   signals 250 at a time) to one entity workflow; timed from the first signal until the
   workflow has received them all, nothing is pending and the ERP holds the final forecast.
2. 100 projects: `--per-project` changes to each of `--projects` entity workflows, interleaved.
3. naive baseline: `--naive-changes` changes, each one applied on its own with the same
   forecast activity code called directly (no Temporal, no rate cache): one ERP forecast
   update per change — what a webhook-per-change integration does.

Progress goes to stderr; the last line of stdout is one JSON object: changes, erp_calls,
erp_calls_per_1000_changes, changes_per_s (totals of 1 and 2), `one_project`,
`hundred_projects` and `naive` with the same keys, `erp_call_ratio_vs_naive`, runs
(continue-as-new) per scenario, machine and config.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.client import Client, WorkflowHandle  # noqa: E402

import store  # noqa: E402
import worker  # noqa: E402
from activities.assignment_sync import AssignmentForecastActivities  # noqa: E402
from bench._harness import add_options, log, machine, print_json  # noqa: E402
from connectors.crm import FakeCrm  # noqa: E402
from connectors.erp import FakeErp  # noqa: E402
from connectors.hcm import FakeHcm  # noqa: E402
from connectors.psa import FakePsa  # noqa: E402
from contracts import Money, System  # noqa: E402
from contracts.ids import mint_ulid  # noqa: E402
from contracts.settings import load_settings  # noqa: E402
from contracts.v1 import Customer, Project  # noqa: E402
from contracts.v1.assignment_sync import (  # noqa: E402
    AssignmentChange,
    AssignmentFacts,
    AssignmentSyncInput,
    Staffing,
    SyncSettings,
)
from sandbox.temporal import embedded_temporal  # noqa: E402
from workflows.assignment_sync import AssignmentSyncWorkflow  # noqa: E402

ASSIGNMENTS_PER_PROJECT = 20
WORKERS = ("W-1", "W-2", None)
RATES = {"W-1": Money(90, "USD"), "W-2": Money(110, "USD")}
STANDARD = {"Consultant": Money(80, "USD")}


class CountingErp:
    """The fake ERP with every port call counted."""

    def __init__(self, inner: FakeErp) -> None:
        self._inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attr(*args, **kwargs)

        return call


async def new_erp(projects: list[str]) -> FakeErp:
    erp = FakeErp(cost_centers=["CC-110"], cost_rates=dict(RATES))
    customer = await erp.upsert_customer(
        Customer(external_id="001A", name="Acme", source_system=System.CRM), enterprise_id="c"
    )
    for eid in projects:
        await erp.upsert_project(
            Project(
                name=f"P {eid}",
                customer_id="001A",
                billing_rule="time_and_materials",
                contract_value=Money(1, "USD"),
                start_date=date(2026, 1, 1),
                cost_center="CC-110",
                source_system=System.PSSYNC,
            ),
            enterprise_id=eid,
            customer_erp_id=customer,
            budget=Money(1, "USD"),
        )
    return erp


def change(project: int, n: int) -> AssignmentChange:
    """The n-th change of a project: assignment n % 20 at version n // 20 + 1."""
    i, version = n % ASSIGNMENTS_PER_PROJECT, n // ASSIGNMENTS_PER_PROJECT + 1
    aid = f"P{project}-A{i:02d}"
    start = date(2026, 3 + (i % 4), 2)
    return AssignmentChange(
        assignment_id=aid,
        version=version,
        assignment=AssignmentFacts(
            assignment_id=aid,
            version=version,
            role="Consultant",
            worker_id=WORKERS[i % 3],
            start_date=start,
            end_date=date(start.year, start.month, 27),
            allocated_minutes=((version + i) % 60 + 1) * 60,
        ),
    )


@contextlib.asynccontextmanager
async def world(client: Client, home: Path, erp: CountingErp) -> AsyncIterator[str]:
    url = f"sqlite:///{home / f'store-{uuid.uuid4().hex[:6]}.db'}"
    store.upgrade(url)
    engine = store.make_engine(url)
    st = store.Store(engine)
    deployment = worker.Deployment(
        settings=load_settings(home=Path(tempfile.mkdtemp()), erp_quota_rps=10_000),
        store=st,
        crm=FakeCrm(),
        psa=FakePsa(),
        erp=erp,
        hcm=FakeHcm(),
    )
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    main_worker, erp_worker = worker.build_workers(client, deployment, task_queue=queue)
    async with main_worker, erp_worker:
        yield queue
    engine.dispose()


async def run_entities(
    client: Client, home: Path, projects: int, per_project: int, debounce_s: float
) -> dict[str, Any]:
    eids = [mint_ulid(1_760_000_000_000 + p, p) for p in range(projects)]
    erp = CountingErp(await new_erp(eids))
    settings = SyncSettings(
        debounce_s=debounce_s, standard_cost_rates=STANDARD, max_history_events=10_000
    )
    async with world(client, home, erp) as queue:
        handles: list[WorkflowHandle[Any, Any]] = []
        for p, eid in enumerate(eids):
            handles.append(
                await client.start_workflow(
                    AssignmentSyncWorkflow.run,
                    AssignmentSyncInput(
                        psa_tenant="bench",
                        psa_project_id=f"ws{p}",
                        erp_project=f"eid:{eid}",
                        settings=settings,
                    ),
                    id=f"assignment-sync/bench/{queue}/{p}",
                    task_queue=queue,
                )
            )
        sends = [(p, n) for n in range(per_project) for p in range(projects)]
        began = time.perf_counter()
        for at in range(0, len(sends), 250):
            await asyncio.gather(
                *(
                    handles[p].signal(AssignmentSyncWorkflow.assignment_changed, change(p, n))
                    for p, n in sends[at : at + 250]
                )
            )
        sent_s = time.perf_counter() - began
        runs = 0
        for h in handles:
            while True:
                s: Staffing = await h.query(AssignmentSyncWorkflow.staffing, result_type=Staffing)
                if s.changes_received >= per_project and not s.pending and s.forecast_version:
                    runs += s.runs
                    break
                await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - began
        for h in handles:
            await h.terminate()
    total = projects * per_project
    return {
        "changes": total,
        "erp_calls": erp.calls,
        "erp_calls_per_1000_changes": round(erp.calls * 1000 / total, 2),
        "changes_per_s": round(total / elapsed, 1),
        "elapsed_s": round(elapsed, 2),
        "signals_sent_s": round(sent_s, 2),
        "projects": projects,
        "runs": runs,
    }


async def run_naive(changes: int) -> dict[str, Any]:
    """One ERP forecast update per change: the forecast activity's code, called per change."""
    from activities.assignment_sync import SyncForecast

    eid = mint_ulid(1_760_000_000_000, 999)
    erp = CountingErp(await new_erp([eid]))
    acts = AssignmentForecastActivities(erp, cost_rate_ttl_s=0)  # type: ignore[arg-type]
    state: dict[str, AssignmentFacts] = {}
    settings = SyncSettings(standard_cost_rates=STANDARD)
    began = time.perf_counter()
    periods: list[str] = []
    for n in range(changes):
        c = change(0, n)
        assert c.assignment is not None
        state[c.assignment_id] = c.assignment
        result = await acts.sync_forecast(
            SyncForecast(
                erp_project=f"eid:{eid}",
                assignments=list(state.values()),
                periods=periods,
                settings=settings,
            ),
        )
        periods = sorted({f.period for f in result.forecast} | set(periods))
    elapsed = time.perf_counter() - began
    return {
        "changes": changes,
        "erp_calls": erp.calls,
        "erp_calls_per_1000_changes": round(erp.calls * 1000 / changes, 2),
        "changes_per_s": round(changes / elapsed, 1),
        "note": "in-process, no Temporal and no ERP latency: its changes_per_s is an upper bound",
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pssync-bench-") as tmp:
        home = Path(tmp)
        async with embedded_temporal(load_settings(home=home), ui=False, persist=False) as env:
            log("temporal dev server up")
            one = await run_entities(env.client, home, 1, args.changes, args.debounce_s)
            log(f"one project: {one}")
            many = await run_entities(
                env.client, home, args.projects, args.per_project, args.debounce_s
            )
            log(f"{args.projects} projects: {many}")
    naive = await run_naive(args.naive_changes)
    log(f"naive: {naive}")
    changes = one["changes"] + many["changes"]
    calls = one["erp_calls"] + many["erp_calls"]
    elapsed = one["elapsed_s"] + many["elapsed_s"]
    per_1000 = round(calls * 1000 / changes, 2)
    return {
        "changes": changes,
        "erp_calls": calls,
        "erp_calls_per_1000_changes": per_1000,
        "changes_per_s": round(changes / elapsed, 1),
        "one_project": one,
        "hundred_projects": many,
        "naive": naive,
        "erp_call_ratio_vs_naive": round(per_1000 / naive["erp_calls_per_1000_changes"], 4),
        "machine": machine(load=False),
        "config": {
            "debounce_s": args.debounce_s,
            "assignments_per_project": ASSIGNMENTS_PER_PROJECT,
            "server": "temporal dev server, in memory",
            "erp": "in-memory FakeErp (no network latency)",
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(
        parser,
        [
            ("--changes", int, 5000),
            ("--projects", int, 100),
            ("--per-project", int, 100),
            ("--debounce-s", float, 0.5),
            ("--naive-changes", int, 1000),
        ],
    )
    print_json(asyncio.run(main(parser.parse_args())))
