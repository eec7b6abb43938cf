"""Independent vendor calls side by side, failing the way one call after another would.

`asyncio.gather` leaves the other calls running after one fails, and `asyncio.TaskGroup`
wraps the failure in an `ExceptionGroup`, which the activities' error taxonomy
(`contracts.errors`) does not look into. `all_of` does neither: on the first failure it
cancels the others, waits for them to stop and raises that failure as it is.

Use it only for calls that are independent (no one needs another's answer or a record another
makes) and that are each safe to repeat: a cancelled call may have been applied or not, exactly
as after a worker crash, and the caller's retry must find what was made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any


async def all_of(*calls: Awaitable[Any]) -> list[Any]:
    """Run `calls` concurrently; their results in order. The first failure cancels the rest
    (and is raised once they have stopped); a cancellation of the caller cancels them all."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        await _cancel(tasks)
        raise
    failed = [t for t in tasks if t in done and not t.cancelled() and t.exception() is not None]
    if failed:
        await _cancel(tasks)
        exc = failed[0].exception()
        assert exc is not None
        raise exc
    return [t.result() for t in tasks]


async def _cancel(tasks: Sequence[asyncio.Future[Any]]) -> None:
    for task in tasks:
        task.cancel()
    # Wait until every call has stopped; their own outcomes (results, errors, cancellation)
    # are dropped: the first failure, or the caller's cancellation, is what is raised.
    await asyncio.gather(*tasks, return_exceptions=True)
