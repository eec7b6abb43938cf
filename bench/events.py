"""Events benchmark: the outbox relay draining a backlog to NATS JetStream, and the end-to-end
lag at a steady rate, against a naive relay that publishes one row at a time and waits for its
ack (and marks it published) before the next.

    python bench/events.py [--backlog 100000] [--naive 5000] [--rate 500] [--seconds 10]
    python bench/events.py --quick          # 10,000 / 1,000 / 500 per s for 3 s

What it runs, in a fresh temp dir: its own nats-server (JetStream, OS-chosen port, stopped by
pid at the end) and a SQLite store. Then:

1. backlog: `--backlog` outbox rows across 50 subjects, relayed by `EventsRelay` + `NatsSink`
   (batches of `--batch`, pipelined acks); events/s from the first read to the last row marked.
2. naive: `--naive` rows, each published with `js.publish` (ack awaited) and marked alone.
3. lag: rows written at `--rate` per second for `--seconds` while the relay runs; a subscriber
   measures received-at minus the row's created_at (p50, p95, max).

Progress goes to stderr; the last line of stdout is one JSON object with the figures, the
targets (>= 5,000 events/s, p95 lag <= 1 s) and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402

from activities.events_relay import EventsRelay, NatsSink, nats_subject  # noqa: E402
from bench._harness import log, machine, print_json  # noqa: E402
from contracts.settings import EventsSettings  # noqa: E402
from contracts.v1.events import WorkerTermination, to_cloud_event  # noqa: E402
from store import Store, make_engine, upgrade  # noqa: E402
from store.repository.records import queue_events  # noqa: E402

SUBJECTS = 50


def start_nats(store_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    proc = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", str(store_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    port = None
    for line in iter(proc.stderr.readline, b""):
        found = re.search(rb"Listening for client connections on [^:]+:(\d+)", line)
        if found:
            port = int(found.group(1))
        if b"Server is ready" in line:
            return proc, f"nats://127.0.0.1:{port}"
    raise RuntimeError("nats-server did not start")


def fill(store: Store, engine: Any, start: int, count: int) -> None:
    """``count`` outbox rows in transactions of 5,000 (as the store records them)."""
    for first in range(start, start + count, 5000):
        now = datetime.now(UTC)
        events = [
            (
                "worker.terminated",
                f"W{n}",
                f"EP-{n % SUBJECTS}",
                WorkerTermination(worker_id=f"W{n}"),
            )
            for n in range(first, min(first + 5000, start + count))
        ]
        with engine.begin() as conn:
            queue_events(conn, engine.dialect.name, now, events)


async def drain(relay: EventsRelay, store: Store) -> None:
    while await relay.run_once():
        pass


async def naive(store: Store, url: str, stream: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    while rows := await asyncio.to_thread(store.pending_outbox, 1):
        row = rows[0]
        event = to_cloud_event(row.id or 0, row.event_type, row.key, row.payload, row.created_at)
        await js.publish(
            nats_subject(event), event.model_dump_json().encode(), headers={"Nats-Msg-Id": event.id}
        )
        await asyncio.to_thread(store.mark_published, [row.id or 0])
    await nc.close()


async def lag(
    store: Store,
    engine: Any,
    url: str,
    settings: EventsSettings,
    rate: int,
    seconds: float,
    start: int,
) -> dict[str, Any]:
    nc = await nats.connect(url)
    lags: list[float] = []

    async def on_msg(msg: Any) -> None:
        event = json.loads(msg.data)
        lags.append(time.time() - datetime.fromisoformat(event["time"]).timestamp())

    await nc.subscribe("pssync.events.>", cb=on_msg)
    relay = EventsRelay(store, NatsSink(settings), batch_size=settings.batch_size, interval_s=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    total = int(rate * seconds)
    tick = 0.02
    per_tick = max(1, int(rate * tick))
    began = time.monotonic()
    n = 0
    while n < total:
        await asyncio.to_thread(fill, store, engine, start + n, per_tick)
        n += per_tick
        await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
    deadline = time.monotonic() + 30
    for _ in range(600):  # up to 30 s for the tail of the stream
        if len(lags) >= total or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    await relay.sink.close()
    await nc.close()
    lags.sort()
    pick = lambda q: round(lags[min(len(lags) - 1, int(q * len(lags)))], 4) if lags else None  # noqa: E731
    return {
        "events": total,
        "received": len(lags),
        "rate_per_s": rate,
        "p50_s": pick(0.5),
        "p95_s": pick(0.95),
        "max_s": pick(1.0),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pssync-bench-events-") as tmp:
        proc, url = start_nats(Path(tmp) / "js")
        try:
            settings = EventsSettings(nats_url=url, batch_size=args.batch)
            db = f"sqlite:///{Path(tmp) / 'pssync.db'}"
            upgrade(db)
            engine = make_engine(db)
            store = Store(engine)
            log(f"filling {args.backlog} outbox rows")
            fill(store, engine, 0, args.backlog)
            relay = EventsRelay(store, NatsSink(settings), batch_size=args.batch)
            began = time.perf_counter()
            await drain(relay, store)
            relay_s = time.perf_counter() - began
            await relay.sink.close()
            log(f"relay: {args.backlog} in {relay_s:.2f}s")
            fill(store, engine, args.backlog, args.naive)
            began = time.perf_counter()
            await naive(store, url, settings.stream)
            naive_s = time.perf_counter() - began
            log(f"naive: {args.naive} in {naive_s:.2f}s")
            steady = await lag(
                store, engine, url, settings, args.rate, args.seconds, args.backlog + args.naive
            )
            log(f"lag: {steady}")
        finally:
            proc.kill()
            proc.wait()
    relay_rate = args.backlog / relay_s
    naive_rate = args.naive / naive_s
    return {
        "backlog": args.backlog,
        "relay_events_per_s": round(relay_rate, 1),
        "naive_events_per_s": round(naive_rate, 1),
        "speedup_vs_naive": round(relay_rate / naive_rate, 1),
        "lag": steady,
        "targets": {"events_per_s": 5000, "p95_lag_s": 1.0},
        "met": relay_rate >= 5000 and (steady["p95_s"] or 99) <= 1.0,
        "store": "sqlite",
        "batch": args.batch,
        "machine": machine(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--naive", type=int, default=5_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="10,000 / 1,000 / 3 s")
    parsed = parser.parse_args()
    if parsed.quick:
        parsed.backlog, parsed.naive, parsed.seconds = 10_000, 1_000, 3.0
    print_json(asyncio.run(main(parsed)))
