"""WorkerLifecycle on the time-skipping server, with the in-memory PSA/ERP/HCM and a real SQLite
store: duplicate and out-of-order HCM events, a change waiting for the worker's midnight, a
leave that collides with an assignment, continue-as-new keeping the order, and the HCM poller
routing lifecycle events to the worker's one run."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

import store
from bench._harness.waiting import must_eventually
from connectors.erp import FakeErp
from connectors.erp.labor_cost import LaborCostRate
from connectors.hcm import ChangedFields, FakeHcm, WorkerEventType
from connectors.psa import FakePsa
from contracts import Money, System
from contracts.errors import BusinessRuleViolation, TransientError
from contracts.settings import load_settings
from contracts.v1 import Assignment
from contracts.v1 import Worker as HcmWorker
from contracts.v1.processes import (
    RESOLVE_EXCEPTION_UPDATE,
    STATUS_QUERY,
    ExceptionResolution,
    ResolutionAccepted,
    ResolutionAction,
)
from contracts.v1.worker_termination import HCM_CHANGES_POLLER, PollerInput, PollResult
from contracts.v1.workforce import (
    WORKER_CHANGE_SIGNAL,
    WORKER_LIFECYCLE,
    LifecycleInput,
    LifecycleStatus,
    WorkerChange,
    WorkerChangeKind,
    effective_instant,
    lifecycle_workflow_id,
    local_day,
)
from plumbing.temporal import signal_with_start
from sandbox.temporal import time_skipping_temporal
from tests.workflows._worlds import fake_deployment, query_until, running_workers, sqlite_store

WORKER = "W-00077"
SYDNEY = "Australia/Sydney"


@pytest.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_temporal() as env:
        yield env


@dataclass
class World:
    client: Client
    env: WorkflowEnvironment
    task_queue: str
    psa: FakePsa
    erp: FakeErp
    hcm: FakeHcm
    store: store.Store
    seq: int = 0

    async def now(self) -> datetime:
        return (await self.env.get_current_time()).astimezone(UTC)

    async def today(self, tz: str = SYDNEY) -> date:
        return local_day(await self.now(), tz)

    def change(
        self, kind: WorkerChangeKind, effective: date, *, seq: int | None = None, **fields: Any
    ) -> WorkerChange:
        if seq is None:
            self.seq += 1
            seq = self.seq
        return WorkerChange(
            event_id=f"evt-{seq}",
            sequence=seq,
            entered_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seq),
            worker_id=WORKER,
            kind=kind,
            effective_date=effective,
            time_zone=fields.pop("time_zone", SYDNEY),
            **fields,
        )

    async def send(
        self, change: WorkerChange, *, workflow_id: str, **carry: Any
    ) -> WorkflowHandle[Any, Any]:
        return await signal_with_start(
            self.client,
            WORKER_LIFECYCLE,
            LifecycleInput(hcm_tenant="test", worker_id=WORKER, **carry),
            id=workflow_id,
            signal=WORKER_CHANGE_SIGNAL,
            signal_arg=change,
            task_queue=self.task_queue,
        )

    def items(self, workflow_id: str) -> list[store.ExceptionItemRow]:
        return [i for i in self.store.list_exceptions() if i.workflow_id == workflow_id]


@contextlib.asynccontextmanager
async def lifecycle_world(env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[World]:
    psa, erp, hcm = FakePsa(), FakeErp(cost_centers=["CC-100"]), FakeHcm()
    with sqlite_store(tmp_path) as (url, st):
        settings = load_settings(home=tmp_path, database_url=url)
        deployment = fake_deployment(settings=settings, store=st, psa=psa, erp=erp, hcm=hcm)
        queue = f"life-{uuid.uuid4().hex[:8]}"
        async with running_workers(env.client, deployment, queue):
            yield World(env.client, env, queue, psa, erp, hcm, st)


@pytest.fixture
async def world(ts_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[World]:
    async with lifecycle_world(ts_env, tmp_path) as world:
        yield world


def new_id() -> str:
    return lifecycle_workflow_id("test", WORKER) + f"-{uuid.uuid4().hex[:6]}"


async def status_until(handle: WorkflowHandle[Any, Any], done: Any, what: str) -> LifecycleStatus:
    return await query_until(
        handle,
        STATUS_QUERY,
        LifecycleStatus,
        done,
        timeout_s=20,
        poll_s=0.1,
        stuck=lambda s: (
            f"{what}: pending {[c.event_id for c in s.pending]}, "
            f"history {[(h.event_id, h.stale) for h in s.history]}"
        ),
    )


def hire(world: World, day: date, **fields: Any) -> WorkerChange:
    return world.change(
        WorkerChangeKind.HIRE,
        day,
        name="Grace Hopper",
        role="Consultant",
        location="Sydney",
        practice="Cloud",
        cost_rate=Money("80.00", "AUD"),
        fte=Decimal(1),
        **fields,
    )


async def test_duplicate_and_out_of_order_events_never_overwrite_newer_ones(
    world: World,
) -> None:
    today = await world.today()
    wid = new_id()
    handle = await world.send(hire(world, today - timedelta(days=30)), workflow_id=wid)
    newer = world.change(
        WorkerChangeKind.COST_RATE_CHANGE,
        today - timedelta(days=5),
        seq=20,
        cost_rate=Money("95.00", "AUD"),
    )
    older = world.change(
        WorkerChangeKind.JOB_CHANGE,
        today - timedelta(days=10),
        seq=10,
        role="Senior Consultant",
        cost_rate=Money("90.00", "AUD"),
    )
    await world.send(newer, workflow_id=wid)
    await world.send(newer, workflow_id=wid)  # HCM answered the same event twice
    await status_until(handle, lambda s: len(s.history) == 2, "the newer rate applied")
    await world.send(older, workflow_id=wid)  # entered earlier, arrives after it was applied
    status = await status_until(
        handle, lambda s: len(s.history) == 3 and not s.pending, "three changes applied"
    )
    assert status.duplicates == 1
    assert status.state.cost_rate == Money("95.00", "AUD")
    assert status.state.role == "Senior Consultant"  # nothing newer set the role
    # the ERP holds the hire's rate and the newer one, each from its day; the older change
    # lost its rate to the newer one, so it wrote none
    assert await world.erp.labor_cost_rates(WORKER) == [
        LaborCostRate(
            worker_id=WORKER,
            rate=Money("80.00", "AUD"),
            effective_from=today - timedelta(days=30),
            key="evt-1",
            sequence=1,
        ),
        LaborCostRate(
            worker_id=WORKER,
            rate=Money("95.00", "AUD"),
            effective_from=today - timedelta(days=5),
            key="evt-20",
            sequence=20,
        ),
    ]
    assert await world.erp.get_cost_rate(WORKER) == Money("95.00", "AUD")
    assert world.psa.resources[WORKER].role == "Senior Consultant"


async def test_a_change_waits_for_the_workers_own_midnight(world: World) -> None:
    today = await world.today()
    wid = new_id()
    handle = await world.send(hire(world, today - timedelta(days=1)), workflow_id=wid)
    promotion = world.change(
        WorkerChangeKind.JOB_CHANGE,
        today + timedelta(days=3),
        role="Principal",
        cost_rate=Money("120.00", "AUD"),
    )
    await world.send(promotion, workflow_id=wid)
    await status_until(handle, lambda s: len(s.history) == 1 and s.pending, "hire applied")
    due = effective_instant(promotion.effective_date, SYDNEY)
    # an hour before Sydney's midnight (the middle of the day in New York): still waiting
    await world.env.sleep(due - timedelta(hours=1) - await world.now())
    status = await handle.query(STATUS_QUERY, result_type=LifecycleStatus)
    assert [c.event_id for c in status.pending] == [promotion.event_id]
    assert world.psa.resources[WORKER].role == "Consultant"
    assert await world.erp.get_cost_rate(WORKER) == Money("80.00", "AUD")
    await world.env.sleep(timedelta(hours=2))
    status = await status_until(handle, lambda s: not s.pending, "promotion applied")
    applied = status.history[-1]
    assert applied.event_id == promotion.event_id
    assert due <= applied.applied_at < due + timedelta(hours=2)
    assert world.psa.resources[WORKER].role == "Principal"
    assert await world.erp.get_cost_rate(WORKER) == Money("120.00", "AUD")


async def test_a_leave_colliding_with_an_assignment_is_flagged_at_once(world: World) -> None:
    today = await world.today()
    wid = new_id()
    handle = await world.send(hire(world, today - timedelta(days=100)), workflow_id=wid)
    await status_until(handle, lambda s: len(s.history) == 1, "hire applied")
    world.psa.assignments["ASG-1"] = Assignment(
        external_id="ASG-1",
        project_id="P-1",
        role="Consultant",
        worker_id=WORKER,
        start_date=today + timedelta(days=20),
        end_date=today + timedelta(days=60),
        allocated_minutes=4800,
        source_system=System.PSA,
    )
    leave = world.change(
        WorkerChangeKind.LEAVE_START,
        today + timedelta(days=30),
        leave_until=today + timedelta(days=90),
    )
    await world.send(leave, workflow_id=wid)
    status = await status_until(handle, lambda s: bool(s.open_items), "conflict flagged")
    # flagged now, a month before the leave starts; the leave itself still waits
    assert [c.event_id for c in status.pending] == [leave.event_id]
    [item] = world.items(wid)
    assert (item.cause_code, item.owner, item.status) == (
        "ASSIGNMENT_DURING_LEAVE",
        "resource_manager",
        "open",
    )
    assert "ASG-1" in item.detail
    await world.env.sleep(effective_instant(leave.effective_date, SYDNEY) - await world.now())
    await status_until(handle, lambda s: not s.pending, "leave applied")
    [period] = world.psa.resources[WORKER].leaves
    assert (period.start, period.end) == (leave.effective_date, leave.leave_until)


async def test_continue_as_new_keeps_the_order_of_pending_changes(world: World) -> None:
    today = await world.today()
    wid = new_id()
    carry = {"continue_after": 2}
    handle = await world.send(hire(world, today - timedelta(days=1)), workflow_id=wid, **carry)
    first_run = (await handle.describe()).run_id
    later = [
        world.change(WorkerChangeKind.FTE_CHANGE, today + timedelta(days=9), fte=Decimal("0.6")),
        world.change(WorkerChangeKind.FTE_CHANGE, today + timedelta(days=3), fte=Decimal("0.8")),
        world.change(WorkerChangeKind.TRANSFER, today + timedelta(days=6), location="Melbourne"),
    ]
    for change in later:
        await world.send(change, workflow_id=wid, **carry)
    await world.send(later[0], workflow_id=wid, **carry)  # a duplicate after continue-as-new
    latest = world.client.get_workflow_handle(wid)

    async def continued() -> bool:  # the first run also shows three pending before it goes
        return (await latest.describe()).run_id != first_run

    await must_eventually(continued, 20, every_s=0.1)
    status = await status_until(latest, lambda s: len(s.pending) == 3, "changes carried")
    await world.env.sleep(timedelta(days=11))
    status = await status_until(latest, lambda s: not s.pending, "all applied")
    applied = [h.event_id for h in status.history]
    assert applied[-3:] == [later[1].event_id, later[2].event_id, later[0].event_id]
    assert status.state.fte == Decimal("0.6")
    assert status.state.location == "Melbourne"
    assert world.psa.resources[WORKER].fte == Decimal("0.6")


# --------------------------------------------------------------------------- the poller


async def poll(world: World) -> PollResult:
    plain = Client(world.client.service_client, data_converter=world.client.data_converter)
    result: PollResult = await plain.execute_workflow(
        HCM_CHANGES_POLLER,
        PollerInput(hcm_tenant="test", overlap_s=600),
        id=f"poll-{uuid.uuid4().hex[:8]}",
        task_queue=world.task_queue,
        result_type=PollResult,
    )
    return result


async def test_the_poller_routes_lifecycle_events_to_the_workers_one_run(world: World) -> None:
    # HCM stamps entries on the wall clock the poller reads its window by; the worker's day
    # is the (skipped) workflow time's
    today = await world.today()
    world.hcm.add_worker(
        HcmWorker(
            external_id=WORKER,
            name="Grace Hopper",
            hire_date=today,
            cost_center="CC-100",
            location="Sydney",
            role="Consultant",
            source_system=System.HCM,
        ),
        time_zone=SYDNEY,
        hired=ChangedFields(practice="Cloud", cost_rate=Money("80.00", "AUD")),
    )
    world.hcm.enter_change(
        WORKER,
        WorkerEventType.COST_RATE_CHANGE,
        today + timedelta(days=2),
        cost_rate=Money("88.00", "AUD"),
    )
    first = await poll(world)
    wid = lifecycle_workflow_id("test", WORKER)
    assert (first.signalled, first.started, first.ignored) == ([wid, wid], [], [])
    again = await poll(world)  # the overlap re-reads both: the inbox drops them
    assert again.signalled == [] and again.duplicates == 2
    handle = world.client.get_workflow_handle(wid)
    status = await status_until(handle, lambda s: len(s.history) == 1, "hire applied")
    assert [c.kind for c in status.pending] == [WorkerChangeKind.COST_RATE_CHANGE]
    # hired today in Sydney: a resource who can be staffed today, at the hire's cost rate
    resource = world.psa.resources[WORKER]
    assert (resource.available_from, resource.practice) == (today, "Cloud")
    assert world.psa.users[WORKER].start_date == today
    assert await world.erp.get_cost_rate(WORKER) == Money("80.00", "AUD")
    await handle.terminate("test done")


async def test_a_refused_write_waits_for_a_person_and_a_flaky_one_is_retried(
    world: World,
) -> None:
    today = await world.today()
    wid = new_id()
    world.psa.fail_next(
        "upsert_resource",
        BusinessRuleViolation("ROLE_UNKNOWN", "no such role in the PSA", system=System.PSA),
    )
    world.erp.fail_labor_cost_next(TransientError("NetSuite 503"), times=2)
    handle = await world.send(hire(world, today), workflow_id=wid)
    status = await status_until(handle, lambda s: bool(s.open_items), "refusal flagged")
    [item] = status.open_items
    assert item.cause_code == "ROLE_UNKNOWN"
    assert WORKER not in world.psa.resources  # nothing applied while the item is open
    await handle.execute_update(
        RESOLVE_EXCEPTION_UPDATE,
        ExceptionResolution(
            item_id=item.item_id,
            action=ResolutionAction.RETRY,
            actor="rm@example.com",
            actor_roles=["resource_manager"],
        ),
        result_type=ResolutionAccepted,
    )
    status = await status_until(handle, lambda s: len(s.history) == 1, "hire applied")
    assert not status.open_items
    assert world.psa.resources[WORKER].role == "Consultant"
    # the ERP failed twice (an outage) and was retried: one row, not three
    assert [r.key for r in await world.erp.labor_cost_rates(WORKER)] == ["evt-1"]
