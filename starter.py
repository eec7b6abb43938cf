"""`pssync`: the command line. Starts the stack, drives workflows, exports contracts.

pssync demo                  # the whole stack on the embedded default, a scenario, checks
pssync up                    # the whole stack in the foreground until Ctrl-C
pssync worker                # workers only, against settings.temporal
pssync sandbox --port 8100   # the four twins
pssync contracts export DIR  # one JSON Schema per canonical model
pssync db upgrade            # apply the store's migrations
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from contracts.naming import TASK_QUEUE
from contracts.settings import Settings, SettingsError, load_settings

console = Console()
app = typer.Typer(help="pssync: keep CRM, PSA, ERP and HCM in step.", no_args_is_help=True)
contracts_app = typer.Typer(help="Canonical contracts.", no_args_is_help=True)
db_app = typer.Typer(help="The integration store.", no_args_is_help=True)
sandbox_app = typer.Typer(help="Twins of the four systems of record.", invoke_without_command=True)
app.add_typer(contracts_app, name="contracts")
app.add_typer(db_app, name="db")
app.add_typer(sandbox_app, name="sandbox")


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


# --------------------------------------------------------------------------- small commands


@contracts_app.command("export")
def contracts_export(directory: Path) -> None:
    """Write one JSON Schema per canonical model into DIRECTORY."""
    from contracts.schema_export import export_schemas

    paths = export_schemas(directory)
    console.print(f"wrote {len(paths)} schemas to {directory}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the store's Alembic migrations (also done automatically by `up`)."""
    import store

    settings = _settings()
    store.upgrade(settings.resolved_database_url)
    console.print(f"store at head: {settings.resolved_database_url}")


@app.command("worker")
def worker_command() -> None:
    """Run the workers against settings.temporal until Ctrl-C."""
    import worker

    worker.main()


@sandbox_app.callback()
def sandbox_serve(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="Port (default settings.sandbox_port)")] = None,
    seed: Annotated[int, typer.Option(help="Seed the firm with this number")] = 7,
    memory: Annotated[bool, typer.Option(help="Keep twin data in memory")] = False,
) -> None:
    """Serve the four twins on 127.0.0.1 (mounted at /crm, /psa, /erp, /hcm)."""
    if ctx.invoked_subcommand is not None:
        return
    from sandbox.app import seeded_sandbox

    settings = _settings()
    sandbox = seeded_sandbox(None if memory else settings.home, seed)
    uvicorn.run(sandbox.app, host="127.0.0.1", port=port or settings.sandbox_port)


@sandbox_app.command("seed")
def sandbox_seed(seed: Annotated[int, typer.Option(help="Seed number")] = 7) -> None:
    """Build the seeded firm into the twins' databases under settings.home."""
    from sandbox.app import create_sandbox
    from sandbox.seed import build_firm

    settings = _settings()
    firm = build_firm(seed)
    create_sandbox(settings.home).seed(firm)
    console.print(
        f"seeded firm {seed}: {len(firm.workers)} workers, {len(firm.customers)} customers, "
        f"{len(firm.opportunities)} open opportunities, {len(firm.periods)} periods"
    )


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """Everything `pssync up` runs, with the URLs it prints."""

    settings: Settings
    client: Client
    urls: dict[str, str] = field(default_factory=dict)
    sandbox: Any = None


