"""Processes a bench starts and stops by their id: the pssync worker (in this process or as
`pssync worker` in a child), an ASGI app on a free port; and CPU seconds per process (the
gateway process and the floor worker of `bench/_harness/topology.py` under their own names)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from bench._harness.waiting import until
from contracts.naming import TASK_QUEUE, erp_task_queue
from contracts.settings import Settings
from tests._servers import free_port, serve

if TYPE_CHECKING:
    from stack import Stack

SYSTEMS = ("crm", "psa", "erp", "hcm")
ROOT = Path(__file__).resolve().parents[2]
WORKER_COMMAND = (
    # `pssync worker` logs at INFO, which makes httpx log every vendor request; the
    # in-process worker does not, so neither does this one.
    "import logging, worker; logging.getLogger('httpx').setLevel(logging.WARNING); worker.main()"
)


@contextlib.asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """`app` on 127.0.0.1 (an OS-assigned port, no lifespan) for the length of the block."""
    async with serve(app, log_level="error", lifespan="off") as base_url:
        yield base_url


# --------------------------------------------------------------------------- CPU


def process_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of this process and of each of its children, by name
    (Linux /proc; empty elsewhere). Children of children (e.g. the twins' server) count apart
    under their own name when they are direct children."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    me = os.getpid()
    out: dict[str, float] = {}
    proc = Path("/proc")
    if not proc.exists():
        return out
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2 :].split()
        pid, ppid = int(entry.name), int(rest[1])
        if pid != me and ppid != me:
            continue
        seconds = (int(rest[11]) + int(rest[12])) / tick
        words = [c.decode(errors="replace") for c in cmd if c]
        if pid == me:
            name = "bench"
        elif any("temporal" in Path(w).name for w in words[:1]):
            name = "temporal_dev_server"
        elif "sandbox" in words:
            name = "twins"
        elif any("worker.main()" in w for w in words):
            name = "worker_process"
        elif "starter" in words and "gateway" in words:
            name = "gateway_process"
        elif "--serve-floor-worker" in words:
            name = "floor_worker"
        else:
            name = Path(words[0]).name if words else entry.name
        out[name] = out.get(name, 0.0) + seconds
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, Any]:
    return {
        name: {
            "cpu_s": round(after[name] - before.get(name, 0.0), 2),
            "cores": round((after[name] - before.get(name, 0.0)) / wall, 2) if wall else None,
        }
        for name in sorted(after)
    }


def cpu_budget(cpu: dict[str, Any], units: int, *, rate: float | None = None) -> dict[str, Any]:
    """What one unit of work (an entry, an approval) cost in CPU, from a phase's `cpu_delta`:
    milliseconds per process and in all, and what that means on this machine — `ceiling_per_s`,
    the most units a second its usable CPUs could do at that cost if nothing else ran and every
    process were perfectly parallel; with `rate` (units a second offered), `cores_needed` to
    keep up and whether that is more than the machine has (`saturated`: work then queues and
    latency grows for as long as the load lasts)."""
    if not units:
        return {}
    per = {name: round(v["cpu_s"] * 1000 / units, 3) for name, v in cpu.items()}
    total_ms = sum(per.values())
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out: dict[str, Any] = {
        "ms_per_unit": per,
        "ms_per_unit_total": round(total_ms, 3),
        "cpus_usable": cpus,
        "ceiling_per_s": round(cpus * 1000 / total_ms, 1) if total_ms and cpus else None,
    }
    if rate is not None:
        needed = rate * total_ms / 1000
        out["cores_needed"] = round(needed, 2)
        out["saturated"] = bool(cpus) and needed > (cpus or 0)
    return out


# --------------------------------------------------------------------------- the worker


def worker_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without its PSSYNC_ variables, then the stack's: home,
    Temporal, ERP quota, a free metrics port, the twins' URLs; then `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSSYNC_")}
    env.update(
        {
            "PSSYNC_HOME": str(settings.home),
            "PSSYNC_TEMPORAL__ADDRESS": settings.temporal.address,
            "PSSYNC_ERP_QUOTA_RPS": str(settings.erp_quota_rps),
            "PSSYNC_WORKER_METRICS_PORT": str(free_port()),
            "PSSYNC_WORKER_APP_METRICS_PORT": str(free_port()),
            **{f"PSSYNC_{n.upper()}__BASE_URL": getattr(settings, n).base_url for n in SYSTEMS},
            **(extra or {}),
        }
    )
    return env


async def start_worker_process(
    settings: Settings,
    *,
    stdout: IO[bytes] | int,
    stderr: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> asyncio.subprocess.Process:
    """`pssync worker` in a child process, configured like the in-process one would be (the
    deployed topology: the worker does not share a GIL with the twins and the gateway)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER_COMMAND,
        cwd=ROOT,
        env=worker_env(settings, extra_env),
        stdout=stdout,
        stderr=stderr,
    )


