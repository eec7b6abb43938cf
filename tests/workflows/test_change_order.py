"""ChangeOrder on the time-skipping server: the real workflow and activities over the in-memory
PSA and ERP fakes and a real SQLite store. Asserts what each system ends up holding."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.change_order import OutboxNotifier
from connectors.erp import FakeErp
from connectors.notifications import Notification
from connectors.psa import FakePsa
from contracts import BusinessRuleViolation, Money, System, TransientError
from contracts.ids import mint_ulid
from contracts.settings import load_settings
from contracts.v1 import (
    ChangeOrderLine,
    ChangeOrderStatus,
    Project,
)
from contracts.v1.change_orders import (
    DELIVERY_MANAGER,
    FINANCE_CONTROLLER,
    ApprovalPolicy,
    ChangeOrderDecision,
    ChangeOrderInput,
    ChangeOrderOutcome,
    ChangeOrderProgress,
    ChangeOrderStep,
)
from tests._builders import rate, rate_card
from tests.workflows._worlds import (
    ProjectWorld,
    acme_project,
    fake_deployment,
    open_project,
    running_workers,
    sqlite_store,
)
from workflows.change_order import ChangeOrderWorkflow, decide_change_order

EID = mint_ulid(1_760_000_000_000, 42)


@dataclass
class CoWorld(ProjectWorld):
    def erp_budget(self) -> tuple[Decimal, int]:
        job = next(iter(self.erp.jobs.values()))
        assert job.budget is not None
        return job.budget.amount, job.budget_version

    def psa_budget(self) -> Decimal:
        budget = self.psa.projects[self.psa_project_id].budget
        assert budget is not None
        return budget.amount

    def open_requests(self) -> dict[str, int]:
        return {
            d.role: d.allocated_minutes
            for d, _key, status in self.psa.resource_requests.values()
            if status == "open"
        }

    def outbox(self) -> list[tuple[str, str]]:
        return [(e.event_type, e.payload.get("audience", "")) for e in self.store.pending_outbox()]


@contextlib.asynccontextmanager
async def change_order_world(client: Client, tmp_path: Path) -> AsyncIterator[CoWorld]:
    psa = FakePsa()
    psa.add_rate_card(
        rate_card(
            rate("Consultant", Money(150, "USD"), date(2026, 1, 1)),
            rate("Manager", Money(220, "USD"), date(2026, 1, 1)),
        )
    )
    project = acme_project(
        end_date=date(2026, 12, 31),
        practice="Data & AI",
        rate_card_id="RC-STD-USD",
        delivery_manager="dana.manager",
    )
    erp = FakeErp(cost_centers=["CC-110"])
    psa_id = await open_project(psa, erp, project, enterprise_id=EID)
    with sqlite_store(tmp_path) as (_url, st):
        settings = load_settings(home=tmp_path)
        deployment = fake_deployment(settings=settings, store=st, psa=psa, erp=erp)
        queue = f"co-{uuid.uuid4().hex[:8]}"
        async with running_workers(client, deployment, queue):
            yield CoWorld(client, queue, psa, erp, st, psa_id)


def submit(world: CoWorld, budget: int, lines: list[tuple[str, int]]) -> str:
    co = world.psa.add_change_order(
        world.psa_project_id,
        "Extra data sources",
        Money(budget, "USD"),
        [
            ChangeOrderLine(role=role, hours_delta=Decimal(h), start_date=date(2026, 3, 1))
            for role, h in lines
        ],
    )
    return co.external_id


async def start(world: CoWorld, co_id: str, **kw: Any) -> WorkflowHandle[Any, Any]:
    return await world.client.start_workflow(
        ChangeOrderWorkflow.run,
        ChangeOrderInput(
            psa_tenant="test",
            change_order_id=co_id,
            policy=ApprovalPolicy(finance_threshold=Decimal(10000), margin_floor=Decimal("0.3")),
            **kw,
        ),
        id=f"change-order/test/{co_id}/{uuid.uuid4().hex[:6]}",
        task_queue=world.task_queue,
    )


async def waiting(handle: WorkflowHandle[Any, Any]) -> ChangeOrderProgress:
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        status: ChangeOrderProgress = await handle.query(
            ChangeOrderWorkflow.status, result_type=ChangeOrderProgress
        )
        if status.step is ChangeOrderStep.WAITING_FOR_APPROVAL:
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"stuck at {status.step}")
        await asyncio.sleep(0.05)


def dm(approve: bool = True, **kw: Any) -> ChangeOrderDecision:
    data: dict[str, Any] = {
        "actor": "dana.manager",
        "roles": [DELIVERY_MANAGER],
        "scopes": [EID],
        "approve": approve,
    }
    data.update(kw)
    return ChangeOrderDecision.model_validate(data)


def finance(approve: bool = True) -> ChangeOrderDecision:
    return ChangeOrderDecision(
        actor="frank.finance", roles=[FINANCE_CONTROLLER], scopes=["*"], approve=approve
    )


async def refused(handle: WorkflowHandle[Any, Any], decision: ChangeOrderDecision) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await decide_change_order(handle._client, handle.id, decision)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    return cause.type or ""


async def update_events(handle: WorkflowHandle[Any, Any]) -> int:
    history = await handle.fetch_history()
    return sum(
        1
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    )


async def test_delivery_manager_approval_applies_the_change_everywhere(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with change_order_world(ts_env.client, tmp_path) as world:
        co_id = submit(world, 5000, [("Consultant", 20), ("Manager", 5)])
        handle = await start(world, co_id)
        status = await waiting(handle)
        assert status.required_roles == [DELIVERY_MANAGER]
        assert status.impact is not None
        assert status.impact.rate_card_value == Money(4100, "USD")
        assert status.impact.hours_delta == 25
        accepted = await decide_change_order(world.client, handle.id, dm())
        assert accepted.role == DELIVERY_MANAGER and accepted.remaining_roles == []
        result = await handle.result()
    assert result.outcome is ChangeOrderOutcome.APPLIED
    assert world.erp_budget() == (Decimal(30000), 2)
    assert world.psa_budget() == 30000
    assert world.open_requests() == {"Consultant": 20 * 60, "Manager": 5 * 60}
    assert world.psa.change_orders[co_id].status is ChangeOrderStatus.APPLIED
    assert sorted(world.outbox()) == [
        ("budget.revised", ""),
        ("change_order.approved", ""),
        ("forecast.adjustment", ""),
        ("notification", "resource_managers"),
    ]
    # the domain event downstream systems see: approved, by whom, for how much
    [approved] = [e for e in world.store.pending_outbox() if e.event_type.startswith("change_")]
    assert approved.payload["subject"] == EID
    assert approved.payload["data"]["decided_by"] == ["dana.manager"]
    assert Decimal(approved.payload["data"]["budget_delta"]) == 5000
    # ... and the resource managers see it on the project's activity feed in the PSA
    [post] = world.psa.posts
    assert post.workspace_id == world.psa_project_id
    assert post.recipients == ["resource_managers"]
    assert post.message.startswith("Change order 'Extra data sources' approved")
    assert "Consultant 20 h, Manager 5 h" in post.message


async def test_wrong_actor_is_refused_by_the_validator_before_history(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with change_order_world(ts_env.client, tmp_path) as world:
        handle = await start(world, submit(world, 5000, [("Consultant", 20)]))
        await waiting(handle)
        # finance is not required for a small change; a consultant holds no approver role
        assert await refused(handle, finance()) == "NotAuthorized"
        assert await refused(handle, dm(roles=["consultant"])) == "NotAuthorized"
        # a delivery manager of another project
        assert await refused(handle, dm(scopes=["01OTHERPROJECT"])) == "NotInScope"
        assert await update_events(handle) == 0
        # the practice is a valid scope
        await decide_change_order(world.client, handle.id, dm(scopes=["Data & AI"]))
        assert (await handle.result()).outcome is ChangeOrderOutcome.APPLIED
        assert await update_events(handle) == 1


async def test_finance_must_approve_above_the_threshold(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with change_order_world(ts_env.client, tmp_path) as world:
        handle = await start(world, submit(world, 20000, [("Consultant", 100)]))
        status = await waiting(handle)
        assert status.required_roles == [DELIVERY_MANAGER, FINANCE_CONTROLLER]
        assert "exceeds" in status.finance_reasons[0]
        accepted = await decide_change_order(world.client, handle.id, dm())
        assert accepted.remaining_roles == [FINANCE_CONTROLLER]
        assert await refused(handle, dm()) == "AlreadyDecided"
        # one person cannot give both approvals, whatever roles they hold
        both = dm(roles=[DELIVERY_MANAGER, FINANCE_CONTROLLER])
        assert await refused(handle, both) == "AlreadyDecided"
        await asyncio.sleep(0)  # nothing applied until finance decides
        assert world.erp_budget() == (Decimal(25000), 1)
        await decide_change_order(world.client, handle.id, finance())
        result = await handle.result()
    assert result.outcome is ChangeOrderOutcome.APPLIED
    assert [d.role for d in result.decisions] == [DELIVERY_MANAGER, FINANCE_CONTROLLER]
    assert world.erp_budget() == (Decimal(45000), 2)
    assert world.psa_budget() == 45000


async def test_low_margin_needs_finance(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with change_order_world(ts_env.client, tmp_path) as world:
        handle = await start(
            world,
            submit(world, 3000, [("Consultant", 20)]),
            standard_cost_rates={"Consultant": Money(120, "USD")},
        )
        status = await waiting(handle)
        assert status.impact is not None and status.impact.projected_margin == Decimal("0.2")
        assert status.required_roles == [DELIVERY_MANAGER, FINANCE_CONTROLLER]
        await handle.cancel()


async def test_escalation_then_expiry_applies_nothing(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with change_order_world(ts_env.client, tmp_path) as world:
        co_id = submit(world, 20000, [("Consultant", 100)])
        handle = await start(world, co_id, escalation_after_s=3600, expires_after_s=4 * 3600)
        await waiting(handle)
        await decide_change_order(world.client, handle.id, dm())  # finance never answers
        result = await handle.result()  # the time-skipping server jumps the timers
        status = await handle.query(ChangeOrderWorkflow.status, result_type=ChangeOrderProgress)
    assert result.outcome is ChangeOrderOutcome.EXPIRED
    assert status.escalated and status.step is ChangeOrderStep.EXPIRED
    assert world.outbox() == [("notification", "approvers_managers")]
    assert [(p.workspace_id, p.recipients) for p in world.psa.posts] == [
        (world.psa_project_id, ["approvers_managers"])
    ]
    assert world.erp_budget() == (Decimal(25000), 1)
    assert world.psa_budget() == 25000
    assert world.open_requests() == {}
    assert world.psa.change_orders[co_id].status is ChangeOrderStatus.EXPIRED
    # a late decision reaches a closed run: refused by the server
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):
        await decide_change_order(world.client, handle.id, finance())


async def test_psa_failure_after_the_erp_revision_reverts_the_erp(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with change_order_world(ts_env.client, tmp_path) as world:
        world.psa.fail_next(
            "update_project_budget",
            BusinessRuleViolation("PROJECT_LOCKED", "budget locked", field="budget", system="PSA"),
        )
        handle = await start(world, submit(world, 5000, [("Consultant", 20)]))
        await waiting(handle)
        await decide_change_order(world.client, handle.id, dm())
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        status = await handle.query(ChangeOrderWorkflow.status, result_type=ChangeOrderProgress)
    assert isinstance(info.value.cause, ApplicationError)
    assert info.value.cause.type == "ChangeOrderFailed"
    amount, version = world.erp_budget()
    assert amount == 25000 and version == 3  # revised, then reverted
    assert world.psa_budget() == 25000
    assert world.open_requests() == {}
    assert "compensated: ERP budget reverted" in status.completed
    assert world.outbox() == []


async def test_rejection_changes_nothing_anywhere(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with change_order_world(ts_env.client, tmp_path) as world:
        co_id = submit(world, 20000, [("Consultant", 100)])
        handle = await start(world, co_id)
        await waiting(handle)
        await decide_change_order(world.client, handle.id, finance(approve=False))
        result = await handle.result()
    assert result.outcome is ChangeOrderOutcome.REJECTED
    assert world.erp_budget() == (Decimal(25000), 1)
    assert world.psa_budget() == 25000
    assert world.psa.projects[world.psa_project_id].version == 1
    assert world.psa.resource_requests == {}
    assert world.erp.forecasts == {}
    assert world.outbox() == [("change_order.rejected", "")]  # the event, nothing else
    [rejected] = world.store.pending_outbox()
    assert rejected.payload["subject"] == EID
    assert rejected.payload["data"]["decision"] == "rejected"
    assert world.psa.change_orders[co_id].status is ChangeOrderStatus.REJECTED


async def test_notifier_records_and_posts_once_across_retries(tmp_path: Path) -> None:
    with sqlite_store(tmp_path) as (_url, st):
        psa = FakePsa()
        psa_id = await psa.create_project_shell(
            Project(
                name="P",
                customer_id="C",
                cost_center="CC-1",
                billing_rule="time_and_materials",
                contract_value=Money(1, "USD"),
                start_date=date(2026, 1, 1),
                end_date=date(2026, 12, 31),
                source_system=System.PSSYNC,
            ),
            enterprise_id=EID,
        )
        notifier = OutboxNotifier(st, psa)

        def note(nid: str, workspace: str | None) -> Notification:
            return Notification(
                notification_id=nid,
                audience="resource_managers",
                subject="S",
                psa_project_id=workspace,
            )

        # the PSA is down: nothing recorded, the retry posts and records
        psa.fail_next("post_notification", TransientError("PSA down"))
        with pytest.raises(TransientError):
            await notifier.notify(note("n1", psa_id))
        assert st.pending_outbox() == []
        assert await notifier.notify(note("n1", psa_id)) is True
        assert await notifier.notify(note("n1", psa_id)) is False
        # an attempt that posted, then died before its outbox row: the retry does not post again
        await psa.post_notification(psa_id, "S", ["resource_managers"], key="n0")
        assert await notifier.notify(note("n0", psa_id)) is True
        assert [p.key for p in psa.posts] == ["n1", "n0"]
        # no workspace: outbox only; a workspace the PSA refuses: still recorded, no post
        assert await notifier.notify(note("n2", None)) is True
        assert await notifier.notify(note("n3", "no-such-workspace")) is True
        assert len(psa.posts) == 2
        assert [e.key for e in st.pending_outbox()] == ["n1", "n0", "n2", "n3"]
