"""Runs and health: what is in flight, what is stuck, how each system is doing, what failed.

- `GET /console/health?process=` — for the `ops` role (others: the 403 page); a scoped ops
  person sees only the runs and items their scopes reach (`gateway.scoping.Scoper`).
  - *In flight*: running runs per business process (Temporal visibility:
    `BusinessProcess = X AND ExecutionStatus = 'Running'`, counted by `count_workflows`; for a
    scoped person, counted among the `RUNNING_LIST_MAX` running runs read).
  - *Stuck*: runs with open exception items (the store, the `OPEN_ITEMS_MAX` oldest items) and
    runs with a retrying activity: the `DESCRIBE_MAX` oldest running runs are described,
    `DESCRIBE_CONCURRENCY` at a time within `DESCRIBE_TIMEOUT_S` each; a pending activity on
    its second attempt or later is listed with its type, attempt, last failure and next attempt.
  - *Systems*: the inbox backlog per webhook source, the outbox backlog, the gateway's own
    counters (webhooks accepted / refused per source, resolutions), the sync cursors the store
    keeps (HCM changes poll, PSA time sweep), and the worker's metrics read over HTTP from its
    app metrics port (`settings.worker_app_metrics_port`: vendor requests and errors per
    system as the connectors count them, quota use and quota waits) and its Temporal SDK port
    (`settings.worker_metrics_port`: activity executions and failures per system, the calls and
    errors shown when the app port does not count requests) — "worker metrics unavailable"
    when neither answers.
  - *Recent failures*: failed, timed-out and terminated runs closed in the last `RECENT`
    (`FAILURES_MAX` newest), each with the cause from its close event; and the exception items
    opened in that time, per cause.
  Every source is bounded and optional: Temporal, the store or the worker failing shows a
  notice in its section, never an error page.

The Temporal side (listings, describes, close events) is `gateway.console.health_runs`.

Must never: import workflows, activities or connectors (the worker's metrics are read as text).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client.parser import text_string_to_metric_families

from contracts import scopes
from contracts.settings import Actor, Settings
from contracts.v1.time_to_invoice import SWEEP_CURSOR
from gateway.console import views
from gateway.console.health_runs import (
    DESCRIBE_MAX,
    PROCESSES,
    RECENT,
    STORE_ERRORS,
    Health,
    RunReader,
    StuckRun,
    SystemHealth,
    read_runs,
)
from gateway.console.pages import PREFIX, ConsoleRefusal, render, signed_in
from gateway.metrics import GatewayMetrics
from gateway.scoping import Scoper
from gateway.webhooks import in_thread
from store import ExceptionFilter, ExceptionItemRow, Store

log = logging.getLogger("pssync.gateway.console")

router = APIRouter(prefix=PREFIX, include_in_schema=False)

HEALTH = f"{PREFIX}/health"
OPS = "ops"
SYSTEMS = ("CRM", "PSA", "ERP", "HCM")
WEBHOOK_SOURCES = ("crm", "psa")
OPEN_ITEMS_MAX = 500
WORKER_METRICS_TIMEOUT_S = 1.5
VENDOR_REQUESTS = "pssync_vendor_requests"
"""The connectors' per-request counter (`pssync_vendor_requests_total`), as its family is named."""
NOT_ERRORS = frozenset({"ok", "rate_limited"})
"""Request outcomes that are not errors (rate limits have their own column)."""

T = TypeVar("T")


# --------------------------------------------------------------------------- store side


