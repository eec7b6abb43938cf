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
import os
import signal
import socket
import subprocess
import sys
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
    from sandbox.app import seeded_sandbox

    settings = _settings()
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
    store: Any = None


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a child by its id: SIGTERM, then SIGKILL if it does not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def _start_twins_process(
    settings: Settings,
    seed: int,
    webhooks: dict[str, str],
    processes: list[subprocess.Popen[bytes]],
) -> int:
    import httpx

    port = _free_port()
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


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings,
    *,
    seed: int = 7,
    ephemeral_ports: bool = False,
    run_worker: bool = True,
    sandbox_home: Path | None = None,
    twins_process: bool = False,
) -> AsyncIterator[Stack]:
    """Start the Temporal dev server, the gateway, the twins (seeded, webhooks pointed at the
    gateway) and the worker; stop all of it on exit, also on failure.

    `ephemeral_ports` lets the OS pick every port (tests, benchmarks); `run_worker=False`
    leaves the worker to a separate process (`pssync worker`), as the crash tests need;
    `twins_process=True` serves the twins from a child process (`pssync sandbox`), as remote
    vendors would be, so benchmarks do not charge their CPU to pssync (`stack.sandbox` is then
    None: nothing in this process can reach into the twins)."""
    import store as store_module
    import worker
    from gateway import create_app as create_gateway
    from sandbox.app import seeded_sandbox
    from sandbox.temporal import embedded_temporal

    settings.home.mkdir(parents=True, exist_ok=True)
    store_module.upgrade(settings.resolved_database_url)
    engine = store_module.make_engine(settings.resolved_database_url)
    port = None if ephemeral_ports else int(settings.temporal.address.rsplit(":", 1)[1])
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
    processes: list[subprocess.Popen[bytes]] = []
    stop = asyncio.Event()
    worker_task: asyncio.Task[None] | None = None
    # SDK metrics (workflow/activity latencies, task slots, polls) for Prometheus, as in
    # `pssync worker`; tests and benchmarks skip them rather than take a fixed port.
    runtime = None if ephemeral_ports else worker.prometheus_runtime(settings.worker_metrics_port)
    async with embedded_temporal(
        settings, port=port, ui=not ephemeral_ports, runtime=runtime
    ) as env:
        stack = Stack(settings=settings, client=env.client, store=store_module.Store(engine))
        stack.urls["temporal"] = env.client.service_client.config.target_host
        settings.temporal.address = stack.urls["temporal"]
        if not ephemeral_ports:
            stack.urls["temporal_ui"] = f"http://127.0.0.1:{settings.temporal.ui_port}"
            stack.urls["worker_metrics"] = (
                f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
            )
        try:
            gateway = create_gateway(settings, stack.store, env.client)
            server, task, gport = await _serve(
                gateway, settings.gateway_host, 0 if ephemeral_ports else settings.gateway_port
            )
            servers.append((server, task))
            stack.urls["gateway"] = f"http://{settings.gateway_host}:{gport}"
            stack.urls["gateway_metrics"] = f"{stack.urls['gateway']}/metrics"
            stack.urls["exceptions_api"] = f"{stack.urls['gateway']}/api/exceptions"
            webhooks = {
                "crm_webhook_url": f"{stack.urls['gateway']}/webhooks/crm",
                "psa_webhook_url": f"{stack.urls['gateway']}/webhooks/psa",
            }
            if twins_process:
                sport = await _start_twins_process(settings, seed, webhooks, processes)
            else:
                sandbox = seeded_sandbox(
                    sandbox_home or settings.home / "sandbox-run",
                    seed,
                    webhook_secret=settings.webhook_secret_crm.get_secret_value(),
                    **webhooks,
                )
                server, task, sport = await _serve(
                    sandbox.app, "127.0.0.1", 0 if ephemeral_ports else settings.sandbox_port
                )
                servers.append((server, task))
                stack.sandbox = sandbox
            stack.urls["sandbox"] = f"http://127.0.0.1:{sport}"
            for system in ("crm", "psa", "erp", "hcm"):
                stack.urls[f"{system}_twin_docs"] = f"http://127.0.0.1:{sport}/{system}/docs"
            for system in ("crm", "psa", "erp", "hcm"):
                getattr(settings, system).base_url = f"http://127.0.0.1:{sport}/{system}"
            if run_worker:
                worker_task = asyncio.create_task(worker.run_workers(env.client, settings, stop))
            yield stack
        finally:
            stop.set()
            if worker_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(worker_task, 30)
            if stack.sandbox is not None:
                for twin in stack.sandbox.twins.values():
                    if twin.state.twin.webhooks is not None:
                        await twin.state.twin.webhooks.aclose()
            for server, task in reversed(servers):
                server.should_exit = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 10)
            for proc in processes:
                _stop_process(proc)
            engine.dispose()


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


