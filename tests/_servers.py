"""Run an ASGI app on 127.0.0.1 with an OS-assigned port for the length of a test.

    async with serve(app) as base_url:
        ...

The server is an asyncio task of the test's own loop and is always shut down, also on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any, Literal

import uvicorn


@contextlib.asynccontextmanager
async def serve(
    app: Any, *, log_level: str = "warning", lifespan: Literal["auto", "on", "off"] = "on"
) -> AsyncIterator[str]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level=log_level, lifespan=lifespan, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # surfaces the start-up error
                raise RuntimeError("server exited before it started")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_worker_process(
    settings: Any, log: Any, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`pssync worker` (worker.main) in its own process, configured like the stack's own: the
    stack's Temporal, store and twins. The caller stops it by its id (see `stop_process`)."""
    env = {
        **os.environ,
        "PSSYNC_HOME": str(settings.home),
        "PSSYNC_DATABASE_URL": settings.resolved_database_url,
        "PSSYNC_TEMPORAL__ADDRESS": settings.temporal.address,
        "PSSYNC_WORKER_METRICS_PORT": str(free_port()),
        "PSSYNC_WORKER_APP_METRICS_PORT": str(free_port()),
        **(extra_env or {}),
    }
    for system in ("crm", "psa", "erp", "hcm"):
        env[f"PSSYNC_{system.upper()}__BASE_URL"] = getattr(settings, system).base_url
    return subprocess.Popen(
        [sys.executable, "-c", "import worker; worker.main()"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
