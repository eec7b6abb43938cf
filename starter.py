"""`pssync`: the command line. Starts the stack, drives workflows, exports contracts.

pssync demo                  # the whole stack on the embedded default, a scenario, checks
pssync up                    # the whole stack in the foreground until Ctrl-C
pssync worker [--processes N] # workers only, against settings.temporal
pssync sandbox --port 8100   # the four twins
pssync contracts export DIR  # one JSON Schema per canonical model
pssync db upgrade            # apply the store's migrations
pssync keys new              # a new payload encryption key (the newest encrypts)
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from contracts.settings import Settings, SettingsError, load_settings

# ---- Re-exports. Besides what the commands use, these imports keep the names that tests and
# benches reach as `starter.X` (`X as X`); the code lives in the `stack` and `demo` packages:
# import it from there.
from demo import Check as Check
from demo import DealOutcome as DealOutcome
from demo import TerminationOutcome as TerminationOutcome
from demo import change_order_scene as change_order_scene
from demo import deal_from_template as deal_from_template
from demo import provisionable_templates as provisionable_templates
from demo import redeliver_webhook as redeliver_webhook
from demo import run_demo
from demo import run_scenario as run_scenario
from demo import systems_hold as systems_hold
from demo import termination_scene as termination_scene
from demo import time_to_invoice_scene as time_to_invoice_scene
from demo import wait_for_open_exception as wait_for_open_exception
from demo import wait_for_step as wait_for_step
from demo import wait_for_workflow as wait_for_workflow
from demo import win_deal as win_deal
from demo.waits import actor_token
from stack import Stack as Stack
from stack import print_urls, run_doctor, run_until_signal, serve_gateway, serve_twins
from stack import running_stack as running_stack
from stack.processes import free_port, serve, start_twins_process, stop_process

# ...and the private names they had here.
_token = actor_token
_print_urls = print_urls
_serve = serve
_free_port = free_port
_stop_process = stop_process
_start_twins_process = start_twins_process
# ---- end of re-exports

console = Console()
app = typer.Typer(help="pssync: keep CRM, PSA, ERP and HCM in step.", no_args_is_help=True)
contracts_app = typer.Typer(help="Canonical contracts.", no_args_is_help=True)
db_app = typer.Typer(help="The integration store.", no_args_is_help=True)
sandbox_app = typer.Typer(help="Twins of the four systems of record.", invoke_without_command=True)
app.add_typer(contracts_app, name="contracts")
app.add_typer(db_app, name="db")
app.add_typer(sandbox_app, name="sandbox")
keys_app = typer.Typer(help="Payload encryption keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
events_app = typer.Typer(help="Domain events (docs/events.md).", no_args_is_help=True)
app.add_typer(events_app, name="events")


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


@events_app.command("tail")
def events_tail(
    event_type: Annotated[
        str | None, typer.Option("--type", help="Only this type, e.g. time.posted")
    ] = None,
    subject: Annotated[
        str | None, typer.Option("--subject", help="Only events about this enterprise id")
    ] = None,
) -> None:
    """Print domain events live from NATS JetStream (an ephemeral ordered consumer)."""
    import asyncio
    import json

    import nats

    from activities.events_relay import SUBJECT_PREFIX

    settings = _settings().events

    async def tail() -> None:
        nc = await nats.connect(settings.nats_url)
        js = nc.jetstream()
        filter_ = SUBJECT_PREFIX + (event_type or ">")
        sub = await js.subscribe(filter_, ordered_consumer=True, deliver_policy="new")
        console.print(f"[dim]tailing {filter_} on {settings.nats_url} (Ctrl-C stops)[/dim]")
        try:
            async for msg in sub.messages:
                event = json.loads(msg.data)
                if subject is not None and event.get("subject") != subject:
                    continue
                console.print(
                    f"[cyan]{event['time']}[/cyan] [bold]{event['type']}[/bold] "
                    f"[green]{event['subject']}[/green] {event['id']}"
                )
                console.print_json(data=event["data"])
        finally:
            await nc.close()

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        pass


@events_app.command("relay")
def events_relay() -> None:
    """Relay the outbox to the events sink and raise SLA alerts, as its own process, until
    Ctrl-C or SIGTERM. Run this or the worker's relay (`PSSYNC_EVENTS__ENABLED=true`), not both."""
    import asyncio
    import signal

    from activities.events_relay import serve_relay

    settings = _settings()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        console.print(f"[dim]relaying events to {settings.events.sink} (Ctrl-C stops)[/dim]")
        await serve_relay(settings, stop)

    asyncio.run(serve())
    console.print("events relay stopped")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the store's Alembic migrations (also done automatically by `up`)."""
    import store

    settings = _settings()
    store.upgrade(settings.resolved_database_url)
    console.print(f"store at head: {settings.resolved_database_url}")