@app.command("gateway")
def gateway_command() -> None:
    """Serve the gateway (webhooks, exceptions API, /metrics) against settings.temporal."""
    import store
    import worker
    from gateway import create_app as create_gateway

    settings = _settings()

    async def main() -> None:
        store.upgrade(settings.resolved_database_url)
        client = await worker.connect_client(settings)
        app_ = create_gateway(
            settings, store.Store(store.make_engine(settings.resolved_database_url)), client
        )
        server = uvicorn.Server(
            uvicorn.Config(app_, host=settings.gateway_host, port=settings.gateway_port)
        )
        await server.serve()

    asyncio.run(main())


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


@dataclass
class Check:
    name: str
    held: bool
    detail: str = ""


@dataclass
class DealOutcome:
    opportunity_id: str
    name: str
    workflow_id: str
    enterprise_id: str | None = None
    psa_project_id: str | None = None
    erp_project_id: str | None = None
    status: str = "pending"


def deal_from_template(firm: Any, index: int, **overrides: Any) -> Any:
    """A new opportunity shaped like the seeded firm's `index`-th open deal (fresh IDs each
    time, so the demo can run again and again against the same twins)."""
    from connectors.crm import NewOpportunity, NewOpportunityLine
    from contracts.v1 import LineType

    template = firm.opportunities[index % len(firm.opportunities)]
    data: dict[str, Any] = {
        "name": f"{template.name} (demo {index})",
        "account_id": template.account_id,
        "close_date": firm.today,
        "currency": template.currency,
        "practice": template.practice,
        "cost_center": template.cost_center,
        "rate_card_id": template.rate_card_id,
        "delivery_manager": template.delivery_manager,
        "lines": [
            NewOpportunityLine(
                product_code=line.product_code,
                description=line.description,
                line_type=LineType(line.line_type),
                role=line.role,
                quantity=line.quantity,
                unit_price=line.unit_price,
                service_date=line.service_date,
            )
            for line in template.lines
        ],
    }
    data.update(overrides)
    return NewOpportunity(**data)


def provisionable_templates(firm: Any) -> list[int]:
    """Indexes of seeded deals whose customer is not on credit hold."""
    held = {c.id for c in firm.customers if c.credit_hold}
    return [i for i, o in enumerate(firm.opportunities) if o.account_id not in held]


async def win_deal(stack: Stack, new: Any) -> DealOutcome:
    """Create the deal in the CRM twin and move it to Closed Won: the twin's signed webhook
    reaches the gateway, which starts the saga."""
    from connectors.crm import SalesforceCrm
    from contracts.naming import opportunity_workflow_id

    crm = SalesforceCrm(stack.settings.crm)
    try:
        opp_id = await crm.create_opportunity(new)
        await crm.set_stage(opp_id, "Closed Won")
    finally:
        await crm.aclose()
    return DealOutcome(
        opportunity_id=opp_id,
        name=new.name,
        workflow_id=opportunity_workflow_id(stack.settings.crm.tenant, opp_id),
    )


async def wait_for_workflow(
    client: Client, workflow_id: str, timeout_s: float = 60, result_type: type | None = None
) -> Any:
    """The handle of a workflow that a webhook is about to start (bounded wait)."""
    from temporalio.service import RPCError

    deadline = asyncio.get_running_loop().time() + timeout_s
    handle = client.get_workflow_handle(workflow_id, result_type=result_type)
    while True:
        try:
            await handle.describe()
            return handle
        except RPCError:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"workflow {workflow_id} never started") from None
            await asyncio.sleep(0.1)


