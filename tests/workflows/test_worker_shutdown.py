"""A deploy stops the worker with SIGTERM: activities in flight finish within the grace period
(`worker_shutdown_grace_s`) instead of being cancelled and left to their start-to-close
timeouts, after which another worker would start them again from scratch."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

import worker
from tests.workflows._provisioning import provisioning_world, start_saga


async def test_shutdown_lets_an_activity_in_flight_finish(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with provisioning_world(ts_env.client, tmp_path, run_workers=False) as world:
        entered, release = asyncio.Event(), asyncio.Event()
        upsert = world.erp.upsert_customer

        async def slow_upsert(*args: Any, **kwargs: Any) -> Any:
            entered.set()
            await release.wait()  # the ERP takes its time
            return await upsert(*args, **kwargs)

        world.erp.upsert_customer = slow_upsert  # type: ignore[method-assign]
        workers = worker.build_workers(world.client, world.deployment, task_queue=world.task_queue)
        runs = [asyncio.create_task(w.run()) for w in workers]
        handle = await start_saga(world)
        await asyncio.wait_for(entered.wait(), 20)
        # SIGTERM: the worker stops taking work; the ERP answers a moment later.
        stopping = asyncio.gather(*(w.shutdown() for w in workers))
        await asyncio.sleep(0.3)
        release.set()
        await asyncio.wait_for(stopping, 20)
        await asyncio.gather(*runs, return_exceptions=True)

    assert len(world.erp.customers) == 1  # the call finished ...
    history = await handle.fetch_history()
    completed = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    ]
    assert len(completed) >= 4  # ... and its result reached the run (read, 2 checks, customer)
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    done = {
        scheduled[e.activity_task_completed_event_attributes.scheduled_event_id] for e in completed
    }
    assert "erp.upsert_customer" in done
    await handle.terminate()