@keys_app.command("new")
def keys_new() -> None:
    """Write a new payload encryption key and print its id (never the key).

    The newest key encrypts from now on (processes pick it up when they restart); older keys
    still decrypt."""
    from plumbing.codec import keys_dir, write_new_key

    directory = keys_dir(_settings())
    console.print(f"new payload key {write_new_key(directory)} in {directory}")


@app.command("worker")
def worker_command(
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes on the same task queues (metrics ports +2 each); if one "
            "exits, the others are stopped and the command exits 1 (docs/deployment.md)",
        ),
    ] = 1,
) -> None:
    """Run the workers against settings.temporal until Ctrl-C."""
    if processes == 1:
        import worker

        worker.main()
        return
    from stack.workers import supervise

    settings = _settings()
    code = supervise(
        processes,
        metrics_port=settings.worker_metrics_port,
        app_metrics_port=settings.worker_app_metrics_port,
        grace_s=settings.worker_shutdown_grace_s,
    )
    raise typer.Exit(code)


@sandbox_app.callback()
def sandbox_serve(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="Port (default settings.sandbox_port)")] = None,
    seed: Annotated[int, typer.Option(help="Seed the firm with this number")] = 7,
    memory: Annotated[
        bool, typer.Option(help="Keep twin data in memory (one connection: light use only)")
    ] = False,
    crm_webhook_url: Annotated[
        str | None, typer.Option(help="Where the CRM twin sends won-deal webhooks")
    ] = None,
    psa_webhook_url: Annotated[
        str | None, typer.Option(help="Where the PSA twin sends its webhooks")
    ] = None,
) -> None:
    """Serve the four twins on 127.0.0.1 (mounted at /crm, /psa, /erp, /hcm)."""
    if ctx.invoked_subcommand is not None:
        return
    serve_twins(
        _settings(),
        port=port,
        seed=seed,
        memory=memory,
        crm_webhook_url=crm_webhook_url,
        psa_webhook_url=psa_webhook_url,
    )


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


@app.command("up")
def up(seed: Annotated[int, typer.Option(help="Seed for the twins' firm")] = 7) -> None:
    """The whole stack in the foreground on the embedded default; Ctrl-C stops all of it."""
    settings = _settings()
    asyncio.run(run_until_signal(settings, seed=seed, console=console))


@app.command("gateway")
def gateway_command() -> None:
    """Serve the gateway (webhooks, exceptions API, /metrics) against settings.temporal."""
    settings = _settings()
    asyncio.run(serve_gateway(settings))


