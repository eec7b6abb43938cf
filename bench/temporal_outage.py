"""Temporal outage: every event the gateway accepted takes effect once Temporal is back.

    python bench/temporal_outage.py [--outage-s 150] [--deals 6] [--approvals 8] [--projects 3]

What it runs on 127.0.0.1 (OS-assigned ports), in a fresh temp home:

- the `temporal` dev server as a child process of this script, with its state in a SQLite file,
  so it can be stopped (SIGTERM) and started again on the same port with everything it had —
  the running sagas and time-to-invoice pipelines;
- the gateway (its inbox relay polling every 0.5 s, backing off to 2 s), the seeded twins with
  their webhooks pointed at the gateway, and a `pssync worker` process;
- the CRM and PSA twins' webhook senders give up after their *first* attempt
  (`WebhookSender.max_attempts = 1`): no sender retry can rescue an event.

Then:

1. warm-up, Temporal up: `--projects` projects linked in PSA and ERP (as the saga leaves them)
   get one approved entry each, so their pipelines are running before the outage;
2. the outage: the dev server is stopped for `--outage-s`. Meanwhile `--deals` deals are won in
   the CRM twin and `--approvals` entries per project are approved in the PSA twin, half at the
   start of the outage and half in its middle; each sends one signed webhook, once. Every one
   of them must be stored in the gateway's inbox (still `pending`);
3. Temporal is started again (same port, same file). Nobody retries anything: the gateway's
   relay replays the inbox. The bench waits until every deal has a project and every approved
   entry a timebill (or `--settle-s` passes), then reads the twins' own tables:

   - deals -> projects: PSA workspaces (not archived) whose `opportunity_ref` is the deal, and
     ERP jobs carrying the enterprise id the store links to it: one of each per deal;
   - approved entries -> ERP postings: timebills (not reversals) whose `source_entry` is the
     entry: one per approved entry.

   `lost` = deals without a project + approved entries without a posting; `duplicates` = the
   projects and postings beyond one. Both must be 0.

Progress goes to stderr; the last line of stdout is one JSON object (deals, projects,
approvals, postings, lost, duplicates, outage_s, recovery_s, deliveries, relay, machine,
config). Every process it starts is stopped by its id, also on failure. The e2e test
`tests/e2e/test_temporal_outage.py` runs the same scenario with a shorter outage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import text  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.runtime import (  # noqa: E402
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

import store as store_module  # noqa: E402
import worker  # noqa: E402
from bench._harness import eventually, machine, print_json, run_cancellable  # noqa: E402
from bench._harness import log_stamped as log  # noqa: E402
from bench._harness.linking import link_projects as shared_link_projects  # noqa: E402
from connectors.crm import SalesforceCrm  # noqa: E402
from connectors.erp import NetSuiteErp  # noqa: E402
from connectors.psa import KantataPsa  # noqa: E402
from contracts import System  # noqa: E402
from contracts.naming import SEARCH_ATTRIBUTES, opportunity_workflow_id  # noqa: E402
from contracts.settings import Settings, load_settings  # noqa: E402
from gateway import create_app  # noqa: E402
from sandbox.app import Sandbox, seeded_sandbox  # noqa: E402
from sandbox.seed import build_firm  # noqa: E402
from sandbox.temporal import find_binary  # noqa: E402
from tests._servers import free_port, serve, start_worker_process, stop_process  # noqa: E402

SEED = 7
FIRM = build_firm(SEED)
TWIN_AUTH = {"Authorization": "Bearer dev-static-token"}
WORKER_ENV = {
    # Webhooks (replayed by the relay) must do the work: the time sweep, which would find
    # approved entries on its own, and the HCM poller stay out of the way.
    "PSSYNC_TIME_SWEEP_INTERVAL_S": str(30 * 86_400),
    "PSSYNC_HCM_POLL_INTERVAL_S": "86400",
}
RELAY = {"interval_s": 0.5, "max_backoff_s": 2.0}


# --------------------------------------------------------------------------- the dev server


class DevServer:
    """The `temporal` dev server as a child process on a fixed port with a SQLite file: it can
    be stopped and started again with the same state (what `embedded_temporal` cannot do: the
    SDK owns that process). Flags as the SDK's `start_local` passes them."""

    def __init__(self, db: Path, log_path: Path, namespace: str = "default") -> None:
        self.db = db
        self.log_path = log_path
        self.namespace = namespace
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [find_binary("temporal"), "server", "start-dev", "--headless"]
        cmd += ["--ip", "127.0.0.1", "--port", str(self.port), "--db-filename", str(self.db)]
        cmd += ["--log-level", "warn", "--namespace", self.namespace]
        for name, kind in SEARCH_ATTRIBUTES.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        for value in (
            "frontend.enableServerVersionCheck=false",
            "frontend.enableUpdateWorkflowExecution=true",
            "frontend.enableUpdateWorkflowExecutionAsyncAccepted=true",
        ):
            cmd += ["--dynamic-config-value", value]
        return cmd

    async def start(self, timeout_s: float = 60) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.db.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                self.command(), stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"temporal exited ({self.proc.returncode}): {self.log_path}")
            with contextlib.suppress(Exception):
                client = await Client.connect(self.address, namespace=self.namespace)
                if await client.service_client.check_health():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("the dev server did not start")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM (then SIGKILL) by its id; the state stays in the file."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


