"""Group commit: concurrent store writes share transactions, each caller gets its own result
only once its item is written, and a failed write fails exactly the callers it held."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.group_commit import GroupCommit


class Ledger:
    """A synchronous `write_many` that records its batches; it can be held at a gate (so
    that callers pile up behind a write in progress) and made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.written: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_next = False

    def write_many(self, items: list[int]) -> list[str]:
        self.entered.set()
        self.gate.wait(timeout=10)
        self.batches.append(list(items))
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk gone")
        self.written.extend(items)
        return [f"ok-{i}" for i in items]


async def test_a_lone_write_goes_at_once_and_returns_its_result() -> None:
    ledger = Ledger()
    commit = GroupCommit(ledger.write_many)

    assert await commit.submit(7) == "ok-7"
    assert ledger.batches == [[7]]


async def test_writes_arriving_during_a_write_share_the_next_transaction() -> None:
    ledger = Ledger()
    commit = GroupCommit(ledger.write_many)
    ledger.gate.clear()
    first = asyncio.create_task(commit.submit(0))
    # the first write is in progress (held at the gate)
    assert await asyncio.to_thread(ledger.entered.wait, 10)
    rest = [asyncio.create_task(commit.submit(n)) for n in range(1, 30)]
    await asyncio.sleep(0)
    ledger.gate.set()

    results = await asyncio.gather(first, *rest)

    assert results == [f"ok-{n}" for n in range(30)]
    assert sorted(ledger.written) == list(range(30))
    assert ledger.batches[0] == [0]
    assert len(ledger.batches) == 2  # 29 callers, one transaction
    assert commit.writes == 2


async def test_batches_are_capped() -> None:
    ledger = Ledger()
    commit = GroupCommit(ledger.write_many, max_items=10)
    ledger.gate.clear()
    tasks = [asyncio.create_task(commit.submit(n)) for n in range(25)]
    await asyncio.sleep(0)
    ledger.gate.set()

    await asyncio.gather(*tasks)

    assert [len(b) for b in ledger.batches] == [10, 10, 5]


async def test_a_failed_write_fails_its_callers_only_and_the_next_goes_on() -> None:
    ledger = Ledger()
    commit = GroupCommit(ledger.write_many)
    ledger.gate.clear()
    ledger.fail_next = True
    doomed = [asyncio.create_task(commit.submit(n)) for n in range(3)]
    await asyncio.sleep(0)
    ledger.gate.set()

    outcomes = await asyncio.gather(*doomed, return_exceptions=True)

    assert all(isinstance(o, OSError) for o in outcomes)
    assert await commit.submit(9) == "ok-9"
    assert ledger.written == [9]


async def test_a_cancelled_caller_does_not_cancel_the_write() -> None:
    ledger = Ledger()
    commit = GroupCommit(ledger.write_many)
    ledger.gate.clear()
    caller = asyncio.create_task(commit.submit(5))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    ledger.gate.set()

    assert await commit.submit(6) == "ok-6"
    assert ledger.written == [5, 6]


def test_max_items_must_be_positive() -> None:
    with pytest.raises(ValueError):
        GroupCommit(Ledger().write_many, max_items=0)
