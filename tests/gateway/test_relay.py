"""The inbox relay: what the gateway stored while Temporal was down takes effect once it is back.

Temporal outages are real here: the gateway's client talks to the dev server through a TCP
switch that refuses connections (and cuts live ones) while "down" and forwards them while "up",
on the same port, so the very client the gateway was built with goes from unreachable to
reachable. No worker runs: a started workflow, or a signal in a pipeline's history, is the
effect a webhook has.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RetryConfig
from temporalio.testing import WorkflowEnvironment

from contracts.naming import opportunity_workflow_id, time_pipeline_workflow_id
from contracts.settings import Settings
from gateway import create_app
from gateway.errors import GatewayError
from gateway.metrics import GatewayMetrics
from gateway.relay import InboxRelay, RelayState
from gateway.webhooks import Outcome
from store import InboxRow, Store, make_engine, upgrade
from tests._servers import free_port, serve
from tests.gateway.test_gateway import listed_runs, metric, new_opp, sign, workflow_exists

OPS_AUTH = {"Authorization": "Bearer dev-ops-token"}

FAST = {"relay_interval_s": 0.1, "relay_max_backoff_s": 0.4}


# --------------------------------------------------------------------------- a Temporal switch


class TemporalSwitch:
    """A TCP forwarder to the dev server on a port of its own: `down()` closes the port and
    cuts every live connection (the client sees "connection refused", as when the server is
    stopped), `up()` listens on the same port again."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def down(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}


# --------------------------------------------------------------------------- fixtures


@dataclass
class Outage:
    switch: TemporalSwitch
    http: httpx.AsyncClient
    store: Store
    settings: Settings
    relay: InboxRelay
    client: Client
    """The dev server's own client (always up), for checking effects."""

    async def post(self, source: str, payload: dict[str, Any], event_id: str) -> httpx.Response:
        body = json.dumps(payload)
        return await self.http.post(
            f"/webhooks/{source}", content=body, headers=sign(body, event_id=event_id)
        )

    async def health(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self.http.get("/healthz")).json()
        return body


@pytest.fixture
def store(tmp_path: Path) -> Store:
    url = f"sqlite:///{tmp_path}/s.db"
    upgrade(url)
    return Store(make_engine(url))


@pytest.fixture
async def outage(
    dev_env: WorkflowEnvironment, store: Store, settings: Settings
) -> AsyncIterator[Outage]:
    """The gateway (relay polling every 0.1 s) with Temporal *down*."""
    switch = TemporalSwitch(dev_env.client.service_client.config.target_host)
    client = await Client.connect(
        switch.address,
        namespace=dev_env.client.namespace,
        lazy=True,
        data_converter=pydantic_data_converter,
        retry_config=RetryConfig(max_retries=0),
    )
    app = create_app(settings, store, client, task_queue=f"relay-{uuid.uuid4()}", **FAST)
    try:
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield Outage(switch, http, store, settings, app.state.relay, dev_env.client)
        assert app.state.relay.state is RelayState.STOPPED  # the lifespan stopped it
        assert not app.state.relay.running
    finally:
        await switch.down()


def won(tenant: str, opp_id: str) -> dict[str, Any]:
    data = {"tenant": tenant, "object": "Opportunity", "id": opp_id, "stage": "Closed Won"}
    return {"type": "opportunity.won", "data": data}


def approved(project: str, entry: str) -> dict[str, Any]:
    data = {"workspace_id": project, "time_entry_id": entry, "version": 1}
    return {"type": "time_entry.approved", "data": data}


def new_project() -> str:
    return str(uuid.uuid4().int % 10**9 + 10**9)


async def eventually(check: Callable[[], Any], timeout_s: float = 20) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def signalled_entries(client: Client, workflow_id: str) -> list[str]:
    """The entry ids the pipeline's `entries_changed` signals carried, in history order."""
    entries: list[str] = []
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.HasField("workflow_execution_signaled_event_attributes"):
            attrs = event.workflow_execution_signaled_event_attributes
            for payload in attrs.input.payloads:
                entries += [ref["entry_id"] for ref in json.loads(payload.data)["refs"]]
    return entries


# --------------------------------------------------------------------------- the tests