async def read_items(
    store: Store, scoper: Scoper, actor: Actor, process: str, health: Health, now: datetime
) -> dict[str, StuckRun]:
    """Runs with open items (the oldest `OPEN_ITEMS_MAX` items) and recent items per cause."""
    where = ExceptionFilter(process=process or None)
    page = await in_thread(
        lambda: store.unresolved_exception_page(where, limit=OPEN_ITEMS_MAX, offset=0)
    )
    rows = await scoper.visible_items(actor, page.rows)
    health.open_items_total = len(rows) if scopes.EVERYTHING not in actor.scopes else page.total
    runs: dict[str, StuckRun] = {}
    for row in rows:
        run = runs.setdefault(row.workflow_id, StuckRun(row.workflow_id, row.process))
        run.open_items += 1
        if row.cause_code not in run.causes:
            run.causes.append(row.cause_code)
        if run.oldest_item is None or row.created_at < run.oldest_item:
            run.oldest_item = row.created_at
    recent: list[ExceptionItemRow] = await in_thread(
        lambda: store.exceptions_opened_since(now - RECENT, limit=OPEN_ITEMS_MAX)
    )
    recent = [
        r for r in await scoper.visible_items(actor, recent) if not process or r.process == process
    ]
    health.recent_causes = Counter(r.cause_code for r in recent).most_common()
    return runs


def sync_cursors(settings: Settings) -> list[tuple[str, str]]:
    """(label, sync-state name) of the cursors the store keeps for the configured tenants."""
    return [
        (
            f"HCM worker changes ({settings.hcm.tenant})",
            f"hcm.changed_workers/{settings.hcm.tenant}",
        ),
        (f"PSA time sweep ({settings.psa.tenant})", f"{SWEEP_CURSOR}/{settings.psa.tenant}"),
    ]


async def read_backlogs(store: Store, settings: Settings, health: Health) -> None:
    for source in WEBHOOK_SOURCES:
        backlog = await in_thread(store.inbox_backlog, [source])
        health.inbox[source] = {
            "pending": backlog.pending,
            "oldest": backlog.oldest_pending_at,
            "failed": backlog.failed,
        }
    pending = await in_thread(store.pending_outbox, OPEN_ITEMS_MAX + 1)
    health.outbox_pending = len(pending)
    for label, name in sync_cursors(settings):
        value = await in_thread(store.get_state, name)
        health.cursors.append((label, value or "never"))


async def guarded(
    section: str, health: Health, message: str, work: Callable[[], Awaitable[T]]
) -> T | None:
    """`work()`, or None with `message` as the section's notice when the store fails."""
    try:
        return await work()
    except STORE_ERRORS as exc:
        log.warning("health: the store could not be read for %s: %s", section, exc)
        health.notices[section] = message
        return None


# --------------------------------------------------------------------------- metrics


def gateway_counters(metrics: GatewayMetrics) -> dict[str, Any]:
    """The gateway's own counters: webhooks accepted / refused per source, resolutions."""
    accepted: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    resolutions: Counter[str] = Counter()
    for family in metrics.registry.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            if family.name == "pssync_gateway_webhooks_accepted":
                accepted[sample.labels.get("source", "")] += int(sample.value)
            elif family.name == "pssync_gateway_webhooks_refused":
                refused[sample.labels.get("source", "")] += int(sample.value)
            elif family.name == "pssync_gateway_resolutions":
                resolutions[sample.labels.get("outcome", "")] += int(sample.value)
    return {
        "webhooks": [(s, int(accepted.get(s, 0)), int(refused.get(s, 0))) for s in WEBHOOK_SOURCES],
        "resolutions": sorted((k, int(v)) for k, v in resolutions.items()),
    }


def system_of(activity_type: str) -> str | None:
    """The system an activity talks to: its name's prefix (`erp.upsert_project`) or a system
    word in it (`change_order.revise_erp_budget`); None for pssync's own activities."""
    head, _, rest = activity_type.lower().partition(".")
    if head.upper() in SYSTEMS:
        return head.upper()
    words = rest.replace(".", "_").split("_")
    for system in SYSTEMS:
        if system.lower() in words:
            return system
    return None


def parse_worker_metrics(*texts: str) -> dict[str, SystemHealth]:
    """Per system, from the worker's expositions (its SDK and app ports): calls and errors —
    the connectors' HTTP requests by outcome (`pssync_vendor_requests_total`; errors are the
    refused, failed, timed-out and unconnected ones, rate limits apart) when any exposition
    has that counter, else the Temporal SDK's activity executions and failures by the system
    named in the activity type — and vendor quota use and quota waits when exported."""
    systems = {s: SystemHealth(s) for s in SYSTEMS}
    activities = {s: SystemHealth(s) for s in SYSTEMS}
    counts_requests = False
    for text in texts:
        for family in text_string_to_metric_families(text):
            counts_requests = counts_requests or family.name == VENDOR_REQUESTS
            for sample in family.samples:
                _read_sample(sample.name, sample.labels, sample.value, systems, activities)
    if not counts_requests:
        for target in systems.values():
            target.calls, target.errors = (
                activities[target.system].calls,
                activities[target.system].errors,
            )
    for target in systems.values():
        if target.calls is not None and target.errors is None:
            target.errors = 0.0
    return systems