# --------------------------------------------------------------------------- the stack


@dataclass
class Proj:
    psa_id: int
    job_id: int
    users: list[int]


@dataclass
class Stack:
    settings: Settings
    temporal: DevServer
    client: Client
    store: store_module.Store
    sandbox: Sandbox
    app: Any
    urls: dict[str, str]
    twins: httpx.AsyncClient
    projects: list[Proj] = field(default_factory=list)
    worker_proc: subprocess.Popen[bytes] | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))
    used: set[tuple[int, int, date, int]] = field(default_factory=set)

    def rows(self, system: str, sql: str, **params: Any) -> list[Any]:
        with self.sandbox.state(system).engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def deliveries(self, system: str) -> dict[str, Any]:
        sender = self.sandbox.state(system).webhooks
        assert sender is not None
        return dict(sender.deliveries)


@contextlib.asynccontextmanager
async def outage_stack(home: Path) -> AsyncIterator[Stack]:
    """Dev server (child process, SQLite file), gateway, seeded twins and a `pssync worker`
    process; everything is stopped on exit, also on failure."""
    settings = load_settings(home=home / ".pssync")
    settings.home.mkdir(parents=True, exist_ok=True)
    temporal = DevServer(settings.home / "temporal-outage.db", settings.home / "temporal.log")
    engine = None
    try:
        await temporal.start()
        settings.temporal.address = temporal.address
        client = await worker.connect_client(settings)
        store_module.upgrade(settings.resolved_database_url)
        engine = store_module.make_engine(settings.resolved_database_url)
        store = store_module.Store(engine)
        app = create_app(settings, store, client)
        relay = getattr(app.state, "relay", None)  # absent before the relay existed
        if relay is not None:
            relay.interval_s, relay.max_backoff_s = RELAY["interval_s"], RELAY["max_backoff_s"]
        async with serve(app) as gateway_url:
            sandbox = seeded_sandbox(
                settings.home / "sandbox-run",
                SEED,
                webhook_secret=settings.webhook_secret_crm.get_secret_value(),
                crm_webhook_url=f"{gateway_url}/webhooks/crm",
                psa_webhook_url=f"{gateway_url}/webhooks/psa",
            )
            for system in ("crm", "psa"):
                sender = sandbox.state(system).webhooks
                assert sender is not None
                sender.max_attempts = 1  # the senders give up after their first attempt
            try:
                async with (
                    serve(sandbox.app) as sandbox_url,
                    httpx.AsyncClient(
                        base_url=sandbox_url,
                        timeout=30,
                        limits=httpx.Limits(max_keepalive_connections=0),
                    ) as twins,
                ):
                    for system in ("crm", "psa", "erp", "hcm"):
                        getattr(settings, system).base_url = f"{sandbox_url}/{system}"
                    stack = Stack(
                        settings=settings,
                        temporal=temporal,
                        client=client,
                        store=store,
                        sandbox=sandbox,
                        app=app,
                        urls={"gateway": gateway_url, "sandbox": sandbox_url},
                        twins=twins,
                    )
                    stack.worker_proc = start_worker_process(
                        settings, settings.home / "worker.log", WORKER_ENV
                    )
                    try:
                        yield stack
                    finally:
                        stop_process(stack.worker_proc)
                        for schedule in ("time-to-invoice-sweep", "hcm-changes-poller"):
                            with contextlib.suppress(Exception):
                                await client.get_schedule_handle(schedule).delete()
            finally:
                for system in ("crm", "psa"):
                    sender = sandbox.state(system).webhooks
                    if sender is not None:
                        await sender.aclose()
    finally:
        temporal.stop()
        if engine is not None:
            engine.dispose()


