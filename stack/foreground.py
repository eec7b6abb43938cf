"""The stack in the foreground: its URL table, stopping on SIGINT/SIGTERM (`pssync up`), the
gateway alone (`pssync gateway`) and the Doctor workflow (`pssync doctor`)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import uvicorn
from rich.console import Console
from rich.table import Table

from contracts.naming import TASK_QUEUE
from contracts.settings import Settings
from plumbing.logs import configure_logging
from stack.running import Stack, running_stack


def print_urls(stack: Stack, console: Console | None = None) -> None:
    """Print the table of what the stack serves where."""
    table = Table(title="pssync is up", show_header=False)
    for name, url in stack.urls.items():
        table.add_row(name, url)
    (console or Console()).print(table)


def stop_on_signal() -> asyncio.Event:
    """An event that SIGINT (Ctrl-C) or SIGTERM sets, from now on."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_until_signal(settings: Settings, *, seed: int, console: Console) -> None:
    """The whole stack until Ctrl-C (or SIGTERM) stops all of it."""
    configure_logging(settings.telemetry)  # text or JSON lines, redacted, httpx quiet
    stop = stop_on_signal()
    async with running_stack(settings, seed=seed) as stack:
        print_urls(stack, console)
        console.print("Ctrl-C stops everything.")
        await stop.wait()
    console.print("stopped.")


async def serve_gateway(settings: Settings) -> None:
    """Serve the gateway (webhooks, exceptions API, /metrics) against settings.temporal."""
    import store
    import worker
    from gateway import create_app as create_gateway

    configure_logging(settings.telemetry)  # text or JSON lines, redacted, httpx quiet
    store.upgrade(settings.resolved_database_url)
    client = await worker.connect_client(settings)
    app_ = create_gateway(
        settings, store.Store(store.make_engine(settings.resolved_database_url)), client
    )
    server = uvicorn.Server(
        uvicorn.Config(app_, host=settings.gateway_host, port=settings.gateway_port)
    )
    await server.serve()


async def run_doctor(settings: Settings) -> Any:
    """Run the Doctor workflow against settings.temporal (a worker must be running)."""
    import worker
    from activities.doctor import PingInput

    client = await worker.connect_client(settings)
    return await client.execute_workflow(
        "Doctor", PingInput(message="hello"), id="pssync-doctor", task_queue=TASK_QUEUE
    )
