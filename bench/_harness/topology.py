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
import contextlib
import sys
from pathlib import Path

import httpx

from bench._harness.processes import ROOT, stop_worker_process
from contracts.settings import Settings
from stack.processes import process_env
from tests._servers import free_port

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


class GatewayProcess:
    """`pssync gateway` as a child on `url` (127.0.0.1, a port the OS picked), started once the
    stack is up and stopped by its id."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, settings: Settings, extra_env: dict[str, str] | None = None) -> None:
        """Start it with the stack's `settings` and wait until its /healthz answers."""
        env = process_env(
            settings,
            {
                "PSSYNC_GATEWAY_HOST": "127.0.0.1",
                "PSSYNC_GATEWAY_PORT": str(self.port),
                **(extra_env or {}),
            },
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "starter",
                "gateway",
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                self.check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/healthz")).status_code < 500:
                        return
                if asyncio.get_running_loop().time() > deadline:
                    await self.stop()
                    raise TimeoutError(f"the gateway process did not start; see {self.log_path}")
                await asyncio.sleep(0.1)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.returncode is not None:
            raise RuntimeError(
                f"the gateway process exited ({self.proc.returncode}); see {self.log_path}"
            )

    async def stop(self) -> None:
        """SIGTERM by its id, SIGKILL if it is still there after `STOP_TIMEOUT_S`."""
        if self.proc is not None:
            await stop_worker_process(self.proc, STOP_TIMEOUT_S)
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