# --------------------------------------------------------------------------- the world


async def link_projects(stack: Stack, count: int) -> None:
    """`count` projects linked in PSA and ERP as the saga leaves them, with four active
    people each and the standard rate card (as the time-to-invoice e2e test sets them up),
    and linked in the store as the saga links them."""
    deployment = worker.Deployment.from_settings(stack.settings)
    psa, erp = deployment.psa, deployment.erp
    assert isinstance(psa, KantataPsa) and isinstance(erp, NetSuiteErp)
    try:
        linked = await shared_link_projects(
            psa, erp, FIRM.workers, count, name="Temporal outage", tag="TO", ulid_prefix="01JTW"
        )
        for p in linked:
            for system, object_type, external_id in (
                (System.PSA, "workspace", str(p.psa_id)),
                (System.ERP, "job", str(p.job_id)),
            ):
                await asyncio.to_thread(
                    stack.store.link_xref,
                    p.enterprise_id,
                    "project",
                    system.value,
                    getattr(stack.settings, system.value.lower()).tenant,
                    object_type,
                    external_id,
                )
            stack.projects.append(Proj(psa_id=p.psa_id, job_id=p.job_id, users=p.users))
    finally:
        await deployment.aclose()


def plan(stack: Stack, per_project: int) -> list[dict[str, Any]]:
    """New entries on distinct worker/day/duration combinations, in last month and this one."""
    today = date.today()
    this_month = today.replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    days = [last_month + timedelta(days=i) for i in range((today - last_month).days + 1)]
    entries = []
    for p in stack.projects:
        for _ in range(per_project):
            while True:
                combo = (
                    p.psa_id,
                    stack.rng.choice(p.users),
                    stack.rng.choice(days),
                    15 * stack.rng.randint(1, 40),
                )
                if combo not in stack.used:
                    stack.used.add(combo)
                    break
            entries.append(
                {
                    "workspace_id": p.psa_id,
                    "user_id": combo[1],
                    "date_performed": combo[2].isoformat(),
                    "time_in_minutes": combo[3],
                }
            )
    return entries


async def approve(stack: Stack, per_project: int) -> list[int]:
    """Enter time (not approved), then approve each entry through the PSA API as an approver
    would: each approval sends one signed `time_entry.approved` webhook."""
    r = await stack.twins.post(
        "/psa/_admin/time_entries/bulk",
        json={"entries": plan(stack, per_project), "approved": False},
    )
    r.raise_for_status()
    ids = [int(i) for i in r.json()["ids"]]
    for entry_id in ids:
        put = await stack.twins.put(
            f"/psa/api/v1/time_entries/{entry_id}.json",
            json={"time_entry": {"approved": True}},
            headers=TWIN_AUTH,
        )
        put.raise_for_status()
    return ids


async def win_deals(stack: Stack, count: int, offset: int) -> list[str]:
    """Create deals shaped like the seeded firm's provisionable ones and move them to Closed
    Won: each sends one signed `opportunity.won` webhook."""
    from demo import deal_from_template, provisionable_templates

    templates = provisionable_templates(FIRM)
    crm = SalesforceCrm(stack.settings.crm)
    won: list[str] = []
    try:
        for i in range(count):
            new = deal_from_template(FIRM, templates[(offset + i) % len(templates)])
            opp_id = await crm.create_opportunity(new)
            await crm.set_stage(opp_id, "Closed Won")
            won.append(opp_id)
    finally:
        await crm.aclose()
    return won


# --------------------------------------------------------------------------- what holds


def postings_of(stack: Stack, entries: list[int]) -> dict[int, int]:
    """Approved entry -> live timebills (not reversals) the ERP holds for it."""
    if not entries:
        return {}
    held = stack.rows(
        "erp",
        "SELECT source_entry, count(*) FROM erp_timebill WHERE reverses_id IS NULL "
        f"AND source_entry IN ({','.join(repr(str(e)) for e in entries)}) GROUP BY source_entry",
    )
    counts = {int(entry): int(n) for entry, n in held}
    return {e: counts.get(e, 0) for e in entries}


