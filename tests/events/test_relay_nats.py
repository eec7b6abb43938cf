"""The relay publishes 1,000 outbox events to JetStream while the broker is killed mid-stream
and restarted: every event arrives exactly once per id, in outbox order per subject, and every
row ends published."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import nats

from activities.events_relay import EventsRelay, NatsSink
from contracts.settings import EventsSettings
from contracts.v1.events import WorkerTermination, outbox_payload
from store import Store
from tests.events.conftest import Broker

EVENTS = 1000
SUBJECTS = [f"EP-{n}" for n in range(5)]


def fill(store: Store) -> None:
    for n in range(EVENTS):
        data = WorkerTermination(worker_id=f"W{n}", workflow_id=f"wf-{n}")
        store.add_outbox("worker.terminated", f"W{n}", outbox_payload(SUBJECTS[n % 5], data))


async def until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` (checked every few ms; the caller's timeout bounds the wait)."""
    for _ in itertools.count():
        if condition():
            return
        await asyncio.sleep(0.005)


class Consumer:
    """A durable pull consumer: counts JetStream redeliveries and dedupes by event id."""

    def __init__(self) -> None:
        self.first_seen: dict[str, list[int]] = defaultdict(list)  # subject -> outbox ids
        self.ids: set[str] = set()
        self.duplicates = 0  # the same event id again (a second stored copy)
        self.redeliveries = 0  # JetStream delivering a stored message again

    def take(self, event: dict[str, Any], delivered: int) -> None:
        if delivered > 1:
            self.redeliveries += 1
        if event["id"] in self.ids:
            self.duplicates += 1
            return
        self.ids.add(event["id"])
        self.first_seen[event["subject"]].append(int(event["sequence"]))

    async def run(self, url: str, stream: str, stop: asyncio.Event) -> None:
        nc = await nats.connect(url, reconnect_time_wait=0.2, max_reconnect_attempts=-1)
        js = nc.jetstream(timeout=2)
        sub = None
        try:
            while not stop.is_set():
                try:
                    if sub is None:
                        sub = await js.pull_subscribe("pssync.events.>", "test", stream=stream)
                    for msg in await sub.fetch(200, timeout=0.5):
                        self.take(json.loads(msg.data), msg.metadata.num_delivered)
                        await msg.ack()
                except Exception:  # no stream yet, no message yet, broker down: try again
                    await asyncio.sleep(0.05)
        finally:
            await nc.close()


async def test_every_event_arrives_once_in_order_per_subject_across_a_broker_kill(
    store: Store, broker: Broker
) -> None:
    await asyncio.to_thread(fill, store)
    settings = EventsSettings(nats_url=broker.url, ack_timeout_s=1.0)
    relay = EventsRelay(
        store, NatsSink(settings), batch_size=100, interval_s=0.05, max_backoff_s=0.5
    )
    consumer = Consumer()
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(relay.run(stop)),
        asyncio.create_task(consumer.run(broker.url, settings.stream, stop)),
    ]
    try:
        async with asyncio.timeout(90):
            await until(lambda: relay.published >= 300)
            broker.kill()  # mid-stream: some batches acknowledged, the rest not yet
            killed_at = relay.published
            broker.start()  # same port, same store directory
            await until(lambda: len(consumer.ids) == EVENTS and not store.pending_outbox(1))
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
        await relay.sink.close()

    assert 300 <= killed_at < EVENTS
    assert len(consumer.ids) == EVENTS
    assert store.pending_outbox(1) == []
    for subject in SUBJECTS:
        seen = consumer.first_seen[subject]
        assert seen == sorted(seen) and len(seen) == EVENTS // 5
    print(  # the figures, for the report
        f"killed after {killed_at} acks; "
        f"duplicates={consumer.duplicates} redeliveries={consumer.redeliveries}"
    )
