"""OpportunityToProject benchmark: won deals through the whole local stack, against the engine
floor measured in the same run.

    python bench/opportunity_to_project.py [--deals 200] [--concurrency 20] [--rounds 2]
        [--erp-quota-rps 50] [--worker-process] [--warmup 5] [--history-sample 40]

What it runs on 127.0.0.1 (OS-assigned ports), in a fresh temp home: `starter.running_stack`
(embedded Temporal dev server with its SQLite file, gateway, the seeded twins with zero latency
and their webhooks pointed at the gateway, the worker: in this process, or as `pssync worker`
in a child process with `--worker-process`). Then:

1. warm-up: a few deals and a few floor runs, not counted. One warm-up saga's history gives the
   shape of the floor: its ActivityTaskScheduled events, grouped by the workflow task that
   scheduled them (the master-data check schedules 2 at once, the rest go one by one).
2. the saga: `--deals` won deals, `--concurrency` in flight. Each deal is created in the CRM
   twin and moved to Closed Won (as `starter.win_deal` does, with one shared CRM client so the
   won moment can be timed); the twin's signed webhook reaches the gateway, which starts the
   saga. Latency = the workflow's close time (server clock, same machine) minus the wall clock
   taken just before `set_stage("Closed Won")`: deal won -> project usable in PSA and ERP.
3. the floor: the `BenchFloor` workflow below, the same number of activities in the same shape
   as no-ops, on its own worker and task queue on the same dev server, started by the client
   directly, `--deals` times with the same concurrency. Latency = client start -> result.
   Saga and floor phases alternate in `--rounds` rounds, never overlapping.
4. where the time goes, from `--history-sample` histories of each: ingress (won -> workflow
   start), activity queue wait (scheduled -> started) and run time (started -> completed) per
   activity type, workflow-task queue and run time; requests each twin served.

Progress goes to stderr; the last line of stdout is one JSON object (deals, p50_s, p95_s,
floor_p50_s, floor_p95_s, ratio_p50, activities_per_deal, throughputs, breakdown, machine,
config, ...). No sleeps tune anything: the only waits are the ones `starter.wait_for_workflow`
polls with while a webhook is on its way.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import platform
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow

ROOT = Path(__file__).parent.parent
if not workflow.unsafe.in_sandbox():  # the sandbox re-imports this module to run BenchFloor
    ROOT = ROOT.resolve()
    sys.path.insert(0, str(ROOT))

with workflow.unsafe.imports_passed_through():
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import Client, WorkflowHistory
    from temporalio.worker import Worker

    import starter
    from connectors.crm import SalesforceCrm
    from contracts.naming import opportunity_workflow_id
    from contracts.settings import load_settings
    from contracts.v1.processes import ProvisionProjectResult
    from sandbox.seed import build_firm

FLOOR_QUEUE = "bench-floor"
FLOOR_TIMEOUT = timedelta(seconds=60)
SEED = 7
SYSTEMS = ("crm", "psa", "erp", "hcm")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the floor


@activity.defn(name="bench_noop")
async def noop(step: int) -> int:
    return step


@workflow.defn(name="BenchFloor")
class BenchFloor:
    """The engine floor: no-op activities in the saga's shape, e.g. [1, 2, 1, 1, ...] — each
    number is how many activities one workflow task schedules at once."""

    @workflow.run
    async def run(self, shape: list[int]) -> int:
        done = 0
        for width in shape:
            results = await asyncio.gather(
                *[
                    workflow.execute_activity(noop, done + k, start_to_close_timeout=FLOOR_TIMEOUT)
                    for k in range(width)
                ]
            )
            done += len(results)
        return done


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank-interpolated percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50_s": round(percentile(values, 50), 4),
        "p95_s": round(percentile(values, 95), 4),
        "max_s": round(max(values), 4) if values else float("nan"),
        "mean_s": round(statistics.fmean(values), 4) if values else float("nan"),
    }


async def bounded(
    count: int, concurrency: int, job: Callable[[int], Awaitable[Any]]
) -> tuple[list[Any], float]:
    """Run job(0..count-1) with at most `concurrency` in flight; results and wall seconds."""
    sem = asyncio.Semaphore(concurrency)
    done = 0

    async def one(i: int) -> Any:
        nonlocal done
        async with sem:
            result = await job(i)
        done += 1
        if done % max(1, count // 10) == 0:
            log(f"  {done}/{count}")
        return result

    start = time.perf_counter()
    results = await asyncio.gather(*[one(i) for i in range(count)], return_exceptions=True)
    return list(results), time.perf_counter() - start


# --------------------------------------------------------------------------- histories


def _ts(event: Any) -> float:
    return float(event.event_time.ToDatetime(tzinfo=UTC).timestamp())


def shape_of(history: WorkflowHistory) -> list[int]:
    """Activities scheduled per workflow task, in order."""
    batches: dict[int, int] = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            wtc = event.activity_task_scheduled_event_attributes.workflow_task_completed_event_id
            batches[wtc] = batches.get(wtc, 0) + 1
    return [batches[k] for k in sorted(batches)]


def breakdown(history: WorkflowHistory) -> dict[str, Any]:
    """Per-activity queue wait and run time, and workflow-task time, of one run."""
    scheduled: dict[int, tuple[str, str, float]] = {}
    started: dict[int, float] = {}
    activities: list[dict[str, Any]] = []
    wft_scheduled: dict[int, float] = {}
    wft_started: dict[int, float] = {}
    wft_queue = wft_run = 0.0
    first = last = None
    for event in history.events:
        t = _ts(event)
        first = t if first is None else first
        last = t
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            sched = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (sched.activity_type.name, sched.task_queue.name, t)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.activity_task_started_event_attributes.scheduled_event_id] = t
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sched_id = event.activity_task_completed_event_attributes.scheduled_event_id
            name, queue, t_sched = scheduled[sched_id]
            t_start = started.get(sched_id, t)
            activities.append(
                {"name": name, "queue": queue, "wait": t_start - t_sched, "run": t - t_start}
            )
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            wft_scheduled[event.event_id] = t
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            wft_sched_id = event.workflow_task_started_event_attributes.scheduled_event_id
            wft_started[event.event_id] = t
            wft_queue += t - wft_scheduled.get(wft_sched_id, t)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            wft_start_id = event.workflow_task_completed_event_attributes.started_event_id
            wft_run += t - wft_started.get(wft_start_id, t)
    return {
        "activities": activities,
        "workflow_task_queue_s": wft_queue,
        "workflow_task_run_s": wft_run,
        "history_s": (last or 0.0) - (first or 0.0),
    }


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per run of where its time went, and per activity type."""
    per_type: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    totals: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        wait = run_s = 0.0
        by_queue: dict[str, float] = defaultdict(float)
        for a in run["activities"]:
            per_type[a["name"]]["wait"].append(a["wait"])
            per_type[a["name"]]["run"].append(a["run"])
            wait += a["wait"]
            run_s += a["run"]
            by_queue[a["queue"]] += a["wait"]
        totals["activity_queue_wait_s"].append(wait)
        totals["activity_run_s"].append(run_s)
        totals["workflow_task_queue_s"].append(run["workflow_task_queue_s"])
        totals["workflow_task_run_s"].append(run["workflow_task_run_s"])
        totals["history_s"].append(run["history_s"])
        for queue, seconds in by_queue.items():
            totals[f"queue_wait_s[{queue}]"].append(seconds)
    return {
        "runs_sampled": len(runs),
        "per_run_p50": {k: round(percentile(v, 50), 4) for k, v in sorted(totals.items())},
        "per_activity_p50": {
            name: {
                "queue_wait_s": round(percentile(v["wait"], 50), 4),
                "queue_wait_p95_s": round(percentile(v["wait"], 95), 4),
                "run_s": round(percentile(v["run"], 50), 4),
                "run_p95_s": round(percentile(v["run"], 95), 4),
            }
            for name, v in sorted(per_type.items())
        },
    }