async def wait_for_open_exception(stack: Stack, workflow_id: str, timeout_s: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        items = await asyncio.to_thread(
            stack.store.list_exceptions, status="open", workflow_id=workflow_id
        )
        if items:
            return items[0]
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no exception item opened by {workflow_id}")
        await asyncio.sleep(0.1)


async def redeliver_webhook(stack: Stack, opportunity_id: str, copies: int) -> list[int]:
    """Send one signed won-deal event `copies` times at once (what an at-least-once sender
    under retries looks like); returns the gateway's status codes."""
    import httpx

    sender = stack.sandbox.state("crm").webhooks
    event = {
        "type": "opportunity.won",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {
            "tenant": stack.settings.crm.tenant,
            "object": "Opportunity",
            "id": opportunity_id,
            "stage": "Closed Won",
        },
    }
    body, headers = sender.signed_request(f"evt_demo_{opportunity_id}", event)
    async with httpx.AsyncClient(timeout=30) as http:
        responses = await asyncio.gather(
            *[
                http.post(f"{stack.urls['gateway']}/webhooks/crm", content=body, headers=headers)
                for _ in range(copies)
            ]
        )
    return [r.status_code for r in responses]


async def systems_hold(stack: Stack, outcome: DealOutcome) -> list[Check]:
    """What each system holds for one provisioned deal, checked against the others."""
    from connectors.crm import SalesforceCrm
    from connectors.erp import NetSuiteErp
    from connectors.psa import KantataPsa

    eid = outcome.enterprise_id or ""
    checks: list[Check] = []
    psa, erp, crm = (
        KantataPsa(stack.settings.psa),
        NetSuiteErp(stack.settings.erp),
        SalesforceCrm(stack.settings.crm),
    )
    try:
        psa_id = await psa.find_project_by_enterprise_id(eid)
        checks.append(
            Check(f"{outcome.name}: one PSA project", psa_id == outcome.psa_project_id, str(psa_id))
        )
        job = await erp.get_project(f"eid:{eid}")
        checks.append(
            Check(
                f"{outcome.name}: one ERP project",
                job.erp_id == outcome.erp_project_id and job.enterprise_id == eid,
                f"job {job.erp_id}, budget {job.budget}",
            )
        )
        opp = await crm.get_opportunity(outcome.opportunity_id)
        checks.append(Check(f"{outcome.name}: enterprise ID in CRM", opp.enterprise_id == eid, eid))
        links = await asyncio.to_thread(stack.store.xrefs_for, eid)
        systems = sorted(f"{x.system}:{x.object_type}" for x in links)
        checks.append(
            Check(
                f"{outcome.name}: IDs linked in xref",
                systems == ["CRM:Opportunity", "ERP:job", "PSA:workspace"],
                ", ".join(systems),
            )
        )
    finally:
        for connector in (psa, erp, crm):
            await connector.aclose()
    return checks


def _token(stack: Stack, role: str) -> str:
    """A configured actor's bearer token whose only job is `role` (else any that has it)."""
    actors = stack.settings.actors
    only = [t for t, a in actors.items() if a.roles == [role]]
    return (only or [t for t, a in actors.items() if role in a.roles])[0]


async def wait_for_step(handle: Any, step: str, timeout_s: float = 60) -> Any:
    """Poll a run's `status` query until it reports `step` (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            status = await handle.query("status")
            if status.get("step") == step:
                return status
        except Exception:  # not started or not queryable yet
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{handle.id} never reached {step}")
        await asyncio.sleep(0.1)


async def change_order_scene(stack: Stack, deal: DealOutcome, say: Any = print) -> list[Check]:
    """A change order submitted in the PSA twin for a provisioned project: its signed webhook
    starts the saga, the delivery manager and finance approve through the gateway, and the
    ERP budget, PSA budget and staffing demand follow."""
    import httpx

    from connectors.erp import NetSuiteErp
    from contracts.naming import change_order_workflow_id
    from contracts.v1.change_orders import ChangeOrderResult

    eid = deal.enterprise_id or ""
    erp = NetSuiteErp(stack.settings.erp)
    try:
        before = await erp.get_budget(f"eid:{eid}")
        delta = 25_000  # above the default finance threshold: finance must approve too
        async with httpx.AsyncClient(timeout=60) as http:
            created = await http.post(
                f"{stack.urls['sandbox']}/psa/api/v1/change_orders.json",
                headers={"Authorization": "Bearer dev-static-token"},
                json={
                    "change_order": {
                        "workspace_id": int(deal.psa_project_id or 0),
                        "title": "Extend the build phase",
                        "budget_delta_in_cents": delta * 100,
                        "currency": before.amount.currency,
                        "lines": [{"role": "Consultant", "minutes_delta": 100 * 60}],
                        "requested_by": "dana.manager",
                    }
                },
            )
            created.raise_for_status()
            co_id = created.json()["results"][0]["id"]
            say(f"change order {co_id} submitted in the PSA (+{delta} {before.amount.currency})")
            handle = await wait_for_workflow(
                stack.client,
                change_order_workflow_id(stack.settings.psa.tenant, co_id),
                result_type=ChangeOrderResult,
            )
            status = await wait_for_step(handle, "waiting_for_approval")
            say(f"waiting for approval by {', '.join(status['required_roles'])}")
            codes = []
            for role in status["required_roles"]:
                answer = await http.post(
                    f"{stack.urls['gateway']}/api/change-orders/{co_id}/decision",
                    headers={"Authorization": f"Bearer {_token(stack, role)}"},
                    json={"approve": True, "note": f"approved as {role}"},
                )
                codes.append(answer.status_code)
        result = await asyncio.wait_for(handle.result(), 60)
        after = await erp.get_budget(f"eid:{eid}")
        async with httpx.AsyncClient(timeout=60) as http:
            feed = await http.get(
                f"{stack.urls['sandbox']}/psa/api/v1/posts.json",
                headers={"Authorization": "Bearer dev-static-token"},
                params={"workspace_id": deal.psa_project_id or "0", "per_page": 200},
            )
        posts = list(feed.json().get("posts", {}).values()) if feed.is_success else []
    finally:
        await erp.aclose()
    say(f"change order {co_id}: {result.outcome}; ERP budget {before.amount} -> {after.amount}")
    return [
        Check(
            "change order: finance approval required above the threshold",
            "finance_controller" in status["required_roles"],
            ", ".join(status["required_roles"]),
        ),
        Check(
            "change order: approvals accepted through the gateway",
            all(c == 200 for c in codes),
            str(codes),
        ),
        Check(
            "change order: ERP budget revised by the delta",
            after.amount.amount - before.amount.amount == delta and after.version > before.version,
            f"{before.amount} -> {after.amount} (version {before.version} -> {after.version})",
        ),
        Check(
            "change order: staffing demand raised in the PSA",
            bool(result.resource_request_ids),
            f"{len(result.resource_request_ids)} request(s)",
        ),
        Check(
            "change order: resource managers notified on the PSA workspace's feed",
            any(
                "Extend the build phase" in p["message"]
                and "resource_managers" in p["recipient_roles"]
                for p in posts
            ),
            f"{len(posts)} post(s) on workspace {deal.psa_project_id}",
        ),
    ]


@dataclass
class TerminationOutcome:
    worker_id: str
    workflow_id: str
    assignment_id: str
    checks: list[Check]


async def termination_scene(
    stack: Stack, deal: DealOutcome, say: Any = print
) -> TerminationOutcome:
    """A consultant staffed on a provisioned project with approved time is terminated in the
    HCM twin (effective today); one poll later the PSA assignment ends, backfill is raised,
    time entry closes and the approved time is in the ERP."""
    from datetime import date, timedelta

    import httpx
    from temporalio.service import RPCError

    from connectors.hcm import WorkdayHcm
    from contracts.naming import termination_workflow_id
    from contracts.v1.worker_termination import HCM_SCHEDULE_ID
    from sandbox.seed import build_firm

    today = date.today()
    hcm = WorkdayHcm(stack.settings.hcm)
    try:
        # someone still employed in the HCM twin (the demo may have run before on this data)
        leaver = None
        for candidate in build_firm(7).workers:
            if candidate.status != "active" or candidate.hire_date >= today - timedelta(days=14):
                continue
            current = await hcm.get_worker(candidate.id)
            if current.termination_date is not None or current.status.value != "active":
                continue
            run_id = termination_workflow_id(
                stack.settings.hcm.tenant, candidate.id, today.isoformat()
            )
            with contextlib.suppress(RPCError):
                await stack.client.get_workflow_handle(run_id).describe()
                continue  # a termination of this worker today already ran
            leaver = candidate
            break
        if leaver is None:
            raise RuntimeError("no employed worker left to terminate in the HCM twin")
    finally:
        await hcm.aclose()
    psa = f"{stack.urls['sandbox']}/psa/api/v1"
    auth = {"Authorization": "Bearer dev-static-token"}
    async with httpx.AsyncClient(timeout=60, headers=auth) as http:
        refs = await http.get(
            f"{psa}/external_references.json",
            params={"subject_type": "User", "service_model_ref": leaver.id},
        )
        user_id = int(
            refs.json()["results"][0]["id"]
            and next(iter(refs.json()["external_references"].values()))["subject_id"]
        )
        assignment = await http.post(
            f"{psa}/assignments.json",
            json={
                "assignment": {
                    "workspace_id": int(deal.psa_project_id or 0),
                    "user_id": user_id,
                    "role": leaver.role,
                    "start_date": (today - timedelta(days=14)).isoformat(),
                    "end_date": (today + timedelta(days=60)).isoformat(),
                    "allocated_minutes": 9600,
                }
            },
        )
        assignment.raise_for_status()
        assignment_id = assignment.json()["results"][0]["id"]
        entry = await http.post(
            f"{psa}/time_entries.json",
            json={
                "time_entry": {
                    "workspace_id": int(deal.psa_project_id or 0),
                    "user_id": user_id,
                    "date_performed": (today - timedelta(days=1)).isoformat(),
                    "time_in_minutes": 420,
                }
            },
        )
        entry.raise_for_status()
        entry_id = entry.json()["results"][0]["id"]
        approved = await http.put(
            f"{psa}/time_entries/{entry_id}.json", json={"time_entry": {"approved": True}}
        )
        approved.raise_for_status()
        say(f"{leaver.name} ({leaver.role}) staffed on {deal.name} with 7 h approved time")

        hcm = WorkdayHcm(stack.settings.hcm)
        try:
            await hcm.terminate(leaver.id, today, today - timedelta(days=1))
        finally:
            await hcm.aclose()
        say(f"{leaver.name} terminated in the HCM twin, effective today; polling HCM now")
        # The Schedule polls every PSSYNC_HCM_POLL_INTERVAL_S; an operator can poll at once.
        await stack.client.get_schedule_handle(HCM_SCHEDULE_ID).trigger()
        workflow_id = termination_workflow_id(
            stack.settings.hcm.tenant, leaver.id, today.isoformat()
        )
        handle = await wait_for_workflow(stack.client, workflow_id)
        status = await wait_for_step(handle, "open_for_rescind")
        ended = await http.get(f"{psa}/assignments/{assignment_id}.json")
        end_date = next(iter(ended.json()["assignments"].values()))["end_date"]
    with stack.sandbox.state("erp").engine.connect() as conn:
        from sqlalchemy import text

        posted = conn.execute(
            text("SELECT count(*) FROM erp_timebill WHERE external_id LIKE :k"),
            {"k": f"psa-time-{entry_id}-%"},
        ).scalar_one()
    say(f"termination applied: assignment ends {end_date}; {posted} timebill posted to the ERP")
    checks = [
        Check(
            "termination: PSA assignment ends on the last day",
            end_date == (today - timedelta(days=1)).isoformat(),
            f"end date {end_date}",
        ),
        Check("termination: approved time posted to the ERP once", posted == 1, f"{posted}"),
        Check(
            "termination: the run stays open for a rescind",
            status.get("step") == "open_for_rescind",
            str(status.get("step")),
        ),
    ]
    return TerminationOutcome(leaver.id, workflow_id, str(assignment_id), checks)


async def time_to_invoice_scene(stack: Stack, deal: DealOutcome, say: Any = print) -> list[Check]:
    """Time on a provisioned project: 24 entries approved in the PSA twin reach the ERP through
    the webhooks in batches; one with a role the rate card lacks is held and fixed through the
    exceptions API; one unapproved after posting is reversed; then finance closes the period
    and the ERP invoice covers what was posted, with the PSA entries marked invoiced."""
    from datetime import date, timedelta
    from decimal import Decimal

    import httpx
    from sqlalchemy import text

    from contracts.naming import time_pipeline_workflow_id
    from sandbox.seed import build_firm

    assert stack.sandbox is not None and deal.psa_project_id is not None
    today = date.today()
    day = today - timedelta(days=1)
    period = f"{day:%Y-%m}"
    workers = [
        w
        for w in build_firm(7).workers
        if w.status == "active" and w.termination_date is None and w.hire_date < day
    ][10:13]
    psa = f"{stack.urls['sandbox']}/psa/api/v1"
    erp = stack.sandbox.state("erp").engine
    workflow_id = time_pipeline_workflow_id(stack.settings.psa.tenant, deal.psa_project_id)

    def erp_rows(entry_ids: list[str]) -> list[Any]:
        with erp.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT source_entry, kind, hours, bill_amount FROM erp_timebill "
                        "WHERE source_entry IN (" + ",".join(f"'{i}'" for i in entry_ids) + ")"
                    )
                ).all()
            )

    async def until(check: Any, what: str, timeout_s: float = 60) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not check():
            if asyncio.get_running_loop().time() > deadline:
                status = await stack.client.get_workflow_handle(workflow_id).query("status")
                raise RuntimeError(
                    f"time to invoice: {what} did not happen in {timeout_s}s; the pipeline: "
                    f"{status.get('counters')}, billing {status.get('billed')}"
                )
            await asyncio.sleep(0.2)

    auth = {"Authorization": "Bearer dev-static-token"}
    async with httpx.AsyncClient(timeout=60, headers=auth) as http:

        async def user_of(worker_id: str) -> int:
            refs = await http.get(
                f"{psa}/external_references.json",
                params={"subject_type": "User", "service_model_ref": worker_id},
            )
            return int(next(iter(refs.json()["external_references"].values()))["subject_id"])

        async def log_time(user: int, on: date, minutes: int, role: str | None = None) -> str:
            body: dict[str, Any] = {
                "workspace_id": int(deal.psa_project_id or 0),
                "user_id": user,
                "date_performed": on.isoformat(),
                "time_in_minutes": minutes,
            }
            if role is not None:
                body["role"] = role
            created = await http.post(f"{psa}/time_entries.json", json={"time_entry": body})
            created.raise_for_status()
            entry_id = str(created.json()["results"][0]["id"])
            approved = await http.put(
                f"{psa}/time_entries/{entry_id}.json", json={"time_entry": {"approved": True}}
            )
            approved.raise_for_status()
            return entry_id

        users = [await user_of(w.id) for w in workers]
        entries = []
        for i in range(24):
            on = day - timedelta(days=i % 8)
            if on.month != day.month:
                on = day
            entries.append(await log_time(users[i % 3], on, 60 + 15 * (i // 3)))
        odd = await log_time(users[0], day, 45, role="Apprentice")
        say(f"24 entries approved on {deal.name}, plus one for a role its rate card lacks")
        await until(lambda: len(erp_rows(entries)) == 24, "24 postings in the ERP")
        item = await wait_for_open_exception(stack, workflow_id)
        say(f"exception {item.cause_code}: {item.detail}; billing it as a Consultant")
        async with httpx.AsyncClient(timeout=60) as gw:
            ops = {"Authorization": f"Bearer {_token(stack, 'ops')}"}
            resolved = await gw.post(
                f"{stack.urls['gateway']}/api/exceptions/{item.id}/resolution",
                headers=ops,
                json={"action": "retry_with_data", "corrections": {"role": "Consultant"}},
            )
            outcome = resolved.json().get("result", {}).get("outcome")
            # A timesheet approved by mistake is unapproved: the ERP gets a reversing posting.
            await http.put(
                f"{psa}/time_entries/{entries[0]}.json", json={"time_entry": {"approved": False}}
            )
            await until(
                lambda: sum(1 for r in erp_rows([entries[0]]) if r.kind == "reversal") == 1,
                "the reversal",
            )
            say("one entry unapproved after posting: reversed in the ERP, not edited")
            ws = await http.get(f"{psa}/workspaces/{deal.psa_project_id}.json")
            rule = next(iter(ws.json()["workspaces"].values())).get("billing_rule")
            expected: Decimal | None = None
            if rule == "time_and_materials":
                # T&M: finance closes the period through the gateway.
                finance = {"Authorization": f"Bearer {_token(stack, 'finance_controller')}"}
                billed = await gw.post(
                    f"{stack.urls['gateway']}/api/projects/{deal.psa_project_id}/billing",
                    headers=finance,
                    json={"period": period},
                )
                billed_ok = billed.status_code == 202
                say(f"finance closes T&M period {period} through the gateway")
            else:
                # Milestone billing: completing a milestone in the PSA sends the webhook.
                listed = await http.get(
                    f"{psa}/billing_milestones.json",
                    params={"workspace_id": deal.psa_project_id, "state": "planned"},
                )
                milestone = next(iter(listed.json()["billing_milestones"].values()))
                done = await http.put(
                    f"{psa}/billing_milestones/{milestone['id']}.json",
                    json={"billing_milestone": {"state": "completed"}},
                )
                billed_ok = done.status_code == 200
                expected = Decimal(milestone["amount_in_cents"]) / 100
                say(f"milestone {milestone['title']!r} completed in the PSA")
        live = [*entries[1:], odd]
        approved_minutes = 0
        for entry_id in live:
            got = await http.get(f"{psa}/time_entries/{entry_id}.json")
            obj = next(iter(got.json()["time_entries"].values()))
            approved_minutes += obj["time_in_minutes"] if obj["approved"] else 0

        def invoiced() -> int:
            with stack.sandbox.state("psa").engine.connect() as conn:  # type: ignore[union-attr]
                return int(
                    conn.execute(
                        text(
                            "SELECT count(*) FROM psa_time_entry WHERE is_invoiced = 1 AND id IN ("
                            + ",".join(live)
                            + ")"
                        )
                    ).scalar_one()
                )

        await until(lambda: invoiced() == len(live), "the PSA entries marked invoiced")
    rows = erp_rows([*entries, odd])
    net_hours = sum((Decimal(str(r.hours)) for r in rows), Decimal(0))
    with erp.connect() as conn:
        invoices = conn.execute(
            text("SELECT total FROM erp_invoice WHERE external_id LIKE :k"),
            {"k": f"inv-{deal.psa_project_id}-%"},
        ).all()
    bill = sum((Decimal(str(r.bill_amount or 0)) for r in rows), Decimal(0))
    expected = bill if expected is None else expected
    say(
        f"ERP invoice of {invoices[0].total if invoices else '?'} USD; "
        f"its {len(live)} entries are marked invoiced in the PSA"
    )
    return [
        Check(
            "time: the ERP holds the approved hours, once each",
            net_hours == Decimal(approved_minutes) / 60
            and len({(r.source_entry, r.kind) for r in rows}) == len(rows),
            f"{net_hours} h posted, {Decimal(approved_minutes) / 60} h approved",
        ),
        Check(
            "time: MissingRateCard fixed through the API, then posted",
            resolved.status_code == 200 and outcome == "posted",
            f"HTTP {resolved.status_code}, {outcome}",
        ),
        Check(
            "time: one ERP invoice (T&M period or milestone), for the right amount",
            billed_ok and len(invoices) == 1 and Decimal(str(invoices[0].total)) == expected,
            f"{len(invoices)} invoice(s), total {invoices[0].total if invoices else '-'}, "
            f"expected {expected}",
        ),
    ]


async def run_scenario(stack: Stack, *, deals: int = 3, say: Any = print) -> list[Check]:
    """The demo: several deals won, one webhook delivered 50 times at once, one deal with a
    bad cost center fixed through the exceptions API. Returns every check."""
    import httpx

    from contracts.v1.processes import ProvisionProjectResult
    from sandbox.seed import build_firm

    firm = build_firm(7)
    templates = provisionable_templates(firm)
    checks: list[Check] = []
    outcomes: list[DealOutcome] = []

    say(f"winning {deals} deals in the CRM twin")
    for i in range(deals):
        outcomes.append(await win_deal(stack, deal_from_template(firm, templates[i])))

    say("delivering one won-deal webhook 50 times at once")
    codes = await redeliver_webhook(stack, outcomes[0].opportunity_id, 50)
    refused = [c for c in codes if c >= 400]
    checks.append(Check("50 copies of one webhook, none refused", not refused, str(set(codes))))

    say("winning a deal with an unknown cost center")
    bad = await win_deal(stack, deal_from_template(firm, templates[deals], cost_center="CC-404"))
    outcomes.append(bad)
    item = await wait_for_open_exception(stack, bad.workflow_id)
    good_cc = firm.opportunities[templates[deals]].cost_center
    say(f"exception {item.cause_code} on {item.field}: resolving with cost center {good_cc}")
    token = next(t for t, a in stack.settings.actors.items() if "ops" in a.roles)
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(
            f"{stack.urls['gateway']}/api/exceptions/{item.id}/resolution",
            headers={"Authorization": f"Bearer {token}"},
            json={"action": "retry_with_data", "corrections": {"cost_center": good_cc}},
        )
    checks.append(
        Check(
            f"exception {item.cause_code} resolved through the API",
            response.status_code == 200,
            f"HTTP {response.status_code}",
        )
    )

    for outcome in outcomes:
        say(f"waiting for {outcome.name}")
        handle = await wait_for_workflow(
            stack.client, outcome.workflow_id, result_type=ProvisionProjectResult
        )
        result = await asyncio.wait_for(handle.result(), timeout=120)
        outcome.enterprise_id = result.enterprise_id
        outcome.psa_project_id = result.psa_project_id
        outcome.erp_project_id = result.erp_project_id
        outcome.status = "provisioned"
        checks.extend(await systems_hold(stack, outcome))

    say("a change order on the first project, approved through the gateway")
    checks.extend(await change_order_scene(stack, outcomes[0], say))

    say("a consultant on the second project leaves the firm")
    checks.extend((await termination_scene(stack, outcomes[1], say)).checks)

    say("time and expense on the first project, to the ERP and an invoice")
    checks.extend(await time_to_invoice_scene(stack, outcomes[0], say))

    runs = [
        wf.run_id
        async for wf in stack.client.list_workflows(f"WorkflowId = '{outcomes[0].workflow_id}'")
    ]
    checks.append(Check("50 duplicate webhooks made one run", len(runs) <= 1, f"{len(runs)} run"))

    table = Table(title="what each system now holds")
    for column in ("deal", "enterprise ID", "PSA project", "ERP project", "status"):
        table.add_column(column)
    for o in outcomes:
        table.add_row(
            o.name, o.enterprise_id or "", o.psa_project_id or "", o.erp_project_id or "", o.status
        )
    console.print(table)
    return checks


async def run_demo(settings: Settings, *, seed: int, keep_running: bool) -> bool:
    """Start the stack, drive the scenario, check what each system holds. True if all held."""
    async with running_stack(settings, seed=seed) as stack:
        _print_urls(stack)
        try:
            checks = await run_scenario(stack, say=lambda m: console.print(f"[cyan]>[/cyan] {m}"))
        except Exception as exc:  # the demo reports, it does not crash
            checks = [Check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")]
        table = Table(title="demo checks")
        table.add_column("check")
        table.add_column("held")
        table.add_column("detail")
        for check in checks:
            table.add_row(
                check.name, "[green]yes[/green]" if check.held else "[red]NO[/red]", check.detail
            )
        console.print(table)
        if keep_running:
            console.print("--keep-running: the stack stays up; Ctrl-C stops everything.")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
    return all(check.held for check in checks)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    app()


if __name__ == "__main__":
    main()
