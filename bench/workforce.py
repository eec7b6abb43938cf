"""Workforce benchmark: HCM lifecycle changes replayed from the HCM twin through the HCM poller
into one `WorkerLifecycle` run per worker, against a naive one-workflow-per-change baseline.

    python bench/workforce.py [--workers 2000] [--changes 10000] [--quick]
                              [--systems twins|fakes] [--duplicates-pct 5]
                              [--naive-workers 200] [--seed 7]

What it runs, all in this process, in a fresh temp home: the HCM twin (Workday REST, served on
a free port), the embedded Temporal dev server (in memory, no UI), the pssync worker built by
`worker.build_workers` over a `Deployment` whose HCM is the real `WorkdayHcm` against the twin
and whose PSA and ERP are (`bench/_workforce/systems.py`):
- `--systems twins` (the default): the real `KantataPsa` and `NetSuiteErp` adapters against the
  PSA and ERP twins, each served in this process on a free port (in memory, no faults), the
  ERP's departments made for the HCM cost centers in set-up;
- `--systems fakes`: the connectors' in-memory `FakePsa` / `FakeErp`.
Either way every resource write and labor cost row is logged (when, what, the row in force).

1. Set-up (not timed): `--workers` hires and `--changes` lifecycle changes in all, entered
   through the twin's business processes (hire, Change Job, Request Compensation Change, Leave
   of Absence, Return from Leave). Effective dates lie between the hire (120 days ago) and the
   worker's today in their own zone: many are back-dated (entered after a change effective
   later), some are corrections on the same day; none is in the future, so no timer waits.
2. Lifecycle (timed): one `HcmChangesPoller` run — the Schedule's workflow, started directly —
   reads the window and signal-with-starts every change into `worker/{tenant}/{worker}`. Then
   `--duplicates-pct` of the changes are delivered again, shuffled, with the same
   signal-with-start (as after a poller crash between the signal and its inbox row), and a
   second poll re-reads the whole window (its inbox drops every event). Timed from the first
   poll's start to the last PSA / ERP write; done once every run reports nothing pending and
   every change of its worker in its history (status queries).
3. Naive baseline (same run, timed): the changes of the first `--naive-workers` workers, in the
   order the poller delivered them, each as one `BenchNaiveWorkerChange` workflow applying it
   at once (read the resource, write the change's fields; add its cost rate), 20 in flight,
   over fresh systems of the same kind: new PSA and ERP twins (their ERP employees made in
   set-up, as HR's feed would: a NetSuite rate row sets no labor cost without one), or new
   fakes.

Vendor calls are, with the twins, the HTTP requests the PSA, ERP and HCM twins counted (their
request stats; `vendor_calls_by_route` says where they went); with the fakes, the fakes' port
calls and the HCM twin's requests. Both phases are checked from the end state — the twins'
tables (each worker's Kantata user by pssync's `hcm_worker` reference: role and the User custom
fields; the NetSuite labor cost rows and the employee's `laborCost`), or the fakes' state — and
the write logs: every worker's PSA role, location, practice, manager, FTE and available-from,
its ERP labor cost, and its leave calendar must be what the last change (by effective instant
in the worker's zone, then HCM sequence) set; and no write may put a field back to an older
change's value. `out_of_order_applications` counts both and must be 0 for the lifecycle.

Progress goes to stderr; the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.common import SearchAttributePair  # noqa: E402
from temporalio.service import RPCError, RPCStatusCode  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

import store  # noqa: E402
import worker  # noqa: E402
from activities.hcm_poll import lifecycle_change  # noqa: E402
from bench._harness import (  # noqa: E402
    STATIC_TOKEN,
    add_flags,
    add_options,
    cpu_delta,
    gather_limited,
    log_stamped,
    machine,
    print_json,
    process_cpu,
    run_cancellable,
    serve_app,
)
from bench._workforce.ledger import last_write, verify  # noqa: E402
from bench._workforce.naive import BenchNaiveWorkerChange  # noqa: E402
from bench._workforce.naive_apply import NaiveActivities  # noqa: E402
from bench._workforce.plan import (  # noqa: E402
    Expected,
    WorkerPlan,
    delivered_out_of_order,
    enter,
    expectations,
    now_utc,
    plan_workers,
)
from bench._workforce.systems import (  # noqa: E402
    SYSTEM_CHOICES,
    Systems,
    make_systems,
    top_routes,
)
from connectors.crm import FakeCrm  # noqa: E402
from connectors.hcm import WorkdayHcm  # noqa: E402
from contracts.ids import canonical_hcm_id  # noqa: E402
from contracts.settings import SystemSettings, load_settings  # noqa: E402
from contracts.v1.processes import STATUS_QUERY  # noqa: E402
from contracts.v1.worker_termination import HCM_CHANGES_POLLER, PollerInput, PollResult  # noqa: E402
from contracts.v1.workforce import (  # noqa: E402
    PROCESS_WORKER_LIFECYCLE,
    WORKER_CHANGE_SIGNAL,
    WORKER_LIFECYCLE,
    LifecycleInput,
    LifecycleStatus,
    WorkerChange,
    lifecycle_workflow_id,
)
from plumbing.temporal import BUSINESS_PROCESS, WORKER_ID, signal_with_start  # noqa: E402
from sandbox.hcm import create_app  # noqa: E402
from sandbox.temporal import embedded_temporal  # noqa: E402

TENANT = "bench"
NAIVE_SET_UP = {"twins": " (the sample's ERP employees made first, not timed)"}
QUICK = {"workers": 200, "changes": 1000, "naive_workers": 40}


async def hcm_requests(http: httpx.AsyncClient, base: str) -> int:
    r = await http.get(f"{base}/_admin/stats")
    r.raise_for_status()
    return int(r.json()["requests"])


async def read_changes(base: str, since: Any) -> list[WorkerChange]:
    """Every lifecycle change in the twin, as the poller maps them, in the poller's order."""
    settings = SystemSettings(
        base_url=base, tenant=TENANT, auth="bearer", token=SecretStr(STATIC_TOKEN)
    )
    async with WorkdayHcm(settings) as hcm:
        read = await hcm.changed_workers(since, now_utc())
    return [lifecycle_change(canonical_hcm_id(c.worker.external_id), c) for c in read]


