"""The outbox relay: publishes the store's pending outbox rows as CloudEvents, at least once,
in outbox order, and marks them published.

    relay = EventsRelay(store, NatsSink(settings.events), batch_size=500)
    await relay.run(stop)          # supervised by the worker process (`supervise`)

One pass reads up to ``batch_size`` pending rows in id order, hands them to the sink, which
publishes them pipelined (every publish sent, then every acknowledgement awaited) and says how
many *leading* rows were acknowledged; those are marked published in one update. A row that
failed (broker down, ack timeout, HTTP error) stops the pass there: it and every later row are
published again on the next pass, after a backoff, so no event is lost and a subject's events
are never reordered. Redeliveries keep their event id (derived from the row's type and key):
JetStream drops duplicates within its window (`Nats-Msg-Id`), consumers dedupe by id.

Beside the relay, `SlaWatch` checks the service levels every ``events.sla_check_interval_s``
and records an `alert.raised` event per new breach (`store.repository.alerts`); with
``events.alerts_webhook_url`` set, `AlertsSink` also POSTs every `alert.*` event, signed, to
that webhook (after the main sink acknowledged it, before the row is marked published).
Run one relay per store (the worker's, or `pssync events relay`): see docs/events.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from standardwebhooks import Webhook

from contracts.settings import EventsSettings, Settings
from contracts.v1.events import TYPE_PREFIX, CloudEvent, to_cloud_event
from store import Store
from store.repository.alerts import raise_sla_alerts
from store.repository.indicators import IndicatorThresholds

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "pssync.events."
CONTENT_TYPE = "application/cloudevents+json"


def nats_subject(event: CloudEvent) -> str:
    """`com.pssync.time.posted` -> `pssync.events.time.posted`."""
    return SUBJECT_PREFIX + event.type.removeprefix("com.pssync.")


class Sink(Protocol):
    async def publish(self, events: Sequence[CloudEvent]) -> int:
        """Publish ``events`` in order; return how many leading events are acknowledged."""
        ...

    async def close(self) -> None: ...


class NatsSink:
    """NATS JetStream: one message per event on `pssync.events.<type>`, its id as
    `Nats-Msg-Id`, the stream created if missing. Reconnects by itself after an outage."""

    def __init__(self, settings: EventsSettings) -> None:
        self.settings = settings
        self._nc: Any = None
        self._js: Any = None

    async def _connect(self) -> Any:
        if self._js is not None and self._nc is not None and self._nc.is_connected:
            return self._js
        import nats
        from nats.js.errors import NotFoundError

        if self._nc is None or self._nc.is_closed:
            self._nc = await nats.connect(
                self.settings.nats_url,
                connect_timeout=2,
                reconnect_time_wait=0.5,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
            )
        if not self._nc.is_connected:
            raise ConnectionError(f"NATS at {self.settings.nats_url} is not connected")
        js = self._nc.jetstream(timeout=self.settings.ack_timeout_s)
        try:
            await js.stream_info(self.settings.stream)
        except NotFoundError:
            await js.add_stream(name=self.settings.stream, subjects=[SUBJECT_PREFIX + ">"])
        self._js = js
        return js

    async def publish(self, events: Sequence[CloudEvent]) -> int:
        js = await self._connect()
        futures: list[asyncio.Future[Any]] = []
        try:
            for event in events:
                futures.append(
                    await js.publish_async(
                        nats_subject(event),
                        event.model_dump_json().encode(),
                        headers={"Nats-Msg-Id": event.id, "Content-Type": CONTENT_TYPE},
                    )
                )
        except Exception as exc:  # the connection dropped mid-batch: what was sent may be acked
            log.warning(
                "events: publish interrupted after %d of %d: %s", len(futures), len(events), exc
            )
        acked = 0
        deadline = asyncio.get_running_loop().time() + self.settings.ack_timeout_s
        for future in futures:
            left = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(asyncio.shield(future), timeout=max(left, 0.001))
            except Exception:
                break
            acked += 1
        for future in futures[acked:]:
            future.cancel()
        return acked

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
        self._nc = self._js = None


class WebhookSink:
    """A signed webhook (Standard Webhooks): one POST per event, in order, `webhook-id` = the
    event id; a non-2xx answer stops the batch there."""

    def __init__(self, url: str, secret: str, *, client: httpx.AsyncClient | None = None) -> None:
        self.url = url
        self._webhook = Webhook(secret)
        self._client = client or httpx.AsyncClient(timeout=10.0)

    async def publish(self, events: Sequence[CloudEvent]) -> int:
        for done, event in enumerate(events):
            body = event.model_dump_json()
            now = datetime.now(UTC)
            headers = {
                "content-type": CONTENT_TYPE,
                "webhook-id": event.id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": self._webhook.sign(event.id, now, body),
            }
            try:
                response = await self._client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                log.warning("events: webhook %s unreachable: %s", self.url, exc)
                return done
            if not response.is_success:
                log.warning("events: webhook %s answered %s", self.url, response.status_code)
                return done
        return len(events)

    async def close(self) -> None:
        await self._client.aclose()


ALERT_TYPE_PREFIX = TYPE_PREFIX + "alert."


class AlertsSink:
    """The main sink, plus every `alert.*` event it acknowledged POSTed to the alerts webhook
    (in order); a webhook failure stops the batch at that alert, so the alert and what follows
    are published again (the main sink's duplicates are dropped by event id)."""

    def __init__(self, inner: Sink, alerts: WebhookSink) -> None:
        self.inner = inner
        self.alerts = alerts

    async def publish(self, events: Sequence[CloudEvent]) -> int:
        acked = await self.inner.publish(events)
        for index, event in enumerate(events[:acked]):
            if event.type.startswith(ALERT_TYPE_PREFIX) and not await self.alerts.publish([event]):
                return index
        return acked

    async def close(self) -> None:
        try:
            await self.inner.close()
        finally:
            await self.alerts.close()


class SlaWatch:
    """Every ``interval_s``, an `alert.raised` event for each SLA breach not alerted yet."""

    def __init__(
        self,
        store: Store,
        thresholds: IndicatorThresholds,
        *,
        interval_s: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.thresholds = thresholds
        self.interval_s = interval_s
        self.clock = clock

    async def check(self) -> int:
        """One check: how many breaches stand (each alerted once, the first time seen)."""
        return await asyncio.to_thread(
            raise_sla_alerts, self.store, now=self.clock(), thresholds=self.thresholds
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check()
            except Exception as exc:  # the store is down: check again next time
                log.warning("events: SLA check failed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)
            except TimeoutError:
                pass


class SinkUnavailable(RuntimeError):
    """The sink acknowledged only part of a batch: the rest waits for the next pass."""


class EventsRelay:
    """Moves pending outbox rows to a sink, in id order, marking the acknowledged ones."""

    def __init__(
        self,
        store: Store,
        sink: Sink,
        *,
        batch_size: int = 500,
        interval_s: float = 0.2,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.store = store
        self.sink = sink
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.max_backoff_s = max_backoff_s
        self.published = 0

    async def run_once(self) -> int:
        """One pass: returns the rows published; raises `SinkUnavailable` if the sink stopped
        short (the acknowledged leading rows are marked first)."""
        rows = await asyncio.to_thread(self.store.pending_outbox, self.batch_size)
        if not rows:
            return 0
        events = [
            to_cloud_event(r.id or 0, r.event_type, r.key, r.payload, r.created_at) for r in rows
        ]
        acked = await self.sink.publish(events)
        if acked:
            await asyncio.to_thread(self.store.mark_published, [r.id or 0 for r in rows[:acked]])
            self.published += acked
        if acked < len(rows):
            raise SinkUnavailable(f"{acked} of {len(rows)} events acknowledged")
        return acked

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Relay until ``stop`` is set; back off (doubling, up to ``max_backoff_s``) while the
        sink or the store fails, and resume where the outbox stands."""
        stop = stop or asyncio.Event()
        backoff = self.interval_s
        while not stop.is_set():
            try:
                done = await self.run_once()
                backoff = self.interval_s
                if done == self.batch_size:
                    continue
                wait = self.interval_s
            except Exception as exc:
                log.warning("events: relay paused %.1fs: %s", backoff, exc)
                wait = backoff
                backoff = min(backoff * 2, self.max_backoff_s)
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
            except TimeoutError:
                pass


class _NoSink:
    """No main sink (`sink = none`) but an alerts webhook: every event counts as published."""

    async def publish(self, events: Sequence[CloudEvent]) -> int:
        return len(events)

    async def close(self) -> None:
        return None


def make_sink(settings: EventsSettings) -> Sink | None:
    """The configured sink (with the alerts webhook when set), or None (`sink = none` and no
    alerts webhook)."""
    sink: Sink | None = None
    if settings.sink == "nats":
        sink = NatsSink(settings)
    elif settings.sink == "webhook":
        if not settings.webhook_url or settings.webhook_secret is None:
            raise ValueError("events.sink=webhook needs events.webhook_url and webhook_secret")
        sink = WebhookSink(settings.webhook_url, settings.webhook_secret.get_secret_value())
    if settings.alerts_webhook_url:
        if settings.alerts_webhook_secret is None:
            raise ValueError("events.alerts_webhook_url needs events.alerts_webhook_secret")
        alerts = WebhookSink(
            settings.alerts_webhook_url, settings.alerts_webhook_secret.get_secret_value()
        )
        return AlertsSink(sink or _NoSink(), alerts)
    return sink


async def supervise(
    make: Callable[[], Awaitable[None]], *, name: str = "events relay", pause_s: float = 1.0
) -> None:
    """Run ``make()`` forever, restarting it (after ``pause_s``) whenever it fails."""
    while True:
        try:
            await make()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; restarting in %.1fs", name, pause_s)
            await asyncio.sleep(pause_s)


async def run_relay(
    store: Store,
    settings: EventsSettings,
    stop: asyncio.Event,
    *,
    thresholds: IndicatorThresholds | None = None,
    force: bool = False,
) -> None:
    """The relay (the worker's when events are enabled, or `pssync events relay` with
    ``force``): the configured sink and the SLA watch, each supervised, until ``stop``.
    ``thresholds`` default to the indicators' default service levels."""
    if not (settings.enabled or force):
        return
    sink = make_sink(settings)
    tasks: list[Awaitable[None]] = []
    if sink is not None:
        relay = EventsRelay(
            store, sink, batch_size=settings.batch_size, interval_s=settings.interval_s
        )
        tasks.append(supervise(lambda: relay.run(stop)))
    if settings.sla_check_interval_s > 0:
        watch = SlaWatch(
            store, thresholds or IndicatorThresholds(), interval_s=settings.sla_check_interval_s
        )
        tasks.append(supervise(lambda: watch.run(stop), name="SLA watch"))
    try:
        await asyncio.gather(*tasks)
    finally:
        if sink is not None:
            await sink.close()


def thresholds_of(settings: Settings) -> IndicatorThresholds:
    """The SLA thresholds of the settings (as `/metrics` counts them)."""
    levels = settings.indicators
    return IndicatorThresholds(
        posting_within_s=levels.posting_within_s,
        invoice_within_s=levels.invoice_within_s,
        exception_within_s=levels.exception_within_s or settings.escalation_after_s,
        stale_after_s=levels.stale_after_s,
    )


async def serve_relay(
    settings: Settings, stop: asyncio.Event, *, store: Store | None = None
) -> None:
    """`pssync events relay`: the relay and the SLA watch as their own process, on the store of
    ``settings`` (whatever `events.enabled` says), until ``stop``."""
    if store is None:
        import store as store_package

        store_package.upgrade(settings.resolved_database_url)  # as the worker does
        engine = store_package.make_engine(settings.resolved_database_url)
        store = store_package.Store(engine)
    log.info(
        "events relay: sink %s, store %s", settings.events.sink, settings.resolved_database_url
    )
    await run_relay(store, settings.events, stop, thresholds=thresholds_of(settings), force=True)