async def stop_worker_process(proc: asyncio.subprocess.Process, timeout_s: float) -> None:
    """SIGTERM by its id, then SIGKILL after `timeout_s`."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def pollers(client: Client, queue: str, kind: TaskQueueType.ValueType) -> set[str]:
    """The identities polling `queue` for `kind` tasks now (the SDK's default identity is
    `<pid>@<host>`)."""
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind
        )
    )
    return {p.identity for p in answer.pollers}


async def wait_polling(
    client: Client, proc: asyncio.subprocess.Process, *, timeout_s: float = 120.0
) -> None:
    """Until the worker process `proc` polls pssync's task queue for workflow tasks and the
    ERP queue for activity tasks (so a phase's clock does not count its start-up)."""
    wanted = (
        (TASK_QUEUE, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        (erp_task_queue(TASK_QUEUE), TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    )

    async def check() -> bool:
        if proc.returncode is not None:
            raise RuntimeError(f"the worker process exited ({proc.returncode})")
        for queue, kind in wanted:
            if not any(i.startswith(f"{proc.pid}@") for i in await pollers(client, queue, kind)):
                return False
        return True

    await until(check, timeout_s=timeout_s, every_s=0.1, what="the worker process polling")


class WorkerRunner:
    """The pssync worker with per-phase settings: in this process (`worker.run_workers`), or as
    `pssync worker` in a child process (`start` returns once it polls). `restart` stops the
    running one first."""

    def __init__(
        self,
        stack: Stack,
        *,
        in_process: bool,
        log_path: Path,
        sweep_interval_s: float,
    ) -> None:
        self.stack = stack
        self.in_process = in_process
        self.log_path = log_path
        self.sweep_interval_s = sweep_interval_s
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self.settings: Settings | None = None

    def phase_settings(self, *, erp_quota_rps: float, erp_rate_limit_rps: float | None) -> Settings:
        s = self.stack.settings.model_copy(deep=True)
        s.erp_quota_rps = erp_quota_rps
        s.erp = s.erp.model_copy(update={"rate_limit_rps": erp_rate_limit_rps})
        s.time_sweep_interval_s = self.sweep_interval_s
        return s

    async def start(self, settings: Settings) -> None:
        import worker

        self.settings = settings
        if self.in_process:
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(
                worker.run_workers(self.stack.client, settings, self._stop)
            )
            return
        extra = {
            "PSSYNC_DATABASE_URL": settings.resolved_database_url,
            "PSSYNC_TIME_SWEEP_INTERVAL_S": str(settings.time_sweep_interval_s),
        }
        if settings.erp.rate_limit_rps:
            extra["PSSYNC_ERP__RATE_LIMIT_RPS"] = str(settings.erp.rate_limit_rps)
        with self.log_path.open("ab") as out:
            self._proc = await start_worker_process(
                settings, stdout=out, stderr=asyncio.subprocess.STDOUT, extra_env=extra
            )
        await wait_polling(self.stack.client, self._proc)

    async def stop(self) -> None:
        if self._task is not None and self._stop is not None:
            self._stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 60)
            self._task = self._stop = None
        if self._proc is not None:
            await stop_worker_process(self._proc, 60)
            self._proc = None

    async def restart(self, settings: Settings) -> None:
        await self.stop()
        await self.start(settings)

    def check_alive(self) -> None:
        if self._task is not None and self._task.done():
            self._task.result()
            raise RuntimeError("the in-process worker stopped")
        if self._proc is not None and self._proc.returncode is not None:
            raise RuntimeError(f"the worker process exited ({self._proc.returncode})")