async def test_events_accepted_while_temporal_is_down_take_effect_once_it_is_back(
    outage: Outage,
) -> None:

    tenant = outage.settings.crm.tenant
    opps = [new_opp() for _ in range(3)]
    project_a, project_b = new_project(), new_project()
    deliveries = [
        ("crm", won(tenant, opps[0]), "won-0"),
        ("psa", approved(project_a, "11"), "ta-11"),
        ("crm", won(tenant, opps[1]), "won-1"),
        ("psa", approved(project_a, "12"), "ta-12"),
        ("psa", approved(project_b, "21"), "tb-21"),
        ("crm", won(tenant, opps[2]), "won-2"),
    ]
    # Temporal is down: every verified event is stored and answered 202 queued, the senders
    # stop there (one attempt each).
    for source, payload, event_id in deliveries:
        resp = await outage.post(source, payload, event_id)
        assert (resp.status_code, resp.json()) == (202, {"status": "queued"}), resp.text
    # A sender that retries anyway is told the same (the event is still pending).
    again = await outage.post("crm", won(tenant, opps[0]), "won-0")
    assert (again.status_code, again.json()) == (202, {"status": "queued"})
    # Refused deliveries never reach the inbox, outage or not.
    unsigned = await outage.http.post("/webhooks/crm", content=json.dumps(won(tenant, opps[0])))
    assert unsigned.status_code == 401

    pending = await asyncio.to_thread(outage.store.inbox_pending)
    assert [(r.source, r.event_id) for r in pending] == [(s, e) for s, _, e in deliveries]
    health = await outage.health()
    assert health["status"] == "unavailable"
    relay = health["checks"]["relay"]
    assert (relay["ok"], relay["state"], relay["backlog"]) == (True, "backing_off", 6)
    assert relay["oldest_age_s"] >= 0 and relay["failed"] == 0
    for opp in opps:
        assert not await workflow_exists(outage.client, opportunity_workflow_id(tenant, opp))
    await asyncio.sleep(0.5)  # a few relay probes meet the outage; nothing changes
    assert len(await asyncio.to_thread(outage.store.inbox_pending)) == 6

    # Temporal is back: the relay replays every event, without anybody retrying.
    await outage.switch.up()
    await eventually(lambda: not outage.store.inbox_pending())
    for opp in opps:
        wid = opportunity_workflow_id(tenant, opp)
        assert len(await listed_runs(outage.client, wid)) == 1
    psa_tenant = outage.settings.psa.tenant
    wid_a = time_pipeline_workflow_id(psa_tenant, project_a)
    wid_b = time_pipeline_workflow_id(psa_tenant, project_b)
    # Signals enter a history when the workflow task in flight ends: wait for them, bounded.
    await eventually(lambda: _has(outage.client, wid_a, ["11", "12"]))
    await eventually(lambda: _has(outage.client, wid_b, ["21"]))
    assert sorted(await signalled_entries(outage.client, wid_a)) == ["11", "12"]

    rows = {r.event_id: r for r in await asyncio.to_thread(outage.store.inbox_list, "processed")}
    assert set(rows) == {e for _, _, e in deliveries}
    assert rows["won-1"].workflow_id == opportunity_workflow_id(tenant, opps[1])
    assert rows["tb-21"].workflow_id == wid_b
    assert all(r.processed_at is not None for r in rows.values())

    health = await outage.health()
    assert health["status"] == "ok", health
    relay = health["checks"]["relay"]
    assert relay["backlog"] == 0 and relay["oldest_age_s"] is None
    assert relay["state"] in ("draining", "idle") and relay["replayed"] == 6
    text = (await outage.http.get("/metrics", headers=OPS_AUTH)).text
    assert metric(text, "pssync_gateway_inbox_backlog") == 0
    assert metric(text, "pssync_gateway_relay_replays_total", source="crm", result="processed") == 3
    assert metric(text, "pssync_gateway_relay_replays_total", source="psa", result="processed") == 3
    assert metric(text, "pssync_gateway_relay_state", state="backing_off") == 0

    # A late sender retry is a duplicate: nothing runs twice.
    late = await outage.post("crm", won(tenant, opps[2]), "won-2")
    assert (late.status_code, late.json()["status"]) == (200, "duplicate")
    assert late.json()["workflow_id"] == opportunity_workflow_id(tenant, opps[2])
    # Once Temporal answers again, deliveries are acted on at once, not queued.
    fresh = new_opp()
    resp = await outage.post("crm", won(tenant, fresh), "won-fresh")
    assert (resp.status_code, resp.json()["status"]) == (202, "accepted"), resp.text


async def _has(client: Client, workflow_id: str, entries: list[str]) -> bool:
    if not await workflow_exists(client, workflow_id):
        return False
    return sorted(await signalled_entries(client, workflow_id)) == sorted(entries)


