"""The console's approvals inbox (`gateway.console.approvals`) over real HTTP, a real SQLite
store and the real Temporal dev server, with a stand-in change-order run.

The stand-in (`StandInChangeOrder`, registered as "ChangeOrder" on its own task queue) keeps the
real run's contract: it starts from the `ChangeOrderProgress` its test gives it, answers the
`status` query with it, and takes `decide` updates whose validator refuses like the real one
(NotWaiting, NotAuthorized, NotInScope, AlreadyDecided); it ends once every required role
approved or one rejected. Runs carry the search attributes the real run upserts
(BusinessProcess, ChangeOrderId, EnterpriseProjectId), so the inbox finds them the way it finds
real ones.
"""

from __future__ import annotations

import asyncio
import html
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from markupsafe import escape
from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from contracts.money import Money
from contracts.naming import change_order_workflow_id
from contracts.v1.change_orders import (
    APPROVER_ROLES,
    CHANGE_ORDER_STATUS_QUERY,
    DECIDE_UPDATE,
    DELIVERY_MANAGER,
    FINANCE_CONTROLLER,
    PROCESS_CHANGE_ORDER,
    ChangeOrderDecision,
    ChangeOrderImpact,
    ChangeOrderProgress,
    ChangeOrderStep,
    DecisionAccepted,
    LineImpact,
    RecordedDecision,
)
from tests.gateway.test_console import DM, FINANCE, OPS, SCOPED, browser, csrf_of, signed_in
from tests.gateway.test_console import settings as settings  # the scoped delivery manager
from tests.gateway.test_gateway import Gw

__all__ = ["browser", "settings"]

BUSINESS_PROCESS = SearchAttributeKey.for_keyword("BusinessProcess")
CHANGE_ORDER_ID = SearchAttributeKey.for_keyword("ChangeOrderId")
ENTERPRISE_PROJECT_ID = SearchAttributeKey.for_keyword("EnterpriseProjectId")
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


# --------------------------------------------------------------------------- stand-in run


@workflow.defn(name="ChangeOrder")
class StandInChangeOrder:
    """Waits for its approvals like the real run: `status` query, `decide` update."""

    def __init__(self) -> None:
        self._status: ChangeOrderProgress | None = None

    @workflow.run
    async def run(self, start: ChangeOrderProgress) -> dict[str, Any]:
        now = workflow.now()
        self._status = start.model_copy(
            update={
                "step": ChangeOrderStep.WAITING_FOR_APPROVAL,
                "waiting_since": now - timedelta(hours=5),
                "escalates_at": None if start.escalated else now + timedelta(days=2),
                "expires_at": now + timedelta(days=7),
            }
        )
        await workflow.wait_condition(self._decided)
        await workflow.wait_condition(workflow.all_handlers_finished)
        rejected = any(not d.approve for d in self._status.decisions)
        self._status.step = ChangeOrderStep.REJECTED if rejected else ChangeOrderStep.APPLIED
        return {"decisions": [d.model_dump(mode="json") for d in self._status.decisions]}

    def _decided(self) -> bool:
        status = self._status
        assert status is not None
        return any(not d.approve for d in status.decisions) or not status.missing_roles()

    @workflow.query(name=CHANGE_ORDER_STATUS_QUERY)
    def status(self) -> ChangeOrderProgress:
        assert self._status is not None
        return self._status

    @workflow.update(name=DECIDE_UPDATE)
    def decide(self, decision: ChangeOrderDecision) -> DecisionAccepted:
        role = self._check(decision)
        assert self._status is not None
        self._status.decisions.append(
            RecordedDecision(
                actor=decision.actor,
                role=role,
                approve=decision.approve,
                note=decision.note,
                at=workflow.now(),
            )
        )
        return DecisionAccepted(
            actor=decision.actor,
            role=role,
            approve=decision.approve,
            remaining_roles=self._status.missing_roles() if decision.approve else [],
            accepted_at=workflow.now(),
        )

    @decide.validator
    def _validate(self, decision: ChangeOrderDecision) -> None:
        self._check(decision)

    def _check(self, decision: ChangeOrderDecision) -> str:
        status = self._status
        if (
            status is None
            or status.step is not ChangeOrderStep.WAITING_FOR_APPROVAL
            or (self._decided())
        ):
            raise ApplicationError("not waiting for a decision", type="NotWaiting")
        held = [r for r in APPROVER_ROLES if r in status.required_roles and r in decision.roles]
        if decision.as_role is not None:
            held = [r for r in held if r == decision.as_role]
        if not held:
            raise ApplicationError(
                f"{decision.actor} may not decide this change order: needs one of "
                f"{', '.join(status.required_roles)}",
                type="NotAuthorized",
            )
        keys = {"*", status.enterprise_id, status.psa_project_id}
        if not keys.intersection(decision.scopes):
            raise ApplicationError(
                f"{decision.actor} has no scope over project {status.enterprise_id}",
                type="NotInScope",
            )
        if any(d.actor == decision.actor for d in status.decisions):
            raise ApplicationError(f"{decision.actor} already decided", type="AlreadyDecided")
        for role in held:
            if role in status.missing_roles():
                return role
        raise ApplicationError(f"{', '.join(held)} already decided", type="AlreadyDecided")