async def deliver_again(client: Client, queue: str, changes: list[WorkerChange]) -> None:
    """The poller's own signal-with-start, for changes it already delivered."""

    async def one(change: WorkerChange) -> None:
        await signal_with_start(
            client,
            WORKER_LIFECYCLE,
            LifecycleInput(hcm_tenant=TENANT, worker_id=change.worker_id),
            id=lifecycle_workflow_id(TENANT, change.worker_id),
            signal=WORKER_CHANGE_SIGNAL,
            signal_arg=change,
            task_queue=queue,
            search_attributes=[
                SearchAttributePair(WORKER_ID, change.worker_id),
                SearchAttributePair(BUSINESS_PROCESS, PROCESS_WORKER_LIFECYCLE),
            ],
        )

    await gather_limited(changes, 16, one)


async def wait_all_done(
    client: Client, expected: dict[str, Expected], systems: Systems, timeout_s: float
) -> dict[str, LifecycleStatus]:
    """Until every worker's run has nothing pending and every change of its worker in its
    history. The PSA and ERP are checked first (the fakes, or the twins' tables), the runs are
    then asked."""
    deadline = time.monotonic() + timeout_s
    quiet_since, writes = time.monotonic(), -1
    # The twins' view reads every worker from their tables (on this loop, beside the twins):
    # only once the writes have paused.
    # A loaded process may pause every write for seconds: the twins wait longer before asking.
    settle, give_up = (0.0, 5.0) if systems.name == "fakes" else (1.5, 20.0)
    while time.monotonic() < deadline:
        count = systems.writes()
        if count != writes:
            quiet_since, writes = time.monotonic(), count
        quiet = time.monotonic() - quiet_since
        if quiet > give_up or (
            quiet >= settle and verify(*systems.view(), expected).out_of_order == 0
        ):
            break
        await asyncio.sleep(0.5)
    done: dict[str, LifecycleStatus] = {}
    while time.monotonic() < deadline:
        remaining = [w for w in expected if w not in done]

        async def ask(wid: str) -> tuple[str, LifecycleStatus | None]:
            handle = client.get_workflow_handle(lifecycle_workflow_id(TENANT, wid))
            try:
                status = await handle.query(STATUS_QUERY, result_type=LifecycleStatus)
            except RPCError as e:
                if e.status is not RPCStatusCode.FAILED_PRECONDITION:
                    raise
                return wid, None  # its last workflow task failed or timed out: retried, ask again
            return wid, status

        for wid, status in await gather_limited(remaining, 32, ask):
            if status and not status.pending and len(status.history) >= expected[wid].events:
                done[wid] = status
        if len(done) == len(expected):
            return done
        log_stamped(f"lifecycle: {len(expected) - len(done)} runs still applying")
        await asyncio.sleep(1.0)
    raise TimeoutError(f"{len(expected) - len(done)} lifecycle runs not done")


