"""The approvals inbox: change orders waiting for the signed-in person's decision, and a change
order's page with its impact, the decisions so far and the approve / reject forms.

- `GET /console/approvals?after=<cursor>` — the running change-order runs (Temporal visibility:
  `BusinessProcess = 'change_order' AND ExecutionStatus = 'Running'`), `RUNS_PER_PAGE` a page.
  Each run the person's scopes reach (the decision route's check: `Scoper.run_keys` and
  `contracts.scopes.covers`) is asked its `status`, `QUERY_CONCURRENCY` at a time, within
  `QUERY_TIMEOUT_S` each and `PAGE_BUDGET_S` for the page. Listed: the runs waiting for
  approval where a role still needed is one of the person's and the person has not decided
  yet; a run that does not answer in time is listed as "status unavailable", never an error.
- `GET /console/approvals/{change_order_id}` — the full impact, the roles needed and still
  missing, the escalation deadline, the decisions the run recorded and the ones sent through
  pssync (the audit trail), and the approve / reject forms for a person holding a missing role.
- `POST /console/approvals/{change_order_id}/decision` — `decision` (approve | reject), `note`,
  `as_role`, `csrf_token`: through `gateway.routes.decisions.decide_from_console`, the very path
  (and audit record) of `POST /api/change-orders/{id}/decision`; accepted, 303 back to the
  change order with a message; refused, its page again with the API's message and status.

Must never: import workflows, activities or connectors (the run is addressed by its query and
update names in `contracts.v1.change_orders`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecution, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from contracts import scopes
from contracts.money import Money, minor_units
from contracts.settings import Actor
from contracts.v1.change_orders import (
    APPROVER_ROLES,
    CHANGE_ORDER_STATUS_QUERY,
    PROCESS_CHANGE_ORDER,
    ChangeOrderImpact,
    ChangeOrderProgress,
    ChangeOrderStep,
)
from gateway.console import csrf, views
from gateway.console.pages import (
    APPROVALS,
    PREFIX,
    ConsoleRefusal,
    Visitor,
    flash_redirect,
    render,
    signed_in,
)
from gateway.errors import GatewayError
from gateway.processes import Processes
from gateway.routes.decisions import DecisionRequest, change_order_in_scope, decide_from_console
from gateway.routes.from_console import request_scoper
from gateway.scoping import Scoper
from gateway.webhooks import in_thread
from store import Store

log = logging.getLogger("pssync.gateway.console")

router = APIRouter(prefix=PREFIX, include_in_schema=False)


RUNS_PER_PAGE = 50
"""Running change orders read (and asked their status) for one page of the inbox."""
QUERY_CONCURRENCY = 8
QUERY_TIMEOUT_S = 2.0
"""How long one run may take to answer its `status` (or its scope check)."""
PAGE_BUDGET_S = 6.0
"""How long the inbox waits for all of a page's runs; later ones are 'status unavailable'."""
HISTORY_ROWS = 20
_MAX_CURSOR = 4096

RUNNING_CHANGE_ORDERS = (
    f"BusinessProcess = '{PROCESS_CHANGE_ORDER}' AND ExecutionStatus = 'Running'"
)
"""The visibility query of the change-order runs still in flight."""

UNAVAILABLE = "status unavailable"


# --------------------------------------------------------------------------- Temporal side


@dataclass(frozen=True)
class RunStatus:
    """A running change order and what its `status` query answered (None: no answer)."""

    workflow_id: str
    change_order_id: str
    started: datetime | None
    progress: ChangeOrderProgress | None
    error: str | None = None


@dataclass(frozen=True)
class RunPage:
    runs: list[RunStatus]
    """The page's runs the person's scopes reach (answered or not), in visibility's order."""
    read: int
    """Runs visibility gave for this page (before the scope check)."""
    next_cursor: str | None
    running: int | None
    """Change orders running in all (None when visibility could not count them)."""


def _cursor_token(cursor: str) -> bytes | None:
    """The visibility page token of an `after=` cursor (None: the first page)."""
    if not cursor or len(cursor) > _MAX_CURSOR:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)) or None
    except (binascii.Error, ValueError):
        return None


def _cursor_text(token: bytes | None) -> str | None:
    return base64.urlsafe_b64encode(token).decode().rstrip("=") if token else None


def _change_order_id(execution: WorkflowExecution) -> str:
    for pair in execution.typed_search_attributes or ():
        if pair.key.name == "ChangeOrderId" and isinstance(pair.value, str) and pair.value:
            return pair.value
    return execution.id.rsplit("/", 1)[-1]