async def _serve(app_: Any, host: str, port: int) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
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


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings, *, seed: int = 7, ephemeral_ports: bool = False
) -> AsyncIterator[Stack]:
    """Start the Temporal dev server, the twins (seeded), the worker and the gateway; stop all
    of it on exit, also on failure. `ephemeral_ports` lets the OS pick every port (tests)."""
    import store
    import worker
    from sandbox.app import seeded_sandbox
    from sandbox.temporal import embedded_temporal

    settings.home.mkdir(parents=True, exist_ok=True)
    store.upgrade(settings.resolved_database_url)
    port = None if ephemeral_ports else int(settings.temporal.address.rsplit(":", 1)[1])
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
    stop = asyncio.Event()
    async with embedded_temporal(settings, port=port, ui=not ephemeral_ports) as env:
        stack = Stack(settings=settings, client=env.client)
        target = env.client.service_client.config.target_host
        stack.urls["temporal"] = target
        if not ephemeral_ports:
            stack.urls["temporal_ui"] = f"http://127.0.0.1:{settings.temporal.ui_port}"
        try:
            sandbox = seeded_sandbox(settings.home / "run", seed)
            server, task, sport = await _serve(
                sandbox.app, "127.0.0.1", 0 if ephemeral_ports else settings.sandbox_port
            )
            servers.append((server, task))
            stack.sandbox = sandbox
            stack.urls["sandbox"] = f"http://127.0.0.1:{sport}"
            for system in ("crm", "psa", "erp", "hcm"):
                getattr(settings, system).base_url = f"http://127.0.0.1:{sport}/{system}"
            worker_task = asyncio.create_task(worker.run_workers(env.client, settings, stop))
            yield stack
        finally:
            stop.set()
            if "worker_task" in locals():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(worker_task, 30)
            for server, task in reversed(servers):
                server.should_exit = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 10)
            if stack.sandbox is not None:
                for twin in stack.sandbox.twins.values():
                    if twin.state.twin.webhooks is not None:
                        await twin.state.twin.webhooks.aclose()


def _print_urls(stack: Stack) -> None:
    table = Table(title="pssync is up", show_header=False)
    for name, url in stack.urls.items():
        table.add_row(name, url)
    console.print(table)


@app.command("up")
def up(seed: Annotated[int, typer.Option(help="Seed for the twins' firm")] = 7) -> None:
    """The whole stack in the foreground on the embedded default; Ctrl-C stops all of it."""
    settings = _settings()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with running_stack(settings, seed=seed) as stack:
            _print_urls(stack)
            console.print("Ctrl-C stops everything.")
            await stop.wait()
        console.print("stopped.")

    asyncio.run(main())


@app.command("doctor")
def doctor() -> None:
    """Run the Doctor workflow against settings.temporal (a worker must be running)."""
    import worker
    from activities.doctor import PingInput

    settings = _settings()

    async def main() -> None:
        client = await worker.connect_client(settings)
        result = await client.execute_workflow(
            "Doctor", PingInput(message="hello"), id="pssync-doctor", task_queue=TASK_QUEUE
        )
        console.print(f"doctor: {result}")

    asyncio.run(main())


@app.command("demo")
def demo(
    keep_running: Annotated[bool, typer.Option(help="Leave the stack up afterwards")] = False,
    seed: Annotated[int, typer.Option(help="Seed for the twins' firm")] = 7,
) -> None:
    """Start the stack, run the scenario, check every system, print a summary."""
    settings = _settings()
    ok = asyncio.run(run_demo(settings, seed=seed, keep_running=keep_running))
    raise typer.Exit(0 if ok else 1)


# --------------------------------------------------------------------------- the demo


async def run_demo(settings: Settings, *, seed: int, keep_running: bool) -> bool:
    """Start the stack, drive the scenario, check what each system holds. True if all held."""
    from activities.doctor import PingInput

    checks: list[tuple[str, bool, str]] = []
    async with running_stack(settings, seed=seed) as stack:
        _print_urls(stack)
        with console.status("doctor workflow: client -> server -> worker -> activity"):
            result = await stack.client.execute_workflow(
                "Doctor",
                PingInput(message="hello"),
                id="pssync-demo-doctor",
                task_queue=TASK_QUEUE,
            )
        checks.append(("a worker ran the doctor workflow", result.message == "hello", ""))
        table = Table(title="demo checks")
        table.add_column("check")
        table.add_column("held")
        table.add_column("detail")
        for name, held, detail in checks:
            table.add_row(name, "[green]yes[/green]" if held else "[red]NO[/red]", detail)
        console.print(table)
        if keep_running:
            console.print("--keep-running: the stack stays up; Ctrl-C stops everything.")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
    return all(held for _, held, _ in checks)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    app()


if __name__ == "__main__":
    main()
