"""`connectors._concurrency.all_of`: independent vendor calls side by side, failing as one
call after another would (the first error as it is, the other calls stopped)."""

from __future__ import annotations

import asyncio

import pytest

from connectors._concurrency import all_of
from contracts.errors import BusinessRuleViolation, TransientError


async def test_results_in_the_order_of_the_calls_and_the_calls_overlap() -> None:
    started: list[str] = []
    both_started = asyncio.Event()

    async def call(name: str, value: int) -> int:
        started.append(name)
        if len(started) == 2:
            both_started.set()
        # Neither finishes before the other has started: they run side by side.
        await asyncio.wait_for(both_started.wait(), timeout=5)
        return value

    assert await all_of(call("slow", 1), call("fast", 2)) == [1, 2]


async def test_first_failure_is_raised_unwrapped_and_the_others_are_stopped() -> None:
    stopped = asyncio.Event()
    never = asyncio.Event()

    async def refused() -> None:
        raise BusinessRuleViolation("INVALID_COST_CENTER", "no department CC-9", field="x")

    async def long_write() -> None:
        try:
            await never.wait()
        finally:
            stopped.set()

    with pytest.raises(BusinessRuleViolation) as caught:
        await all_of(long_write(), refused())
    assert caught.value.code == "INVALID_COST_CENTER"
    # By the time the failure reaches the caller the other call has stopped.
    assert stopped.is_set()


async def test_a_cancelled_caller_cancels_every_call() -> None:
    stopped: list[str] = []
    never = asyncio.Event()

    async def waits(name: str) -> None:
        try:
            await never.wait()
        finally:
            stopped.append(name)

    task = asyncio.ensure_future(all_of(waits("a"), waits("b")))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(stopped) == ["a", "b"]


async def test_when_several_fail_the_first_in_call_order_is_raised() -> None:
    async def fails(message: str) -> None:
        raise TransientError(message)

    with pytest.raises(TransientError, match="first"):
        await all_of(fails("first"), fails("second"))