async def query_status(client: Client, workflow_id: str, timeout_s: float) -> ChangeOrderProgress:
    """The run's `status` answer; raises `RPCError` (NOT_FOUND: no such run),
    `WorkflowQueryFailedError`, `TimeoutError` or `ValidationError` when there is none."""
    handle = client.get_workflow_handle(workflow_id)
    answer = await asyncio.wait_for(
        handle.query(
            CHANGE_ORDER_STATUS_QUERY,
            result_type=ChangeOrderProgress,
            rpc_timeout=timedelta(seconds=timeout_s),
        ),
        timeout=timeout_s + 0.5,
    )
    return ChangeOrderProgress.model_validate(answer)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the run did not answer in time"
    if isinstance(exc, WorkflowQueryFailedError):
        return "the run could not answer its status"
    return "Temporal did not answer"


async def running_change_orders(
    client: Client,
    processes: Processes,
    scoper: Scoper,
    actor: Actor,
    cursor: str,
) -> RunPage:
    """One page of the running change orders the actor's scopes reach, each with its status
    (bounded: `RUNS_PER_PAGE` runs, `QUERY_CONCURRENCY` at a time, `PAGE_BUDGET_S` in all)."""
    listing = client.list_workflows(
        RUNNING_CHANGE_ORDERS,
        page_size=RUNS_PER_PAGE,
        next_page_token=_cursor_token(cursor),
        rpc_timeout=timedelta(seconds=PAGE_BUDGET_S),
    )
    await listing.fetch_next_page(page_size=RUNS_PER_PAGE)
    executions = list(listing.current_page or [])[:RUNS_PER_PAGE]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PAGE_BUDGET_S
    gate = asyncio.Semaphore(QUERY_CONCURRENCY)

    async def one(execution: WorkflowExecution) -> RunStatus | None:
        change_order_id = _change_order_id(execution)
        try:
            ours = processes.change_order_run(change_order_id) == execution.id
        except GatewayError:
            ours = False
        if not ours:  # another tenant's run: this gateway's decisions do not reach it
            return None
        async with gate:
            if scopes.EVERYTHING not in actor.scopes:
                left = deadline - loop.time()
                try:
                    keys = await asyncio.wait_for(
                        scoper.run_keys(execution.id), timeout=max(0.05, min(QUERY_TIMEOUT_S, left))
                    )
                except TimeoutError:
                    return None  # reach unknown: not shown (fail closed)
                if not scopes.covers(actor.scopes, keys):
                    return None
            left = deadline - loop.time()
            progress: ChangeOrderProgress | None = None
            error: str | None = None
            if left <= 0:
                error = "the page's time ran out before this run was asked"
            else:
                try:
                    progress = await query_status(
                        client, execution.id, max(0.05, min(QUERY_TIMEOUT_S, left))
                    )
                except (
                    RPCError,
                    WorkflowQueryFailedError,
                    TimeoutError,
                    RuntimeError,
                    ConnectionError,
                    ValidationError,
                ) as exc:
                    log.info("approvals: no status from %s: %s", execution.id, exc)
                    error = _why(exc)
        return RunStatus(execution.id, change_order_id, execution.start_time, progress, error)

    found = await asyncio.gather(*(one(e) for e in executions))
    running: int | None
    try:
        counted = await client.count_workflows(
            RUNNING_CHANGE_ORDERS, rpc_timeout=timedelta(seconds=QUERY_TIMEOUT_S)
        )
        running = counted.count
    except (RPCError, RuntimeError, TimeoutError, ConnectionError):
        running = None
    return RunPage(
        runs=[run for run in found if run is not None],
        read=len(executions),
        next_cursor=_cursor_text(listing.next_page_token),
        running=running,
    )


# --------------------------------------------------------------------------- what is shown


def waits_for(actor: Actor, progress: ChangeOrderProgress) -> list[str]:
    """The roles this person could still decide in (empty: not waiting for them)."""
    if progress.step is not ChangeOrderStep.WAITING_FOR_APPROVAL:
        return []
    if any(not d.approve for d in progress.decisions):
        return []  # rejected: decided
    if any(d.actor == actor.name for d in progress.decisions):
        return []
    return [r for r in progress.missing_roles() if r in actor.roles]


def money_text(money: Money | None) -> str:
    if money is None:
        return "—"
    digits = minor_units(money.currency)
    return f"{money.amount:,.{digits}f} {money.currency}"


def delta_text(money: Money) -> str:
    digits = minor_units(money.currency)
    return f"{money.amount:+,.{digits}f} {money.currency}"


def margin_text(margin: Decimal | None) -> str:
    return f"{margin:.1%}" if margin is not None else "n/a (no positive rate-card value)"


def hours_text(hours: Decimal) -> str:
    return f"{hours:+,.2f}".rstrip("0").rstrip(".") + " h"


