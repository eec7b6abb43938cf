"""WorkerTermination and HcmChangesPoller on the time-skipping server, with the in-memory
PSA/ERP/HCM and a real SQLite store: future-dated terminations wait and act on the right day,
rescinds before and after the effective date restore the PSA, the payroll cutoff raises an
exception for approved time still unposted, and the poller starts each termination once."""

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
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

import store
from connectors.crm import FakeCrm
from connectors.erp import FakeErp
from connectors.hcm import FakeHcm
from connectors.psa import FakePsa
from contracts import Money, System
from contracts.naming import termination_workflow_id
from contracts.settings import load_settings
from contracts.v1 import Assignment, Customer, TimeEntry
from contracts.v1 import Worker as HcmWorker
from contracts.v1.processes import ExceptionResolution, ResolutionAction
from contracts.v1.worker_termination import (
    HCM_CHANGES_POLLER,
    RESCIND_SIGNAL,
    RESCIND_UPDATE,
    WORKER_TERMINATION,
    PollerInput,
    PollResult,
    RescindAccepted,
    RescindRequest,
    RescindSource,
    TerminationInput,
    TerminationOutcome,
    TerminationResult,
    TerminationStatus,
    TerminationStep,
)
from sandbox.temporal import time_skipping_temporal
from store import ExceptionItemRow
from tests.connectors._psa_fixtures import EID, make_project
from tests.workflows._worlds import (
    fake_deployment,
    open_project,
    query_until,
    running_workers,
    sqlite_store,
)

WORKER = "W-00042"


@pytest.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this module's own: runs of other modules left on the shared
    one (timers, escalations) would let it skip time under these tests' feet."""
    async with time_skipping_temporal() as env:
        yield env


MANAGER = "W-00007"
RATE = Money("80.00", "USD")


@dataclass
class World:
    client: Client
    env: WorkflowEnvironment
    task_queue: str
    psa: FakePsa
    erp: FakeErp
    hcm: FakeHcm
    store: store.Store
    project_id: str
    today: date

    def outbox(self, event_type: str = "notification") -> list[dict[str, Any]]:
        return [r.payload for r in self.store.pending_outbox(1000) if r.event_type == event_type]

    def add_time(self, days_ago: int, minutes: int, *, approved: bool = False) -> TimeEntry:
        """Time the worker logged on the project `days_ago` days before today."""
        on = self.today - timedelta(days=days_ago)
        return self.psa.add_time_entry(self.project_id, WORKER, on, minutes, approved=approved)

    def exceptions(self, workflow_id: str) -> list[ExceptionItemRow]:
        return [i for i in self.store.list_exceptions() if i.workflow_id == workflow_id]

    def psa_state(self) -> dict[str, Any]:
        """What a rescind must put back: assignments (identity-free), open requests, closure."""
        return {
            "assignments": sorted(
                (a.project_id, a.role, a.worker_id, a.start_date, a.end_date, a.allocated_minutes)
                for a in self.psa.assignments.values()
            ),
            "open_requests": sorted(
                rid for rid, (_, _, st) in self.psa.resource_requests.items() if st == "open"
            ),
            "closed_after": self.psa.users[WORKER].closed_after,
        }


