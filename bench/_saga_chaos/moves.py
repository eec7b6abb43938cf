"""The saga chaos bench's own moves beside the deals: approved time (one signed webhook per
entry), change orders approved through the gateway, and terminations found by the HCM poll."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx

from bench._harness import eventually
from bench._harness import log_stamped as log
from bench._saga_chaos.world import Context, Deal, in_list, persist
from bench._time_to_invoice.world import EntryFactory
from bench._time_to_invoice.world import Project as TimeProject
from contracts.naming import change_order_workflow_id, termination_workflow_id
from contracts.v1.change_orders import ChangeOrderResult
from contracts.v1.worker_termination import HCM_SCHEDULE_ID
from demo import (
    actor_token,
    wait_for_step,
    wait_for_workflow,
)


async def ensure_in_psa(
    ctx: Context,
    path: str,
    kind: str,
    fields: dict[str, Any],
    params: dict[str, Any],
    match: Callable[[dict[str, Any]], bool] = lambda _row: True,
) -> dict[str, Any]:
    """The first PSA record of `path` (listed with `params`) that `match`es, made from
    `fields` when there is none; tried again after a retryable failure (`persist`)."""

    async def find() -> dict[str, Any] | None:
        for row in await ctx.psa._all(path, params):
            if match(row):
                return row
        return None

    async def create() -> dict[str, Any]:
        # Look first (a repeat after a failure may find the one made before), then create
        # through the connector's lost-answer-safe create (look up again before a re-send).
        return await find() or await ctx.psa._create(path, kind, fields, find)

    return await persist(create)


# --------------------------------------------------------------------------- time


@dataclass
class TimeWork:
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    """PSA entry id -> the bulk spec it was created from (workspace, user, day, minutes)."""
    posted_s: float | None = None


async def approve_time(ctx: Context, deals: list[Deal], count: int) -> TimeWork:
    """`count` approved entries over the deals' projects, one signed webhook each."""
    work = TimeWork()
    if count <= 0 or not deals:
        return work
    factory = EntryFactory(
        users=[ctx.users[w.id] for w in ctx.time_workers],
        worker_of_user={ctx.users[w.id]: w.id for w in ctx.time_workers},
        days=ctx.days,
    )
    projects = [TimeProject(psa_id=str(d.result.psa_project_id)) for d in deals if d.result]
    specs = [factory.next_entry(projects[i % len(projects)]) for i in range(count)]
    started = time.monotonic()
    ids = await ctx.twins.bulk(specs, approved=True, emit=True)
    work.entries = {str(i): s for i, s in zip(ids, specs, strict=True)}
    log(f"  time: {len(ids)} entries approved over {len(projects)} projects (webhooks)")

    posted = [0, time.monotonic()]
    """How many entries have a posting, and since when that number has not grown."""

    def all_posted() -> bool:
        found = len(
            ctx.db.rows(
                "erp",
                "SELECT DISTINCT source_entry FROM erp_timebill WHERE reverses_id IS NULL "
                f"AND source_entry IN ({in_list(list(work.entries))})",
            )
        )
        if found > posted[0]:
            posted[:] = [found, time.monotonic()]
        # Done, or stalled: nothing more posted for `--stall-s` (what is stuck is reported).
        return found >= len(work.entries) or time.monotonic() - posted[1] > ctx.args.stall_s

    if await eventually(all_posted, ctx.args.settle_timeout_s, every_s=1.0) and posted[0] >= len(
        work.entries
    ):
        work.posted_s = round(time.monotonic() - started, 1)
        log(f"  time: every entry has an ERP posting after {work.posted_s} s")
    else:
        log(
            f"  time: {posted[0]} of {len(work.entries)} entries posted; none more in "
            f"{ctx.args.stall_s:g} s"
        )
    return work


# --------------------------------------------------------------------------- change orders


@dataclass
class ChangeOrderWork:
    deal: Deal
    title: str
    delta: int
    currency: str = "USD"
    co_id: str | None = None
    erp_before: tuple[Decimal, int] | None = None
    psa_before: int | None = None
    roles: list[str] = field(default_factory=list)
    outcome: str | None = None
    error: str | None = None


def erp_budget(ctx: Context, eid: str) -> tuple[Decimal, int] | None:
    rows = ctx.db.rows(
        "erp",
        "SELECT b.amount, b.budget_version FROM erp_job_budget b JOIN erp_job j "
        "ON j.id = b.job_id WHERE j.external_id = :e",
        {"e": eid},
    )
    return (Decimal(str(rows[0][0])), int(rows[0][1])) if rows else None