def when_text(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at is not None else "—"


def until_text(at: datetime | None, now: datetime) -> str:
    if at is None:
        return ""
    if at <= now:
        return f"passed {views.age_text(at, now)} ago"
    return f"in {views.age_text(now, at)}"


def impact_view(impact: ChangeOrderImpact | None) -> dict[str, Any] | None:
    if impact is None:
        return None
    return {
        "budget_delta": delta_text(impact.budget_delta),
        "currency": impact.currency,
        "hours_delta": hours_text(impact.hours_delta),
        "rate_card_value": money_text(impact.rate_card_value),
        "cost_delta": money_text(impact.cost_delta),
        "margin": margin_text(impact.projected_margin),
        "unpriced_roles": impact.unpriced_roles,
        "lines": [
            {
                "role": line.role,
                "hours": hours_text(line.hours_delta),
                "bill_rate": money_text(line.bill_rate),
                "cost_rate": money_text(line.cost_rate),
                "value": money_text(line.value),
                "cost": money_text(line.cost),
            }
            for line in impact.lines
        ],
    }


def _row_view(run: RunStatus, actor: Actor, now: datetime) -> dict[str, Any] | None:
    """An inbox row, or None when the run does not wait for this person."""
    progress = run.progress
    if progress is None:
        return {
            "id": run.change_order_id,
            "available": False,
            "why": run.error or UNAVAILABLE,
            "started": when_text(run.started),
        }
    mine = waits_for(actor, progress)
    if not mine:
        return None
    return {
        "id": run.change_order_id,
        "available": True,
        "project": progress.enterprise_id or progress.psa_project_id or "",
        "psa_project": progress.psa_project_id or "",
        "impact": impact_view(progress.impact),
        "missing": progress.missing_roles(),
        "mine": mine,
        "waiting_since": when_text(progress.waiting_since),
        "waiting_for": views.age_text(progress.waiting_since, now)
        if progress.waiting_since
        else "",
        "escalates_at": when_text(progress.escalates_at) if progress.escalates_at else "",
        "escalates_in": until_text(progress.escalates_at, now),
        "expires_at": when_text(progress.expires_at),
        "expires_in": until_text(progress.expires_at, now),
        "escalated": progress.escalated,
    }


# --------------------------------------------------------------------------- pages


@router.get("/approvals")
async def inbox(request: Request) -> Response:
    visitor = await signed_in(request)
    cursor = str(request.query_params.get("after", ""))[:_MAX_CURSOR]
    state = request.app.state
    try:
        found = await running_change_orders(
            state.client, state.processes, request_scoper(request), visitor.actor, cursor
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.INVALID_ARGUMENT and cursor:
            raise ConsoleRefusal(
                400,
                "That page is gone",
                "The list changed since that link was made; start again from the first page.",
            ) from None
        raise ConsoleRefusal(
            503, "Temporal is unavailable", "The running change orders cannot be read now."
        ) from None
    except (RuntimeError, TimeoutError, ConnectionError):
        raise ConsoleRefusal(
            503, "Temporal is unavailable", "The running change orders cannot be read now."
        ) from None
    now = datetime.now(UTC)
    rows = [view for run in found.runs if (view := _row_view(run, visitor.actor, now))]
    return render(
        request,
        "approvals.html",
        {
            "rows": [r for r in rows if r["available"]],
            "unavailable": [r for r in rows if not r["available"]],
            "read": found.read,
            "running": found.running,
            "next_cursor": found.next_cursor,
            "first_page": not cursor,
            "approver": bool(set(APPROVER_ROLES).intersection(visitor.actor.roles)),
        },
        session=visitor.session,
        actor=visitor.actor,
    )


async def _in_scope(request: Request, actor: Actor, change_order_id: str) -> str:
    """The change order's run id, or the 404 of one that does not exist (out of scope too)."""
    processes: Processes = request.app.state.processes
    try:
        workflow_id = processes.change_order_run(change_order_id)
        await change_order_in_scope(request_scoper(request), actor, workflow_id)
    except GatewayError as exc:
        raise ConsoleRefusal(404, "No such change order", exc.message) from None
    return workflow_id


async def _approval_page(
    request: Request,
    visitor: Visitor,
    change_order_id: str,
    workflow_id: str,
    *,
    status: int = 200,
    error: str | None = None,
) -> Response:
    state = request.app.state
    progress: ChangeOrderProgress | None = None
    unavailable: str | None = None
    try:
        progress = await query_status(state.client, workflow_id, QUERY_TIMEOUT_S)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ConsoleRefusal(
                404, "No such change order", f"no change order {change_order_id!r} is running"
            ) from None
        unavailable = _why(exc)
    except (WorkflowQueryFailedError, TimeoutError, RuntimeError, ConnectionError) as exc:
        unavailable = _why(exc)
    except ValidationError:
        unavailable = "the run's status could not be read"
    store: Store = state.store
    history = await in_thread(
        partial(
            store.list_audit,
            subject_kind="change_order",
            subject_id=change_order_id,
            limit=HISTORY_ROWS,
        )
    )
    now = datetime.now(UTC)
    actor = visitor.actor
    if progress is not None:
        mine = waits_for(actor, progress)
    else:  # no status: the run's own validator decides whoever holds an approver role
        mine = [r for r in APPROVER_ROLES if r in actor.roles]
    context = {
        "change_order_id": change_order_id,
        "workflow_id": workflow_id,
        "progress": progress,
        "unavailable": unavailable,
        "step": views.words(progress.step.value) if progress is not None else UNAVAILABLE,
        "waiting": progress is not None and progress.step is ChangeOrderStep.WAITING_FOR_APPROVAL,
        "project": (progress.enterprise_id or "") if progress else "",
        "psa_project": (progress.psa_project_id or "") if progress else "",
        "impact": impact_view(progress.impact) if progress else None,
        "required": progress.required_roles if progress else [],
        "missing": progress.missing_roles() if progress else [],
        "finance_reasons": progress.finance_reasons if progress else [],
        "waiting_since": when_text(progress.waiting_since) if progress else "",
        "escalates_at": when_text(progress.escalates_at)
        if progress and progress.escalates_at
        else "",
        "escalates_in": until_text(progress.escalates_at, now) if progress else "",
        "expires_at": when_text(progress.expires_at) if progress else "",
        "expires_in": until_text(progress.expires_at, now) if progress else "",
        "escalated": bool(progress and progress.escalated),
        "decisions": [
            {
                "at": when_text(d.at),
                "actor": d.actor,
                "role": d.role,
                "verdict": "approved" if d.approve else "rejected",
                "note": d.note,
            }
            for d in (progress.decisions if progress else [])
        ],
        "history": [
            {
                "at": h.at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                "actor": h.actor,
                "action": h.action,
                "outcome": h.outcome,
                "status": h.status_code,
                "note": str((h.request or {}).get("note") or ""),
                "message": str((h.result or {}).get("message") or "") if h.result else "",
            }
            for h in history.rows
        ],
        "mine": mine,
        "approver_roles": list(APPROVER_ROLES),
        "error": error,
    }
    return render(
        request,
        "approval.html",
        context,
        session=visitor.session,
        actor=visitor.actor,
        status=status,
    )


@router.get("/approvals/{change_order_id}")
async def approval(request: Request, change_order_id: str) -> Response:
    visitor = await signed_in(request)
    workflow_id = await _in_scope(request, visitor.actor, change_order_id)
    return await _approval_page(request, visitor, change_order_id, workflow_id)


def _decision_body(form: Any) -> DecisionRequest:
    verdict = str(form.get("decision", ""))
    if verdict not in ("approve", "reject"):
        raise ValueError(f"not a decision: {verdict!r}")
    note = form.get("note")
    as_role = form.get("as_role")
    return DecisionRequest(
        approve=verdict == "approve",
        as_role=as_role.strip() if isinstance(as_role, str) and as_role.strip() else None,
        note=note.strip() if isinstance(note, str) else "",
    )


def _accepted_text(body: DecisionRequest, answer: dict[str, Any]) -> str:
    result = answer.get("result")
    result = result if isinstance(result, dict) else {}
    role = result.get("role") or body.as_role or "your role"
    if not body.approve:
        return (
            f"Rejected as {role}. The run accepted it; the change order is not applied and the "
            "PSA is told."
        )
    remaining = result.get("remaining_roles") or []
    if remaining:
        return f"Approved as {role}. The run accepted it; still needed: {', '.join(remaining)}."
    return (
        f"Approved as {role}. The run accepted it; every approval is in, so it now revises "
        "the ERP budget, the PSA budget and staffing demand."
    )


@router.post("/approvals/{change_order_id}/decision")
async def decide(request: Request, change_order_id: str) -> Response:
    visitor = await signed_in(request)
    form = await request.form()
    csrf.check(request, visitor.session, form.get(csrf.FIELD))
    workflow_id = await _in_scope(request, visitor.actor, change_order_id)
    try:
        body = _decision_body(form)
    except (ValueError, ValidationError):
        return await _approval_page(
            request,
            visitor,
            change_order_id,
            workflow_id,
            status=422,
            error="That decision or its note is not valid.",
        )
    try:
        answer = await decide_from_console(request, change_order_id, body, visitor.actor)
    except GatewayError as exc:
        try:
            return await _approval_page(
                request, visitor, change_order_id, workflow_id, status=exc.status, error=exc.message
            )
        except ConsoleRefusal:  # the run is gone: the refusal is all there is to show
            raise ConsoleRefusal(exc.status, "Not done", exc.message) from None
    url = f"{APPROVALS}/{quote(change_order_id, safe='')}"
    return flash_redirect(request, visitor, url, "ok", _accepted_text(body, answer))


__all__ = ["router", "running_change_orders", "waits_for"]