@contextlib.asynccontextmanager
async def termination_world(
    env: WorkflowEnvironment, tmp_path: Path, *, closed_periods: tuple[str, ...] = ()
) -> AsyncIterator[World]:
    today = (await _now(env)).date()
    months = {f"{(today + timedelta(days=d)):%Y-%m}" for d in range(-60, 120)}
    erp = FakeErp(
        cost_centers=["CC-100"],
        open_periods=sorted(months - set(closed_periods)),
        closed_periods=closed_periods,
        cost_rates={WORKER: RATE},
    )
    psa = FakePsa()
    project = make_project(rate_card_id=None).model_copy(
        update={
            "delivery_manager": MANAGER,
            "start_date": today - timedelta(days=60),
            "end_date": today + timedelta(days=365),
        }
    )
    project_id = await open_project(
        psa,
        erp,
        project,
        enterprise_id=EID,
        customer=Customer(external_id="ACC-1", name="Acme", source_system=System.CRM),
        customer_enterprise_id=EID,
    )
    psa.add_user(WORKER, "Ada Lovelace", role="Consultant", start_date=today - timedelta(days=400))
    hcm = FakeHcm(
        [
            HcmWorker(
                external_id=WORKER,
                name="Ada Lovelace",
                hire_date=today - timedelta(days=400),
                cost_center="CC-100",
                source_system=System.HCM,
            )
        ]
    )
    with sqlite_store(tmp_path) as (url, st):
        settings = load_settings(home=tmp_path, database_url=url)
        deployment = fake_deployment(
            settings=settings, store=st, crm=FakeCrm(tenant="test"), psa=psa, erp=erp, hcm=hcm
        )
        queue = f"term-{uuid.uuid4().hex[:8]}"
        async with running_workers(env.client, deployment, queue):
            yield World(env.client, env, queue, psa, erp, hcm, st, project_id, today)


