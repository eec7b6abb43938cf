"""Ports and processes of the stack: in-loop uvicorn servers, free ports, the twins served in
their own process (`pssync sandbox`), gateway processes sharing the stack (`pssync gateway`)
and stopping a child by its id."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import uvicorn

from contracts.settings import Settings


async def serve(app_: Any, host: str, port: int) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """Serve `app_` in this event loop; returns the server, its task and the bound port."""
    server = uvicorn.Server(
        uvicorn.Config(app_, host=host, port=port, log_level="warning", access_log=False)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"server on {host}:{port} did not start")
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, task, bound


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a child by its id: SIGTERM, then SIGKILL if it does not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def start_twins_process(
    settings: Settings,
    seed: int,
    webhooks: dict[str, str],
    processes: list[subprocess.Popen[bytes]],
) -> int:
    """Start `pssync sandbox` as a child (appended to `processes`); returns its port once its
    /healthz answers."""
    import httpx

    port = free_port()
    # Files, not --memory: the in-memory twins share one SQLite connection, which is not
    # safe under concurrent requests.
    cmd = [sys.executable, "-m", "starter", "sandbox", "--port", str(port)]
    cmd += ["--seed", str(seed)]
    cmd += ["--crm-webhook-url", webhooks["crm_webhook_url"]]
    cmd += ["--psa-webhook-url", webhooks["psa_webhook_url"]]
    env = {**os.environ, "PSSYNC_HOME": str(settings.home / "twins-process")}
    with (settings.home / "twins.log").open("ab") as log:
        # Popen returns at once; the child gets its own copy of the log's descriptor.
        proc = subprocess.Popen(  # noqa: ASYNC220
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    processes.append(proc)
    deadline = asyncio.get_running_loop().time() + 60
    async with httpx.AsyncClient() as http:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"twins process exited ({proc.returncode}); see twins.log")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return port
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the twins process did not start")
            await asyncio.sleep(0.1)


def serve_twins(
    settings: Settings,
    *,
    port: int | None,
    seed: int,
    memory: bool,
    crm_webhook_url: str | None,
    psa_webhook_url: str | None,
) -> None:
    """Serve the four twins on 127.0.0.1 until stopped (what `pssync sandbox` runs)."""
    from sandbox.app import seeded_sandbox

    sandbox = seeded_sandbox(
        None if memory else settings.home,
        seed,
        crm_webhook_url=crm_webhook_url,
        psa_webhook_url=psa_webhook_url,
        webhook_secret=settings.webhook_secret_crm.get_secret_value(),
    )
    uvicorn.run(
        sandbox.app, host="127.0.0.1", port=port or settings.sandbox_port, log_level="warning"
    )


def process_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a pssync child process (`pssync worker`, `pssync gateway`) that is to
    share this stack: this process's environment without its PSSYNC_ variables, then the
    stack's home (payload keys), store, Temporal address and twins; then `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSSYNC_")}
    env.update(
        {
            "PSSYNC_HOME": str(settings.home),
            "PSSYNC_DATABASE_URL": settings.resolved_database_url,
            "PSSYNC_TEMPORAL__ADDRESS": settings.temporal.address,
            **{
                f"PSSYNC_{system.upper()}__BASE_URL": getattr(settings, system).base_url
                for system in ("crm", "psa", "erp", "hcm")
            },
            **(extra or {}),
        }
    )
    return env


async def start_gateway_process(
    settings: Settings,
    log: Path,
    extra_env: dict[str, str] | None = None,
    *,
    port: int | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """`pssync gateway` as a child on a loopback port (`port`, else a free one), sharing the
    stack's store, Temporal and keys (`process_env`); returns it and its URL once its /healthz
    answers. The caller stops it by its id (`stop_process`)."""
    import httpx

    port = port or free_port()
    env = process_env(
        settings,
        {"PSSYNC_GATEWAY_HOST": "127.0.0.1", "PSSYNC_GATEWAY_PORT": str(port), **(extra_env or {})},
    )
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220  (returns at once)
            [sys.executable, "-m", "starter", "gateway"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = asyncio.get_running_loop().time() + 120
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway process exited ({proc.returncode}); see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/healthz")).status_code < 500:
                    return proc, url
            if asyncio.get_running_loop().time() > deadline:
                stop_process(proc)
                raise TimeoutError(f"the gateway process did not start; see {log}")
            await asyncio.sleep(0.1)
