"""Coalescing a project's time events into one signal per short window, one at a time."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from contracts.v1.time_to_invoice import EntryRef
from gateway.webhooks import Outcome

_Waiting = list[tuple[EntryRef, "asyncio.Future[Outcome]"]]


class SignalBatcher:
    """Coalesces the time events of one project into one signal to its pipeline.

    The first event after a quiet spell waits `window_s` for company; then the project's
    events go as one signal. While that signal is at Temporal, what arrives waits for it and
    goes in the next one, no sooner than `window_s` after the last one left: at most one
    signal per project in flight, so the pipeline gets its project's events in the order they
    came, and the busier Temporal is (the longer a signal takes), the more each one carries —
    the server's work per approval falls as the load rises instead of feeding it. A batch
    that reaches `max_refs` goes without waiting for the window.

    Each webhook request still waits for *its* signal to be accepted by Temporal before it is
    answered (202), so nothing is acknowledged that is not durable; a failed signal fails
    every request it carried (the sender retries them, or the inbox relay replays them)."""

    def __init__(
        self,
        send: Any,
        *,
        window_s: float = 0.05,
        max_refs: int = 500,
    ) -> None:
        if max_refs < 1:
            raise ValueError("max_refs must be at least 1")
        self._send = send
        self.window_s = window_s
        self.max_refs = max_refs
        self._pending: dict[str, _Waiting] = {}
        self._full: dict[str, asyncio.Event] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self.signals = 0
        """Signals sent so far (tests and benches)."""

    async def submit(self, psa_project_id: str, ref: EntryRef) -> Outcome:
        """Send `ref` to the project's pipeline with whatever else comes meanwhile; returns
        the signal's outcome, or raises its error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        waiting = self._pending.setdefault(psa_project_id, [])
        waiting.append((ref, future))
        sender = self._senders.get(psa_project_id)
        # (a sender left on another, finished event loop — a test client's — never drains)
        if sender is None or sender.done() or sender.get_loop() is not loop:
            self._full[psa_project_id] = asyncio.Event()
            self._senders[psa_project_id] = loop.create_task(self._run(psa_project_id))
        elif len(waiting) >= self.max_refs:
            self._full[psa_project_id].set()
        return await asyncio.shield(future)

    async def _run(self, psa_project_id: str) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.window_s
        try:
            while True:
                await self._until(psa_project_id, due)
                waiting = self._pending.get(psa_project_id, [])
                batch, rest = waiting[: self.max_refs], waiting[self.max_refs :]
                self._full[psa_project_id].clear()  # `_until` sees a full remainder itself
                if rest:
                    self._pending[psa_project_id] = rest
                else:
                    self._pending.pop(psa_project_id, None)
                if not batch:
                    return
                due = loop.time() + self.window_s
                await self._deliver(psa_project_id, batch)
                if psa_project_id not in self._pending:
                    return  # quiet: the next event opens a new window
        except BaseException as exc:  # what still waits learns of it too
            for _, future in self._pending.pop(psa_project_id, []):
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                elif not future.done():
                    future.set_exception(exc)
            raise
        finally:
            if self._senders.get(psa_project_id) is asyncio.current_task():
                # nothing kept for a quiet project: a gateway sees many projects in its life
                del self._senders[psa_project_id]
                del self._full[psa_project_id]

    async def _until(self, psa_project_id: str, due: float) -> None:
        """Wait until `due`, or until the project's batch is full."""
        if len(self._pending.get(psa_project_id, [])) >= self.max_refs:
            return
        delay = due - asyncio.get_running_loop().time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full[psa_project_id].wait(), delay)

    async def _deliver(self, psa_project_id: str, batch: _Waiting) -> None:
        self.signals += 1
        try:
            outcome = await self._send(psa_project_id, [ref for ref, _ in batch])
        except BaseException as exc:  # every waiting request learns of the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for _, future in batch:
            if not future.done():
                future.set_result(outcome)