@pytest.fixture
async def world(ts_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[World]:
    async with termination_world(ts_env, tmp_path) as world:
        yield world


async def _now(env: WorkflowEnvironment) -> datetime:
    return (await env.get_current_time()).astimezone(UTC)


async def start(
    world: World,
    termination: date,
    last_day: date,
    *,
    workflow_id: str | None = None,
    **overrides: Any,
) -> WorkflowHandle[Any, TerminationResult]:
    """HCM terminates the worker and the run starts (under the production id and a suffix,
    unless given `workflow_id`); `overrides`: other input fields."""
    request = TerminationInput(
        hcm_tenant="test",
        worker_id=WORKER,
        worker_name="Ada Lovelace",
        termination_date=termination,
        last_day_worked=last_day,
        **{"rescind_window_days": 0, **overrides},
    )
    # HCM holds the termination: the run re-reads it on the effective date
    await world.hcm.terminate(WORKER, termination, last_day)
    if workflow_id is None:
        suffix = uuid.uuid4().hex[:6]
        workflow_id = termination_workflow_id("test", WORKER, termination.isoformat()) + suffix
    return await world.client.start_workflow(
        WORKER_TERMINATION,
        request,
        id=workflow_id,
        task_queue=world.task_queue,
        result_type=TerminationResult,
    )


async def reaches(
    handle: WorkflowHandle[Any, Any], *steps: TerminationStep, timeout_s: float = 20
) -> TerminationStatus:
    return await query_until(
        handle,
        "status",
        TerminationStatus,
        lambda status: status.step in steps,
        timeout_s=timeout_s,
        poll_s=0.05,
        stuck=lambda status: f"still {status.step}, wanted {steps}: {status}",
    )


async def past_the_day(
    world: World, handle: WorkflowHandle[Any, Any], days: int, step: TerminationStep
) -> TerminationStatus:
    """The run waits for its effective date; `days` later it has reached `step`."""
    await reaches(handle, TerminationStep.WAITING_FOR_EFFECTIVE_DATE)
    await world.env.sleep(timedelta(days=days))
    return await reaches(handle, step)


async def payroll_resolves(
    handle: WorkflowHandle[Any, Any], item_id: str, action: ResolutionAction
) -> None:
    await handle.execute_update(
        "resolve_exception",
        ExceptionResolution(
            item_id=item_id, action=action, actor="pat.payroll", actor_roles=["payroll"]
        ),
    )


def staff(world: World) -> dict[str, Assignment]:
    """An assignment running past the last day, one starting after it, and one ending before."""
    t = world.today
    return {
        "running": world.psa.add_assignment(
            world.project_id, "Consultant", t - timedelta(days=30), t + timedelta(days=60),
            worker_id=WORKER, minutes=9100,
        ),
        "future": world.psa.add_assignment(
            world.project_id, "Consultant", t + timedelta(days=20), t + timedelta(days=40),
            worker_id=WORKER, minutes=2100,
        ),
        "past": world.psa.add_assignment(
            world.project_id, "Analyst", t - timedelta(days=30), t - timedelta(days=1),
            worker_id=WORKER, minutes=600,
        ),
    }  # fmt: skip


# --------------------------------------------------------------------------- the process


async def test_future_dated_termination_flags_at_once_waits_and_acts_on_the_day(
    world: World,
) -> None:
    t = world.today
    staff(world)
    approved = world.add_time(2, 480, approved=True)
    pending = world.add_time(1, 120)
    co = world.psa.add_change_order(world.project_id, "More", Money("10.00", "USD"))
    fp = world.psa.projects[world.project_id]
    fp.project = fp.project.model_copy(update={"delivery_manager": WORKER})
    termination, last_day = t + timedelta(days=10), t + timedelta(days=9)
    before = world.psa_state()
    handle = await start(world, termination, last_day, payroll_cutoff_days=0)

    status = await reaches(handle, TerminationStep.WAITING_FOR_EFFECTIVE_DATE)
    # flagged at once: three kinds of conflict, each an exception item, managers notified
    items = {i.cause_code: i for i in world.exceptions(handle.id)}
    assert set(items) == {"ASSIGNMENTS_AFTER_LAST_DAY", "UNAPPROVED_TIME", "APPROVER_LEAVING"}
    assert items["UNAPPROVED_TIME"].context["time_entry_ids"] == [pending.external_id]
    assert items["APPROVER_LEAVING"].context["change_order_ids"] == [co.external_id]
    assert sorted(status.conflict_items) == sorted(i.id for i in items.values())
    entered = [n for n in world.outbox() if n["kind"] == "termination.entered"]
    assert len(entered) == 1
    roles = {r["role"] for r in entered[0]["recipients"]}
    assert roles == {"resource_manager", "project_manager"}
    # ... and nothing done in the PSA or the ERP before the day
    assert world.psa_state() == before
    assert world.erp.postings == {}
    effective_at = datetime.combine(termination, datetime.min.time(), tzinfo=UTC)
    await world.env.sleep(effective_at - await _now(world.env) - timedelta(hours=1))
    assert (await reaches(handle, TerminationStep.WAITING_FOR_EFFECTIVE_DATE)).step
    assert world.psa_state() == before

    await world.env.sleep(timedelta(hours=2))
    # the cutoff (the last day) has passed: the unapproved entry goes to payroll at once
    status = await reaches(handle, TerminationStep.WAITING_FOR_RESOLUTION)
    effective = [n for n in world.outbox() if n["kind"] == "termination.effective"]
    assert len(effective) == 1
    assert datetime.fromisoformat(effective[0]["at"]).date() == termination
    by_start = {a.start_date: a for a in world.psa.assignments.values()}
    assert by_start[t - timedelta(days=30)].end_date in (last_day, t - timedelta(days=1))
    assert {a.end_date for a in world.psa.assignments.values()} == {
        last_day,
        t - timedelta(days=1),
    }
    assert t + timedelta(days=20) not in by_start  # started after the last day: removed
    requests = [d for d, _, st in world.psa.resource_requests.values() if st == "open"]
    assert sorted((d.start_date, d.end_date) for d in requests) == [
        (last_day + timedelta(days=1), t + timedelta(days=60)),
        (t + timedelta(days=20), t + timedelta(days=40)),
    ]
    assert world.psa.users[WORKER].closed_after == last_day
    posted = [p for _, p in world.erp.postings.values()]
    assert [(p.source_entry_id, p.hours, p.cost_amount) for p in posted] == [
        (approved.external_id, Decimal(8), Money("640.00", "USD"))
    ]
    payroll = [o for o in status.open_items if o.cause_code == "PAYROLL_CUTOFF_UNAPPROVED"]
    assert len(payroll) == 1
    for item in status.open_items:
        await payroll_resolves(handle, item.item_id, ResolutionAction.SKIP)
    result = await handle.result()
    assert result.outcome is TerminationOutcome.COMPLETED
    assert result.posted_entry_ids == [approved.external_id]


async def test_rescind_before_the_effective_date_leaves_the_psa_untouched(world: World) -> None:
    t = world.today
    staff(world)
    before = world.psa_state()
    handle = await start(world, t + timedelta(days=10), t + timedelta(days=9))
    await reaches(handle, TerminationStep.WAITING_FOR_EFFECTIVE_DATE)
    # an operator without a rescind role is refused before anything reaches history
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            RESCIND_UPDATE, RescindRequest(actor="eve", actor_roles=["viewer"])
        )
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.type == "NotAuthorized"
    accepted = await handle.execute_update(
        RESCIND_UPDATE,
        RescindRequest(actor="olga.ops", actor_roles=["ops"], reason="entered by mistake"),
        result_type=RescindAccepted,
    )
    assert accepted.accepted
    result = await handle.result()
    assert result.outcome is TerminationOutcome.RESCINDED
    assert result.rescinded_by == "olga.ops"
    assert world.psa_state() == before
    assert world.erp.postings == {}
    # the conflict item is withdrawn, and the managers hear of the rescind
    assert [i.status for i in world.exceptions(handle.id)] == ["resolved"]
    assert [n["kind"] for n in world.outbox()] == [
        "termination.entered",
        "termination.rescinded",
    ]


