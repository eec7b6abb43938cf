"""What the embedded Temporal dev server costs pssync's designs, measured on this machine.

    python bench/temporal_costs.py [--sleeps 10] [--signals 800] [--memory]

1. **Timer resolution**: a workflow sleeps 50, 200, 500 and 1,000 ms, `--sleeps` times each;
   how long each sleep took in workflow time. (Why `TimeToInvoice` no longer lingers on a
   timer: Temporal fires timers no sooner than about a second.)
2. **Server CPU per signal**: 8 running workflows take `--signals` signals (16 in flight), as
   plain signals and as signal-with-start (what the gateway sends); the dev server's CPU
   (from /proc) per signal, each with the workflow task it causes. The baseline is the same
   server idle for as long.

The dev server persists to a SQLite file as `pssync up` runs it (`--memory`: in memory). The
last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

QUEUE = "bench-temporal-costs"


@workflow.defn(name="BenchSleeps")
class BenchSleeps:
    @workflow.run
    async def run(self, count: int, ms: int) -> list[float]:
        took = []
        for _ in range(count):
            began = workflow.now()
            await workflow.sleep(timedelta(milliseconds=ms))
            took.append((workflow.now() - began).total_seconds())
        return took


@workflow.defn(name="BenchSignals")
class BenchSignals:
    def __init__(self) -> None:
        self.refs = 0

    @workflow.signal(name="refs")
    def take(self, refs: list[str]) -> None:
        self.refs += len(refs)

    @workflow.run
    async def run(self, _: str) -> int:
        await workflow.wait_condition(lambda: self.refs < 0)
        return self.refs


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_pid() -> int:
    """The dev server's pid: the child of this process whose command line says start-dev."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and b"start-dev" in cmd:
            return int(entry.name)
    raise RuntimeError("dev server process not found")


async def _signals(client: Client, pid: int, count: int, mode: str) -> dict[str, float]:
    ids = [f"bench-signals-{uuid.uuid4().hex[:8]}-{i}" for i in range(8)]
    for wid in ids:
        await client.start_workflow(BenchSignals.run, "x", id=wid, task_queue=QUEUE)
    await asyncio.sleep(1)
    gate = asyncio.Semaphore(16)

    async def one(k: int) -> None:
        async with gate:
            wid, refs = ids[k % len(ids)], ["ref"] * 10
            if mode == "signal":
                await client.get_workflow_handle(wid).signal("refs", refs)
            else:
                await client.start_workflow(
                    BenchSignals.run,
                    "x",
                    id=wid,
                    task_queue=QUEUE,
                    start_signal="refs",
                    start_signal_args=[refs],
                )

    cpu0, t0 = _cpu_s(pid), time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(count)))
    await asyncio.sleep(1)  # the workflow tasks the last signals caused
    cpu, wall = _cpu_s(pid) - cpu0, time.perf_counter() - t0
    for wid in ids:
        await client.get_workflow_handle(wid).terminate()
    return {
        "server_cpu_ms_per_signal": round(cpu * 1000 / count, 2),
        "signals_per_s": round(count / wall, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from sandbox.temporal import find_binary

    with tempfile.TemporaryDirectory() as home:
        db = None if args.memory else str(Path(home) / "temporal.db")
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=find_binary("temporal"),
            dev_server_database_filename=db,
            ui=False,
        )
        async with (
            env,
            Worker(env.client, task_queue=QUEUE, workflows=[BenchSleeps, BenchSignals]),
        ):
            pid = _server_pid()
            sleeps: dict[str, Any] = {}
            for ms in (50, 200, 500, 1000):
                took = await env.client.execute_workflow(
                    BenchSleeps.run,
                    args=[args.sleeps, ms],
                    id=f"bench-sleeps-{ms}-{uuid.uuid4().hex[:6]}",
                    task_queue=QUEUE,
                )
                sleeps[f"{ms}ms"] = {
                    "min_s": round(min(took), 3),
                    "median_s": round(sorted(took)[len(took) // 2], 3),
                    "max_s": round(max(took), 3),
                }
                print(f"sleep {ms} ms: took {sleeps[f'{ms}ms']}", flush=True)
            cpu0, t0 = _cpu_s(pid), time.perf_counter()
            await asyncio.sleep(args.idle_s)
            idle = (_cpu_s(pid) - cpu0) / (time.perf_counter() - t0)
            signals = {}
            for mode in ("signal", "signal_with_start"):
                signals[mode] = await _signals(env.client, pid, args.signals, mode)
                print(f"{mode}: {signals[mode]}", flush=True)
    return {
        "bench": "temporal_costs",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "persistence": "memory" if args.memory else "sqlite file",
        "sleeps": sleeps,
        "server_idle_cores": round(idle, 4),
        "signals": signals,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sleeps", type=int, default=10, help="sleeps of each duration")
    p.add_argument("--signals", type=int, default=800, help="signals of each kind")
    p.add_argument("--idle-s", type=float, default=5.0, help="idle baseline window")
    p.add_argument("--memory", action="store_true", help="dev server in memory")
    return p


def main() -> None:
    print(json.dumps(asyncio.run(run(parser().parse_args()))))


if __name__ == "__main__":
    main()