def projects_of(stack: Stack, deals: list[str]) -> dict[str, tuple[int, int]]:
    """Deal -> (PSA workspaces not archived, ERP jobs of the enterprise id linked to it)."""
    out: dict[str, tuple[int, int]] = {}
    tenant = stack.settings.crm.tenant
    for opp in deals:
        [(psa,)] = stack.rows(
            "psa",
            "SELECT count(*) FROM psa_workspace WHERE opportunity_ref = :o AND archived = 0",
            o=opp,
        )
        eid = stack.store.find_enterprise_id(System.CRM.value, tenant, "Opportunity", opp)
        erp = 0
        if eid is not None:
            [(erp,)] = stack.rows(
                "erp", "SELECT count(*) FROM erp_job WHERE external_id = :e", e=eid
            )
        out[opp] = (int(psa), int(erp))
    return out


# --------------------------------------------------------------------------- the scenario


async def run_outage(
    stack: Stack,
    *,
    outage_s: float,
    deals: int,
    approvals: int,
    settle_s: float = 120,
) -> dict[str, Any]:
    """The scenario of the module docstring on a running `outage_stack`; returns the report."""
    # 1. warm-up: every project's pipeline is running before the outage
    warm = await approve(stack, 1)
    if not await eventually(lambda: all(postings_of(stack, warm).values()), 60):
        raise AssertionError(f"warm-up entries not posted: {postings_of(stack, warm)}")
    log(f"warm-up posted {len(warm)} entries; stopping Temporal for {outage_s:g} s")

    # 2. the outage
    outage = await during_outage(stack, outage_s=outage_s, deals=deals, approvals=approvals)
    won, approved = outage.won, outage.approved

    # 3. Temporal is back: nobody retries, the relay replays the inbox
    await stack.temporal.start()
    back = time.monotonic()
    log(f"Temporal back after {outage.seconds:.1f} s; waiting for every event to take effect")

    def settled() -> bool:
        done = all(p == 1 and e == 1 for p, e in projects_of(stack, won).values())
        return done and all(n >= 1 for n in postings_of(stack, approved + warm).values())

    await eventually(settled, settle_s, every_s=0.5)
    recovery_s = time.monotonic() - back
    statuses_of = await saga_statuses(stack, won)
    projects = projects_of(stack, won)
    postings = postings_of(stack, approved + warm)
    relay_view: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=stack.urls["gateway"], timeout=30) as gw:
        health = (await gw.get("/healthz")).json()
        relay_view = health.get("checks", {}).get("relay", {})
    lost = sum(1 for p, e in projects.values() if p == 0 or e == 0) + sum(
        1 for n in postings.values() if n == 0
    )
    duplicates = sum(max(0, p - 1) + max(0, e - 1) for p, e in projects.values()) + sum(
        max(0, n - 1) for n in postings.values()
    )
    report = {
        "deals": len(won),
        "projects": sum(1 for p, e in projects.values() if p >= 1 and e >= 1),
        "approvals": len(approved) + len(warm),
        "approvals_during_outage": len(approved),
        "postings": sum(1 for n in postings.values() if n >= 1),
        "lost": lost,
        "duplicates": duplicates,
        "outage_s": round(outage.seconds, 1),
        "recovery_s": round(recovery_s, 1),
        "deliveries": outage.deliveries,
        "saga_status": sorted(set(statuses_of.values())),
        "relay": {k: relay_view.get(k) for k in ("state", "backlog", "failed", "replayed")},
    }
    log(f"report: {json.dumps(report)}")
    return report


@dataclass
class Outage:
    """What happened while Temporal was down: deals won, entries approved, the webhook
    deliveries they made (`report["deliveries"]`) and how long it lasted."""

    won: list[str]
    approved: list[int]
    deliveries: dict[str, Any]
    seconds: float


