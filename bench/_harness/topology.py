"""Where a bench runs pssync's gateway, and child processes that say when they are ready.

`GatewayProcess`: `pssync gateway` in its own process on a loopback port, as `pssync up`'s
compose file deploys it, sharing the stack's home (payload keys), store, Temporal and twins
(`stack.processes.process_env`). Its port is picked (by the OS, `free_port`) before the stack
starts, because the twins are told where to send their webhooks when they start:

    gateway = GatewayProcess(home / "gateway.log")
    async with running_stack(settings, ..., webhook_base=gateway.url) as stack:
        await gateway.start(stack.settings)
        try:
            ...
        finally:
            await gateway.stop()

`running_stack` still serves its own gateway in the stack's process; with `webhook_base` no
twin sends it anything, so it stays idle. `start_ready_child` starts a Python child that prints
one line on stdout once it serves (the floor worker of `opportunity_to_project.py`)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from bench._harness.processes import ROOT, stop_worker_process
from contracts.settings import Settings
from stack.processes import free_port, start_gateway_process, stop_process

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


class GatewayProcess:
    """`pssync gateway` as a child on `url` (127.0.0.1, a port the OS picked), started once the
    stack is up (`stack.processes.start_gateway_process`) and stopped by its id."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, settings: Settings, extra_env: dict[str, str] | None = None) -> None:
        """Start it with the stack's `settings` and wait until its /healthz answers."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc, _ = await start_gateway_process(
            settings, self.log_path, extra_env, port=self.port
        )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"the gateway process exited ({self.proc.returncode}); see {self.log_path}"
            )

    async def stop(self) -> None:
        """SIGTERM by its id, SIGKILL if it does not go (`stack.processes.stop_process`)."""
        if self.proc is not None:
            await asyncio.to_thread(stop_process, self.proc)
            self.proc = None


async def start_ready_child(
    args: list[str], env: dict[str, str], *, what: str, timeout_s: float = START_TIMEOUT_S
) -> asyncio.subprocess.Process:
    """`python <args>` in ROOT with `env`, its stderr this process's (inherited); returns once
    it has printed its one line on stdout (it is serving), else stops it and raises."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
    except TimeoutError:
        await stop_worker_process(proc, STOP_TIMEOUT_S)
        raise TimeoutError(f"{what} did not start in {timeout_s:.0f} s") from None
    if not line:
        await stop_worker_process(proc, STOP_TIMEOUT_S)
        raise RuntimeError(f"{what} exited before it started ({proc.returncode})")
    return proc