def add(current: float | None, value: float) -> float:
    return (current or 0.0) + value


def _read_sample(
    name: str,
    labels: dict[str, str],
    value: float,
    systems: dict[str, SystemHealth],
    activities: dict[str, SystemHealth],
) -> None:
    """Add one sample to its system: to `activities` for the SDK's activity metrics (the
    fallback calls and errors), to `systems` for everything else."""
    if name.startswith("temporal_activity_execution_latency") and name.endswith("_count"):
        target = activities.get(system_of(labels.get("activity_type", "")) or "")
        if target is not None:
            target.calls = add(target.calls, value)
        return
    if name in ("temporal_activity_execution_failed", "temporal_activity_execution_failed_total"):
        target = activities.get(system_of(labels.get("activity_type", "")) or "")
        if target is not None:
            target.errors = add(target.errors, value)
        return
    target = systems.get(str(labels.get("system", "")).upper())
    if target is None:
        return
    if name == f"{VENDOR_REQUESTS}_total":
        target.calls = add(target.calls, value)
        if labels.get("outcome") not in NOT_ERRORS:
            target.errors = add(target.errors, value)
    elif name == "pssync_vendor_quota_used":
        target.quota_used = value
    elif name == "pssync_vendor_quota_limit":
        target.quota_limit = value
    elif name == "pssync_vendor_rate_limited_total":
        if labels.get("code") == "PSSYNC_QUOTA_SHARE":
            target.quota_waits = add(target.quota_waits, value)
        else:
            target.rate_limited = add(target.rate_limited, value)


async def _exposition(http: httpx.AsyncClient, port: int) -> str | None:
    """The worker's metrics text on 127.0.0.1:`port`, or None when it does not answer."""
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        answer = await http.get(url)
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        log.info("health: worker metrics unavailable at %s: %s", url, exc)
        return None
    return answer.text[:5_000_000]


async def read_worker_metrics(settings: Settings, health: Health) -> None:
    ports = [
        port for port in (settings.worker_app_metrics_port, settings.worker_metrics_port) if port
    ]
    async with httpx.AsyncClient(timeout=WORKER_METRICS_TIMEOUT_S) as http:
        texts = await asyncio.gather(*(_exposition(http, port) for port in ports))
    answered = [text for text in texts if text is not None]
    try:
        systems = parse_worker_metrics(*answered) if answered else None
    except ValueError as exc:
        log.info("health: worker metrics unreadable: %s", exc)
        systems = None
    if systems is None:
        health.systems = [SystemHealth(s) for s in SYSTEMS]
        return
    health.worker_metrics = True
    health.systems = list(systems.values())


# --------------------------------------------------------------------------- the page


def _stuck_view(run: StuckRun, now: datetime) -> dict[str, Any]:
    return {
        "workflow_id": run.workflow_id,
        "process": views.process_name(run.process) if run.process else "—",
        "started": views_when(run.started),
        "open_items": run.open_items,
        "causes": run.causes,
        "oldest_item": views.age_text(run.oldest_item, now) if run.oldest_item else "",
        "retrying": [
            {
                "activity_type": a.activity_type,
                "attempt": a.attempt,
                "of": a.maximum_attempts or None,
                "last_failure": a.last_failure,
                "next_attempt": views_when(a.next_attempt),
            }
            for a in run.retrying
        ],
    }


def views_when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at is not None else "—"


def _rate(system: SystemHealth) -> str:
    rate = system.error_rate
    return f"{rate:.1%}" if rate is not None else "—"


