"""`plumbing.temporal` against the real dev server: start-or-join tells started from joined from
already-completed through the public API; signal-with-start; interval Schedules are created,
then updated in place."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.client import Client, ScheduleIntervalSpec, WorkflowFailureError
from temporalio.common import SearchAttributePair, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from plumbing.temporal import (
    BUSINESS_PROCESS,
    ensure_interval_schedule,
    signal_with_start,
    start_or_join,
)


@workflow.defn(name="PlumbingProbe")
class PlumbingProbe:
    """Collects `poke` signals; ends when told to `finish` (or fails when told to `fail`)."""

    def __init__(self) -> None:
        self.pokes: list[str] = []
        self.ending: str | None = None

    @workflow.run
    async def run(self, name: str) -> list[str]:
        await workflow.wait_condition(lambda: self.ending is not None)
        if self.ending == "fail":
            raise ApplicationError("told to fail", non_retryable=True)
        return [name, *self.pokes]

    @workflow.signal
    def poke(self, value: str) -> None:
        self.pokes.append(value)

    @workflow.signal
    def end(self, how: str) -> None:
        self.ending = how


@pytest.fixture
async def client(dev_env: WorkflowEnvironment) -> AsyncIterator[tuple[Client, str]]:
    queue = f"plumbing-{uuid.uuid4()}"
    async with Worker(
        dev_env.client,
        task_queue=queue,
        workflows=[PlumbingProbe],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        yield dev_env.client, queue


async def test_start_or_join_tells_started_joined_and_already_completed(
    client: tuple[Client, str],
) -> None:
    temporal, queue = client
    wid = f"probe-{uuid.uuid4()}"
    attrs = [SearchAttributePair(BUSINESS_PROCESS, "plumbing")]
    first = await start_or_join(
        temporal, "PlumbingProbe", "a", id=wid, task_queue=queue, search_attributes=attrs
    )
    assert (first.outcome, first.started) == ("started", True)
    second = await start_or_join(temporal, "PlumbingProbe", "b", id=wid, task_queue=queue)
    assert (second.outcome, second.run_id) == ("joined", first.run_id)
    desc = await temporal.get_workflow_handle(wid).describe()
    assert desc.typed_search_attributes.get(BUSINESS_PROCESS) == "plumbing"

    handle = temporal.get_workflow_handle(wid)
    await handle.signal("end", "finish")
    assert await handle.result() == ["a"]
    # ALLOW_DUPLICATE_FAILED_ONLY (the default): a completed run is not started again ...
    done = await start_or_join(temporal, "PlumbingProbe", "c", id=wid, task_queue=queue)
    assert (done.outcome, done.run_id) == ("already_completed", first.run_id)
    # ... unless the caller's policy allows it.
    again = await start_or_join(
        temporal,
        "PlumbingProbe",
        "d",
        id=wid,
        task_queue=queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    assert again.outcome == "started" and again.run_id != first.run_id
    await temporal.get_workflow_handle(wid).terminate()


async def test_a_failed_run_is_started_afresh(client: tuple[Client, str]) -> None:
    temporal, queue = client
    wid = f"probe-{uuid.uuid4()}"
    first = await start_or_join(temporal, "PlumbingProbe", "a", id=wid, task_queue=queue)
    handle = temporal.get_workflow_handle(wid, run_id=first.run_id)
    await handle.signal("end", "fail")
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    fresh = await start_or_join(temporal, "PlumbingProbe", "b", id=wid, task_queue=queue)
    assert fresh.outcome == "started" and fresh.run_id != first.run_id
    await temporal.get_workflow_handle(wid).terminate()


async def test_signal_with_start_starts_once_and_signals_every_time(
    client: tuple[Client, str],
) -> None:
    temporal, queue = client
    wid = f"probe-{uuid.uuid4()}"
    handles = [
        await signal_with_start(
            temporal, "PlumbingProbe", "s", id=wid, signal="poke", signal_arg=str(n),
            task_queue=queue,
        )
        for n in range(3)
    ]  # fmt: skip
    assert len({h.result_run_id for h in handles}) == 1
    await temporal.get_workflow_handle(wid).signal("end", "finish")
    assert await temporal.get_workflow_handle(wid).result() == ["s", "0", "1", "2"]


async def test_ensure_interval_schedule_creates_then_updates(client: tuple[Client, str]) -> None:
    temporal, queue = client
    schedule_id = f"probe-schedule-{uuid.uuid4()}"
    await ensure_interval_schedule(
        temporal, schedule_id, "PlumbingProbe", "x", every=timedelta(hours=1), task_queue=queue
    )
    await ensure_interval_schedule(
        temporal, schedule_id, "PlumbingProbe", "y", every=timedelta(hours=2), task_queue=queue
    )
    handle = temporal.get_schedule_handle(schedule_id)
    try:
        desc = await handle.describe()
        assert desc.schedule.spec.intervals == [ScheduleIntervalSpec(every=timedelta(hours=2))]
        action = desc.schedule.action
        assert getattr(action, "id", None) == f"{schedule_id}-run"
    finally:
        await handle.delete()