async def test_rescind_after_the_effective_date_restores_the_psa(world: World) -> None:
    t = world.today
    staff(world)
    approved = world.add_time(3, 240, approved=True)
    before = world.psa_state()
    handle = await start(
        world, t + timedelta(days=2), t + timedelta(days=1), rescind_window_days=30
    )
    await past_the_day(world, handle, 3, TerminationStep.OPEN_FOR_RESCIND)
    assert world.psa_state() != before
    assert world.psa.users[WORKER].closed_after == t + timedelta(days=1)
    # HCM's own rescind, as the poller delivers it
    await handle.signal(
        RESCIND_SIGNAL,
        RescindRequest(actor="hcm", source=RescindSource.HCM_RESCIND, event_id="evt-9"),
    )
    result = await handle.result()
    assert result.outcome is TerminationOutcome.RESCINDED
    assert world.psa_state() == before  # assignments, requests cancelled, time entry open
    # approved time that was worked stays posted: a rescind does not un-work it
    assert [p.source_entry_id for _, p in world.erp.postings.values()] == [approved.external_id]


async def test_rehire_after_the_effective_date_is_not_a_rescind(world: World) -> None:
    t = world.today
    staff(world)
    handle = await start(world, t + timedelta(days=1), t + timedelta(days=1), rescind_window_days=5)
    await past_the_day(world, handle, 2, TerminationStep.OPEN_FOR_RESCIND)
    after = world.psa_state()
    await handle.signal(
        RESCIND_SIGNAL,
        RescindRequest(
            actor="hcm", source=RescindSource.HCM_REHIRE, rehire_date=t + timedelta(days=3)
        ),
    )
    result = await handle.result()
    assert result.outcome is TerminationOutcome.COMPLETED
    assert world.psa_state() == after
    status = await handle.query("status", result_type=TerminationStatus)
    assert any("rehire" in n for n in status.notes)


