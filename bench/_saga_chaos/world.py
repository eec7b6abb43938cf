"""The saga chaos bench's world: the seeded firm, the twins' databases, deals won through the
CRM and awaited as sagas, the people who enter time or leave, and the twins' faults."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar

from sqlalchemy import create_engine, text

from bench._harness import SYSTEMS, Twins, bounded
from bench._harness import log_stamped as log
from connectors.crm import SalesforceCrm
from connectors.hcm import WorkdayHcm
from connectors.psa import KantataPsa
from contracts.errors import PssyncError
from contracts.naming import opportunity_workflow_id
from contracts.settings import Settings
from contracts.v1.processes import ProvisionProjectResult
from demo import deal_from_template, provisionable_templates, wait_for_workflow
from sandbox.seed import build_firm
from stack import Stack

SEED = 7
FIRM = build_firm(SEED)
TEMPLATES = provisionable_templates(FIRM)
T = TypeVar("T")
Counts = dict[str, Any]
"""What a count gives: {system: {kind: tally}}, and "_detail": {...} for the report."""


async def persist(call: Callable[[], Awaitable[T]], attempts: int = 8) -> T:
    """A person (or a Temporal activity) trying again after a retryable failure. Only for
    calls that are safe to repeat: keyed upserts, look-up-before-create, idempotent updates."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except PssyncError as exc:
            if not exc.retryable or attempt == attempts:
                raise
            await asyncio.sleep(min(5.0, 0.25 * 2**attempt))
    raise AssertionError("unreachable")