# --------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, stack: starter.Stack, args: argparse.Namespace) -> None:
        self.stack = stack
        self.args = args
        self.firm = build_firm(SEED)
        self.templates = starter.provisionable_templates(self.firm)
        # One CRM client for the bench's own writes, wide enough not to queue the won moment.
        self.crm = SalesforceCrm(
            stack.settings.crm.model_copy(update={"max_concurrency": args.concurrency * 2})
        )
        self.counter = 0

    async def win_one(self, label: str) -> dict[str, Any]:
        """`starter.win_deal`, timing the moment the deal is won."""
        self.counter += 1
        index = self.templates[self.counter % len(self.templates)]
        template = self.firm.opportunities[index]
        new = starter.deal_from_template(
            self.firm, index, name=f"{template.name} ({label} {self.counter})"
        )
        opp_id = await self.crm.create_opportunity(new)
        won_wall = time.time()
        won_mono = time.perf_counter()
        await self.crm.set_stage(opp_id, "Closed Won")
        wf_id = opportunity_workflow_id(self.stack.settings.crm.tenant, opp_id)
        handle = await starter.wait_for_workflow(
            self.stack.client,
            wf_id,
            timeout_s=self.args.deal_timeout_s,
            result_type=ProvisionProjectResult,
        )
        await asyncio.wait_for(handle.result(), self.args.deal_timeout_s)
        return {
            "workflow_id": wf_id,
            "won_wall": won_wall,
            "client_s": time.perf_counter() - won_mono,
        }

    async def floor_one(self, shape: list[int], label: str, i: int) -> dict[str, Any]:
        wf_id = f"bench-floor/{label}/{i}"
        start = time.perf_counter()
        handle = await self.stack.client.start_workflow(
            BenchFloor.run, shape, id=wf_id, task_queue=FLOOR_QUEUE
        )
        await asyncio.wait_for(handle.result(), self.args.deal_timeout_s)
        return {"workflow_id": wf_id, "client_s": time.perf_counter() - start}

    async def describe_all(self, ids: list[str]) -> list[Any]:
        sem = asyncio.Semaphore(20)

        async def one(wf_id: str) -> Any:
            async with sem:
                return await self.stack.client.get_workflow_handle(wf_id).describe()

        return list(await asyncio.gather(*[one(w) for w in ids]))

    async def histories(self, ids: list[str]) -> list[WorkflowHistory]:
        sem = asyncio.Semaphore(10)

        async def one(wf_id: str) -> WorkflowHistory:
            async with sem:
                return await self.stack.client.get_workflow_handle(wf_id).fetch_history()

        return list(await asyncio.gather(*[one(w) for w in ids]))

    async def twin_stats(self) -> dict[str, Any]:
        """Requests each twin served, and the CRM's webhook deliveries, through the twins'
        admin API (they may run in another process)."""
        import httpx  # not at module level: the floor workflow's sandbox imports this file

        base = self.stack.urls["sandbox"]
        out: dict[str, Any] = {}
        async with httpx.AsyncClient(timeout=30) as http:
            for system in SYSTEMS:
                stats = (await http.get(f"{base}/{system}/_admin/stats")).json()
                out[system] = {
                    "requests": stats["requests"],
                    "in_flight_max": stats["in_flight_max"],
                }
            deliveries = (await http.get(f"{base}/crm/_admin/webhooks/deliveries")).json()
        out["crm_webhooks"] = {
            "sent": len(deliveries),
            "retried": sum(1 for d in deliveries if d["attempts"] > 1),
            "undelivered": sum(1 for d in deliveries if not d["delivered"]),
        }
        return out

    async def reset_twin_stats(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=30) as http:
            for system in SYSTEMS:
                await http.post(f"{self.stack.urls['sandbox']}/{system}/_admin/stats/reset")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_worker_process(stack: starter.Stack) -> asyncio.subprocess.Process:
    """`pssync worker` in a child process, configured like the in-process one would be (the
    deployed topology: the worker does not share a GIL with the twins and the gateway)."""
    s = stack.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSSYNC_")}
    env.update(
        {
            "PSSYNC_HOME": str(s.home),
            "PSSYNC_TEMPORAL__ADDRESS": s.temporal.address,
            "PSSYNC_ERP_QUOTA_RPS": str(s.erp_quota_rps),
            "PSSYNC_WORKER_METRICS_PORT": str(_free_port()),
            **{f"PSSYNC_{n.upper()}__BASE_URL": getattr(s, n).base_url for n in SYSTEMS},
        }
    )
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        # `pssync worker` logs at INFO, which makes httpx log every vendor request; the
        # in-process worker does not, so neither does this one.
        "import logging, worker; logging.getLogger('httpx').setLevel(logging.WARNING); "
        "worker.main()",
        cwd=ROOT,
        env=env,
        stdout=sys.stderr.fileno(),
    )