def _gateway_call(path: str, token: str, body: dict[str, Any], gateway: str | None) -> None:
    """POST to the gateway as the actor of `token`; print the outcome, exit 1 if refused."""
    import httpx

    settings = _settings()
    base = gateway or f"http://{settings.gateway_host}:{settings.gateway_port}"
    try:
        response = httpx.post(
            f"{base}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
    except httpx.HTTPError as exc:
        console.print(f"[red]gateway unreachable at {base}: {exc}[/red]")
        raise typer.Exit(2) from None
    if response.status_code >= 400:
        error = response.json().get("error", {}) if response.content else {}
        console.print(
            f"[red]{response.status_code} {error.get('code')}: {error.get('message')}[/red]"
        )
        raise typer.Exit(1)
    console.print(response.json())


TokenOption = Annotated[
    str, typer.Option(envvar="PSSYNC_TOKEN", help="Your bearer token (PSSYNC_TOKEN)")
]
GatewayOption = Annotated[str | None, typer.Option(help="Gateway URL (default from settings)")]


@app.command("approve")
def approve(
    change_order_id: str,
    token: TokenOption,
    note: Annotated[str, typer.Option(help="Why")] = "",
    as_role: Annotated[str | None, typer.Option(help="Decide in this role")] = None,
    gateway: GatewayOption = None,
) -> None:
    """Approve a change order (as the actor of your token)."""
    body = {"approve": True, "note": note, "as_role": as_role}
    _gateway_call(f"/api/change-orders/{change_order_id}/decision", token, body, gateway)


@app.command("reject")
def reject(
    change_order_id: str,
    token: TokenOption,
    note: Annotated[str, typer.Option(help="Why")] = "",
    gateway: GatewayOption = None,
) -> None:
    """Reject a change order: nothing is applied anywhere."""
    body = {"approve": False, "note": note}
    _gateway_call(f"/api/change-orders/{change_order_id}/decision", token, body, gateway)


@app.command("rescind")
def rescind(
    worker_id: str,
    termination_date: Annotated[str, typer.Argument(help="Effective date, YYYY-MM-DD")],
    token: TokenOption,
    reason: Annotated[str, typer.Option(help="Why")] = "",
    gateway: GatewayOption = None,
) -> None:
    """Rescind a worker's termination: completed steps are undone in reverse."""
    body = {"reason": reason}
    _gateway_call(f"/api/terminations/{worker_id}/{termination_date}/rescind", token, body, gateway)


@app.command("doctor")
def doctor() -> None:
    """Run the Doctor workflow against settings.temporal (a worker must be running)."""
    settings = _settings()
    result = asyncio.run(run_doctor(settings))
    console.print(f"doctor: {result}")


@app.command("reconcile")
def reconcile(
    domain: Annotated[str, typer.Option(help="labor_actuals or project_master")] = "labor_actuals",
    project: Annotated[str | None, typer.Option(help="One PSA project (default: all)")] = None,
    since: Annotated[
        str | None, typer.Option(help="Compare periods from this date's month, YYYY-MM-DD")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report only: repair and escalate nothing")
    ] = False,
) -> None:
    """Reconcile the systems now (a worker must be running): print the report; exit 1 while
    drift remains unrepaired (open or escalated), 2 on a bad option."""
    from datetime import date

    from rich.table import Table

    from contracts.v1.reconciliation import reconciliation_input

    settings = _settings()
    try:
        request = reconciliation_input(
            settings,
            domain,
            project=project,
            since=date.fromisoformat(since) if since else None,
            dry_run=dry_run,
            requested_by="cli",
        )
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None

    async def run() -> Any:
        import worker
        from activities.reconciliation import start_reconciliation
        from contracts.naming import TASK_QUEUE

        client = await worker.connect_client(settings)
        handle = await start_reconciliation(client, request, task_queue=TASK_QUEUE)
        console.print(f"run {handle.id} ...")
        return await handle.result()

    try:
        report = asyncio.run(run())
    except RuntimeError as exc:  # the client could not connect
        console.print(f"[red]Temporal unreachable at {settings.temporal.address}: {exc}[/red]")
        raise typer.Exit(2) from None
    table = Table(title=f"{report.domain.value} · {report.tenant} · {report.project or 'all'}")
    table.add_column("drift kind")
    table.add_column("found", justify="right")
    for kind, n in report.by_kind.items():
        table.add_row(kind, str(n))
    for label, n in (
        ("found", report.found), ("new", report.new), ("repaired", report.repaired),
        ("escalated", report.escalated), ("reported", report.reported),
        ("known, in hand", report.kept), ("gone (verified)", report.gone),
        ("unrepaired", report.unrepaired),
    ):  # fmt: skip
        table.add_row(f"[bold]{label}[/bold]", str(n))
    console.print(table)
    console.print(
        f"{report.records} records of {report.projects} projects, {report.vendor_calls} vendor "
        f"calls, {report.seconds:.1f} s{' (dry run)' if report.dry_run else ''}: {report.run_id}"
    )
    raise typer.Exit(1 if report.unrepaired else 0)


@app.command("demo")
def demo(
    keep_running: Annotated[bool, typer.Option(help="Leave the stack up afterwards")] = False,
    seed: Annotated[int, typer.Option(help="Seed for the twins' firm")] = 7,
) -> None:
    """Start the stack, run the scenario, check every system, print a summary."""
    settings = _settings()
    ok = asyncio.run(run_demo(settings, seed=seed, keep_running=keep_running))
    raise typer.Exit(0 if ok else 1)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    app()


if __name__ == "__main__":
    main()
