"""Races of the exception hand-off, each reproduced deterministically on the time-skipping
server: the interleaving is forced (workers paused, a store call held, time skipped), not hoped
for. Before the exception desk each of these wedged a run (a workflow task failing on every
replay) or lost a person's decision.

What is asserted is what a user sees: one resolution wins and the other is refused with a typed
409, the run goes on and finishes, the systems hold one of everything, and no workflow task
ever failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

import store
from contracts.errors import BusinessRuleViolation
from contracts.v1.processes import (
    RESOLVE_EXCEPTION_UPDATE,
    ExceptionResolution,
    ProvisioningStep,
    ResolutionAction,
)
from contracts.v1.worker_termination import (
    RESCIND_SIGNAL,
    RescindRequest,
    RescindSource,
    TerminationOutcome,
    TerminationResult,
    TerminationStep,
)
from tests.workflows import test_time_to_invoice as tti
from tests.workflows import test_worker_termination as term
from tests.workflows._provisioning import (
    cost_center_corrected,
    provisioning_world,
    start_saga,
    wait_for_step,
    won_opportunity,
)
from workflows.opportunity_to_project import OpportunityToProjectWorkflow

ts_env = tti.ts_env  # a time-skipping server of this module's own (time is skipped here)


async def no_task_failed(handle: WorkflowHandle[Any, Any]) -> None:
    """A wedged run shows as workflow tasks that fail (and fail again on every replay)."""
    events = [e.event_type for e in (await handle.fetch_history()).events]
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in events


async def history_has(handle: WorkflowHandle[Any, Any], event_type: EventType.ValueType) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while event_type not in [e.event_type for e in (await handle.fetch_history()).events]:
        assert asyncio.get_running_loop().time() < deadline, f"no {event_type} in the history"
        await asyncio.sleep(0.1)


@contextlib.contextmanager
def held_resolutions(st: store.Store) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Hold the store's `resolve_exception` (the resolution's record) until released: the
    window in which a timer or a rescind can overtake a person's decision."""
    entered, release = threading.Event(), threading.Event()
    original: Callable[..., Any] = st.resolve_exception

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(60), "the test never released the store"
        return original(*args, **kwargs)

    st.resolve_exception = held  # type: ignore[method-assign]
    try:
        yield entered, release
    finally:
        release.set()
        st.resolve_exception = original  # type: ignore[method-assign]


async def resolved_as_the_timer_fires(
    handle: WorkflowHandle[Any, Any], st: store.Store, item_id: str
) -> Any:
    """A delivery manager corrects the cost center; the escalation timer fires while the
    decision's record is in flight (the store held). Returns the accepted resolution."""
    with held_resolutions(st) as (entered, release):
        update = asyncio.create_task(
            handle.execute_update(
                OpportunityToProjectWorkflow.resolve_exception,
                cost_center_corrected(item_id),
            )
        )
        assert await asyncio.to_thread(entered.wait, 20), "the record never started"
        # The escalation timer fires while the decision's record is in flight.
        await history_has(handle, EventType.EVENT_TYPE_TIMER_FIRED)
        release.set()
        return await update


def _resolution(item_id: str, action: ResolutionAction, **kw: Any) -> ExceptionResolution:
    return ExceptionResolution(
        item_id=item_id, action=action, actor="ops", actor_roles=["ops"], **kw
    )


async def _outcome(handle: WorkflowHandle[Any, Any], resolution: ExceptionResolution) -> str:
    """ "ok", or the type of the typed refusal (the gateway's 409 for AlreadyResolved)."""
    try:
        await handle.execute_update(RESOLVE_EXCEPTION_UPDATE, resolution)
    except WorkflowUpdateFailedError as err:
        assert isinstance(err.cause, ApplicationError), err.cause
        return str(err.cause.type)
    return "ok"


# --------------------------------------------------------------------------- time to invoice


