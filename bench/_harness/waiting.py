"""Waiting for an outcome with a deadline, and running many jobs with a bound on how many are
in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from bench._harness.report import log

T = TypeVar("T")
U = TypeVar("U")


async def poll(check: Callable[[], Any], timeout_s: float, every_s: float) -> Any:
    """Call `check` (plain or async) every `every_s` until it returns something truthy, and
    return that; once `timeout_s` has passed, return its last (falsy) value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(every_s)


async def until(
    check: Callable[[], Awaitable[Any]], *, timeout_s: float, every_s: float, what: str
) -> Any:
    """Poll `check` until it returns something truthy; TimeoutError after `timeout_s`."""
    value = await poll(check, timeout_s, every_s)
    if not value:
        raise TimeoutError(f"{what}: not done after {timeout_s:.0f} s")
    return value


async def eventually(check: Callable[[], Any], timeout_s: float, every_s: float = 0.25) -> bool:
    """Poll `check` (plain or async) until it is truthy: True, or False after `timeout_s`."""
    return bool(await poll(check, timeout_s, every_s))


async def must_eventually(check: Callable[[], Any], timeout_s: float, every_s: float = 0.25) -> Any:
    """Poll `check` (plain or async) until it is truthy and return its value; a test's
    AssertionError after `timeout_s`."""
    value = await poll(check, timeout_s, every_s)
    if not value:
        raise AssertionError("condition not met in time")
    return value


async def bounded(
    count: int, concurrency: int, job: Callable[[int], Awaitable[Any]]
) -> tuple[list[Any], float]:
    """Run job(0..count-1) with at most `concurrency` in flight; results and wall seconds."""
    sem = asyncio.Semaphore(concurrency)
    done = 0

    async def one(i: int) -> Any:
        nonlocal done
        async with sem:
            result = await job(i)
        done += 1
        if done % max(1, count // 10) == 0:
            log(f"  {done}/{count}")
        return result

    start = time.perf_counter()
    results = await asyncio.gather(*[one(i) for i in range(count)], return_exceptions=True)
    return list(results), time.perf_counter() - start


async def gather_limited(
    items: Iterable[T], limit: int, call: Callable[[T], Awaitable[U]]
) -> list[U]:
    """`call(item)` for every item, at most `limit` at a time; results in order."""
    sem = asyncio.Semaphore(limit)

    async def one(item: T) -> U:
        async with sem:
            return await call(item)

    return list(await asyncio.gather(*[one(i) for i in items]))
