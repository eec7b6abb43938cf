"""TimeToInvoice benchmark: approved PSA time through the whole local stack into the ERP twin —
throughput against a naive workflow-per-entry baseline in the same run, approval-to-posting
latency at a steady approval rate, and how much of an ERP quota the pipeline uses.

    python bench/time_to_invoice.py [--entries 10000] [--projects 8] [--workers 50]
        [--naive 400] [--naive-concurrency 20] [--latency-rps 100] [--latency-s 25]
        [--latency-mode bulk|api] [--quota-rps 20] [--quota-batch-size 5]
        [--quota-window-s 25] [--phases throughput,naive,latency,quota]
        [--worker-in-process] [--gateway-in-process] [--temporal-db-dir DIR] [--keep-home]

What it runs on 127.0.0.1 (OS-assigned ports), in a fresh temp home: `running_stack`
(embedded Temporal dev server with its SQLite file, the seeded twins in their own process with
zero latency) and, each in its own process as `pssync up` and the compose file run them,
started and stopped by pid: the gateway (`pssync gateway` on a loopback port, the stack's home,
store and Temporal; the PSA's webhooks point at it) and the pssync worker (`pssync worker`,
restarted with other settings for the quota phase). The old shapes: `--worker-in-process` runs
the worker in the bench's process (`worker.run_workers`), `--gateway-in-process` lets the
stack's own gateway (in the bench's process) take the webhooks. Then:

0. set-up, not timed: `--projects` + `--quota-projects` won deals provisioned by the real
   OpportunityToProject saga (PSA project linked to an ERP project, a USD rate card covering
   every role); `--workers` active workers (HCM active since before the entries' dates, ERP
   cost rates); entries created in the PSA twin with its bulk admin endpoint
   (`POST /psa/_admin/time_entries/bulk`, no webhooks): one worker, day and duration once per
   project (the duplicate check never fires), dated from the first of last month (an open ERP
   period) to yesterday. A warm-up of `--warmup` entries per project starts each project's
   pipeline and fills the master-data caches.
1. throughput: the clock starts, `--entries` approved entries are handed to their projects'
   pipelines the way the sweep does (`activities.time_to_invoice.signal_pipeline`, 1,000
   entries a signal) and the clock stops when the ledger (`store.time_posting_counts`) holds
   them all posted. The ERP twin is then read back (SuiteQL): every entry must be one timebill.
2. naive baseline, same run: `--naive` other entries, one `BenchNaiveTimeEntry` workflow each
   (on its own task queue, its workflow worker in the bench's process) running
   `time.process_batch` with that one entry on the pssync ERP queue (the pssync worker),
   `--naive-concurrency` in flight: entries/s from the first start to the last result.
   ratio = pipeline / naive.
3. latency: approvals at a steady `--latency-rps` for `--latency-s`, each announced by the PSA
   twin's signed `time_entry.approved` webhook to the gateway, which signals the project's
   pipeline. `--latency-mode bulk` (default): every 1/10 s one bulk request creates 10 entries
   approved, with `emit` (one webhook each); `api`: entries created unapproved beforehand, then
   one `PUT /api/v1/time_entries/{id}.json {"approved": true}` each (the twin cannot serve that
   and its webhooks at 100/s on 2 cores beside the rest). Latency per entry = the ledger row's
   `updated_at` when it turned `posted` (written right after the ERP answered) minus the wall
   clock just before the approving request; `latency_legs` splits it with the pipelines'
   histories: approval -> signal recorded, -> batch scheduled, -> batch started, -> posted.
4. quota: the worker restarts with `erp.rate_limit_rps` = `erp_quota_rps` = `--quota-rps`, the
   ERP twin answers 429 above `quota_rps` (its token bucket), and `--quota-projects` fresh
   pipelines get batches of `--quota-batch-size` entries, so ERP requests are the bottleneck.
   achieved_rps = ERP requests the twin served (2xx/3xx) in a `--quota-window-s` window that
   starts `--quota-warm-s` after the hand-off, while a backlog remains; then every entry must be
   posted with no exception item, and the twin's 429 count is reported.

The sweep Schedule is pushed out (`time_sweep_interval_s` = 1 day) so it cannot hand the
bench's entries to pipelines behind its back. Progress goes to stderr; the last line of stdout
is one JSON object (entries, pipeline_entries_per_s, naive_entries_per_s, ratio,
latency_p50_s, latency_p95_s, quota_rps, achieved_rps, quota_utilization,
pipeline_ceiling_entries_per_s, latency_cores_needed, targets, meets, per-phase details with
CPU per process and per entry or approval, breakdowns, machine, config).
`pipeline_ceiling_entries_per_s` is what the whole stack's CPU per entry in the throughput
phase allows on this machine's CPUs at best, `latency_cores_needed` the cores the latency
phase's rate needs at its CPU per approval: a target above the first, or a second above the
machine's CPUs, cannot be met here. A phase that fails is
reported under `errors` and the next one runs. No sleep tunes anything: the waits poll for an
outcome with a deadline, and the quota window is a measurement interval.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio import workflow

ROOT = Path(__file__).parent.parent
if not workflow.unsafe.in_sandbox():  # the sandbox re-imports this module to run the baseline
    ROOT = ROOT.resolve()
    sys.path.insert(0, str(ROOT))

with workflow.unsafe.imports_passed_through():
    from temporalio.worker import Worker

    from bench._harness import (
        STATIC_TOKEN,
        SYSTEMS,
        GatewayProcess,
        TempHome,
        Twins,
        WorkerRunner,
        add_flags,
        add_options,
        cpu_delta,
        log,
        machine,
        percentile,
        print_json,
        process_cpu,
        summary,
        until,
    )
    from bench._harness.histories import aggregate_runs, run_breakdown
    from bench._time_to_invoice import phases
    from bench._time_to_invoice.world import (
        SEED,
        SIGNAL_CHUNK,
        SWEEP_OUT_S,
        Bench,
        Entry,
        EntryFactory,
        Project,
    )
    from contracts.naming import TASK_QUEUE, erp_task_queue
    from contracts.settings import Settings, load_settings
    from contracts.v1.time_to_invoice import (
        BatchEntry,
        BatchResult,
        EntryRef,
        ProcessBatch,
        TimePipelineInput,
        pipeline_input,
    )
    from stack import running_stack
    from workflows.time_to_invoice import BATCH_TIMEOUT, HEARTBEAT_TIMEOUT, PIPELINE_RETRY

__all__ = [
    "SEED",
    "SIGNAL_CHUNK",
    "STATIC_TOKEN",
    "SWEEP_OUT_S",
    "SYSTEMS",
    "Bench",
    "BenchNaiveTimeEntry",
    "Entry",
    "EntryFactory",
    "Project",
    "Twins",
    "WorkerRunner",
    "main",
    "measure",
    "parse_args",
    "percentile",
    "run",
    "summary",
    "until",
]

NAIVE_QUEUE = "bench-tti-naive"
ERP_QUEUE = erp_task_queue(TASK_QUEUE)
PHASES = ("throughput", "naive", "latency", "quota")


# --------------------------------------------------------------------------- the baseline


@workflow.defn(name="BenchNaiveTimeEntry")
class BenchNaiveTimeEntry:
    """The naive design the pipeline replaces: one workflow and one activity per entry
    (`time.process_batch` with a batch of one, on the pssync ERP queue)."""

    @workflow.run
    async def run(self, request: ProcessBatch) -> BatchResult:
        result: BatchResult = await workflow.execute_activity(
            "time.process_batch",
            request,
            task_queue=ERP_QUEUE,
            start_to_close_timeout=BATCH_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=PIPELINE_RETRY,
            result_type=BatchResult,
        )
        return result


async def naive(bench: Bench, entries: list[Entry], warm: list[Entry]) -> dict[str, Any]:
    """The baseline phase: one `BenchNaiveTimeEntry` per entry, `--naive-concurrency` in
    flight, after a warm-up of `warm`."""
    run_tag = f"{int(time.time())}"
    client = bench.client

    def wf_id(e: Entry, label: str) -> str:
        return f"bench-naive/{run_tag}/{label}/{e.entry_id}"

    async def one(e: Entry, label: str) -> float:
        start = time.perf_counter()
        await client.execute_workflow(
            BenchNaiveTimeEntry.run,
            ProcessBatch(
                psa_tenant=bench.stack.settings.psa.tenant,
                psa_project_id=e.project,
                batch_id=f"naive-{e.entry_id}",
                entries=[BatchEntry(ref=EntryRef(entry_id=e.entry_id, version="2"))],
            ),
            id=wf_id(e, label),
            task_queue=NAIVE_QUEUE,
        )
        return time.perf_counter() - start

    async with Worker(client, task_queue=NAIVE_QUEUE, workflows=[BenchNaiveTimeEntry]):
        if warm:
            log(f"naive: warm-up, {len(warm)} entries")
            await asyncio.gather(*(one(e, "warm") for e in warm))
        before = await bench.counts()
        await bench.twins.reset_stats()
        cpu0 = process_cpu()
        limit = bench.args.naive_concurrency or len(entries)
        log(f"naive: {len(entries)} workflows (one entry each), {limit} in flight")
        sem = asyncio.Semaphore(limit)

        async def bounded(e: Entry) -> float:
            async with sem:
                return await one(e, "run")

        t0 = time.perf_counter()
        results = await asyncio.gather(*(bounded(e) for e in entries), return_exceptions=True)
        elapsed = time.perf_counter() - t0
        cpu1 = process_cpu()
    twins = await bench.twins.all_stats()
    after = await bench.counts()
    ok = [r for r in results if isinstance(r, float)]
    errors = [repr(r) for r in results if not isinstance(r, float)]
    log(f"  {len(ok)} done in {elapsed:.2f} s ({len(ok) / elapsed:.1f}/s)")
    step = max(1, len(entries) // bench.args.history_sample)
    sample = [wf_id(e, "run") for e in entries[::step]][: bench.args.history_sample]
    histories = await asyncio.gather(
        *(client.get_workflow_handle(w).fetch_history() for w in sample)
    )
    return {
        "entries": len(entries),
        "ok": len(ok),
        "failed": len(errors),
        "errors": errors[:5],
        "elapsed_s": round(elapsed, 3),
        "entries_per_s": round(len(ok) / elapsed, 2),
        "posted": after["posted"] - before["posted"],
        "workflow_client_latency": summary(ok),
        "breakdown": aggregate_runs([run_breakdown(h) for h in histories]),
        "twin_requests": twins,
        "cpu": cpu_delta(cpu0, cpu1, elapsed),
    }


# --------------------------------------------------------------------------- orchestration


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wall_start = time.perf_counter()
    mach = machine()
    tmp = TempHome("pssync-bench-tti-")
    home = tmp.home
    settings = load_settings(
        home=home, erp_quota_rps=args.erp_quota_rps, time_sweep_interval_s=SWEEP_OUT_S
    )
    temporal_db: Path | None = None
    if args.temporal_db_dir:
        temporal_db = Path(args.temporal_db_dir) / f"pssync-bench-tti-{os.getpid()}.db"
        settings.temporal.db_filename = str(temporal_db)
    gateway = None if args.gateway_in_process else GatewayProcess(home / "gateway.log")
    where = topology(args)
    log(f"home {home}; starting the stack: worker {where['worker']}, gateway {where['gateway']}")
    async with running_stack(
        settings,
        seed=SEED,
        ephemeral_ports=True,
        run_worker=False,
        twins_process=True,
        webhook_base=gateway.url if gateway is not None else None,
    ) as stack:
        runner = WorkerRunner(
            stack,
            in_process=args.worker_in_process,
            log_path=home / "worker.log",
            sweep_interval_s=SWEEP_OUT_S,
        )
        bench = Bench(stack, args, runner, gateway)
        try:
            if gateway is not None:
                await gateway.start(stack.settings)
            base = runner.phase_settings(erp_quota_rps=args.erp_quota_rps, erp_rate_limit_rps=None)
            await runner.start(base)
            result = await measure(bench, args, base)
        finally:
            await bench.twins.aclose()
            await runner.stop()
            if gateway is not None:
                await gateway.stop()
    result["wall_s"] = round(time.perf_counter() - wall_start, 2)
    result["machine"] = mach
    if args.keep_home:
        log(f"kept {home}")
    else:
        tmp.remove()
        if temporal_db is not None:
            for path in temporal_db.parent.glob(f"{temporal_db.name}*"):
                path.unlink(missing_ok=True)
    return result


@dataclass
class SetUp:
    """What the phases run on, made before any clock starts."""

    phases: set[str]
    main: list[Project]
    quota_projects: list[Project]
    factory: EntryFactory
    through: list[Entry]
    naive_warm: list[Entry]
    naive: list[Entry]
    quota: list[Entry]
    n_latency: int
    n_quota: int
    defaults: TimePipelineInput
    seconds: float


async def set_up(bench: Bench, args: argparse.Namespace, base: Settings) -> SetUp:
    """Projects (saga), workers, every phase's entries, and the warm-up through the pipelines."""
    phases = set(args.phases.split(","))
    unknown = phases - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}")
    t_setup = time.perf_counter()
    n_quota_projects = args.quota_projects if "quota" in phases else 0
    log(f"set-up: provisioning {args.projects} + {n_quota_projects} projects (saga)")
    psa_ids = await bench.provision(args.projects + n_quota_projects)
    main = [Project(p) for p in psa_ids[: args.projects]]
    quota_projects = [Project(p) for p in psa_ids[args.projects :]]
    factory = await bench.entry_factory()
    n_through = args.entries if "throughput" in phases else 0
    n_naive = args.naive if "naive" in phases else 0
    n_naive_warm = args.naive_warmup if "naive" in phases else 0
    n_latency = int(args.latency_rps * args.latency_s) if "latency" in phases else 0
    n_quota = quota_entries(args) if "quota" in phases else 0
    log(
        f"set-up: creating entries ({args.warmup} a project warm-up, {n_through} throughput, "
        f"{n_naive_warm} + {n_naive} naive, {n_latency} latency, {n_quota} quota)"
    )
    warm = await bench.make_entries(factory, main, args.warmup * len(main), approved=True)
    through = await bench.make_entries(factory, main, n_through, approved=True)
    naive_warm = await bench.make_entries(factory, main, n_naive_warm, approved=True)
    naive_entries = await bench.make_entries(factory, main, n_naive, approved=True)
    quota = await bench.make_entries(factory, quota_projects, n_quota, approved=True)

    defaults = pipeline_input(base, "-")
    log(f"warm-up: {len(warm)} entries through {len(main)} pipelines")
    start_counts = await bench.counts()
    await bench.hand_over(warm, defaults, "bench-warm-up")
    await bench.wait_posted(start_counts["posted"] + len(warm), timeout_s=120, what="warm-up")
    return SetUp(
        phases=phases,
        main=main,
        quota_projects=quota_projects,
        factory=factory,
        through=through,
        naive_warm=naive_warm,
        naive=naive_entries,
        quota=quota,
        n_latency=n_latency,
        n_quota=n_quota,
        defaults=defaults,
        seconds=time.perf_counter() - t_setup,
    )


