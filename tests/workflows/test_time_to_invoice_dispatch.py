"""When a time pipeline sends a batch to the ERP (the `time-dispatch-when-idle` patch).

A part-full batch goes out at once when none of the project's batches is at the ERP; entries
approved while one is out wait for it and go together as soon as it comes back. Before the
patch every part-full batch waited a `linger_ms` timer, and Temporal fires timers no sooner
than about a second, so each approval waited a second or more for nothing. `linger_ms` is set
to a minute here: on the old behaviour these tests time out.

Runs recorded before the patch replay with their timers: the committed
`time-to-invoice~default~1` and `time-to-invoice~replay~101@*` histories (tests/replay), and
`time-to-invoice~dispatch~101` holds the marker (`tests/replay/test_replay.py` replays them all).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from contracts.v1.time_to_invoice import PipelineStatus
from sandbox.temporal import time_skipping_temporal
from tests.workflows.test_time_to_invoice import World, _approved, tti_world
from workflows.time_to_invoice import PATCH_DISPATCH_WHEN_IDLE

LINGER_MS = 60_000
RECORDED = Path(__file__).parents[1] / "replay" / "histories" / "time-to-invoice~dispatch~101.json"


@pytest.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_temporal() as env:
        yield env


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _batches_sent(sizes: list[int], count: int) -> None:
    async def sent() -> bool:
        return len(sizes) >= count

    await _until(sent, f"{count} batch(es) at the ERP")


def held_erp(world: World) -> tuple[asyncio.Event, list[int]]:
    """The ERP answers the first batch only once the event is set; the sizes of the batches
    it was sent, in order."""
    released, sizes = asyncio.Event(), []
    original = world.erp.post_time

    async def post_time(postings: Any) -> Any:
        sizes.append(len(postings))
        if len(sizes) == 1:
            await released.wait()
        return await original(postings)

    world.erp.post_time = post_time  # type: ignore[method-assign]
    return released, sizes


async def test_a_lone_approval_goes_to_the_erp_at_once(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        (entry,) = _approved(world, "tm", 1)
        await world.signal("tm", [entry], linger_ms=LINGER_MS)
        await world.settled("tm", done=1, timeout_s=20)
        assert len(world.postings("tm")) == 1
        history = await world.client.get_workflow_handle(world.workflow_id("tm")).fetch_history()
        kinds = [e.event_type for e in history.events]
        first_batch = kinds.index(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
        assert EventType.EVENT_TYPE_TIMER_STARTED not in kinds[:first_batch]


async def test_approvals_during_a_batch_wait_for_it_then_go_together(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        released, sizes = held_erp(world)
        entries = _approved(world, "tm", 4)
        await world.signal("tm", entries[:1], linger_ms=LINGER_MS)
        await _batches_sent(sizes, 1)
        await world.signal("tm", entries[1:], linger_ms=LINGER_MS)

        async def waiting() -> bool:
            status: PipelineStatus = await world.status("tm")
            return status.pending == 3

        # The signal is taken in: three entries wait, the second slot stays free for a full
        # batch (or for the linger), and the ERP has still seen only the first batch.
        await _until(waiting, "three entries pending")
        status = await world.status("tm")
        assert status.in_flight == 1 and sizes == [1], (status, sizes)

        released.set()
        status = await world.settled("tm", done=4, timeout_s=20)
        assert sizes == [1, 3]
        assert status.counters["posted"] == 4 and status.counters["batches"] == 2
        assert len({p.source_entry_id for p in world.postings("tm")}) == 4


async def test_a_full_batch_takes_the_second_slot_while_one_is_out(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        released, sizes = held_erp(world)
        entries = _approved(world, "tm", 6)
        overrides = {"linger_ms": LINGER_MS, "batch_size": 5}
        await world.signal("tm", entries[:1], **overrides)
        await _batches_sent(sizes, 1)
        await world.signal("tm", entries[1:], **overrides)
        await _batches_sent(sizes, 2)  # a full batch beside the held one
        assert sizes == [1, 5]
        released.set()
        await world.settled("tm", done=6, timeout_s=20)
        assert len(world.postings("tm")) == 6


def test_the_recorded_run_took_the_patch() -> None:
    events = json.loads(RECORDED.read_text())["events"]
    patches = [
        json.loads(base64.b64decode(payload["data"]))["id"]
        for e in events
        if e["eventType"] == "EVENT_TYPE_MARKER_RECORDED"
        for payload in e["markerRecordedEventAttributes"]["details"]["patch-data"]["payloads"]
    ]
    assert patches == [PATCH_DISPATCH_WHEN_IDLE]
    kinds = [e["eventType"] for e in events]
    first_batch = kinds.index("EVENT_TYPE_ACTIVITY_TASK_SCHEDULED")
    assert "EVENT_TYPE_TIMER_STARTED" not in kinds[:first_batch]