def _number(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "—"


def page_context(health: Health, process: str, now: datetime) -> dict[str, Any]:
    stuck = sorted(health.stuck, key=lambda r: (not r.retrying, r.started or r.oldest_item or now))
    return {
        "process": process,
        "processes": [(p, views.process_name(p)) for p in PROCESSES],
        "in_flight": [(p, views.process_name(p), n) for p, n in health.in_flight.items()],
        "in_flight_exact": health.in_flight_exact,
        "running_read": health.running_read,
        "described": health.described,
        "describe_max": DESCRIBE_MAX,
        "stuck": [_stuck_view(r, now) for r in stuck],
        "open_items_total": health.open_items_total,
        "open_items_max": OPEN_ITEMS_MAX,
        "failures": [
            {
                "workflow_id": f.workflow_id,
                "process": views.process_name(f.process) if f.process else "—",
                "status": f.status,
                "closed": views_when(f.closed),
                "cause": f.cause,
            }
            for f in health.failures
        ],
        "recent_causes": [(c, n, views.cause_words(c)) for c, n in health.recent_causes],
        "inbox": [
            (
                source,
                b["pending"],
                views.age_text(b["oldest"], now) if b["oldest"] else "",
                b["failed"],
            )
            for source, b in health.inbox.items()
        ],
        "outbox_pending": health.outbox_pending,
        "outbox_capped": (health.outbox_pending or 0) > OPEN_ITEMS_MAX,
        "cursors": health.cursors,
        "gateway": health.gateway,
        "systems": [
            {
                "system": s.system,
                "calls": _number(s.calls),
                "errors": _number(s.errors),
                "error_rate": _rate(s),
                "quota": f"{_number(s.quota_used)} of {_number(s.quota_limit)}"
                if s.quota_limit is not None
                else "—",
                "rate_limited": _number(s.rate_limited),
                "quota_waits": _number(s.quota_waits),
            }
            for s in health.systems
        ],
        "worker_metrics": health.worker_metrics,
        "notices": health.notices,
        "recent_hours": int(RECENT.total_seconds() // 3600),
    }


def _merge(into: dict[str, StuckRun], runs: Iterable[StuckRun]) -> None:
    for run in runs:
        found = into.get(run.workflow_id)
        if found is None:
            into[run.workflow_id] = run
            continue
        found.retrying = found.retrying or run.retrying
        found.started = found.started or run.started
        if run.open_items:
            found.open_items, found.causes = run.open_items, run.causes
            found.oldest_item = run.oldest_item
        found.process = found.process or run.process


async def gather_health(request: Request, actor: Actor, process: str) -> Health:
    state = request.app.state
    store: Store = state.store
    settings: Settings = state.settings
    scoper = Scoper(store, state.client, settings)
    now = datetime.now(UTC)
    health = Health(gateway=gateway_counters(state.metrics))
    reader = RunReader(state.client, scoper, actor, process)
    retrying, items, _, _ = await asyncio.gather(
        read_runs(reader, health, now),
        guarded(
            "items",
            health,
            "The store is unavailable: open exception items cannot be read.",
            lambda: read_items(store, scoper, actor, process, health, now),
        ),
        guarded(
            "backlogs",
            health,
            "The store is unavailable: the inbox and outbox backlogs cannot be read.",
            lambda: read_backlogs(store, settings, health),
        ),
        read_worker_metrics(settings, health),
    )
    stuck: dict[str, StuckRun] = {}
    _merge(stuck, retrying.values())
    _merge(stuck, (items or {}).values())
    health.stuck = list(stuck.values())
    return health


@router.get("/health")
async def health_page(request: Request) -> Response:
    visitor = await signed_in(request)
    if OPS not in visitor.actor.roles:
        raise ConsoleRefusal(
            403,
            "Not allowed",
            f"{visitor.actor.name} does not hold the ops role that runs and health need.",
        )
    process = str(request.query_params.get("process", ""))
    process = process if process in PROCESSES else ""
    health = await gather_health(request, visitor.actor, process)
    return render(
        request,
        "health.html",
        page_context(health, process, datetime.now(UTC)),
        session=visitor.session,
        actor=visitor.actor,
    )
