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