def cents(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# --------------------------------------------------------------------------- what systems hold


class Databases:
    """Read-only looks into the twins' SQLite files (their own process writes them) and the
    store. Nothing here goes through the faults."""

    def __init__(self, settings: Settings) -> None:
        self.dir = settings.home / "twins-process" / "sandbox"
        self.store = create_engine(settings.resolved_database_url)

    def rows(self, system: str, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        conn = sqlite3.connect(self.dir / f"{system}.db", timeout=30)
        try:
            return list(conn.execute(sql, params or {}).fetchall())
        finally:
            conn.close()

    def store_rows(self, sql: str, **params: Any) -> list[Any]:
        with self.store.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def close(self) -> None:
        self.store.dispose()


def in_list(values: list[Any]) -> str:
    return ",".join("'" + str(v).replace("'", "''") + "'" for v in values) or "''"


# --------------------------------------------------------------------------- the world


@dataclass
class Deal:
    key: str
    name: str
    new: Any
    """The `NewOpportunity` it was created from."""
    opp_id: str | None = None
    workflow_id: str | None = None
    result: ProvisionProjectResult | None = None
    error: str | None = None
    won_at: float = 0.0
    seconds: float | None = None


@dataclass
class Context:
    stack: Stack
    args: argparse.Namespace
    db: Databases
    twins: Twins
    crm: SalesforceCrm
    psa: KantataPsa
    hcm: WorkdayHcm
    users: dict[str, str]
    """HCM worker id -> PSA user id."""
    time_workers: list[Any]
    leavers: list[Any]
    days: list[date]
    workflows: dict[str, list[str]] = field(default_factory=dict)
    """The scenario's runs by workflow type."""
    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    """When the scenario started."""

    @property
    def client(self) -> Any:
        return self.stack.client

    @property
    def settings(self) -> Settings:
        return self.stack.settings


def new_deal(scenario: str, n: int, template_n: int | None = None, **overrides: Any) -> Deal:
    """Deal `n` of a scenario, shaped like a provisionable seeded deal (the `template_n`-th,
    default the `n`-th), keyed and named after the scenario and `n`."""
    index = TEMPLATES[(n if template_n is None else template_n) % len(TEMPLATES)]
    template = FIRM.opportunities[index]
    key = f"saga-chaos-{scenario}-{n:04d}"
    name = f"{template.name} ({scenario} {n})"
    new = deal_from_template(FIRM, index, name=name, key=key, **overrides)
    return Deal(key=key, name=name, new=new)


async def create_deal(ctx: Context, deal: Deal) -> None:
    deal.opp_id = await persist(lambda: ctx.crm.create_opportunity(deal.new))
    deal.workflow_id = opportunity_workflow_id(ctx.settings.crm.tenant, deal.opp_id)


async def win_deal(ctx: Context, deal: Deal) -> None:
    assert deal.opp_id is not None
    deal.won_at = time.monotonic()
    await persist(lambda: ctx.crm.set_stage(deal.opp_id or "", "Closed Won"))


async def await_deal(ctx: Context, deal: Deal) -> None:
    """The saga's result, or why there is none (its status, its open exception)."""
    assert deal.workflow_id is not None
    timeout = ctx.args.deal_timeout_s
    try:
        handle = await wait_for_workflow(
            ctx.client, deal.workflow_id, timeout_s=timeout, result_type=ProvisionProjectResult
        )
        deal.result = await asyncio.wait_for(handle.result(), timeout)
        deal.seconds = time.monotonic() - deal.won_at
    except Exception as exc:  # a failed saga is a finding, reported with the counts
        deal.error = f"{type(exc).__name__}: {exc}"[:300]
        with contextlib.suppress(Exception):
            status = await ctx.client.get_workflow_handle(deal.workflow_id).query("status")
            deal.error += f" | step {status.get('step')}, exception {status.get('open_exception')}"
        log(f"  deal {deal.key} ({deal.opp_id}) did not provision: {deal.error}")


async def run_deal(ctx: Context, deal: Deal) -> Deal:
    await create_deal(ctx, deal)
    await win_deal(ctx, deal)
    await await_deal(ctx, deal)
    return deal


async def win_many(ctx: Context, deals: list[Deal], concurrency: int) -> float:
    results, wall = await bounded(len(deals), concurrency, lambda i: run_deal(ctx, deals[i]))
    for d, r in zip(deals, results, strict=True):
        if isinstance(r, BaseException):
            d.error = d.error or f"{type(r).__name__}: {r}"[:300]
            log(f"  deal {d.key}: {d.error}")
    ctx.workflows.setdefault("OpportunityToProject", []).extend(
        d.workflow_id for d in deals if d.workflow_id
    )
    return wall


def pick_people(users: dict[str, str], args: argparse.Namespace) -> tuple[list[Any], list[Any]]:
    """Workers for time (active since before last month, in the PSA) and leavers (others)."""
    first = (date.today().replace(day=1) - timedelta(days=1)).replace(day=1)
    fit = [
        w
        for w in FIRM.workers
        if w.status == "active"
        and w.termination_date is None
        and w.hire_date < first - timedelta(days=7)
        and w.id in users
    ]
    leavers = fit[-args.terminations :] if args.terminations else []
    rest = [w for w in fit if w not in leavers]
    return rest[: args.time_workers], leavers


# --------------------------------------------------------------------------- faults


async def set_faults(ctx: Context, faults: dict[str, dict[str, Any]]) -> None:
    """`{system: {"faults": FaultConfig, "lost": {"rate", "seed"}}}`; other twins get none."""
    for system in SYSTEMS:
        spec = faults.get(system, {})
        await ctx.twins.faults(system, spec.get("faults", {}))
        await ctx.twins.lost_responses(system, spec.get("lost", {}))


async def lost_counts(ctx: Context) -> dict[str, int]:
    return {system: await ctx.twins.lost_count(system) for system in SYSTEMS}


async def fault_report(ctx: Context, lost_before: dict[str, int]) -> dict[str, Any]:
    lost_after = await lost_counts(ctx)
    stats = await ctx.twins.pick_stats("requests", "injected_errors", "errors_5xx", "throttled_429")
    return {
        system: stats[system] | {"lost_responses": lost_after[system] - lost_before[system]}
        for system in SYSTEMS
    }


def chaos_faults(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out = {}
    for n, system in enumerate(SYSTEMS):
        faults: dict[str, Any] = {
            "error_rate": args.error_rate,
            "rate_limit_rate": args.rate_limit_rate,
            "seed": args.seed + n,
        }
        if system == "hcm":
            faults["retry_after_s"] = 1  # Workday sends Retry-After with its 429s
        out[system] = {
            "faults": faults,
            "lost": {"rate": args.lost_response_rate, "seed": args.seed + 10 + n},
        }
    return out


async def begin_scenario(ctx: Context, faults: dict[str, dict[str, Any]]) -> dict[str, int]:
    """A scenario's start: no runs yet, fresh twin stats, `faults` on; the lost answers so far."""
    ctx.workflows = {}
    ctx.since = datetime.now(UTC)
    await ctx.twins.reset_stats()
    lost_before = await lost_counts(ctx)
    await set_faults(ctx, faults)
    return lost_before
