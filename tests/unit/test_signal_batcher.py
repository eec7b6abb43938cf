"""The gateway's per-project coalescing of time events (no I/O: the send is a fake)."""

from __future__ import annotations

import asyncio

from contracts.v1.time_to_invoice import EntryRef
from gateway.errors import GatewayError
from gateway.signal_batcher import SignalBatcher
from gateway.webhooks import Outcome


async def test_a_burst_for_one_project_is_one_signal_and_every_request_gets_its_answer() -> None:
    sent: list[tuple[str, list[str]]] = []

    async def send(project: str, refs: list[EntryRef]) -> Outcome:
        sent.append((project, [r.entry_id for r in refs]))
        return Outcome(status="accepted", result="signalled", workflow_id=f"wf-{project}")

    batcher = SignalBatcher(send, window_s=0.02)
    outcomes = await asyncio.gather(
        *(batcher.submit("P1", EntryRef(entry_id=str(i))) for i in range(50)),
        *(batcher.submit("P2", EntryRef(entry_id=str(i))) for i in range(3)),
    )
    assert sorted((p, len(ids)) for p, ids in sent) == [("P1", 50), ("P2", 3)]
    assert {o.workflow_id for o in outcomes[:50]} == {"wf-P1"}
    assert {o.workflow_id for o in outcomes[50:]} == {"wf-P2"}
    # A later event is a new signal.
    await batcher.submit("P1", EntryRef(entry_id="late"))
    assert sent[-1] == ("P1", ["late"])


async def test_a_full_batch_goes_at_once_and_a_failure_reaches_every_request() -> None:
    calls = 0

    async def send(project: str, refs: list[EntryRef]) -> Outcome:
        nonlocal calls
        calls += 1
        raise GatewayError(503, "temporal_unavailable", "Temporal is down")

    batcher = SignalBatcher(send, window_s=60, max_refs=5)
    results = await asyncio.wait_for(
        asyncio.gather(
            *(batcher.submit("P1", EntryRef(entry_id=str(i))) for i in range(5)),
            return_exceptions=True,
        ),
        timeout=5,  # the 60 s window must not be waited for: the batch is full
    )
    assert calls == 1
    assert all(isinstance(r, GatewayError) and r.status == 503 for r in results)


async def test_what_arrives_while_a_signal_is_out_goes_in_one_next_signal_in_order() -> None:
    """At most one signal per project at Temporal: events that arrive meanwhile wait for it
    and go together, after it, in the order they came; another project is not held up."""
    sent: list[tuple[str, list[str]]] = []
    in_flight: dict[str, int] = {}
    most: dict[str, int] = {}
    release = asyncio.Event()
    out = asyncio.Event()

    async def send(project: str, refs: list[EntryRef]) -> Outcome:
        out.set()
        in_flight[project] = in_flight.get(project, 0) + 1
        most[project] = max(most.get(project, 0), in_flight[project])
        sent.append((project, [r.entry_id for r in refs]))
        if project == "P1":
            await release.wait()
        in_flight[project] -= 1
        return Outcome(status="accepted", result="signalled", workflow_id=f"wf-{project}")

    batcher = SignalBatcher(send, window_s=0.01, max_refs=4)
    first = asyncio.create_task(batcher.submit("P1", EntryRef(entry_id="0")))
    await asyncio.wait_for(out.wait(), timeout=5)  # the first signal left and stays out
    later = [
        asyncio.create_task(batcher.submit("P1", EntryRef(entry_id=str(i)))) for i in range(1, 11)
    ]
    other = await asyncio.wait_for(batcher.submit("P2", EntryRef(entry_id="x")), timeout=5)
    assert other.workflow_id == "wf-P2"
    await asyncio.sleep(0.05)  # five windows pass with P1's signal still out: none may go
    assert [ids for p, ids in sent if p == "P1"] == [["0"]]
    release.set()
    outcomes = await asyncio.wait_for(asyncio.gather(first, *later), timeout=5)
    assert {o.workflow_id for o in outcomes} == {"wf-P1"}
    p1 = [ids for p, ids in sent if p == "P1"]
    assert p1 == [["0"], ["1", "2", "3", "4"], ["5", "6", "7", "8"], ["9", "10"]]
    assert most["P1"] == 1
    assert batcher.signals == 5


async def test_a_quiet_project_opens_a_new_window_and_a_cancelled_request_keeps_its_signal() -> (
    None
):
    sent: list[list[str]] = []

    async def send(project: str, refs: list[EntryRef]) -> Outcome:
        await asyncio.sleep(0.01)
        sent.append([r.entry_id for r in refs])
        return Outcome(status="accepted", result="signalled", workflow_id="wf")

    batcher = SignalBatcher(send, window_s=0.01)
    waiter = asyncio.create_task(batcher.submit("P1", EntryRef(entry_id="a")))
    await asyncio.sleep(0)
    waiter.cancel()  # the webhook's client went away: the event still reaches the pipeline
    await batcher.submit("P1", EntryRef(entry_id="b"))
    assert sent == [["a", "b"]]
    await batcher.submit("P1", EntryRef(entry_id="c"))
    assert sent == [["a", "b"], ["c"]]
    await asyncio.sleep(0)  # the sender finishes once its signal is answered
    assert not batcher._senders and not batcher._full  # a quiet project leaves nothing behind


async def test_stopping_the_gateway_leaves_no_request_waiting_forever() -> None:
    """The project's sender is cancelled (shutdown) with one signal out and more waiting:
    every request ends, none hangs."""
    out = asyncio.Event()

    async def send(project: str, refs: list[EntryRef]) -> Outcome:
        out.set()
        await asyncio.Event().wait()  # Temporal never answers
        raise AssertionError("unreachable")

    batcher = SignalBatcher(send, window_s=0.01)
    first = asyncio.create_task(batcher.submit("P1", EntryRef(entry_id="0")))
    await asyncio.wait_for(out.wait(), timeout=5)
    later = [asyncio.create_task(batcher.submit("P1", EntryRef(entry_id=str(i)))) for i in (1, 2)]
    await asyncio.sleep(0)  # the later ones are queued behind the signal that is out
    batcher._senders["P1"].cancel()
    results = await asyncio.wait_for(
        asyncio.gather(first, *later, return_exceptions=True), timeout=5
    )
    assert all(isinstance(r, asyncio.CancelledError) for r in results), results
