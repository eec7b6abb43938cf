"""Coalescing a project's time events into one signal-with-start per short window."""

from __future__ import annotations

import asyncio
from typing import Any

from contracts.v1.time_to_invoice import EntryRef
from gateway.webhooks import Outcome


class SignalBatcher:
    """Coalesces the time events of one project that arrive within `window_s` into one
    signal-with-start. Each webhook request still waits for *its* signal to be accepted by
    Temporal before it is answered (202), so nothing is acknowledged that is not durable; a
    burst of approvals costs the pipeline one workflow task instead of one per entry (at 100
    approvals/s that is the difference between keeping up and falling behind)."""

    def __init__(
        self,
        send: Any,
        *,
        window_s: float = 0.05,
        max_refs: int = 500,
    ) -> None:
        self._send = send
        self.window_s = window_s
        self.max_refs = max_refs
        self._pending: dict[str, list[tuple[EntryRef, asyncio.Future[Outcome]]]] = {}
        self._flushers: dict[str, asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, psa_project_id: str, ref: EntryRef) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        batch = self._pending.setdefault(psa_project_id, [])
        batch.append((ref, future))
        if len(batch) >= self.max_refs:
            self._flush_now(psa_project_id)
        elif psa_project_id not in self._flushers:
            self._flushers[psa_project_id] = asyncio.create_task(self._flush_later(psa_project_id))
        return await asyncio.shield(future)

    async def _flush_later(self, psa_project_id: str) -> None:
        await asyncio.sleep(self.window_s)
        self._flushers.pop(psa_project_id, None)
        await self._flush(psa_project_id)

    def _flush_now(self, psa_project_id: str) -> None:
        task = self._flushers.pop(psa_project_id, None)
        if task is not None:
            task.cancel()
        flush = asyncio.create_task(self._flush(psa_project_id))
        self._running.add(flush)  # the loop keeps only a weak reference
        flush.add_done_callback(self._running.discard)

    async def _flush(self, psa_project_id: str) -> None:
        batch = self._pending.pop(psa_project_id, [])
        if not batch:
            return
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
