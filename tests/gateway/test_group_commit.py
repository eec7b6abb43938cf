"""Group commit: concurrent store writes share transactions, each caller gets its own result
only once its item is written, and a failed write fails exactly the callers it held."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.group_commit import GroupCommit


class Ledger:
    """A synchronous, all-or-nothing `write_many` that records its batches; it can be held at
    a gate (so that callers pile up behind a write in progress), refuse one item (the whole
    batch then writes nothing) or be down."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.written: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.refused: set[int] = set()
        self.down = False

    def write_many(self, items: list[int]) -> list[str]:
        self.entered.set()
        self.gate.wait(timeout=10)
        self.batches.append(list(items))
        if self.down:
            raise OSError("disk gone")
        bad = [i for i in items if i in self.refused]
        if bad:
            raise ValueError(f"refused {bad}")
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


async def test_one_refused_item_fails_its_caller_only() -> None:
    ledger = Ledger()
    commit = GroupCommit(ledger.write_many)
    ledger.gate.clear()
    ledger.refused = {2}
    tasks = [asyncio.create_task(commit.submit(n)) for n in range(4)]
    await asyncio.sleep(0)
    ledger.gate.set()

    outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert [o if isinstance(o, str) else type(o) for o in outcomes] == [
        "ok-0",
        "ok-1",
        ValueError,
        "ok-3",
    ]
    assert sorted(ledger.written) == [0, 1, 3]  # each once: the refused batch wrote nothing


async def test_an_outage_fails_every_caller_and_the_next_write_goes_on() -> None:
    ledger = Ledger()
    commit = GroupCommit(ledger.write_many)
    ledger.gate.clear()
    ledger.down = True
    doomed = [asyncio.create_task(commit.submit(n)) for n in range(3)]
    await asyncio.sleep(0)
    ledger.gate.set()

    outcomes = await asyncio.gather(*doomed, return_exceptions=True)

    assert all(isinstance(o, OSError) for o in outcomes)
    ledger.down = False
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


def test_a_writer_left_on_a_finished_event_loop_does_not_block_the_next() -> None:
    """As a test client runs requests in event loops of their own: a writer task stranded,
    not done, on a loop that has ended must not stop the next loop's writes."""
    ledger = Ledger()
    commit = GroupCommit(ledger.write_many)
    ended = asyncio.new_event_loop()
    commit._writer = ended.create_future()  # type: ignore[assignment]  # pending, like a task
    ended.close()

    assert asyncio.run(asyncio.wait_for(commit.submit(2), 10)) == "ok-2"
    assert asyncio.run(asyncio.wait_for(commit.submit(3), 10)) == "ok-3"
    assert ledger.written == [2, 3]


def test_max_items_must_be_positive() -> None:
    with pytest.raises(ValueError):
        GroupCommit(Ledger().write_many, max_items=0)