def quota_entries(args: argparse.Namespace) -> int:
    """`--quota-entries`, or enough for the window with a margin."""
    return int(
        args.quota_entries
        or math.ceil(
            args.quota_rps
            * args.quota_batch_size
            / args.quota_requests_per_batch
            * (args.quota_warm_s + args.quota_window_s)
            * 1.5
        )
    )


async def run_phases(
    bench: Bench, args: argparse.Namespace, s: SetUp
) -> tuple[dict[str, Any | None], dict[str, str]]:
    """Every phase asked for, in order; a failure is reported (and the next phase runs)."""
    projects = [p.psa_id for p in s.main]
    errors: dict[str, str] = {}

    async def phase(name: str, job: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
        """One phase; a failure is reported (and the next phase runs) rather than raised."""
        try:
            return await job()
        except Exception as exc:
            log(f"{name} failed: {exc!r}")
            errors[name] = repr(exc)
            return None

    out: dict[str, Any | None] = {"throughput": None, "naive": None, "latency": None}
    if s.through:
        out["throughput"] = await phase(
            "throughput", lambda: phases.throughput(bench, s.through, projects, s.defaults)
        )
    if s.naive:
        out["naive"] = await phase("naive", lambda: naive(bench, s.naive, s.naive_warm))
    if s.n_latency:
        out["latency"] = await phase(
            "latency", lambda: phases.latency(bench, s.factory, s.main, s.n_latency)
        )
    out["quota"] = None
    if s.quota:
        log("quota: restarting the worker with the ERP quota settings")
        await bench.runner.restart(
            bench.runner.phase_settings(
                erp_quota_rps=args.quota_rps, erp_rate_limit_rps=args.quota_rps
            )
        )
        quota_defaults = s.defaults.model_copy(update={"batch_size": args.quota_batch_size})
        quota_projects = [p.psa_id for p in s.quota_projects]
        out["quota"] = await phase(
            "quota", lambda: phases.quota(bench, s.quota, quota_projects, quota_defaults)
        )
    return out, errors


TARGETS = {
    "pipeline_entries_per_s": 3000,
    "ratio": 100,
    "latency_p95_s": 1.5,
    "quota_utilization": 0.95,
}
"""Issue 19's targets (the first round's were 1,000 entries/s, ratio 20, p95 3 s, 0.9)."""


async def measure(bench: Bench, args: argparse.Namespace, base: Settings) -> dict[str, Any]:
    s = await set_up(bench, args, base)
    done, errors = await run_phases(bench, args, s)
    tp, nv, lt, qt = done["throughput"], done["naive"], done["latency"], done["quota"]
    pipeline_rate = tp["entries_per_s"] if tp else None
    naive_rate = nv["entries_per_s"] if nv else None
    ratio = pipeline_rate / naive_rate if pipeline_rate and naive_rate else None
    p95 = lt["latency"].get("p95_s") if lt else None
    final = await bench.counts()
    return {
        "bench": "time_to_invoice",
        "entries": tp["entries"] if tp else 0,
        "pipeline_entries_per_s": pipeline_rate,
        "naive_entries_per_s": naive_rate,
        "ratio": round(ratio, 1) if ratio else None,
        "latency_p50_s": lt["latency"].get("p50_s") if lt else None,
        "latency_p95_s": p95,
        "quota_rps": qt["quota_rps"] if qt else None,
        "achieved_rps": qt["achieved_rps"] if qt else None,
        "quota_utilization": qt["utilization"] if qt else None,
        "throttled_429": qt["throttled_429"] if qt else None,
        "quota_entries_failed": qt["entries_failed"] if qt else None,
        # What the whole stack's CPU per unit allows on this machine (see `cpu_budget`): a
        # target above the ceiling, or a rate that needs more cores than there are, cannot be
        # met here however the work is spread.
        "pipeline_ceiling_entries_per_s": (tp or {}).get("cpu_per_entry", {}).get("ceiling_per_s"),
        "latency_cores_needed": (lt or {}).get("cpu_per_approval", {}).get("cores_needed"),
        "targets": TARGETS,
        "meets": {
            "pipeline_entries_per_s": (
                pipeline_rate >= TARGETS["pipeline_entries_per_s"] if pipeline_rate else None
            ),
            "ratio": ratio >= TARGETS["ratio"] if ratio else None,
            "latency_p95_s": p95 <= TARGETS["latency_p95_s"] if p95 is not None else None,
            "quota_utilization": (
                qt["utilization"] >= TARGETS["quota_utilization"]
                and qt["entries_failed"] == 0
                and qt["exception_items"] == 0
                and qt["pipeline_counters"].get("batches_failed", 0) == 0
                if qt
                else None
            ),
        },
        "errors": errors,
        "throughput": tp,
        "naive": nv,
        "latency": lt,
        "quota": qt,
        "ledger_final": final,
        "setup_s": round(s.seconds, 1),
        "config": config(args, s),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def config(args: argparse.Namespace, s: SetUp) -> dict[str, Any]:
    defaults = s.defaults
    return {
        "entries": args.entries,
        "projects": args.projects,
        "workers": args.workers,
        "days": len(s.factory.days),
        "warmup_per_project": args.warmup,
        "naive": args.naive,
        "naive_warmup": args.naive_warmup,
        "naive_concurrency": args.naive_concurrency or args.naive,
        "latency_rps": args.latency_rps,
        "latency_s": args.latency_s,
        "latency_mode": args.latency_mode,
        "latency_per_call": args.latency_per_call if args.latency_mode == "bulk" else 1,
        "quota_rps": args.quota_rps,
        "quota_projects": args.quota_projects,
        "quota_batch_size": args.quota_batch_size,
        "quota_entries": s.n_quota,
        "quota_warm_s": args.quota_warm_s,
        "quota_window_s": args.quota_window_s,
        "erp_quota_rps_other_phases": args.erp_quota_rps,
        "time_batch_size": defaults.batch_size,
        "time_linger_ms": defaults.linger_ms,
        "time_batches_in_flight": defaults.max_batches_in_flight,
        "time_sweep_interval_s": SWEEP_OUT_S,
        **topology(args),
        "naive_workflow_worker": "in the bench's process (its activity runs on the pssync worker)",
        "twins": "own process (pssync sandbox), zero latency",
        "temporal": "embedded dev server, SQLite file "
        + (f"in {args.temporal_db_dir}" if args.temporal_db_dir else "under the temp home"),
        "store": "SQLite file under the temp home",
        "phases": sorted(s.phases, key=PHASES.index),
        "seed": SEED,
    }


def topology(args: argparse.Namespace) -> dict[str, str]:
    """Where the pssync worker and the gateway run (the JSON's `config`)."""
    here = "in the bench's process"
    return {
        "worker": here if args.worker_in_process else "own process (pssync worker)",
        "gateway": (
            f"{here} (running_stack's)"
            if args.gateway_in_process
            else "own process (pssync gateway, 127.0.0.1, OS-picked port)"
        ),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_options(
        parser,
        [
            ("--entries", int, 10_000),
            ("--projects", int, 8, "pipelines for the throughput"),
            ("--workers", int, 50, "active workers entering time"),
            ("--warmup", int, 25, "warm-up entries per project"),
            ("--naive", int, 400, "entries in the naive baseline"),
            ("--naive-warmup", int, 20),
            ("--naive-concurrency", int, 20, "naive workflows in flight (0: all at once)"),
            ("--latency-rps", float, 100.0),
            ("--latency-s", float, 25.0),
        ],
    )
    parser.add_argument(
        "--latency-mode",
        choices=("bulk", "api"),
        default="bulk",
        help="bulk: entries created approved by the PSA twin's bulk endpoint with webhooks, "
        "--latency-per-call a request; api: one PSA API approval request per entry",
    )
    add_options(
        parser,
        [
            ("--latency-per-call", int, 10),
            ("--quota-rps", float, 20.0),
            ("--quota-projects", int, 4),
            ("--quota-batch-size", int, 5),
            ("--quota-warm-s", float, 3.0),
            ("--quota-window-s", float, 25.0),
            (
                "--quota-entries",
                int,
                0,
                "default: enough for the window with a margin (about 4 ERP requests a batch)",
            ),
            ("--quota-requests-per-batch", float, 4.0),
            (
                "--erp-quota-rps",
                float,
                50.0,
                "settings.erp_quota_rps outside the quota phase (the shipped default)",
            ),
        ],
    )
    add_flags(
        parser,
        {
            "--worker-in-process": "run the pssync worker in the bench's process; default: "
            "`pssync worker` in its own process, as deployed",
            "--gateway-in-process": "let the stack's gateway in the bench's process take the "
            "webhooks; default: `pssync gateway` in its own process, as deployed",
            "--worker-process": "accepted for old command lines: the default now",
        },
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help="which phases to run, comma-separated (default: all)",
    )
    add_options(parser, [("--phase-timeout-s", float, 180.0), ("--history-sample", int, 40)])
    add_flags(parser, {"--keep-home": None})
    parser.add_argument(
        "--temporal-db-dir",
        default=None,
        help="put the dev server's SQLite file there (e.g. /dev/shm) instead of the temp home",
    )
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(run(args))
    print_json(result)
    tp, nv = result["throughput"], result["naive"]
    ok = (
        not result["errors"]
        and (tp is None or (tp["erp_missing"] == 0 and tp["erp_duplicates"] == 0))
        and (nv is None or nv["failed"] == 0)
        and not result["quota_entries_failed"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
