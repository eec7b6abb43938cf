"""Group commit: the store writes of many concurrent requests in one thread hop and one
transaction.

A webhook costs the gateway two store writes (the inbox accept before the action, the
processed mark after it). One by one, at 100 deliveries a second, that is 200 write
transactions a second on the store's write lock, each with its own thread hop and session,
competing with the worker's ledger writes on the same database. `GroupCommit` gathers the
calls that arrive while a write is in progress and writes them together when it is done: at
low load a call waits for nothing but its own write (the first one starts at once), under load
the writes per second stay few. Each caller still returns only after *its* item has committed
(or raises what the write raised), so nothing is acknowledged that is not durable. A batch
the store refuses is written again item by item, so one bad item fails its own caller only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Runs `write_many` (a synchronous store call over a list of items, returning one result
    per item, in order) in a worker thread over the items submitted meanwhile, at most
    `max_items` at a time."""

    def __init__(
        self, write_many: Callable[[list[T]], Sequence[R] | None], *, max_items: int = 200
    ) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._write_many = write_many
        self.max_items = max_items
        self._queue: list[tuple[T, asyncio.Future[R | None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.writes = 0
        """Transactions written so far (for tests and metrics)."""

    async def submit(self, item: T) -> R | None:
        """Write `item` with whatever else is waiting; its result (None when `write_many`
        returns none). A caller that is cancelled does not cancel the write."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R | None] = loop.create_future()
        self._queue.append((item, future))
        writer = self._writer
        # (a writer left on another, finished event loop — a test client's — never drains)
        if writer is None or writer.done() or writer.get_loop() is not loop:
            self._writer = asyncio.create_task(self._drain())
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self.max_items]
            del self._queue[: self.max_items]
            items = [item for item, _ in batch]
            try:
                written = await asyncio.to_thread(self._write_many, items)
                outcomes: list[R | BaseException | None] = [
                    written[n] if written is not None else None for n in range(len(items))
                ]
            except Exception as exc:
                # One bad item must not fail the others: each alone, in its own transaction
                # (a database outage fails them all again, each with its own error).
                outcomes = [exc] if len(items) == 1 else await asyncio.to_thread(self._each, items)
            except BaseException as exc:  # cancelled: every caller learns of it
                cancelled: list[R | BaseException | None] = [exc] * len(batch)
                _settle(batch, cancelled)
                raise
            finally:
                self.writes += 1
            _settle(batch, outcomes)

    def _each(self, items: list[T]) -> list[R | BaseException | None]:
        outcomes: list[R | BaseException | None] = []
        for item in items:
            try:
                written = self._write_many([item])
            except Exception as exc:
                outcomes.append(exc)
            else:
                outcomes.append(written[0] if written is not None else None)
        return outcomes


def _settle(
    batch: list[tuple[T, asyncio.Future[R | None]]], outcomes: list[R | BaseException | None]
) -> None:
    """Each waiting caller gets its item's result, or its item's error."""
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if future.done() or future.get_loop().is_closed():  # nobody is waiting any more
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
