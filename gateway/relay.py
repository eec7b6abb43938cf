"""The inbox relay: verified webhook events the gateway stored but could not act on (Temporal
was down) are replayed, in arrival order, once Temporal is back — whoever retries.

    relay = InboxRelay(store, receiver, metrics, interval_s=2.0)
    await relay.start()          # the app's lifespan does this
    ...
    await relay.stop()

A supervised background task drains the inbox's `pending` rows (`Store.inbox_pending`), oldest
first, each by `WebhookReceiver.replay`: the same parsing, the same route action and the same
recording as the webhook itself. The actions are idempotent by business key (workflow id with
USE_EXISTING, signal-with-start), so a replay racing a sender's retry of the same event takes
effect once; a row is re-read just before its replay and skipped if it was processed meanwhile,
and rows younger than `min_age_s` are left to the delivery that may still be acting on them.

What can happen to a row:

- the action takes effect -> `processed` (with its workflow id);
- Temporal is unavailable (or the action timed out, or the store failed) -> the row stays
  `pending`, the pass stops there (later rows are not overtaken) and the relay backs off
  (doubling from `interval_s` to `max_backoff_s`, with jitter). While it is backing off, the
  receiver stores new deliveries and answers 202 `queued` without calling Temporal, and the
  relay probes with the oldest row alone;
- a business refusal (a 4xx `GatewayError`, e.g. an unknown tenant, or a row that cannot be
  replayed) -> `failed` at once, with the reason: never retried by the relay, visible in
  `/healthz`, `/metrics` and `GET /api/inbox?state=failed`;
- any other error (Temporal refused the call, a bug) -> logged, counted, `attempts` + 1, tried
  again at a later pass (passes with such rows back off too, so a failing row is not hammered);
  `failed` after `max_attempts`.

Nothing the relay meets stops it: a pass that raises is logged and counted, and the loop goes
on after a back-off. Several gateways on one store each run a relay: they may replay the same
row at the same moment, which is safe (idempotent actions, an idempotent `processed` mark) but
not free; there is no lease. Must never: import workflows, activities or connectors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from gateway.errors import GatewayError
from gateway.metrics import GatewayMetrics
from gateway.webhooks import TEMPORAL_UNAVAILABLE, WebhookReceiver, in_thread
from store import InboxBacklog, InboxRow, InboxState, Store

log = logging.getLogger("pssync.gateway.relay")

# Errors after which the same replay may work later without anyone changing anything.
_TRANSIENT_CODES = frozenset({TEMPORAL_UNAVAILABLE, "store_unavailable"})


class RelayState(StrEnum):
    STOPPED = "stopped"
    IDLE = "idle"
    """Running; nothing was pending at the last pass."""
    DRAINING = "draining"
    """Running; the last pass replayed rows."""
    BACKING_OFF = "backing_off"
    """Running; Temporal (or the store) was unavailable: waiting before the next try."""


class Result(StrEnum):
    PROCESSED = "processed"
    SKIPPED = "skipped"
    """Processed meanwhile (a sender's retry), or no longer pending."""
    UNAVAILABLE = "unavailable"
    FAILED = "failed"
    """Refused for good: marked failed."""
    RETRY = "retry"
    """Failed this time for another reason; tried again later."""


@dataclass(frozen=True)
class PassReport:
    """What one pass over the inbox did."""

    seen: int
    results: dict[str, int]
    unavailable: bool
    retrying: bool
    """Some rows failed for another reason and wait for a later pass (with back-off)."""
    more: bool
    """The pass stopped at its batch size: more rows may be pending."""


class InboxRelay:
    """Replays pending inbox rows through the receiver's routes (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        receiver: WebhookReceiver,
        metrics: GatewayMetrics,
        *,
        interval_s: float = 2.0,
        max_backoff_s: float = 30.0,
        min_age_s: float = 2.0,
        batch_size: int = 100,
        concurrency: int = 16,
        max_attempts: int = 20,
        action_timeout_s: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if interval_s <= 0 or max_backoff_s < interval_s:
            raise ValueError("need 0 < interval_s <= max_backoff_s")
        self._store = store
        self._receiver = receiver
        self.sources = tuple(receiver.sources)
        """The webhook sources the receiver routes: only their inbox rows are replayed (other
        writers of the inbox, such as the HCM poller, handle their own)."""
        self._metrics = metrics
        self.interval_s = interval_s
        self.max_backoff_s = max_backoff_s
        self.min_age_s = min_age_s
        self.batch_size = batch_size
        self.concurrency = max(1, concurrency)
        self.max_attempts = max_attempts
        self.action_timeout_s = action_timeout_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._state = RelayState.STOPPED
        self._failures = 0
        """Consecutive passes that met an unavailable Temporal (or raised): the back-off step."""
        self.last_error: str | None = None
        self.last_pass_at: datetime | None = None
        self.replayed = 0
        """Rows this relay brought to `processed`."""

    # -- what the receiver asks (gateway.webhooks.Replayer) ------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def deferring(self) -> bool:
        return self._state is RelayState.BACKING_OFF

    @property
    def state(self) -> RelayState:
        return self._state

    def temporal_unavailable(self, reason: str) -> None:
        if self._state is not RelayState.BACKING_OFF:
            log.warning("Temporal is unavailable; deliveries are queued for the relay: %s", reason)
        self.last_error = reason
        self._set_state(RelayState.BACKING_OFF)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.running:
            return
        self._set_state(RelayState.IDLE)
        self._task = asyncio.create_task(self._supervise(), name="pssync-inbox-relay")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_state(RelayState.STOPPED)

    def wake(self) -> None:
        """Run the next pass now instead of after the current wait."""
        self._wake.set()

    # -- the loop -----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        while True:
            self._wake.clear()  # a wake() during the pass below still cuts the wait short
            try:
                report = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the relay die: log, count, back off
                self._metrics.relay_errors.inc()
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("inbox relay pass failed")
                self._failures += 1
                delay = self._backoff()
            else:
                delay = 0.0 if report.more else self.interval_s
                if report.unavailable or report.retrying:
                    delay = self._backoff()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    def _backoff(self) -> float:
        step = min(self.max_backoff_s, self.interval_s * 2.0 ** max(0, self._failures - 1))
        return step * random.uniform(0.8, 1.0)

    async def drain_once(self) -> PassReport:
        """One pass: replay pending rows in arrival order until none is left in the batch, or
        Temporal turns out unavailable. Also refreshes the backlog gauges."""
        probing = self.deferring
        cutoff = None if probing else self._clock() - timedelta(seconds=self.min_age_s)
        rows = await asyncio.to_thread(
            functools.partial(
                self._store.inbox_pending, received_before=cutoff, sources=self.sources
            ),
            self.batch_size,
        )
        results: dict[str, int] = {}
        unavailable = False
        i = 0
        while i < len(rows):
            # While Temporal is believed down, probe with the oldest row alone.
            size = 1 if probing else self.concurrency
            chunk = rows[i : i + size]
            i += len(chunk)
            # Re-read the chunk first (a sender's retry may have processed a row since the
            # listing), then start the replays in arrival order: each action runs up to its
            # first wait before the next one starts, so a project's signals keep their order.
            current = await asyncio.to_thread(self._reread, chunk)
            outcomes = await asyncio.gather(
                *(self._replay_one(row, now) for row, now in zip(chunk, current, strict=True))
            )
            for row, result in zip(chunk, outcomes, strict=True):
                results[result] = results.get(result, 0) + 1
                self._metrics.relay_replays.labels(source=row.source, result=result).inc()
            if Result.UNAVAILABLE in outcomes:
                unavailable = True
                break
            if probing:  # Temporal answers again: deliveries may call it again at once
                probing = False
                self._set_state(RelayState.DRAINING)
        self.last_pass_at = self._clock()
        retrying = Result.RETRY in results
        if unavailable or retrying:
            self._failures += 1  # the next pass waits longer (a failing row is not hammered)
        else:
            self._failures = 0
        if unavailable:
            self._set_state(RelayState.BACKING_OFF)
        else:
            self._set_state(RelayState.DRAINING if rows else RelayState.IDLE)
        await self._refresh_gauges()
        return PassReport(
            seen=len(rows),
            results=results,
            unavailable=unavailable,
            retrying=retrying,
            more=not (unavailable or retrying) and len(rows) >= self.batch_size,
        )

    def _reread(self, rows: list[InboxRow]) -> list[InboxRow | None]:
        return [self._store.inbox_get(row.source, row.event_id) for row in rows]

    async def _replay_one(self, row: InboxRow, current: InboxRow | None) -> Result:
        key = f"{row.source}/{row.event_id}"
        if current is None or current.state != InboxState.PENDING.value:
            return Result.SKIPPED
        try:
            outcome = await asyncio.wait_for(
                self._receiver.replay(current), timeout=self.action_timeout_s
            )
        except GatewayError as exc:
            reason = f"{exc.status} {exc.code}: {exc.message}"
            if exc.code in _TRANSIENT_CODES:
                self.last_error = reason
                return Result.UNAVAILABLE
            if 400 <= exc.status < 500:
                log.warning("inbox event %s refused for good: %s", key, reason)
                await self._record_failure(current, reason, permanent=True)
                return Result.FAILED
            return await self._retry_later(current, reason)
        except TimeoutError:
            self.last_error = f"{key}: no answer within {self.action_timeout_s} s"
            return Result.UNAVAILABLE
        except Exception as exc:
            log.exception("replaying inbox event %s failed", key)
            return await self._retry_later(current, f"{type(exc).__name__}: {exc}")
        self.replayed += 1
        log.info("inbox event %s replayed: %s %s", key, outcome.result, outcome.workflow_id or "")
        return Result.PROCESSED

    async def _retry_later(self, row: InboxRow, reason: str) -> Result:
        self.last_error = reason
        permanent = row.attempts + 1 >= self.max_attempts
        await self._record_failure(row, reason, permanent=permanent)
        if permanent:
            log.error(
                "inbox event %s/%s failed %d times, given up: %s",
                row.source,
                row.event_id,
                row.attempts + 1,
                reason,
            )
            return Result.FAILED
        return Result.RETRY

    async def _record_failure(self, row: InboxRow, reason: str, *, permanent: bool) -> None:
        await asyncio.to_thread(
            self._store.inbox_record_failure,
            row.source,
            row.event_id,
            reason,
            permanent=permanent,
        )

    # -- status -------------------------------------------------------------------------------

    def _set_state(self, state: RelayState) -> None:
        self._state = state
        for each in RelayState:
            self._metrics.relay_state.labels(state=each.value).set(1 if each is state else 0)

    async def _refresh_gauges(self) -> InboxBacklog:
        backlog = await asyncio.to_thread(self._store.inbox_backlog, self.sources)
        self._publish(backlog)
        return backlog

    def _publish(self, backlog: InboxBacklog) -> None:
        self._metrics.inbox_backlog.set(backlog.pending)
        self._metrics.inbox_failed.set(backlog.failed)
        self._metrics.inbox_backlog_age.set(self._age(backlog) or 0.0)

    def _age(self, backlog: InboxBacklog) -> float | None:
        if backlog.oldest_pending_at is None:
            return None
        return round(max(0.0, (self._clock() - backlog.oldest_pending_at).total_seconds()), 3)

    async def status(self) -> dict[str, Any]:
        """The relay's part of `/healthz`: ok while it runs, its state, the backlog (pending
        events and the age of the oldest, in seconds) and the events failed for good."""
        view: dict[str, Any] = {"ok": self.running, "state": self._state.value}
        try:
            backlog = await in_thread(self._store.inbox_backlog, self.sources)
        except GatewayError as exc:
            view |= {"backlog": None, "oldest_age_s": None, "failed": None, "error": exc.message}
        else:
            self._publish(backlog)
            view |= {
                "backlog": backlog.pending,
                "oldest_age_s": self._age(backlog),
                "failed": backlog.failed,
            }
        view["replayed"] = self.replayed
        view["last_pass_at"] = self.last_pass_at.isoformat() if self.last_pass_at else None
        view["last_error"] = self.last_error
        return view
