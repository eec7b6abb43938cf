"""OpportunityToProject benchmark: won deals through the whole local stack, against the engine
floor measured in the same run.

    python bench/opportunity_to_project.py [--deals 200] [--concurrency 20] [--rounds 2]
        [--erp-quota-rps 50] [--warmup 5] [--history-sample 40]
        [--worker-in-process] [--gateway-in-process] [--twins-in-process]

What it runs on 127.0.0.1 (OS-assigned ports), in a fresh temp home: `running_stack`
(embedded Temporal dev server with its SQLite file, the seeded twins with zero latency in their
own process, `pssync sandbox`) and, each in its own process as `pssync up` and the compose file
run them, started and stopped by pid: the gateway (`pssync gateway` on a loopback port, the
stack's home, store and Temporal; the twins' webhooks point at it), the pssync worker (`pssync
worker`) and the floor's worker (this file with `--serve-floor-worker`, connected as the pssync
worker is, so both sides pay the same process hop and payload codec). The old shapes:
`--worker-in-process` runs the pssync worker and the floor's worker in the bench's process,
`--gateway-in-process` lets the stack's own gateway (in the bench's process) take the webhooks,
`--twins-in-process` serves the twins there too. Then:

1. warm-up: a few deals and a few floor runs, not counted. One warm-up saga's history gives the
   shape of the floor: its ActivityTaskScheduled events and local-activity markers (the store
   steps, local since issue 19), grouped by the workflow task that scheduled them (the
   master-data check schedules 2 at once, the rest go one by one); the floor runs every one
   as a regular no-op activity.
2. the saga: `--deals` won deals, `--concurrency` in flight. Each deal is created in the CRM
   twin and moved to Closed Won (as `win_deal` does, with one shared CRM client so the
   won moment can be timed); the twin's signed webhook reaches the gateway, which starts the
   saga. Latency = the workflow's close time (server clock, same machine) minus the wall clock
   taken just before `set_stage("Closed Won")`: deal won -> project usable in PSA and ERP.
3. the floor: the `BenchFloor` workflow below, the same number of activities in the same shape
   as no-ops, on its own worker (where the pssync worker runs: its own process by default) and
   task queue on the same dev server, started by the bench's client directly, `--deals` times
   with the same concurrency. Latency = client start -> result.
   Saga and floor phases alternate in `--rounds` rounds, never overlapping.
4. where the time goes, from `--history-sample` histories of each: ingress (won -> workflow
   start), activity queue wait (scheduled -> started) and run time (started -> completed) per
   activity type, workflow-task queue and run time; requests each twin served.

Progress goes to stderr; the last line of stdout is one JSON object (deals, p50_s, p95_s,
floor_p50_s, floor_p95_s, ratio_p50, activities_per_deal, throughputs, breakdown, machine,
config, ...). No sleeps tune anything: the only waits are the ones `wait_for_workflow`
polls with while a webhook is on its way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow

ROOT = Path(__file__).parent.parent
if not workflow.unsafe.in_sandbox():  # the sandbox re-imports this module to run BenchFloor
    ROOT = ROOT.resolve()
    sys.path.insert(0, str(ROOT))

with workflow.unsafe.imports_passed_through():
    from temporalio.client import WorkflowHistory
    from temporalio.worker import Worker

    from bench._harness import (
        SYSTEMS,
        GatewayProcess,
        TempHome,
        Twins,
        add_flags,
        add_options,
        bounded,
        gather_limited,
        log,
        machine,
        percentile,
        print_json,
        start_ready_child,
        start_worker_process,
        stop_worker_process,
    )
    from bench._harness import brief_summary as summary
    from bench._harness.histories import aggregate_breakdowns as aggregate
    from bench._harness.histories import breakdown, shape_of
    from connectors.crm import SalesforceCrm
    from contracts.naming import opportunity_workflow_id
    from contracts.settings import load_settings
    from contracts.v1.processes import ProvisionProjectResult
    from demo import deal_from_template, provisionable_templates, wait_for_workflow
    from sandbox.seed import build_firm
    from stack import Stack, running_stack, stop_on_signal
    from stack.processes import process_env

FLOOR_QUEUE = "bench-floor"
STDERR_FD = 2
FLOOR_TIMEOUT = timedelta(seconds=60)
SEED = 7
__all__ = [
    "SYSTEMS",
    "BenchFloor",
    "aggregate",
    "bounded",
    "breakdown",
    "main",
    "measure",
    "noop",
    "parse_args",
    "percentile",
    "run",
    "shape_of",
    "summary",
]


TARGET_RATIO_P50 = 1.25
"""Issue 19's target (the first round's was 1.5)."""


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


async def serve_floor_worker() -> None:
    """The floor's worker alone, in its own process (`--serve-floor-worker`): settings from the
    environment the bench gives it (`process_env`: the stack's home, its keys, Temporal),
    connected as the pssync worker is (`worker.connect_client`, pssync's payload codec). Says
    "ready" on stdout once it runs; SIGTERM or SIGINT stops it."""
    import worker as pssync_worker

    stop = stop_on_signal()
    client = await pssync_worker.connect_client(load_settings())
    async with Worker(client, task_queue=FLOOR_QUEUE, workflows=[BenchFloor], activities=[noop]):
        print("ready", flush=True)
        await stop.wait()


# --------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, stack: Stack, args: argparse.Namespace) -> None:
        self.stack = stack
        self.args = args
        self.firm = build_firm(SEED)
        self.templates = provisionable_templates(self.firm)
        # One CRM client for the bench's own writes, wide enough not to queue the won moment.
        self.crm = SalesforceCrm(
            stack.settings.crm.model_copy(update={"max_concurrency": args.concurrency * 2})
        )
        self.twins = Twins(stack)
        self.counter = 0

    async def win_one(self, label: str) -> dict[str, Any]:
        """`win_deal`, timing the moment the deal is won."""
        self.counter += 1
        index = self.templates[self.counter % len(self.templates)]
        template = self.firm.opportunities[index]
        new = deal_from_template(self.firm, index, name=f"{template.name} ({label} {self.counter})")
        opp_id = await self.crm.create_opportunity(new)
        won_wall = time.time()
        won_mono = time.perf_counter()
        await self.crm.set_stage(opp_id, "Closed Won")
        wf_id = opportunity_workflow_id(self.stack.settings.crm.tenant, opp_id)
        handle = await wait_for_workflow(
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
        client = self.stack.client
        return await gather_limited(ids, 20, lambda w: client.get_workflow_handle(w).describe())

    async def histories(self, ids: list[str]) -> list[WorkflowHistory]:
        client = self.stack.client
        return await gather_limited(
            ids, 10, lambda w: client.get_workflow_handle(w).fetch_history()
        )

    async def twin_stats(self) -> dict[str, Any]:
        """Requests each twin served, and the CRM's webhook deliveries, through the twins'
        admin API (they may run in another process)."""
        out: dict[str, Any] = await self.twins.pick_stats("requests", "in_flight_max")
        deliveries = await self.twins.webhook_deliveries("crm")
        out["crm_webhooks"] = {
            "sent": len(deliveries),
            "retried": sum(1 for d in deliveries if d["attempts"] > 1),
            "undelivered": sum(1 for d in deliveries if not d["delivered"]),
        }
        return out

    async def aclose(self) -> None:
        await self.crm.aclose()
        await self.twins.aclose()


def topology(args: argparse.Namespace) -> dict[str, str]:
    """Where each part runs (the JSON's `config`)."""
    own, here = "own process", "in the bench's process"
    return {
        "worker": here if args.worker_in_process else f"{own} (pssync worker)",
        "floor_worker": here if args.worker_in_process else f"{own} (--serve-floor-worker)",
        "gateway": (
            f"{here} (running_stack's)"
            if args.gateway_in_process
            else f"{own} (pssync gateway, 127.0.0.1, OS-picked port)"
        ),
        "twins": here if args.twins_in_process else f"{own} (pssync sandbox)",
    }


@contextlib.asynccontextmanager
async def processes(
    stack: Stack, args: argparse.Namespace, gateway: GatewayProcess | None
) -> AsyncIterator[None]:
    """The gateway process, the pssync worker and the floor's worker (in their own processes,
    or the workers in this one) for the length of the block; each child stopped by its id."""
    children: list[asyncio.subprocess.Process] = []
    try:
        if gateway is not None:
            await gateway.start(stack.settings)
        if args.worker_in_process:  # running_stack runs the pssync worker
            async with Worker(
                stack.client, task_queue=FLOOR_QUEUE, workflows=[BenchFloor], activities=[noop]
            ):
                yield
            return
        # Its log on this process's stderr (fd 2), never on stdout (the JSON line's).
        children.append(await start_worker_process(stack.settings, stdout=STDERR_FD))
        children.append(
            await start_ready_child(
                [str(ROOT / "bench" / "opportunity_to_project.py"), "--serve-floor-worker"],
                process_env(stack.settings),
                what="the floor worker",
            )
        )
        yield
    finally:
        for child in reversed(children):
            await stop_worker_process(child, 30)
        if gateway is not None:
            await gateway.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wall_start = time.perf_counter()
    tmp = TempHome("pssync-bench-")
    home = tmp.home
    settings = load_settings(home=home, erp_quota_rps=args.erp_quota_rps)
    gateway = None if args.gateway_in_process else GatewayProcess(home / "gateway.log")
    log(
        f"home {home}; starting the stack: "
        + ", ".join(f"{k} {v}" for k, v in topology(args).items())
    )
    async with running_stack(
        settings,
        seed=SEED,
        ephemeral_ports=True,
        run_worker=args.worker_in_process,
        twins_process=not args.twins_in_process,
        webhook_base=gateway.url if gateway is not None else None,
    ) as stack:
        bench = Bench(stack, args)
        try:
            async with processes(stack, args, gateway):
                result = await measure(bench, args)
        finally:
            await bench.aclose()
    result["wall_s"] = round(time.perf_counter() - wall_start, 2)
    if args.keep_home:
        log(f"kept {home}")
    else:
        tmp.remove()
    return result


async def warm_up(bench: Bench, args: argparse.Namespace) -> list[int]:
    """A few deals and floor runs, not counted; the saga's shape, from a warm-up history."""
    log(f"warm-up: {args.warmup} deals, then {args.warmup} floor runs")
    warm, _ = await bounded(args.warmup, args.concurrency, lambda i: bench.win_one("warm-up"))
    failed = [w for w in warm if isinstance(w, BaseException)]
    if failed:
        raise RuntimeError(f"warm-up deal failed: {failed[0]!r}") from failed[0]
    probe = await bench.stack.client.get_workflow_handle(warm[0]["workflow_id"]).fetch_history()
    shape = shape_of(probe)
    log(f"the saga ran {sum(shape)} activities per deal, shape {shape}")
    await bounded(args.warmup, args.concurrency, lambda i: bench.floor_one(shape, "warm-up", i))
    return shape


async def rounds_of(
    bench: Bench, args: argparse.Namespace, shape: list[int], rounds: int
) -> tuple[list[Any], list[Any], float, float]:
    """Saga and floor phases in turn: every deal and floor run (or its error), and the summed
    wall time of each side."""
    sizes = [args.deals // rounds + (1 if r < args.deals % rounds else 0) for r in range(rounds)]
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
    return deals, floors, saga_wall, floor_wall


async def measure(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    shape = await warm_up(bench, args)
    activities_per_deal = sum(shape)
    # Saga and floor alternate in rounds, so drift (a busy neighbour on the machine, the dev
    # server's database growing) does not all land on one side.
    rounds = max(1, min(args.rounds, args.deals))
    await bench.twins.reset_stats()
    deals, floors, saga_wall, floor_wall = await rounds_of(bench, args, shape, rounds)
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
        "target_ratio_p50": TARGET_RATIO_P50,
        "meets_target": p50 / floor_p50 <= TARGET_RATIO_P50,
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
            "shapes_seen_in_sample": [list(s) for s in {tuple(shape_of(h)) for h in saga_hist}],
        },
        "floor": {
            "client_start_to_result": summary(floor_latencies),
            "workflow_start_to_close": summary(floor_execution),
            "breakdown": aggregate([breakdown(h) for h in floor_hist]),
        },
        "ratio_p50_execution_only": round(exec_p50 / floor_exec_p50, 3),
        "twins_during_saga_phases": twins,
        "errors": errors[:5] + floor_errors[:5],
        "notes": notes(args, rounds),
        "machine": machine(load=False),
        "config": {
            "deals": args.deals,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "rounds": rounds,
            "erp_quota_rps": args.erp_quota_rps,
            **topology(args),
            "history_sample": args.history_sample,
            "deal_timeout_s": args.deal_timeout_s,
            "twin_latency_ms": 0,
            "seed": SEED,
            "temporal": "embedded dev server, SQLite file under a temp home",
        },
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def notes(args: argparse.Namespace, rounds: int) -> list[str]:
    return [
        "The saga's latency includes the CRM set_stage call, the twin's signed webhook "
        "delivery, the gateway (signature check, SQLite inbox, start_workflow) and then the "
        "workflow; the floor is started by the client directly. "
        "ratio_p50_execution_only compares server-side start->close of both.",
        "Where each part runs: "
        + "; ".join(f"{k} {v}" for k, v in topology(args).items())
        + "; the bench client in the bench's process. The Temporal dev server (SQLite file) "
        "is a child process.",
        f"After a warm-up of both, saga and floor phases alternate in {rounds} rounds "
        "(never at the same time); throughputs are over the summed phase times.",
        f"ERP task queue quota erp_quota_rps={args.erp_quota_rps}/s "
        "(max_task_queue_activities_per_second; the ERP twin itself has no quota here).",
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_options(
        parser,
        [
            ("--deals", int, 200),
            ("--concurrency", int, 20, "deals (and floor runs) in flight"),
            ("--warmup", int, 5),
            ("--rounds", int, 2, "alternate saga and floor phases this many times"),
            (
                "--erp-quota-rps",
                float,
                50.0,
                "settings.erp_quota_rps: the ERP task queue's activities/s (default as shipped)",
            ),
        ],
    )
    add_flags(
        parser,
        {
            "--worker-in-process": "run the pssync worker and the floor's worker in the bench's "
            "process; default: each in its own process (`pssync worker`, as deployed)",
            "--gateway-in-process": "let the stack's gateway in the bench's process take the "
            "webhooks; default: `pssync gateway` in its own process, as deployed",
            "--worker-process": "accepted for old command lines: the default now",
            "--twins-in-process": "serve the twins inside the stack's process (charges the "
            "vendors' CPU to pssync); default: their own process, as remote vendors would be",
            "--serve-floor-worker": "internal: run only the floor's worker (the bench starts "
            "this in a child process)",
        },
    )
    add_options(parser, [("--history-sample", int, 40)])
    add_flags(parser, {"--keep-home": "keep the temp home (dev server DB, twins)"})
    add_options(parser, [("--deal-timeout-s", float, 120.0)])
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.serve_floor_worker:
        asyncio.run(serve_floor_worker())
        return 0
    result = asyncio.run(run(args))
    print_json(result)
    return 0 if result["deals_failed"] == 0 and result["floor_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