async def run_lifecycle(
    client: Client,
    home: Path,
    base: str,
    http: httpx.AsyncClient,
    changes: list[WorkerChange],
    expected: dict[str, Expected],
    args: argparse.Namespace,
    systems: Systems,
) -> dict[str, Any]:
    url = f"sqlite:///{home / 'store.db'}"
    store.upgrade(url)
    engine = store.make_engine(url)
    deployment = worker.Deployment(
        settings=load_settings(home=home, erp_quota_rps=10_000),
        store=store.Store(engine),
        crm=FakeCrm(),
        psa=systems.psa,
        erp=systems.erp,
        hcm=WorkdayHcm(
            SystemSettings(
                base_url=base, tenant=TENANT, auth="bearer", token=SecretStr(STATIC_TOKEN)
            )
        ),
    )
    queue = f"bench-workforce-{uuid.uuid4().hex[:6]}"
    poller = PollerInput(hcm_tenant=TENANT, initial_lookback_s=3600, activity_timeout_s=900)
    rng = random.Random(args.seed)
    again = rng.sample(changes, int(len(changes) * args.duplicates_pct / 100))
    try:
        async with PssyncWorkers(client, deployment, queue), progress(systems):
            hcm_before, cpu_before = await hcm_requests(http, base), process_cpu()
            calls_before, routes_before = systems.calls(), systems.routes()
            began = time.monotonic()
            first: PollResult = await client.execute_workflow(
                HCM_CHANGES_POLLER,
                poller,
                id=f"{queue}/poll-1",
                task_queue=queue,
                result_type=PollResult,
            )
            polled_s = time.monotonic() - began
            log_stamped(
                f"lifecycle: poll routed {len(first.signalled)} changes in {polled_s:.1f} s"
            )
            await deliver_again(client, queue, again)
            second: PollResult = await client.execute_workflow(
                HCM_CHANGES_POLLER,
                poller.model_copy(update={"overlap_s": 3600}),
                id=f"{queue}/poll-2",
                task_queue=queue,
                result_type=PollResult,
            )
            statuses = await wait_all_done(client, expected, systems, args.timeout_s)
            confirmed_s = time.monotonic() - began
            cpu = cpu_delta(cpu_before, process_cpu(), confirmed_s)
            hcm_calls = await hcm_requests(http, base) - hcm_before
            calls = calls_since(systems, calls_before)
            routes = top_routes(routes_before, systems.routes())
    finally:
        await deployment.aclose()
    psa, erp = systems.view()
    applied_s = (last_write(psa, erp) or began) - began
    verdict = verify(psa, erp, expected)
    vendor = calls["psa"] + calls["erp"] + hcm_calls
    return {
        "changes": len(changes),
        "workers": len(expected),
        "changes_per_s": round(len(changes) / applied_s, 1) if applied_s else None,
        "applied_s": round(applied_s, 2),
        "poll_s": round(polled_s, 2),
        "confirmed_s": round(confirmed_s, 2),
        "vendor_calls": {**calls, "hcm": hcm_calls, "total": vendor},
        "vendor_calls_per_change": round(vendor / len(changes), 3),
        **({"vendor_calls_by_route": routes} if routes else {}),
        "writes": {"psa_resources": len(psa.writes), "erp_labor_cost_rows": len(erp.writes)},
        "poll": {
            "first": {
                "changes": first.changes,
                "signalled": len(first.signalled),
                "ignored": len(first.ignored),
            },
            "second": {
                "changes": second.changes,
                "seen_before": second.duplicates,
                "signalled": len(second.signalled),
            },
        },
        "redelivered": len(again),
        "duplicates_dropped_by_runs": sum(s.duplicates for s in statuses.values()),
        "stale_changes": sum(1 for s in statuses.values() for h in s.history if h.stale),
        **verdict.report(),
        "cpu": cpu,
    }