async def stop_worker_process(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wall_start = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="pssync-bench-", ignore_cleanup_errors=True)
    home = Path(tmp.name) / ".pssync"
    settings = load_settings(home=home, erp_quota_rps=args.erp_quota_rps)
    where = "its own process" if args.worker_process else "this process"
    log(f"home {home}; starting the stack (dev server, gateway, twins; the worker in {where})")
    async with starter.running_stack(
        settings,
        seed=SEED,
        ephemeral_ports=True,
        run_worker=not args.worker_process,
        twins_process=not args.twins_in_process,
    ) as stack:
        bench = Bench(stack, args)
        client: Client = stack.client
        floor_worker = Worker(
            client, task_queue=FLOOR_QUEUE, workflows=[BenchFloor], activities=[noop]
        )
        worker_proc = await start_worker_process(stack) if args.worker_process else None
        try:
            async with floor_worker:
                result = await measure(bench, args)
        finally:
            await bench.crm.aclose()
            if worker_proc is not None:
                await stop_worker_process(worker_proc)
    result["wall_s"] = round(time.perf_counter() - wall_start, 2)
    if args.keep_home:
        log(f"kept {home}")
    else:
        tmp.cleanup()
    return result


async def measure(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    client = bench.stack.client
    log(f"warm-up: {args.warmup} deals, then {args.warmup} floor runs")
    warm, _ = await bounded(args.warmup, args.concurrency, lambda i: bench.win_one("warm-up"))
    failed = [w for w in warm if isinstance(w, BaseException)]
    if failed:
        raise RuntimeError(f"warm-up deal failed: {failed[0]!r}") from failed[0]
    probe = await client.get_workflow_handle(warm[0]["workflow_id"]).fetch_history()
    shape = shape_of(probe)
    activities_per_deal = sum(shape)
    log(f"the saga ran {activities_per_deal} activities per deal, shape {shape}")
    await bounded(args.warmup, args.concurrency, lambda i: bench.floor_one(shape, "warm-up", i))

    # Saga and floor alternate in rounds, so drift (a busy neighbour on the machine, the dev
    # server's database growing) does not all land on one side.
    rounds = max(1, min(args.rounds, args.deals))
    sizes = [args.deals // rounds + (1 if r < args.deals % rounds else 0) for r in range(rounds)]
    await bench.reset_twin_stats()
    deals: list[Any] = []
    floors: list[Any] = []
    saga_wall = floor_wall = 0.0
    for r, size in enumerate(sizes, 1):
        log(f"round {r}/{rounds}, saga: {size} won deals, {args.concurrency} in flight")
        got, wall = await bounded(size, args.concurrency, lambda i: bench.win_one("bench"))
        deals += got
        saga_wall += wall
        log(f"round {r}/{rounds}, floor: {size} BenchFloor runs, {args.concurrency} in flight")
        label = f"round-{r}"
        got, wall = await bounded(
            size, args.concurrency, functools.partial(bench.floor_one, shape, label)
        )
        floors += got
        floor_wall += wall
    twins = await bench.twin_stats()  # the floor never calls a twin
    ok = [d for d in deals if not isinstance(d, BaseException)]
    errors = [repr(d) for d in deals if isinstance(d, BaseException)]
    for e in errors[:5]:
        log(f"  deal failed: {e}")
    floor_ok = [f for f in floors if not isinstance(f, BaseException)]
    floor_errors = [repr(f) for f in floors if isinstance(f, BaseException)]

    log("reading close times and a sample of histories")
    saga_desc = await bench.describe_all([d["workflow_id"] for d in ok])
    floor_desc = await bench.describe_all([f["workflow_id"] for f in floor_ok])
    latencies, ingress, execution = [], [], []
    for d, desc in zip(ok, saga_desc, strict=True):
        close, start = desc.close_time.timestamp(), desc.start_time.timestamp()
        latencies.append(close - d["won_wall"])
        ingress.append(start - d["won_wall"])
        execution.append(close - start)
    floor_latencies = [f["client_s"] for f in floor_ok]
    floor_execution = [
        desc.close_time.timestamp() - desc.start_time.timestamp() for desc in floor_desc
    ]
    sample = max(1, min(args.history_sample, len(ok), len(floor_ok)))
    step_saga, step_floor = max(1, len(ok) // sample), max(1, len(floor_ok) // sample)
    saga_hist = await bench.histories([d["workflow_id"] for d in ok[::step_saga][:sample]])
    floor_hist = await bench.histories([f["workflow_id"] for f in floor_ok[::step_floor][:sample]])
    saga_shapes = {tuple(shape_of(h)) for h in saga_hist}

    p50, floor_p50 = percentile(latencies, 50), percentile(floor_latencies, 50)
    exec_p50, floor_exec_p50 = percentile(execution, 50), percentile(floor_execution, 50)
    return {
        "bench": "opportunity_to_project",
        "deals": len(ok),
        "deals_failed": len(errors),
        "p50_s": round(p50, 4),
        "p95_s": round(percentile(latencies, 95), 4),
        "floor_p50_s": round(floor_p50, 4),
        "floor_p95_s": round(percentile(floor_latencies, 95), 4),
        "ratio_p50": round(p50 / floor_p50, 3),
        "target_ratio_p50": 1.5,
        "meets_target": p50 / floor_p50 <= 1.5,
        "activities_per_deal": activities_per_deal,
        "activity_shape": shape,
        "throughput_deals_per_s": round(len(ok) / saga_wall, 2),
        "floor_throughput_per_s": round(len(floor_ok) / floor_wall, 2),
        "saga_phases_s": round(saga_wall, 2),
        "floor_phases_s": round(floor_wall, 2),
        "floor_runs": len(floor_ok),
        "floor_failed": len(floor_errors),
        "latency_definition": (
            "saga: workflow close_time (dev server clock) minus wall clock just before the CRM "
            "set_stage('Closed Won') call; floor: client-side start_workflow() -> result()"
        ),
        "saga": {
            "won_to_close": summary(latencies),
            "won_to_result_client_side": summary([d["client_s"] for d in ok]),
            "ingress_won_to_workflow_start": summary(ingress),
            "workflow_start_to_close": summary(execution),
            "breakdown": aggregate([breakdown(h) for h in saga_hist]),
            "shapes_seen_in_sample": [list(s) for s in saga_shapes],
        },
        "floor": {
            "client_start_to_result": summary(floor_latencies),
            "workflow_start_to_close": summary(floor_execution),
            "breakdown": aggregate([breakdown(h) for h in floor_hist]),
        },
        "ratio_p50_execution_only": round(exec_p50 / floor_exec_p50, 3),
        "twins_during_saga_phases": twins,
        "errors": errors[:5] + floor_errors[:5],
        "notes": [
            "The saga's latency includes the CRM set_stage call, the twin's signed webhook "
            "delivery, the gateway (signature check, SQLite inbox, start_workflow) and then the "
            "workflow; the floor is started by the client directly. "
            "ratio_p50_execution_only compares server-side start->close of both.",
            (
                "The pssync worker runs in its own process (`pssync worker`); the twins, the "
                "gateway, the floor worker and the bench client share this one."
                if args.worker_process
                else "Everything (twins, gateway, pssync worker, floor worker, bench client) "
                "shares one Python process and event loop (one GIL)."
            )
            + " The Temporal dev server (SQLite file) is a child process.",
            f"After a warm-up of both, saga and floor phases alternate in {rounds} rounds "
            "(never at the same time); throughputs are over the summed phase times.",
            f"ERP task queue quota erp_quota_rps={args.erp_quota_rps}/s "
            "(max_task_queue_activities_per_second; the ERP twin itself has no quota here).",
        ],
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "python": platform.python_version(),
        },
        "config": {
            "deals": args.deals,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "rounds": rounds,
            "erp_quota_rps": args.erp_quota_rps,
            "worker": "own process (pssync worker)" if args.worker_process else "in process",
            "history_sample": args.history_sample,
            "deal_timeout_s": args.deal_timeout_s,
            "twin_latency_ms": 0,
            "twins": "in process" if args.twins_in_process else "own process (pssync sandbox)",
            "seed": SEED,
            "temporal": "embedded dev server, SQLite file under a temp home",
        },
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deals", type=int, default=200)
    parser.add_argument(
        "--concurrency", type=int, default=20, help="deals (and floor runs) in flight"
    )
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternate saga and floor phases this many times"
    )
    parser.add_argument(
        "--erp-quota-rps",
        type=float,
        default=50.0,
        help="settings.erp_quota_rps: the ERP task queue's activities/s (default as shipped)",
    )
    parser.add_argument(
        "--worker-process",
        action="store_true",
        help="run the pssync worker as `pssync worker` in its own process (the deployed "
        "topology) instead of inside the stack's process",
    )
    parser.add_argument(
        "--twins-in-process",
        action="store_true",
        help="serve the twins inside the stack's process (charges the vendors' CPU to pssync); "
        "default: their own process, as remote vendors would be",
    )
    parser.add_argument("--history-sample", type=int, default=40)
    parser.add_argument(
        "--keep-home", action="store_true", help="keep the temp home (dev server DB, twins)"
    )
    parser.add_argument("--deal-timeout-s", type=float, default=120.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(run(args))
    print(json.dumps(result))
    return 0 if result["deals_failed"] == 0 and result["floor_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
