"""The whole stack in one process: `Stack` and `running_stack` (embedded dev server, gateway,
twins, worker), started in order and stopped in reverse, also on failure."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from temporalio.client import Client

from contracts.settings import Settings
from stack.processes import serve, start_twins_process, stop_process


@dataclass
class Stack:
    """Everything `pssync up` runs, with the URLs it prints."""

    settings: Settings
    client: Client
    urls: dict[str, str] = field(default_factory=dict)
    sandbox: Any = None
    store: Any = None


@dataclass
class _Children:
    """What `running_stack` started and stops on exit."""

    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    worker_task: asyncio.Task[None] | None = None


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings,
    *,
    seed: int = 7,
    ephemeral_ports: bool = False,
    run_worker: bool = True,
    sandbox_home: Path | None = None,
    twins_process: bool = False,
    webhook_base: str | None = None,
) -> AsyncIterator[Stack]:
    """Start the Temporal dev server, the gateway, the twins (seeded, webhooks pointed at the
    gateway) and the worker; stop all of it on exit, also on failure.

    `ephemeral_ports` lets the OS pick every port (tests, benchmarks); `run_worker=False`
    leaves the worker to a separate process (`pssync worker`), as the crash tests need;
    `twins_process=True` serves the twins from a child process (`pssync sandbox`), as remote
    vendors would be, so benchmarks do not charge their CPU to pssync (`stack.sandbox` is then
    None: nothing in this process can reach into the twins); `webhook_base` sends the twins'
    webhooks to `<webhook_base>/webhooks/crm|psa` instead of this gateway (a load balancer in
    front of gateway processes, as in the scale-out test)."""
    import store as store_module
    import worker
    from plumbing.telemetry import WORKER, start_tracing
    from sandbox.temporal import embedded_temporal

    settings.home.mkdir(parents=True, exist_ok=True)
    store_module.upgrade(settings.resolved_database_url)
    engine = store_module.make_engine(settings.resolved_database_url)
    port = None if ephemeral_ports else int(settings.temporal.address.rsplit(":", 1)[1])
    children = _Children()
    # SDK metrics (workflow/activity latencies, task slots, polls) for Prometheus, as in
    # `pssync worker`; tests and benchmarks skip them rather than take a fixed port.
    runtime = None if ephemeral_ports else worker.prometheus_runtime(settings.worker_metrics_port)
    async with embedded_temporal(
        settings,
        port=port,
        ui=not ephemeral_ports,
        runtime=runtime,
        codec_endpoint=None if ephemeral_ports else codec_endpoint(settings),
    ) as env:
        stack = Stack(settings=settings, client=env.client, store=store_module.Store(engine))
        _note_temporal(stack, ephemeral_ports)
        try:
            webhooks = await _start_gateway(stack, children, ephemeral_ports)
            if webhook_base is not None:
                webhooks = {
                    f"{system}_webhook_url": f"{webhook_base}/webhooks/{system}"
                    for system in ("crm", "psa")
                }
            sport = await _start_twins(
                stack,
                children,
                webhooks,
                seed=seed,
                ephemeral_ports=ephemeral_ports,
                sandbox_home=sandbox_home,
                twins_process=twins_process,
            )
            _point_at_twins(stack, sport)
            if run_worker:
                children.worker_task = asyncio.create_task(
                    worker.run_workers(
                        env.client,
                        settings,
                        children.stop,
                        tracing=start_tracing(settings.telemetry, WORKER),  # None when off
                    )
                )
            yield stack
        finally:
            await _shutdown(stack, children)
            engine.dispose()


def codec_endpoint(settings: Settings) -> str:
    """The gateway's codec server as a browser on this machine reaches it (the Temporal UI
    posts to `<endpoint>/decode`)."""
    host = settings.gateway_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{settings.gateway_port}/codec"


def _note_temporal(stack: Stack, ephemeral_ports: bool) -> None:
    """The dev server's address (also into settings.temporal), its UI and the worker's metrics."""
    settings = stack.settings
    stack.urls["temporal"] = stack.client.service_client.config.target_host
    settings.temporal.address = stack.urls["temporal"]
    if not ephemeral_ports:
        stack.urls["temporal_ui"] = f"http://127.0.0.1:{settings.temporal.ui_port}"
        stack.urls["worker_metrics"] = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"


async def _start_gateway(
    stack: Stack, children: _Children, ephemeral_ports: bool
) -> dict[str, str]:
    """Serve the gateway; returns the webhook URLs the twins are to call."""
    from gateway import create_app as create_gateway

    settings = stack.settings
    gateway = create_gateway(settings, stack.store, stack.client)
    server, task, gport = await serve(
        gateway, settings.gateway_host, 0 if ephemeral_ports else settings.gateway_port
    )
    children.servers.append((server, task))
    stack.urls["gateway"] = f"http://{settings.gateway_host}:{gport}"
    stack.urls["gateway_metrics"] = f"{stack.urls['gateway']}/metrics"
    stack.urls["exceptions_api"] = f"{stack.urls['gateway']}/api/exceptions"
    stack.urls["codec_server"] = f"{stack.urls['gateway']}/codec"
    if settings.console.enabled:
        stack.urls["console"] = f"{stack.urls['gateway']}/console"
    return {
        "crm_webhook_url": f"{stack.urls['gateway']}/webhooks/crm",
        "psa_webhook_url": f"{stack.urls['gateway']}/webhooks/psa",
    }


async def _start_twins(
    stack: Stack,
    children: _Children,
    webhooks: dict[str, str],
    *,
    seed: int,
    ephemeral_ports: bool,
    sandbox_home: Path | None,
    twins_process: bool,
) -> int:
    """Serve the seeded twins, in this process or in their own; returns their port."""
    from sandbox.app import seeded_sandbox

    settings = stack.settings
    if twins_process:
        return await start_twins_process(settings, seed, webhooks, children.processes)
    sandbox = seeded_sandbox(
        sandbox_home or settings.home / "sandbox-run",
        seed,
        webhook_secret=settings.webhook_secret_crm.get_secret_value(),
        **webhooks,
    )
    server, task, sport = await serve(
        sandbox.app, "127.0.0.1", 0 if ephemeral_ports else settings.sandbox_port
    )
    children.servers.append((server, task))
    stack.sandbox = sandbox
    return sport


def _point_at_twins(stack: Stack, sport: int) -> None:
    """The twins' URLs, and every connector's base URL pointed at its twin."""
    stack.urls["sandbox"] = f"http://127.0.0.1:{sport}"
    for system in ("crm", "psa", "erp", "hcm"):
        stack.urls[f"{system}_twin_docs"] = f"http://127.0.0.1:{sport}/{system}/docs"
    for system in ("crm", "psa", "erp", "hcm"):
        getattr(stack.settings, system).base_url = f"http://127.0.0.1:{sport}/{system}"


async def _shutdown(stack: Stack, children: _Children) -> None:
    """Stop the worker, close the twins' webhook senders, stop the servers in reverse, then the
    child processes."""
    children.stop.set()
    if children.worker_task is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(children.worker_task, 30)
    if stack.sandbox is not None:
        for twin in stack.sandbox.twins.values():
            if twin.state.twin.webhooks is not None:
                await twin.state.twin.webhooks.aclose()
    for server, task in reversed(children.servers):
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
    for proc in children.processes:
        stop_process(proc)
