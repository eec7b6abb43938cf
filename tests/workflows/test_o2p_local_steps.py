"""The saga's short store steps run as local activities (issue 19): a worker that dies after a
local step committed but before its workflow task reached the server leaves the step to run
again on the next worker, and the run still ends with one project in each system, one xref per
system and one outbox event."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

import worker
from contracts.v1.processes import ProvisionProjectResult
from tests.workflows._provisioning import OPPORTUNITY, World, provisioning_world, start_saga
from workflows.opportunity_to_project import OpportunityToProjectWorkflow


def _die_after_the_job_link(world: World) -> tuple[asyncio.Event, threading.Event, list[str]]:
    """The store commits the project's ERP link, then the worker's thread never comes back
    (until `release`): the process is as good as dead with the write made."""
    loop = asyncio.get_running_loop()
    committed, release, links = asyncio.Event(), threading.Event(), []
    link = world.store.link_xref

    def link_then_die(enterprise_id: str, entity_type: str, system: str, *a: Any, **kw: Any) -> Any:
        row = link(enterprise_id, entity_type, system, *a, **kw)
        links.append(f"{entity_type}/{system}")
        if (entity_type, system) == ("project", "ERP") and not committed.is_set():
            loop.call_soon_threadsafe(committed.set)
            release.wait(60)
        return row

    world.store.link_xref = link_then_die  # type: ignore[method-assign]
    return committed, release, links


async def test_a_crash_after_a_local_store_step_duplicates_nothing(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with provisioning_world(dev_env.client, tmp_path, run_workers=False) as world:
        committed, release, links = _die_after_the_job_link(world)
        # No grace on shutdown: the dying worker's activities are abandoned, not awaited.
        settings = world.deployment.settings.model_copy(update={"worker_shutdown_grace_s": 0})
        deployment = dataclasses.replace(world.deployment, settings=settings)
        first = worker.build_workers(world.client, deployment, task_queue=world.task_queue)
        runs = [asyncio.create_task(w.run()) for w in first]
        handle = await start_saga(world, activity_timeout_s=5)
        await asyncio.wait_for(committed.wait(), 30)
        await asyncio.wait_for(asyncio.gather(*(w.shutdown() for w in first)), 30)
        await asyncio.gather(*runs, return_exceptions=True)
        release.set()  # the dead worker's thread ends; its answer reaches no one

        second = worker.build_workers(world.client, deployment, task_queue=world.task_queue)
        runs = [asyncio.create_task(w.run()) for w in second]
        try:
            result = await asyncio.wait_for(handle.result(), 60)
        finally:
            await asyncio.gather(*(w.shutdown() for w in second))
            await asyncio.gather(*runs, return_exceptions=True)

        result = ProvisionProjectResult.model_validate(result)
        # The step really ran twice: the second worker linked the project again.
        assert links.count("project/ERP") == 2
        assert len(world.psa.projects) == 1
        assert len(world.erp.jobs) == 1
        assert len(world.erp.customers) == 1
        project_links = {
            (x.system, x.object_type) for x in world.store.xrefs_for(result.enterprise_id)
        }
        assert project_links == {("CRM", "Opportunity"), ("PSA", "workspace"), ("ERP", "job")}
        assert world.store.find_enterprise_id("CRM", "test", "Opportunity", OPPORTUNITY) == (
            result.enterprise_id
        )
        assert [(e.event_type, e.key) for e in world.store.pending_outbox()] == [
            ("project.provisioned", result.enterprise_id)
        ]


async def test_the_store_steps_make_no_server_round_trip_and_replay(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with provisioning_world(dev_env.client, tmp_path) as world:
        handle = await start_saga(world)
        result = ProvisionProjectResult.model_validate(await handle.result())
        history = await handle.fetch_history()

    assert len(world.store.xrefs_for(result.enterprise_id)) == 3
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert not [name for name in scheduled if name.startswith("store.")]
    assert "erp.upsert_project" in scheduled  # vendor calls stay on the server's task queues
    # The new history (patch `o2p-local-store-steps`) replays; tests/replay replays the ones
    # recorded before it.
    replayer = Replayer(
        workflows=[OpportunityToProjectWorkflow], data_converter=world.client.data_converter
    )
    replayed = await replayer.replay_workflow(
        WorkflowHistory(handle.id, list(history.events)), raise_on_replay_failure=False
    )
    assert replayed.replay_failure is None