async def test_a_second_outage_is_noticed_and_survived(outage: Outage) -> None:
    tenant = outage.settings.crm.tenant
    await outage.switch.up()
    first = new_opp()
    resp = await outage.post("crm", won(tenant, first), "w-first")
    assert resp.json()["status"] == "accepted", resp.text
    await outage.switch.down()
    second = new_opp()
    resp = await outage.post("crm", won(tenant, second), "w-second")
    assert resp.json() == {"status": "queued"}
    assert outage.relay.deferring
    await outage.switch.up()
    await eventually(lambda: not outage.store.inbox_pending())
    assert await workflow_exists(outage.client, opportunity_workflow_id(tenant, second))
    assert not outage.relay.deferring


async def test_an_event_refused_for_good_is_marked_failed_and_not_retried(
    outage: Outage,
) -> None:
    await outage.switch.up()
    # On delivery: the action's business refusal (no entry id) is the answer, and the row is
    # marked failed so the relay leaves it alone.
    project = new_project()
    no_entry = {"type": "time_entry.approved", "data": {"workspace_id": project}}
    resp = await outage.post("psa", no_entry, "no-entry")
    assert resp.status_code == 422, resp.text
    # Replayed: a stored event the gateway can no longer route (a row from an older version).
    await asyncio.to_thread(
        outage.store.inbox_accept,
        "psa",
        "old-type",
        "h",
        event_type="story.created",
        body=json.dumps({"type": "story.created", "data": {"workspace_id": project}}),
    )
    await asyncio.to_thread(outage.store.inbox_accept, "crm", "no-body", "h")
    # Not a webhook source: the HCM poller's rows are its own business, not the relay's.
    await asyncio.to_thread(outage.store.inbox_accept, "hcm", "default/evt-1", "h")
    await eventually(lambda: not outage.store.inbox_pending(sources=("crm", "psa")))

    failed = (
        await outage.http.get("/api/inbox", params={"state": "failed"}, headers=OPS_AUTH)
    ).json()
    by_id = {item["event_id"]: item for item in failed["items"]}
    assert set(by_id) == {"no-entry", "old-type", "no-body"}
    assert by_id["no-entry"]["last_error"].startswith("422 invalid_payload")
    assert "not_replayable" in by_id["old-type"]["last_error"]
    assert all(item["attempts"] == 1 for item in by_id.values())
    assert "body" not in by_id["old-type"]
    relay = (await outage.health())["checks"]["relay"]
    assert (relay["failed"], relay["backlog"]) == (3, 0)
    await asyncio.sleep(0.5)  # more passes: nobody retries a failed event
    row = await asyncio.to_thread(outage.store.inbox_get, "psa", "old-type")
    assert row is not None and (row.state, row.attempts) == ("failed", 1)
    hcm = await asyncio.to_thread(outage.store.inbox_get, "hcm", "default/evt-1")
    assert hcm is not None and (hcm.state, hcm.attempts) == ("pending", 0)
    assert (await outage.http.get("/api/inbox", headers=OPS_AUTH)).json()["count"] == 0
    text = (await outage.http.get("/metrics", headers=OPS_AUTH)).text
    assert metric(text, "pssync_gateway_inbox_failed") == 3
    assert metric(text, "pssync_gateway_relay_replays_total", source="psa", result="failed") == 1


async def test_without_a_running_relay_temporal_down_is_still_503(
    store: Store, settings: Settings
) -> None:
    """Served without its lifespan nothing would replay the event: the sender must retry."""
    down = await Client.connect(
        "127.0.0.1:1",
        lazy=True,
        data_converter=pydantic_data_converter,
        retry_config=RetryConfig(max_retries=0),
    )
    app = create_app(settings, store, down, **FAST)
    body = json.dumps(won(settings.crm.tenant, new_opp()))
    transport = httpx.ASGITransport(app=app)  # no lifespan: the relay does not run
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        resp = await http.post("/webhooks/crm", content=body, headers=sign(body, event_id="x"))
    assert resp.status_code == 503, resp.text
    assert resp.headers["retry-after"]
    assert resp.json()["error"]["code"] == "temporal_unavailable"
    row = await asyncio.to_thread(store.inbox_get, "crm", "x")
    assert row is not None and row.state == "pending"  # a relay started later still has it


# --------------------------------------------------------------------------- the relay alone


class Receiver:
    """Stands in for `WebhookReceiver.replay`: records the order of replays, fails on demand."""

    sources = {"crm": None, "psa": None}

    def __init__(self, store: Store, fail: Callable[[InboxRow], BaseException | None]) -> None:
        self.store = store
        self.fail = fail
        self.replayed: list[str] = []

    async def replay(self, row: InboxRow) -> Outcome:
        self.replayed.append(row.event_id)
        error = self.fail(row)
        if error is not None:
            raise error
        await asyncio.to_thread(self.store.inbox_mark_processed, row.source, row.event_id, "wf")
        return Outcome(status="accepted", result="started", workflow_id="wf")