async def during_outage(stack: Stack, *, outage_s: float, deals: int, approvals: int) -> Outage:
    """Temporal stopped for `outage_s`; deals won and time approved at its start and in its
    middle, each sending one webhook once; what the gateway answered and stored."""
    before = {s: set(stack.deliveries(s)) for s in ("crm", "psa")}
    stack.temporal.stop()
    began = time.monotonic()
    won: list[str] = []
    approved: list[int] = []
    per_round = [(deals + 1) // 2, deals // 2]
    approvals_per_round = [(approvals + 1) // 2, approvals // 2]
    for n, at in enumerate((0.0, outage_s / 2)):
        await asyncio.sleep(max(0.0, began + at - time.monotonic()))
        won += await win_deals(stack, per_round[n], offset=len(won))
        approved += await approve(stack, approvals_per_round[n])
        log(f"t+{time.monotonic() - began:.0f} s: {len(won)} deals won, {len(approved)} approved")
    for system in ("crm", "psa"):
        sender = stack.sandbox.state(system).webhooks
        assert sender is not None
        await sender.drain(timeout_s=60)  # every delivery made its one attempt
    deliveries = {
        s: [d for i, d in stack.deliveries(s).items() if i not in before[s]] for s in before
    }
    sent = [(s, d) for s, ds in deliveries.items() for d in ds]
    stored = [
        stack.store.inbox_get(s, d.event_id)
        for s, d in sent
        if d.event_type in ("opportunity.won", "time_entry.approved")
    ]
    attempts = {d.attempts for _, d in sent}
    statuses: dict[str, int] = {}
    for _, d in sent:
        key = str(d.last_status) if d.last_status is not None else (d.last_error or "?")[:40]
        statuses[key] = statuses.get(key, 0) + 1
    log(f"deliveries during the outage: {len(sent)}, answers {statuses}, attempts {attempts}")
    if hasattr(stack.store, "inbox_backlog"):  # absent before the relay existed
        backlog = stack.store.inbox_backlog()
        log(f"inbox: {backlog.pending} pending, {backlog.failed} failed")
    remaining = outage_s - (time.monotonic() - began)
    await asyncio.sleep(max(0.0, remaining))
    return Outage(
        won=won,
        approved=approved,
        deliveries={
            "during_outage": len(sent),
            "attempts_per_delivery": sorted(attempts),
            "answers": statuses,
            "stored_in_inbox": sum(1 for row in stored if row is not None),
        },
        seconds=time.monotonic() - began,
    )


async def saga_statuses(stack: Stack, won: list[str]) -> dict[str, str]:
    """The sagas finish what they started (write-back, staffing) before their runs complete:
    each deal's saga status once its result is in (or 30 s passed)."""
    statuses_of: dict[str, str] = {}
    for opp in won:
        wid = opportunity_workflow_id(stack.settings.crm.tenant, opp)
        with contextlib.suppress(Exception):
            handle = stack.client.get_workflow_handle(wid)
            await asyncio.wait_for(handle.result(), timeout=30)
        with contextlib.suppress(Exception):
            desc = await stack.client.get_workflow_handle(wid).describe()
            statuses_of[opp] = desc.status.name if desc.status else "?"
    return statuses_of


# --------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    mach = machine(usable=False)
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="pssync-bench-outage-"))
    async with outage_stack(home) as stack:
        await link_projects(stack, args.projects)
        report = await run_outage(
            stack,
            outage_s=args.outage_s,
            deals=args.deals,
            approvals=args.approvals,
            settle_s=args.settle_s,
        )
    report["wall_s"] = round(time.monotonic() - started, 1)
    report["ok"] = report["lost"] == 0 and report["duplicates"] == 0
    report["machine"] = mach
    report["config"] = vars(args) | {"relay": RELAY, "sender_max_attempts": 1, "home": str(home)}
    return report


def quiet_core_logs() -> None:
    """The SDK core logs every retried call while Temporal is down, to stdout by default: send
    its warnings to Python logging (stderr) so stdout ends with the JSON line alone."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    Runtime.set_default(
        Runtime(
            telemetry=TelemetryConfig(
                logging=LoggingConfig(
                    filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                    forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
                )
            )
        )
    )
    logging.getLogger("temporalio.core").setLevel(logging.ERROR)  # a retry is expected here


def main() -> None:
    quiet_core_logs()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage-s", type=float, default=150.0)
    parser.add_argument("--deals", type=int, default=6, help="deals won during the outage")
    parser.add_argument(
        "--approvals", type=int, default=8, help="entries approved per project during it"
    )
    parser.add_argument("--projects", type=int, default=3)
    parser.add_argument("--settle-s", type=float, default=180.0)
    args = parser.parse_args()
    # A signal ends the run through the context managers, so every child process is stopped.
    report = run_cancellable(main_async(args))
    print_json(report)
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