async def submit_change_order(ctx: Context, work: ChangeOrderWork) -> None:
    """Submitted in the PSA twin (its webhook starts the saga), approved through the gateway
    by every role the run asks for, as `change_order_scene` does."""
    assert work.deal.result is not None
    ws = str(work.deal.result.psa_project_id)
    eid = work.deal.result.enterprise_id
    [(budget, work.currency)] = ctx.db.rows(
        "psa", "SELECT budget_in_cents, currency FROM psa_workspace WHERE id = :w", {"w": int(ws)}
    )
    work.psa_before = int(budget)
    work.erp_before = erp_budget(ctx, eid)
    fields = {
        "workspace_id": int(ws),
        "title": work.title,
        "budget_delta_in_cents": work.delta * 100,
        "currency": work.currency,
        "lines": [{"role": "Consultant", "minutes_delta": 40 * 60}],
        "requested_by": "dana.manager",
    }

    try:
        created = await ensure_in_psa(
            ctx,
            "/change_orders.json",
            "change_order",
            fields,
            {"workspace_id": ws},
            lambda co: co.get("title") == work.title,
        )
        work.co_id = str(created["id"])
        wid = change_order_workflow_id(ctx.settings.psa.tenant, work.co_id)
        ctx.workflows.setdefault("ChangeOrder", []).append(wid)
        timeout = ctx.args.deal_timeout_s
        handle = await wait_for_workflow(
            ctx.client, wid, timeout_s=timeout, result_type=ChangeOrderResult
        )
        status = await wait_for_step(handle, "waiting_for_approval", timeout)
        work.roles = list(status["required_roles"])
        await approve_as_roles(ctx, work)
        result: ChangeOrderResult = await asyncio.wait_for(handle.result(), timeout)
        work.outcome = result.outcome.value
    except Exception as exc:  # reported with the counts
        work.error = f"{type(exc).__name__}: {exc}"[:300]
        log(f"  change order {work.title} ({work.co_id}): {work.error}")


async def approve_as_roles(ctx: Context, work: ChangeOrderWork) -> None:
    """The gateway's decision endpoint, once per role the run asks for (a 5xx is tried again)."""
    async with httpx.AsyncClient(timeout=60) as http:
        for role in work.roles:
            for attempt in range(10):
                answer = await http.post(
                    f"{ctx.stack.urls['gateway']}/api/change-orders/{work.co_id}/decision",
                    headers={"Authorization": f"Bearer {actor_token(ctx.stack, role)}"},
                    json={"approve": True, "note": f"saga chaos: approved as {role}"},
                )
                if answer.status_code < 500:
                    break
                await asyncio.sleep(min(5.0, 0.5 * 2**attempt))
            if answer.status_code != 200:
                raise RuntimeError(f"decision as {role}: {answer.status_code} {answer.text}")


# --------------------------------------------------------------------------- terminations


@dataclass
class TerminationWork:
    deal: Deal
    leaver: Any
    last_day: date
    assignment_id: str | None = None
    entry_id: str | None = None
    workflow_id: str | None = None
    reached: bool = False
    error: str | None = None


async def terminate(ctx: Context, work: TerminationWork) -> None:
    """As `termination_scene`: the leaver staffed on a provisioned project with
    approved time, terminated in the HCM (effective today, last day yesterday); the poll
    Schedule finds it; the run must reach `open_for_rescind`."""
    assert work.deal.result is not None
    ws = str(work.deal.result.psa_project_id)
    user = ctx.users[work.leaver.id]
    today = work.last_day + timedelta(days=1)
    fields = {
        "workspace_id": int(ws),
        "user_id": int(user),
        "role": work.leaver.role,
        "start_date": (today - timedelta(days=14)).isoformat(),
        "end_date": (today + timedelta(days=60)).isoformat(),
        "allocated_minutes": 9600,
    }

    try:
        assignment = await ensure_in_psa(
            ctx, "/assignments.json", "assignment", fields, {"workspace_id": ws, "user_id": user}
        )
        work.assignment_id = str(assignment["id"])
        [entry] = await ctx.twins.bulk(
            [
                {
                    "workspace_id": int(ws),
                    "user_id": int(user),
                    "date_performed": (today - timedelta(days=2)).isoformat(),
                    "time_in_minutes": 420,
                }
            ],
            approved=True,
            emit=True,
        )
        work.entry_id = str(entry)
        await persist(lambda: ctx.hcm.terminate(work.leaver.id, today, work.last_day))
        with contextlib.suppress(Exception):  # the Schedule polls anyway; this is sooner
            await ctx.client.get_schedule_handle(HCM_SCHEDULE_ID).trigger()
        work.workflow_id = termination_workflow_id(
            ctx.settings.hcm.tenant, work.leaver.id, today.isoformat()
        )
        ctx.workflows.setdefault("WorkerTermination", []).append(work.workflow_id)
        timeout = ctx.args.deal_timeout_s
        handle = await wait_for_workflow(ctx.client, work.workflow_id, timeout_s=timeout)
        await wait_for_step(handle, "open_for_rescind", timeout)
        work.reached = True
    except Exception as exc:
        work.error = f"{type(exc).__name__}: {exc}"[:300]
        log(f"  termination of {work.leaver.id}: {work.error}")