# --------------------------------------------------------------------------- fixtures

Start = Callable[..., Awaitable[str]]


def progress(
    change_order_id: str,
    project: str,
    roles: list[str],
    *,
    decisions: list[RecordedDecision] | None = None,
    escalated: bool = False,
    reasons: list[str] | None = None,
    role: str = "consultant",
) -> ChangeOrderProgress:
    usd = "USD"
    return ChangeOrderProgress(
        step=ChangeOrderStep.WAITING_FOR_APPROVAL,
        change_order_id=change_order_id,
        enterprise_id=project,
        psa_project_id=f"ws-{project}",
        impact=ChangeOrderImpact(
            change_order_id=change_order_id,
            currency=usd,
            budget_delta=Money(Decimal("12500.00"), usd),
            hours_delta=Decimal(120),
            rate_card_value=Money(Decimal("18000.00"), usd),
            cost_delta=Money(Decimal("12420.00"), usd),
            projected_margin=Decimal("0.31"),
            lines=[
                LineImpact(
                    role=role,
                    hours_delta=Decimal(120),
                    bill_rate=Money(Decimal(150), usd),
                    cost_rate=Money(Decimal("103.50"), usd),
                    value=Money(Decimal(18000), usd),
                    cost=Money(Decimal(12420), usd),
                )
            ],
        ),
        required_roles=roles,
        finance_reasons=reasons or [],
        decisions=decisions or [],
        escalated=escalated,
    )