async def test_a_retry_while_a_reject_is_in_flight_is_refused(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A finance controller rejects an entry back to the PSA; while the PSA is still taking
    it, a delivery manager retries the same item. Before: both were accepted, and the entry
    ended up both unapproved in the PSA and posted in the ERP."""
    async with tti.tti_world(ts_env, tmp_path) as world:
        no_rate, item = await tti._held_for_a_rate(world)
        handle = world.client.get_workflow_handle(world.workflow_id("tm"))

        entered, release = asyncio.Event(), asyncio.Event()
        reject = world.psa.reject_time_entry

        async def held_reject(entry_id: str, reason: str) -> Any:
            entered.set()
            await release.wait()
            return await reject(entry_id, reason)

        world.psa.reject_time_entry = held_reject  # type: ignore[method-assign]
        first = asyncio.create_task(
            _outcome(handle, _resolution(item.id, ResolutionAction.REJECT, note="not billable"))
        )
        await asyncio.wait_for(entered.wait(), 20)
        second = await _outcome(
            handle,
            _resolution(
                item.id, ResolutionAction.RETRY_WITH_DATA, corrections={"role": "Consultant"}
            ),
        )
        assert second == "AlreadyResolved"  # told at once, while the reject is in flight
        release.set()
        assert await first == "ok"

        entry = world.psa.time_entries[no_rate.external_id]
        assert not entry.approved  # rejected back to the PSA ...
        posted = [
            p for _, p in world.erp.postings.values() if p.source_entry_id == entry.external_id
        ]
        assert posted == []  # ... and never posted
        row = world.store.get_exception(item.id)
        assert row is not None and row.resolution is not None
        assert row.resolution["action"] == "reject"
        await no_task_failed(handle)
        # the pipeline is alive: new time still posts
        more = tti._approved(world, "tm", 3)
        await world.signal("tm", more)
        await world.settled("tm", done=4)
        assert len(world.postings("tm")) == 3


async def test_a_refused_reject_leaves_the_item_open_for_another_decision(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti.tti_world(ts_env, tmp_path) as world:
        _, item = await tti._held_for_a_rate(world)
        handle = world.client.get_workflow_handle(world.workflow_id("tm"))
        world.psa.fail_next(
            "reject_time_entry", BusinessRuleViolation("LOCKED", "the timesheet is locked")
        )
        refused = await _outcome(handle, _resolution(item.id, ResolutionAction.REJECT))
        assert refused == "RejectRefused"
        retried = await _outcome(
            handle,
            _resolution(
                item.id, ResolutionAction.RETRY_WITH_DATA, corrections={"role": "Consultant"}
            ),
        )
        assert retried == "ok"
        await world.settled("tm", done=2, key="posted")
        assert len(world.postings("tm")) == 1
        await no_task_failed(handle)


# --------------------------------------------------------------------------- provisioning


async def test_escalation_while_a_resolution_is_being_recorded(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    opp = won_opportunity(cost_center="CC-404")
    async with provisioning_world(ts_env.client, tmp_path, opportunity=opp) as world:
        handle = await start_saga(world, escalation_after_s=2, activity_timeout_s=3600)
        status = await wait_for_step(handle, ProvisioningStep.WAITING_FOR_RESOLUTION)
        assert status.open_exception is not None
        item_id = status.open_exception.item_id
        accepted = await resolved_as_the_timer_fires(handle, world.store, item_id)
        assert accepted.action is ResolutionAction.RETRY_WITH_DATA
        result = await handle.result()
        await no_task_failed(handle)
    assert result.enterprise_id
    assert len(world.erp.jobs) == 1 and len(world.psa.projects) == 1
    row = world.store.get_exception(item_id)
    assert row is not None and row.status == "resolved" and row.owner == "delivery_manager"


# --------------------------------------------------------------------------- termination


async def test_rescind_while_a_resolution_is_being_recorded_waits_for_it(
    tmp_path: Path,
) -> None:
    from sandbox.temporal import time_skipping_temporal

    async with (
        time_skipping_temporal() as env,
        term.termination_world(env, tmp_path) as world,
    ):
        t = world.today
        term.staff(world)
        handle = await term.start(world, t + timedelta(days=10), t + timedelta(days=9))
        await term.reaches(handle, TerminationStep.WAITING_FOR_EFFECTIVE_DATE)
        conflict = next(
            i for i in world.exceptions(handle.id) if i.cause_code == "ASSIGNMENTS_AFTER_LAST_DAY"
        )
        with held_resolutions(world.store) as (entered, release):
            update = asyncio.create_task(
                handle.execute_update(
                    "resolve_exception",
                    ExceptionResolution(
                        item_id=conflict.id,
                        action=ResolutionAction.SKIP,
                        actor="rita.resources",
                        actor_roles=["resource_manager"],
                    ),
                )
            )
            assert await asyncio.to_thread(entered.wait, 20)
            await handle.signal(
                RESCIND_SIGNAL,
                RescindRequest(actor="hcm", source=RescindSource.HCM_RESCIND, reason="mistake"),
            )
            await term.reaches(handle, TerminationStep.RESCINDED)
            # The run has undone everything but must not end under the person's update.
            assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING
            release.set()
            await update
        result: TerminationResult = await handle.result()
        await no_task_failed(handle)
    assert result.outcome is TerminationOutcome.RESCINDED
    row = world.store.get_exception(conflict.id)
    assert row is not None and row.status == "resolved"
    assert row.resolution is not None and row.resolution.get("action") == "skip"