def relay_over(store: Store, receiver: Receiver, **kw: Any) -> InboxRelay:
    options: dict[str, Any] = {"interval_s": 0.05, "max_backoff_s": 0.2, "min_age_s": 0}
    return InboxRelay(store, receiver, GatewayMetrics(), **(options | kw))  # type: ignore[arg-type]


def accept(store: Store, *event_ids: str) -> None:
    for event_id in event_ids:
        store.inbox_accept("crm", event_id, "h", event_type="opportunity.won", body="{}")


async def test_rows_are_replayed_in_arrival_order_and_a_stale_listing_is_skipped(
    store: Store,
) -> None:
    accept(store, *[f"e{i:02}" for i in range(40)])
    receiver = Receiver(store, lambda _: None)
    relay = relay_over(store, receiver, concurrency=8, batch_size=25)
    # a sender's retry processes e05 between the listing and its replay
    listed = store.inbox_pending(25)
    store.inbox_set_workflow("crm", "e05", "wf-by-sender")
    stale = _Stale(store, listed)
    relay._store = stale  # the listing is the stale one; everything else is the real store

    report = await relay.drain_once()
    assert report.more and report.results == {"processed": 24, "skipped": 1}
    assert receiver.replayed == [f"e{i:02}" for i in range(25) if i != 5]
    relay._store = store
    report = await relay.drain_once()
    assert not report.more and report.results == {"processed": 15}
    assert receiver.replayed[24:] == [f"e{i:02}" for i in range(25, 40)]
    row = store.inbox_get("crm", "e05")
    assert row is not None and row.workflow_id == "wf-by-sender"


class _Stale:
    """The store, except that `inbox_pending` returns a listing taken earlier."""

    def __init__(self, store: Store, rows: list[InboxRow]) -> None:
        self._store, self._rows = store, rows

    def inbox_pending(self, *_: Any, **__: Any) -> list[InboxRow]:
        return self._rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_unavailable_stops_the_pass_and_probes_with_the_oldest_row_alone(
    store: Store,
) -> None:
    accept(store, "a", "b", "c")
    down = True

    def fail(_: InboxRow) -> BaseException | None:
        return GatewayError.unavailable("temporal_unavailable", "down") if down else None

    receiver = Receiver(store, fail)
    relay = relay_over(store, receiver)
    report = await relay.drain_once()
    assert report.unavailable and report.results == {"unavailable": 3}
    assert relay.deferring  # the receiver now queues deliveries without calling Temporal
    report = await relay.drain_once()
    assert report.results == {"unavailable": 1}  # a probe: the oldest row alone
    assert receiver.replayed == ["a", "b", "c", "a"]
    down = False
    report = await relay.drain_once()
    assert report.results == {"processed": 3} and not relay.deferring
    assert receiver.replayed[4:] == ["a", "b", "c"]
    assert store.inbox_get("crm", "a").attempts == 0  # type: ignore[union-attr]


async def test_the_relay_never_dies_and_gives_up_on_a_row_after_max_attempts(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    accept(store, "bug", "fine")
    receiver = Receiver(store, lambda row: RuntimeError("boom") if row.event_id == "bug" else None)
    relay = relay_over(store, receiver, max_attempts=3)
    calls = 0
    real_pending = store.inbox_pending

    def flaky_pending(*args: Any, **kw: Any) -> list[InboxRow]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("SELECT", {}, Exception("database is locked"))
        return real_pending(*args, **kw)

    relay._store = _Patched(store, inbox_pending=flaky_pending)
    await relay.start()
    try:
        await eventually(lambda: not store.inbox_pending(), timeout_s=10)
        assert relay.running
    finally:
        await relay.stop()
    bug = store.inbox_get("crm", "bug")
    assert bug is not None and (bug.state, bug.attempts) == ("failed", 3)
    assert bug.last_error == "RuntimeError: boom"
    assert receiver.replayed.count("bug") == 3 and receiver.replayed.count("fine") == 1
    assert relay._metrics.relay_errors._value.get() == 1  # the failed listing, logged
    assert "inbox relay pass failed" in caplog.text
    assert relay.state is RelayState.STOPPED


class _Patched:
    def __init__(self, store: Store, **overrides: Any) -> None:
        self._store, self._overrides = store, overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name) or getattr(self._store, name)