@pytest.fixture
async def start_change_order(gw: Gw) -> AsyncIterator[Start]:
    """Start stand-in change-order runs (served by a worker on their own task queue, or on
    `task_queue="nobody"` by none); every run still going is terminated afterwards, so no
    other test's inbox waits on it."""
    queue = f"co-{uuid.uuid4()}"
    started: list[WorkflowHandle[Any, Any]] = []

    async def start(
        project: str, roles: list[str], *, task_queue: str | None = None, **more: Any
    ) -> str:
        co = f"CO-{uuid.uuid4().hex[:10]}"
        handle = await gw.client.start_workflow(
            "ChangeOrder",
            progress(co, project, roles, **more),
            id=change_order_workflow_id(gw.settings.psa.tenant, co),
            task_queue=f"{queue}-{task_queue}" if task_queue else queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(BUSINESS_PROCESS, PROCESS_CHANGE_ORDER),
                    SearchAttributePair(CHANGE_ORDER_ID, co),
                    SearchAttributePair(ENTERPRISE_PROJECT_ID, project),
                ]
            ),
        )
        started.append(handle)
        await listed(gw.client, handle.id)
        return co

    async with Worker(
        gw.client,
        task_queue=queue,
        workflows=[StandInChangeOrder],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        yield start
        for handle in started:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")


async def listed(client: Client, workflow_id: str) -> None:
    """Wait until visibility lists the run among the running change orders."""
    query = (
        f"BusinessProcess = '{PROCESS_CHANGE_ORDER}' AND ExecutionStatus = 'Running' "
        f"AND WorkflowId = '{workflow_id}'"
    )
    for _ in range(200):
        if (await client.count_workflows(query)).count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{workflow_id} never became visible")


def run_of(gw: Gw, co: str) -> WorkflowHandle[Any, Any]:
    return gw.client.get_workflow_handle(change_order_workflow_id(gw.settings.psa.tenant, co))


async def decisions_of(gw: Gw, co: str) -> list[RecordedDecision]:
    status = await run_of(gw, co).query(CHANGE_ORDER_STATUS_QUERY, result_type=ChangeOrderProgress)
    return list(status.decisions)


async def audit_of(gw: Gw, co: str) -> list[dict[str, Any]]:
    resp = await gw.http.get(
        "/api/audit",
        params={"subject_kind": "change_order", "subject_id": co},
        headers={"Authorization": f"Bearer {OPS}"},
    )
    assert resp.status_code == 200, resp.text
    rows: list[dict[str, Any]] = resp.json()["items"]
    return rows


def listed_ids(page: httpx.Response, table: str = "approvals") -> set[str]:
    """The change orders a rendered table lists."""
    if f'id="{table}"' not in page.text:
        return set()
    part = page.text.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    return {
        html.unescape(chunk.split('"', 1)[0]) for chunk in part.split('data-change-order="')[1:]
    }


# --------------------------------------------------------------------------- the inbox


async def test_the_inbox_lists_what_waits_for_my_role_within_my_scopes(
    gw: Gw, browser: Any, start_change_order: Start
) -> None:
    dm_only = await start_change_order("P-1", [DELIVERY_MANAGER])
    both = await start_change_order("P-2", [DELIVERY_MANAGER, FINANCE_CONTROLLER], escalated=True)
    dm_done = await start_change_order(
        "P-1",
        [DELIVERY_MANAGER, FINANCE_CONTROLLER],
        decisions=[
            RecordedDecision(actor="dana.manager", role=DELIVERY_MANAGER, approve=True, at=T0)
        ],
    )
    mine = {dm_only, both, dm_done}

    dana = browser()
    await signed_in(dana, DM)
    page = await dana.get("/console/approvals")
    assert page.status_code == 200
    assert '<a href="/console/approvals" aria-current="page">Approvals</a>' in page.text
    assert listed_ids(page) & mine == {dm_only, both}
    row = page.text.split(f'data-change-order="{both}"', 1)[1].split("</tr>", 1)[0]
    assert "+12,500.00 USD" in row and "31.0%" in row and "+120 h" in row
    assert "Escalated" in row and "expires" in row
    assert "<strong>delivery_manager</strong> (you), finance_controller" in row

    frank = browser()
    await signed_in(frank, FINANCE)
    page = await frank.get("/console/approvals")
    assert listed_ids(page) & mine == {both, dm_done}

    sam = browser()  # a delivery manager whose scopes reach project P-1 only
    await signed_in(sam, SCOPED)
    page = await sam.get("/console/approvals")
    assert listed_ids(page) & mine == {dm_only}
    assert (await sam.get(f"/console/approvals/{both}")).status_code == 404


async def test_a_run_that_does_not_answer_is_listed_as_status_unavailable(
    gw: Gw, browser: Any, start_change_order: Start
) -> None:
    silent = await start_change_order("P-1", [DELIVERY_MANAGER], task_queue="nobody")
    answering = await start_change_order("P-1", [DELIVERY_MANAGER])
    dana = browser()
    await signed_in(dana, DM)
    page = await dana.get("/console/approvals")
    assert page.status_code == 200
    assert answering in listed_ids(page)
    assert silent in listed_ids(page, "unavailable") and silent not in listed_ids(page)
    assert "status unavailable" in page.text
    one = await dana.get(f"/console/approvals/{silent}")
    assert one.status_code == 200 and "Status unavailable" in one.text


# --------------------------------------------------------------------------- deciding


async def test_finance_cannot_decide_a_delivery_manager_approval(
    gw: Gw, browser: Any, start_change_order: Start
) -> None:
    co = await start_change_order("P-1", [DELIVERY_MANAGER])
    frank = browser()
    await signed_in(frank, FINANCE)
    page = await frank.get(f"/console/approvals/{co}")
    assert page.status_code == 200
    assert 'id="no-actions"' in page.text and 'id="decision-approve"' not in page.text

    refused = await frank.post(
        f"/console/approvals/{co}/decision",
        data={"decision": "approve", "note": "ok", "csrf_token": csrf_of(page)},
    )
    assert refused.status_code == 403
    assert "Not done: frank.finance may not decide this change order" in refused.text
    assert await decisions_of(gw, co) == []
    [row] = await audit_of(gw, co)
    assert (row["actor"], row["action"], row["outcome"], row["status_code"]) == (
        "frank.finance",
        "change_order.approve",
        "refused",
        403,
    )


async def test_a_delivery_manager_approves_with_a_comment(
    gw: Gw, browser: Any, start_change_order: Start
) -> None:
    co = await start_change_order("P-1", [DELIVERY_MANAGER, FINANCE_CONTROLLER])
    dana = browser()
    await signed_in(dana, DM)
    page = await dana.get(f"/console/approvals/{co}")
    assert page.status_code == 200
    assert 'for="note-approve"' in page.text and 'id="decision-reject"' in page.text
    assert "+12,500.00 USD" in page.text and "31.0%" in page.text

    sent = await dana.post(
        f"/console/approvals/{co}/decision",
        data={
            "decision": "approve",
            "note": "scope agreed with the client",
            "csrf_token": csrf_of(page),
        },
    )
    assert sent.status_code == 303 and sent.headers["location"] == f"/console/approvals/{co}"
    after = await dana.get(sent.headers["location"])
    assert (
        "Approved as delivery_manager. The run accepted it; still needed: finance_controller."
        in (after.text)
    )
    assert "scope agreed with the client" in after.text
    assert 'id="decision-approve"' not in after.text  # decided: nothing more to do here

    [decision] = await decisions_of(gw, co)
    assert (decision.actor, decision.role, decision.approve, decision.note) == (
        "dana.manager",
        DELIVERY_MANAGER,
        True,
        "scope agreed with the client",
    )
    [row] = await audit_of(gw, co)
    assert (row["actor"], row["action"], row["outcome"], row["status_code"]) == (
        "dana.manager",
        "change_order.approve",
        "accepted",
        200,
    )
    assert row["request"]["note"] == "scope agreed with the client"
    assert co not in listed_ids(await dana.get("/console/approvals"))


async def test_a_rejection_ends_the_wait_for_everyone(
    gw: Gw, browser: Any, start_change_order: Start
) -> None:
    co = await start_change_order("P-2", [DELIVERY_MANAGER, FINANCE_CONTROLLER])
    frank, dana = browser(), browser()
    await signed_in(frank, FINANCE)
    page = await frank.get(f"/console/approvals/{co}")
    sent = await frank.post(
        f"/console/approvals/{co}/decision",
        data={"decision": "reject", "note": "margin too thin", "csrf_token": csrf_of(page)},
    )
    assert sent.status_code == 303
    after = await frank.get(sent.headers["location"])
    assert "Rejected as finance_controller. The run accepted it" in after.text
    await run_of(gw, co).result()

    token = await signed_in(dana, DM)
    assert co not in listed_ids(await dana.get("/console/approvals"))
    late = await dana.post(
        f"/console/approvals/{co}/decision", data={"decision": "approve", "csrf_token": token}
    )
    assert late.status_code == 409
    assert "Not done: workflow &#39;change-order/" in late.text and "is not running" in late.text
    assert [(d.actor, d.approve) for d in await decisions_of(gw, co)] == [("frank.finance", False)]


async def test_a_decision_without_the_csrf_token_is_refused_and_not_sent(
    gw: Gw, browser: Any, start_change_order: Start
) -> None:
    co = await start_change_order("P-1", [DELIVERY_MANAGER])
    dana = browser()
    token = await signed_in(dana, DM)
    url = f"/console/approvals/{co}/decision"
    missing = await dana.post(url, data={"decision": "approve"})
    assert missing.status_code == 403
    wrong = await dana.post(url, data={"decision": "reject", "note": "x", "csrf_token": "forged"})
    assert wrong.status_code == 403
    elsewhere = await dana.post(
        url,
        data={"decision": "approve", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert elsewhere.status_code == 403
    assert await decisions_of(gw, co) == []
    assert await audit_of(gw, co) == []


async def test_hostile_text_from_a_run_is_shown_escaped(
    gw: Gw, browser: Any, start_change_order: Start
) -> None:
    co = await start_change_order(
        "P-1",
        [DELIVERY_MANAGER, FINANCE_CONTROLLER],
        reasons=[HOSTILE],
        role=HOSTILE,
        decisions=[
            RecordedDecision(
                actor=HOSTILE, role=FINANCE_CONTROLLER, approve=True, note=HOSTILE, at=T0
            )
        ],
    )
    dana = browser()
    await signed_in(dana, DM)
    for url in (f"/console/approvals/{co}", "/console/approvals"):
        page = await dana.get(url)
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
    page = await dana.get(f"/console/approvals/{co}")
    assert str(escape(HOSTILE)) in page.text
    bad = await dana.get("/console/approvals/%3Cscript%3E")
    assert bad.status_code == 404 and "<script>" not in bad.text