def calls_since(systems: Systems, before: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in systems.calls().items()}


@contextlib.asynccontextmanager
async def progress(systems: Systems, every_s: float = 30.0) -> AsyncIterator[None]:
    """Every `every_s`, the PSA / ERP writes and vendor calls so far (stderr)."""

    async def report() -> None:
        while True:
            await asyncio.sleep(every_s)
            calls = systems.calls()
            log_stamped(
                f"lifecycle: {systems.writes()} PSA / ERP writes, "
                f"{calls['psa']} PSA and {calls['erp']} ERP calls so far"
            )

    task = asyncio.create_task(report())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class PssyncWorkers:
    """The pssync workers of `deployment` on `queue`, started and stopped together."""

    def __init__(self, client: Client, deployment: worker.Deployment, queue: str) -> None:
        self.workers = worker.build_workers(client, deployment, task_queue=queue)

    async def __aenter__(self) -> None:
        for w in self.workers:
            await w.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        for w in reversed(self.workers):
            await w.__aexit__(*exc)


async def run_naive(
    client: Client,
    changes: list[WorkerChange],
    expected: dict[str, Expected],
    concurrency: int,
    systems: Systems,
) -> dict[str, Any]:
    queue = f"bench-workforce-naive-{uuid.uuid4().hex[:6]}"
    await systems.employees(sorted(expected))
    acts = NaiveActivities(systems.psa, systems.erp)
    async with Worker(
        client, task_queue=queue, workflows=[BenchNaiveWorkerChange], activities=[acts.apply]
    ):
        calls_before, routes_before = systems.calls(), systems.routes()
        began = time.monotonic()

        async def one(change: WorkerChange) -> None:
            await client.execute_workflow(
                BenchNaiveWorkerChange.run,
                change,
                id=f"{queue}/{change.event_id}",
                task_queue=queue,
            )

        await gather_limited(changes, concurrency, one)
        elapsed = time.monotonic() - began
        calls = calls_since(systems, calls_before)
        routes = top_routes(routes_before, systems.routes())
    verdict = verify(*systems.view(), expected)
    vendor = calls["psa"] + calls["erp"]
    return {
        "changes": len(changes),
        "workers": len(expected),
        "changes_per_s": round(len(changes) / elapsed, 1),
        "elapsed_s": round(elapsed, 2),
        "in_flight": concurrency,
        "vendor_calls": {**calls, "hcm": 0, "total": vendor},
        "vendor_calls_per_change": round(vendor / len(changes), 3),
        **({"vendor_calls_by_route": routes} if routes else {}),
        **verdict.report(),
        "note": "started by the bench per change in the poller's delivery order (no HCM "
        f"reads), on fresh {systems.name}{NAIVE_SET_UP.get(systems.name, '')}",
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == PARSER_DEFAULTS[name]:
                setattr(args, name, value)
    started = now_utc()
    plans = plan_workers(args.workers, args.changes, now=started, seed=args.seed)
    wall = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pssync-bench-workforce-") as tmp:
        home = Path(tmp)
        app = create_app(None, tenant=TENANT)
        async with (
            serve_app(app) as base,
            httpx.AsyncClient(
                timeout=60, headers={"Authorization": f"Bearer {STATIC_TOKEN}"}
            ) as http,
        ):
            began = time.monotonic()
            await gather_limited(
                plans, args.enter_concurrency, lambda p: enter(http, base, TENANT, p)
            )
            entered_s = time.monotonic() - began
            since = started.replace(microsecond=0) - timedelta(minutes=5)
            changes = await read_changes(base, since)
            log_stamped(
                f"entered {len(changes)} changes for {len(plans)} workers in {entered_s:.1f} s"
            )
            expected = expectations(changes)
            async with embedded_temporal(load_settings(home=home), ui=False, persist=False) as env:
                async with make_systems(args.systems) as systems:
                    described = systems.describe()
                    await systems.departments(cost_centers(plans))
                    lifecycle = await run_lifecycle(
                        env.client, home, base, http, changes, expected, args, systems
                    )
                log_stamped(f"lifecycle: {_brief(lifecycle)}")
                sample = {p.worker_id for p in plans[: args.naive_workers]}
                naive_changes = [c for c in changes if c.worker_id in sample]
                async with make_systems(args.systems) as systems:
                    naive = await run_naive(
                        env.client,
                        naive_changes,
                        {w: e for w, e in expected.items() if w in sample},
                        args.naive_concurrency,
                        systems,
                    )
                log_stamped(f"naive: {_brief(naive)}")
    kinds: dict[str, int] = {}
    for c in changes:
        kinds[c.kind.value] = kinds.get(c.kind.value, 0) + 1
    return {
        "bench": "workforce",
        "ok": lifecycle["out_of_order_applications"] == 0,
        "systems": args.systems,
        "changes": len(changes),
        "workers": len(plans),
        "changes_per_s": lifecycle["changes_per_s"],
        "vendor_calls_per_change": lifecycle["vendor_calls_per_change"],
        "out_of_order_applications": lifecycle["out_of_order_applications"],
        "naive_changes_per_s": naive["changes_per_s"],
        "naive_vendor_calls_per_change": naive["vendor_calls_per_change"],
        "naive_out_of_order_applications": naive["out_of_order_applications"],
        "throughput_ratio_vs_naive": round(lifecycle["changes_per_s"] / naive["changes_per_s"], 2)
        if lifecycle["changes_per_s"] and naive["changes_per_s"]
        else None,
        "changes_by_kind": dict(sorted(kinds.items())),
        "delivered_out_of_order_by_effective_date": delivered_out_of_order(changes),
        "lifecycle": lifecycle,
        "naive": naive,
        "set_up": {"entered_s": round(entered_s, 2)},
        "wall_s": round(time.monotonic() - wall, 1),
        "machine": machine(),
        "config": {
            "quick": args.quick,
            "duplicates_pct": args.duplicates_pct,
            "naive_workers": args.naive_workers,
            "naive_concurrency": args.naive_concurrency,
            "seed": args.seed,
            "server": "temporal dev server, in memory",
            "hcm": "HCM twin (Workday REST) in this process, read by WorkdayHcm",
            "psa_erp": described,
            "worker": "in process (worker.build_workers)",
        },
    }


def cost_centers(plans: list[WorkerPlan]) -> set[str]:
    """The cost center codes the HCM changes name (the ERP has them as departments)."""
    return {
        str(op.body["costCenterId"]) for p in plans for op in p.ops if "costCenterId" in op.body
    }


def _brief(result: dict[str, Any]) -> str:
    keys = ("changes", "changes_per_s", "vendor_calls_per_change", "out_of_order_applications")
    return ", ".join(f"{k} {result[k]}" for k in keys)


PARSER_DEFAULTS = {"workers": 2000, "changes": 10_000, "naive_workers": 200}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_options(
        p,
        [
            ("--workers", int, PARSER_DEFAULTS["workers"]),
            (
                "--changes",
                int,
                PARSER_DEFAULTS["changes"],
                "lifecycle changes in all, hires included",
            ),
            ("--duplicates-pct", float, 5.0, "changes delivered a second time, shuffled"),
            ("--naive-workers", int, PARSER_DEFAULTS["naive_workers"]),
            ("--naive-concurrency", int, 20),
            ("--enter-concurrency", int, 32),
            ("--timeout-s", float, 900.0),
            ("--seed", int, 7),
        ],
    )
    p.add_argument(
        "--systems",
        choices=SYSTEM_CHOICES,
        default="twins",
        help="twins: the Kantata / NetSuite adapters against the PSA / ERP twins; fakes: the "
        "in-memory fakes",
    )
    add_flags(p, {"--quick": "200 workers, 1,000 changes, naive over 40 workers"})
    return p


if __name__ == "__main__":
    print_json(run_cancellable(main(parser().parse_args())))