async def test_payroll_cutoff_exception_when_approved_time_is_still_unposted(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    today = (await _now(ts_env)).date()
    closed = f"{today - timedelta(days=45):%Y-%m}"
    async with termination_world(ts_env, tmp_path, closed_periods=(closed,)) as world:
        t = world.today
        ok = world.add_time(1, 60, approved=True)
        stuck = world.add_time(45, 90, approved=True)
        handle = await start(
            world, t + timedelta(days=1), t + timedelta(days=1), payroll_cutoff_days=3
        )
        status = await past_the_day(world, handle, 2, TerminationStep.WAITING_FOR_PAYROLL_CUTOFF)
        assert status.open_items == []  # not yet: the cutoff is three days after the last day
        assert [p.source_entry_id for _, p in world.erp.postings.values()] == [ok.external_id]
        cutoff_at = datetime.combine(t + timedelta(days=4), datetime.min.time(), tzinfo=UTC)
        await world.env.sleep(cutoff_at - await _now(world.env) + timedelta(hours=1))
        status = await reaches(handle, TerminationStep.WAITING_FOR_RESOLUTION)
        [item] = status.open_items
        assert item.cause_code == "PAYROLL_CUTOFF_UNPOSTED_TIME"
        assert stuck.external_id in item.detail and "PERIOD_CLOSED" in item.detail
        row = world.store.get_exception(item.item_id)
        assert row is not None and row.owner == "payroll" and row.status == "open"
        assert any(n["kind"].startswith("payroll.cutoff.") for n in world.outbox())
        # finance reopens the period; payroll retries: the entry posts, the run completes
        world.erp.set_period(closed, is_open=True)
        await payroll_resolves(handle, item.item_id, ResolutionAction.RETRY)
        result = await handle.result()
        assert result.outcome is TerminationOutcome.COMPLETED
        assert sorted(result.posted_entry_ids) == sorted([ok.external_id, stuck.external_id])
        assert len(world.erp.postings) == 2


# --------------------------------------------------------------------------- the poller


async def poll(world: World, **overrides: Any) -> PollResult:
    """One poller run. A time-skipping handle's `result()` lets the server skip time (and with
    it every run's timers), so a plain client on the same connection waits for this one."""
    plain = Client(world.client.service_client, data_converter=world.client.data_converter)
    result: PollResult = await plain.execute_workflow(
        HCM_CHANGES_POLLER,
        PollerInput(hcm_tenant="test", overlap_s=600, **overrides),
        id=f"poll-{uuid.uuid4().hex[:8]}",
        task_queue=world.task_queue,
        result_type=PollResult,
    )
    return result


async def test_poller_starts_each_termination_once_and_signals_rescinds(world: World) -> None:
    t = world.today
    staff(world)
    first = await poll(world)
    assert first.started == [] and first.changes == 1  # the hire, within the lookback
    termination = t + timedelta(days=30)
    await world.hcm.terminate(WORKER, termination, termination - timedelta(days=1))
    second = await poll(world)
    wid = termination_workflow_id("test", WORKER, termination.isoformat())
    assert second.started == [wid]
    # a restart that lost the cursor advance re-reads the window: nothing doubles
    cursor = world.store.get_state("hcm.changed_workers/test")
    assert cursor is not None
    world.store.put_state("hcm.changed_workers/test", first.window_through.isoformat())
    again = await poll(world)
    assert again.started == [] and again.duplicates >= 1
    handle = world.client.get_workflow_handle(wid, result_type=TerminationResult)
    await reaches(handle, TerminationStep.WAITING_FOR_EFFECTIVE_DATE)
    desc = await handle.describe()
    assert (
        desc.run_id
        == (await handle.describe()).raw_description.workflow_execution_info.first_run_id
    )
    # HCM rescinds: the poller signals the run, which undoes (nothing yet) and ends
    await world.hcm.rescind_termination(WORKER)
    third = await poll(world)
    assert third.signalled == [wid]
    result = await handle.result()
    assert result.outcome is TerminationOutcome.RESCINDED and result.rescinded_by == "hcm"
    inbox = world.store.inbox_get("hcm", f"test/{world.hcm.events[-1].id}")
    assert inbox is not None and inbox.workflow_id == wid
