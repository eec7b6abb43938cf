"""The gateway over real HTTP, a real SQLite store and the real Temporal dev server.

A stand-in workflow registered under the saga's name ("OpportunityToProject") plays the worker's
part: it takes `ProvisionProjectInput`, answers the `status` query and accepts one
`resolve_exception` update (its validator refuses actors without a resolver role and items it
does not own), then completes. Each test runs its own worker on a unique task queue.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from standardwebhooks import Webhook
from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RetryConfig, RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from contracts.ids import salesforce_id_18
from contracts.naming import opportunity_workflow_id, time_pipeline_workflow_id
from contracts.settings import DEV_WEBHOOK_SECRET, Settings, load_settings
from contracts.v1.processes import (
    PROCESS_OPPORTUNITY_TO_PROJECT,
    ExceptionResolution,
    ProvisioningStatus,
    ProvisioningStep,
    ProvisionProjectInput,
    ResolutionAccepted,
)
from gateway import create_app
from sandbox._twin import WebhookSender
from store import InboxRow, NewExceptionItem, Store, make_engine, upgrade
from tests._servers import serve

OPS_AUTH = {"Authorization": "Bearer dev-ops-token"}

CRM_TENANT = "acme-crm"
CRM_OPPORTUNITY_ID = SearchAttributeKey.for_keyword("CrmOpportunityId")
BUSINESS_PROCESS = SearchAttributeKey.for_keyword("BusinessProcess")
RESOLVERS = frozenset({"ops", "delivery_manager"})


# --------------------------------------------------------------------------- stand-in workflow


@workflow.defn(name="OpportunityToProject")
class StandInOpportunityToProject:
    """Waits for one resolution of its open item `exc-<opportunity id>`, then completes.

    Query `status` -> ProvisioningStatus; update `resolve_exception` -> ResolutionAccepted
    (validator: NotAuthorized without a resolver role, UnknownExceptionItem for other items).
    """

    def __init__(self) -> None:
        self._input: ProvisionProjectInput | None = None
        self._resolutions: list[ExceptionResolution] = []

    @workflow.run
    async def run(self, inp: ProvisionProjectInput) -> dict[str, Any]:
        self._input = inp
        await workflow.wait_condition(lambda: bool(self._resolutions))
        return {"resolutions": [r.model_dump(mode="json") for r in self._resolutions]}

    def _open_item(self) -> str:
        assert self._input is not None
        return f"exc-{self._input.opportunity_id}"

    @workflow.query(name="status")
    def status(self) -> ProvisioningStatus:
        assert self._input is not None
        return ProvisioningStatus(
            step=ProvisioningStep.WAITING_FOR_RESOLUTION,
            ids={"input": self._input.model_dump(mode="json")},
        )

    @workflow.update(name="resolve_exception")
    async def resolve_exception(self, resolution: ExceptionResolution) -> ResolutionAccepted:
        self._resolutions.append(resolution)
        return ResolutionAccepted(
            item_id=resolution.item_id, action=resolution.action, accepted_at=workflow.now()
        )

    @resolve_exception.validator
    def _validate(self, resolution: ExceptionResolution) -> None:
        if not RESOLVERS.intersection(resolution.actor_roles):
            raise ApplicationError(f"{resolution.actor} may not resolve", type="NotAuthorized")
        if resolution.item_id != self._open_item():
            raise ApplicationError(
                f"no open item {resolution.item_id!r}", type="UnknownExceptionItem"
            )
        if self._resolutions:
            raise ApplicationError("already resolved", type="AlreadyResolved")


# --------------------------------------------------------------------------- fixtures


@dataclass
class Gw:
    http: httpx.AsyncClient
    store: Store
    engine: Engine
    client: Client
    settings: Settings
    task_queue: str


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The embedded profile, serving the CRM tenant the tests' deals come from."""
    settings = load_settings(home=tmp_path / ".pssync")
    settings.crm.tenants = [CRM_TENANT]
    return settings


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    url = f"sqlite:///{tmp_path}/s.db"
    upgrade(url)
    return make_engine(url)


@pytest.fixture
def store(engine: Engine) -> Store:
    return Store(engine)


@pytest.fixture
async def gw(
    dev_env: WorkflowEnvironment, engine: Engine, store: Store, settings: Settings
) -> AsyncIterator[Gw]:
    task_queue = f"gw-{uuid.uuid4()}"
    async with Worker(
        dev_env.client,
        task_queue=task_queue,
        workflows=[StandInOpportunityToProject],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        app = create_app(settings, store, dev_env.client, task_queue=task_queue)
        async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
            yield Gw(http, store, engine, dev_env.client, settings, task_queue)


def new_opp() -> str:
    """A fresh Salesforce opportunity id in its canonical 18-character form."""
    return salesforce_id_18(f"006{uuid.uuid4().hex[:12]}")


def won_event(opp_id: str, **data: Any) -> dict[str, Any]:
    payload = {
        "type": "opportunity.won",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {
            "tenant": CRM_TENANT,
            "object": "Opportunity",
            "id": opp_id,
            "stage": "Closed Won",
        },
    }
    payload["data"].update(data)  # type: ignore[union-attr]
    return payload


def sign(
    body: str | bytes,
    *,
    event_id: str | None = None,
    when: datetime | None = None,
    secret: str = DEV_WEBHOOK_SECRET,
) -> dict[str, str]:
    text = body if isinstance(body, str) else body.decode("utf-8", "replace")
    event_id = event_id or f"evt_{uuid.uuid4().hex}"
    when = when or datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, when, text),
    }


async def post_event(
    gw: Gw, payload: Any, *, source: str = "crm", event_id: str | None = None, **kw: Any
) -> httpx.Response:

    body = json.dumps(payload)
    return await gw.http.post(
        f"/webhooks/{source}", content=body, headers=sign(body, event_id=event_id, **kw)
    )


async def workflow_exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def listed_runs(client: Client, workflow_id: str) -> list[str]:
    """Runs of `workflow_id` in visibility (eventually consistent: wait for the first, bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    runs: list[str] = []
    while not runs and loop.time() < deadline:
        runs = [wf.run_id async for wf in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
        if not runs:
            await asyncio.sleep(0.1)
    return runs


def inbox_rows(gw: Gw, source: str) -> list[InboxRow]:
    with Session(gw.engine) as session:
        return list(session.exec(select(InboxRow).where(col(InboxRow.source) == source)).all())


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    prefix = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def open_item(store: Store, opp_id: str, *, item_id: str | None = None) -> str:
    item = NewExceptionItem(
        id=item_id or f"exc-{opp_id}",
        workflow_id=opportunity_workflow_id(CRM_TENANT, opp_id),
        process=PROCESS_OPPORTUNITY_TO_PROJECT,
        cause_code="COST_CENTER_INVALID",
        field="cost_center",
        detail="cost center CC-999 is not open in the ERP",
        owner="ops",
    )
    return store.open_exception(item).id


# --------------------------------------------------------------------------- CRM webhook


async def test_won_webhook_starts_the_saga_with_search_attributes(gw: Gw) -> None:
    opp = new_opp()
    resp = await post_event(gw, won_event(opp), event_id="evt-first")
    assert resp.status_code == 202, resp.text
    body = resp.json()
    wid = opportunity_workflow_id(CRM_TENANT, opp)
    assert body["status"] == "accepted"
    assert body["workflow_id"] == wid
    desc = await gw.client.get_workflow_handle(wid).describe()
    assert desc.run_id == body["run_id"]
    assert desc.status == WorkflowExecutionStatus.RUNNING
    assert desc.task_queue == gw.task_queue
    assert desc.typed_search_attributes.get(CRM_OPPORTUNITY_ID) == opp
    assert desc.typed_search_attributes.get(BUSINESS_PROCESS) == PROCESS_OPPORTUNITY_TO_PROJECT
    assert await desc.static_summary() == f"Provision project for opportunity {opp}"
    status = await gw.client.get_workflow_handle(wid).query("status")
    started_with = status["ids"]["input"]
    assert {k: started_with[k] for k in ("crm_tenant", "opportunity_id", "event_id")} == {
        "crm_tenant": CRM_TENANT,
        "opportunity_id": opp,
        "event_id": "evt-first",
    }
    assert started_with["escalation_after_s"] == gw.settings.escalation_after_s
    row = gw.store.inbox_get("crm", "evt-first")
    assert row is not None and row.workflow_id == wid


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"secret": "whsec_" + "c29tZW9uZS1lbHNlcy1zZWNyZXQ="}, "bad_signature"),
        ({"when": timedelta(minutes=-10)}, "stale_timestamp"),
        ({"when": timedelta(minutes=10)}, "future_timestamp"),
    ],
    ids=["wrong-secret", "stale", "future"],
)
async def test_unauthentic_webhook_is_refused_and_starts_nothing(
    gw: Gw, headers: dict[str, Any], code: str
) -> None:
    # Offsets from *now*, not timestamps taken at collection: a long suite would turn a
    # "future" timestamp into a present one before the test runs.
    if isinstance(headers.get("when"), timedelta):
        headers = {**headers, "when": datetime.now(UTC) + headers["when"]}
    opp = new_opp()
    resp = await post_event(gw, won_event(opp), **headers)
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == code
    assert not await workflow_exists(gw.client, opportunity_workflow_id(CRM_TENANT, opp))
    assert inbox_rows(gw, "crm") == []


@pytest.mark.parametrize(
    "mangle",
    ["unsigned", "garbage-signature", "tampered-body", "bad-timestamp"],
)
async def test_unsigned_or_tampered_webhook_is_401(gw: Gw, mangle: str) -> None:
    opp = new_opp()
    body = json.dumps(won_event(opp))
    headers = sign(body)
    if mangle == "unsigned":
        headers = {"content-type": "application/json"}
    elif mangle == "garbage-signature":
        headers["webhook-signature"] = "v1 nonsense,also,bad v2,xyz"
    elif mangle == "tampered-body":
        body = json.dumps(won_event(new_opp()))
    else:
        headers["webhook-timestamp"] = "nan"
    resp = await gw.http.post("/webhooks/crm", content=body, headers=headers)
    assert resp.status_code == 401, resp.text
    assert set(resp.json()["error"]) >= {"code", "message"}
    assert not await workflow_exists(gw.client, opportunity_workflow_id(CRM_TENANT, opp))


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ("{not json", 400, "invalid_json", None),
        (b"\xff\xfe\x00", 400, "invalid_encoding", None),
        ("[]", 422, "invalid_payload", None),
        ('{"type": "opportunity.won"}', 422, "invalid_payload", "data"),
        (json.dumps({"type": "opportunity.won", "data": {"object": "Opportunity"}}), 422,
         "invalid_payload", "data.tenant"),
        (json.dumps({"type": "opportunity.won", "data": {"tenant": "t", "object": "Account",
                     "id": "1"}}), 422, "invalid_payload", "data.object"),
        (json.dumps({"type": "opportunity.won", "data": {"tenant": "t", "object": "Opportunity",
                     "id": ""}}), 422, "invalid_payload", "data.id"),
        (json.dumps({"type": 7, "data": {}}), 422, "invalid_payload", "type"),
    ],
    ids=["not-json", "not-utf8", "array", "no-data", "no-tenant", "wrong-object", "empty-id",
         "type-not-string"],
)  # fmt: skip
async def test_bad_payload_is_a_typed_4xx_and_starts_nothing(
    gw: Gw, body: str | bytes, status: int, code: str, field: str | None
) -> None:
    raw = body.encode() if isinstance(body, str) else body
    headers = sign(raw)
    if isinstance(body, bytes):  # sign what the library would: the body as text
        headers = sign(body.decode("utf-8", "replace"))
    resp = await gw.http.post("/webhooks/crm", content=raw, headers=headers)
    if isinstance(body, bytes):
        # Invalid UTF-8 cannot be verified either way; it is refused before any parsing.
        assert resp.status_code in (400, 401), resp.text
    else:
        assert resp.status_code == status, resp.text
        error = resp.json()["error"]
        assert error["code"] == code
        assert error.get("field") == field
    assert inbox_rows(gw, "crm") == []


async def test_a_delivery_signed_by_the_twins_sender_is_accepted(gw: Gw) -> None:
    opp = new_opp()
    sender = WebhookSender(None, DEV_WEBHOOK_SECRET)
    body, headers = sender.signed_request("evt_twin", won_event(opp))
    resp = await gw.http.post("/webhooks/crm", content=body, headers=headers)
    assert resp.status_code == 202, resp.text
    assert resp.json()["workflow_id"] == opportunity_workflow_id(CRM_TENANT, opp)


async def test_unknown_event_type_is_ignored(gw: Gw) -> None:
    resp = await post_event(gw, {"type": "account.updated", "data": {"id": "001"}})
    assert resp.status_code == 202
    assert resp.json() == {"status": "ignored"}
    assert inbox_rows(gw, "crm") == []


async def test_replayed_event_is_a_duplicate_and_starts_nothing(gw: Gw) -> None:
    opp = new_opp()
    wid = opportunity_workflow_id(CRM_TENANT, opp)
    payload = won_event(opp)
    first = await post_event(gw, payload, event_id="evt-replay")
    assert first.status_code == 202
    # The replay is re-signed now (as a sender's retry is) but carries the same id and body.
    replay = await post_event(gw, payload, event_id="evt-replay")
    assert replay.status_code == 200
    assert replay.json() == {"status": "duplicate", "workflow_id": wid}

    # Even after the run completed, a replay starts nothing ...
    await asyncio.to_thread(open_item, gw.store, opp)
    resolved = await gw.http.post(
        f"/api/exceptions/exc-{opp}/resolution",
        json={"action": "retry"},
        headers={"Authorization": "Bearer dev-ops-token"},
    )
    assert resolved.status_code == 200, resolved.text
    await gw.client.get_workflow_handle(wid).result()
    again = await post_event(gw, payload, event_id="evt-replay")
    assert again.json() == {"status": "duplicate", "workflow_id": wid}
    # ... and neither does a new event for the provisioned opportunity.
    fresh = await post_event(gw, payload, event_id="evt-later")
    assert fresh.status_code == 200
    assert fresh.json()["status"] == "already_completed"
    assert fresh.json()["run_id"] == first.json()["run_id"]
    desc = await gw.client.get_workflow_handle(wid).describe()
    assert desc.run_id == first.json()["run_id"]
    assert desc.status == WorkflowExecutionStatus.COMPLETED

    # The same id with another body is not a replay.
    other = await post_event(gw, won_event(new_opp()), event_id="evt-replay")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "event_id_reused"

    metrics = (await gw.http.get("/metrics", headers=OPS_AUTH)).text
    assert metric(metrics, "pssync_gateway_webhooks_duplicate_total", source="crm") == 2
    assert metric(metrics, "pssync_gateway_workflows_started_total",
                  workflow="OpportunityToProject") == 1  # fmt: skip


async def test_fifty_concurrent_copies_start_one_run(gw: Gw) -> None:
    opp = new_opp()
    wid = opportunity_workflow_id(CRM_TENANT, opp)
    body = json.dumps(won_event(opp))
    headers = sign(body, event_id="evt-burst")
    responses = await asyncio.gather(
        *(gw.http.post("/webhooks/crm", content=body, headers=headers) for _ in range(50))
    )
    assert all(r.status_code in (200, 202) for r in responses), {r.text for r in responses}
    statuses = [r.json()["status"] for r in responses]
    assert statuses.count("accepted") >= 1
    assert set(statuses) <= {"accepted", "duplicate"}
    assert {r.json()["workflow_id"] for r in responses} == {wid}
    run_ids = {r.json().get("run_id") for r in responses} - {None}
    assert len(run_ids) == 1
    desc = await gw.client.get_workflow_handle(wid).describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING
    assert run_ids == {desc.run_id}
    assert await listed_runs(gw.client, wid) == [desc.run_id]
    rows = inbox_rows(gw, "crm")
    assert [(r.event_id, r.workflow_id) for r in rows] == [("evt-burst", wid)]
    metrics = (await gw.http.get("/metrics", headers=OPS_AUTH)).text
    assert metric(metrics, "pssync_gateway_workflows_started_total",
                  workflow="OpportunityToProject") == 1  # fmt: skip
    assert metric(metrics, "pssync_gateway_webhooks_received_total", source="crm") == 50


async def test_fifty_events_for_one_opportunity_join_one_run(gw: Gw) -> None:
    opp = new_opp()
    wid = opportunity_workflow_id(CRM_TENANT, opp)
    responses = await asyncio.gather(
        *(post_event(gw, won_event(opp), event_id=f"evt-{i}") for i in range(50))
    )
    assert [r.status_code for r in responses] == [202] * 50
    assert {r.json()["run_id"] for r in responses} == {
        (await gw.client.get_workflow_handle(wid).describe()).run_id
    }
    assert len(await listed_runs(gw.client, wid)) == 1
    rows = inbox_rows(gw, "crm")
    assert len(rows) == 50
    assert {r.workflow_id for r in rows} == {wid}


async def test_temporal_down_is_queued_and_the_retry_is_processed(
    gw: Gw, settings: Settings
) -> None:
    """The event is stored, so the answer is 202 `queued` (the relay's part is tested in
    test_relay.py); a sender's retry once Temporal is back is processed — unless the relay of
    the app that is up got there first, then it is a duplicate of the processed event."""
    down = await Client.connect(
        "127.0.0.1:1",
        lazy=True,
        data_converter=pydantic_data_converter,
        retry_config=RetryConfig(max_retries=0),
    )
    opp = new_opp()
    wid = opportunity_workflow_id(CRM_TENANT, opp)
    payload = won_event(opp)
    async with (
        serve(create_app(settings, gw.store, down, task_queue=gw.task_queue)) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        body = json.dumps(payload)
        resp = await http.post(
            "/webhooks/crm", content=body, headers=sign(body, event_id="evt-outage")
        )
        assert (resp.status_code, resp.json()) == (202, {"status": "queued"}), resp.text
        health = await http.get("/healthz")
        assert health.status_code == 503
        assert health.json()["checks"]["store"] == {"ok": True}
        assert health.json()["checks"]["temporal"]["ok"] is False
        relay = health.json()["checks"]["relay"]
        assert (relay["ok"], relay["state"]) == (True, "backing_off")
        assert relay["backlog"] >= 1
    assert not await workflow_exists(gw.client, wid)
    row = gw.store.inbox_get("crm", "evt-outage")
    assert row is not None and row.workflow_id is None and row.state == "pending"
    # The sender retries the same event once Temporal is back: it takes effect once.
    retry = await post_event(gw, payload, event_id="evt-outage")
    assert retry.status_code in (200, 202), retry.text
    assert retry.json()["status"] in ("accepted", "duplicate")
    assert retry.json()["workflow_id"] == wid
    assert await workflow_exists(gw.client, wid)
    assert len(await listed_runs(gw.client, wid)) == 1
    row = gw.store.inbox_get("crm", "evt-outage")
    assert row is not None and row.workflow_id == wid and row.state == "processed"


# --------------------------------------------------------------------------- PSA webhook


async def test_psa_time_events_signal_the_projects_pipeline(gw: Gw) -> None:
    """Approval events signal one pipeline per project, starting it if none runs (no workflow
    per entry): two entries of project 42 land in one run, with the entry and its version in
    the signal."""
    project = f"42{uuid.uuid4().hex[:6]}"
    wid = time_pipeline_workflow_id(gw.settings.psa.tenant, project)
    first = {
        "type": "time_entry.approved",
        "data": {"workspace_id": project, "time_entry_id": "7", "version": 3},
    }
    resp = await post_event(gw, first, source="psa", event_id=f"{project}-1")
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "accepted" and resp.json()["workflow_id"] == wid
    second = {
        "type": "expense.approved",
        "data": {"workspace_id": project, "expense_id": "9", "version": 1},
    }
    resp2 = await post_event(gw, second, source="psa")
    assert resp2.json()["workflow_id"] == wid, resp2.text
    replay = await post_event(gw, first, source="psa", event_id=f"{project}-1")
    assert (replay.status_code, replay.json()["status"]) == (200, "duplicate")
    # A signal that arrives while a workflow task is in flight enters the history when that
    # task ends (nothing here runs the pipeline): wait for both, bounded.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        signals = [
            event.workflow_execution_signaled_event_attributes
            async for event in gw.client.get_workflow_handle(wid).fetch_history_events()
            if event.HasField("workflow_execution_signaled_event_attributes")
        ]
        if len(signals) >= 2 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert [s.signal_name for s in signals] == ["entries_changed", "entries_changed"]
    # The first started the run (signal-with-start), the second signalled it (a plain
    # signal: half the server's work), so only the first names a run, and there is one.
    desc = await gw.client.get_workflow_handle(wid).describe()
    assert resp.json()["run_id"] == desc.run_id and "run_id" not in resp2.json()
    assert await listed_runs(gw.client, wid) == [desc.run_id]
    # the history holds them encrypted (plumbing.codec): decode as a pssync client does
    codec = gw.client.data_converter.payload_codec
    assert codec is not None
    decoded = await codec.decode([s.input.payloads[0] for s in signals])
    payloads = [json.loads(p.data) for p in decoded]
    assert [(p["refs"][0]["kind"], p["refs"][0]["entry_id"]) for p in payloads] == [
        ("time", "7"),
        ("expense", "9"),
    ]
    assert payloads[0]["refs"][0]["version"] == "3"

    ignored = await post_event(gw, {"type": "story.created", "data": {}}, source="psa")
    assert ignored.json() == {"status": "ignored"}
    bad = await post_event(gw, {"type": "expense.approved", "data": {}}, source="psa")
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "data.workspace_id"
    no_entry = await post_event(
        gw, {"type": "time_entry.approved", "data": {"workspace_id": project}}, source="psa"
    )
    assert no_entry.status_code == 422
    assert [r.event_id for r in inbox_rows(gw, "psa") if r.event_id.startswith(project)] == [
        f"{project}-1"
    ]


async def test_a_time_event_after_the_pipeline_ended_starts_a_new_run(gw: Gw) -> None:
    """The plain signal finds no running pipeline (it completed idle, or was terminated):
    the event starts a new run with its entry instead of being lost or refused."""
    project = f"43{uuid.uuid4().hex[:6]}"
    wid = time_pipeline_workflow_id(gw.settings.psa.tenant, project)

    def approved(entry: str) -> dict[str, Any]:
        return {
            "type": "time_entry.approved",
            "data": {"workspace_id": project, "time_entry_id": entry, "version": 1},
        }

    first = await post_event(gw, approved("1"), source="psa")
    assert first.status_code == 202, first.text
    await gw.client.get_workflow_handle(wid).terminate(reason="test: the run ended")
    again = await post_event(gw, approved("2"), source="psa")
    assert again.status_code == 202, again.text
    new_run = again.json()["run_id"]
    assert new_run != first.json()["run_id"]
    desc = await gw.client.get_workflow_handle(wid).describe()
    assert (desc.run_id, desc.status) == (new_run, WorkflowExecutionStatus.RUNNING)
    signalled = [
        event.workflow_execution_signaled_event_attributes.signal_name
        async for event in gw.client.get_workflow_handle(wid).fetch_history_events()
        if event.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert signalled == ["entries_changed"]


def link_psa_project(gw: Gw, project: str) -> None:
    """Link a PSA project in xref, as the opportunity saga does once it provisioned it."""
    eid = f"01J{uuid.uuid4().hex[:23].upper()}"
    gw.store.link_xref(eid, "project", "PSA", gw.settings.psa.tenant, "workspace", project)


async def test_billing_needs_finance_and_signals_the_pipeline(gw: Gw) -> None:
    project = f"43{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(link_psa_project, gw, project)
    url = f"/api/projects/{project}/billing"
    dm = {"Authorization": "Bearer dev-dm-token"}
    finance = {"Authorization": "Bearer dev-finance-token"}
    assert (await gw.http.post(url, json={"period": "2026-10"}, headers=dm)).status_code == 403
    both = {"period": "2026-10", "milestone_id": "5"}
    assert (await gw.http.post(url, json=both, headers=finance)).status_code == 422
    resp = await gw.http.post(url, json={"period": "2026-10"}, headers=finance)
    assert resp.status_code == 202, resp.text
    assert resp.json()["billing"] == "period-2026-10"
    assert await workflow_exists(gw.client, resp.json()["workflow_id"])


# --------------------------------------------------------------------------- resolutions


async def test_resolution_needs_a_token_and_a_resolver_role(gw: Gw) -> None:
    opp = new_opp()
    wid = opportunity_workflow_id(CRM_TENANT, opp)
    assert (await post_event(gw, won_event(opp))).status_code == 202
    item_id = await asyncio.to_thread(open_item, gw.store, opp)
    url = f"/api/exceptions/{item_id}/resolution"
    decision = {"action": "retry_with_data", "corrections": {"cost_center": "CC-200"}}

    no_token = await gw.http.post(url, json=decision)
    assert no_token.status_code == 401
    assert no_token.json()["error"]["code"] == "unauthorized"
    assert no_token.headers["www-authenticate"] == "Bearer"
    unknown = await gw.http.post(url, json=decision, headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 401
    finance = await gw.http.post(
        url, json=decision, headers={"Authorization": "Bearer dev-finance-token"}
    )
    assert finance.status_code == 403
    assert finance.json()["error"]["code"] == "forbidden"

    dm = {"Authorization": "Bearer dev-dm-token"}
    invalid = await gw.http.post(url, json={"action": "explode"}, headers=dm)
    assert invalid.status_code == 422
    assert invalid.json()["error"]["field"] == "action"
    missing = await gw.http.post("/api/exceptions/nope/resolution", json=decision, headers=dm)
    assert missing.status_code == 404

    ok = await gw.http.post(url, json={**decision, "note": "fixed in ERP"}, headers=dm)
    assert ok.status_code == 200, ok.text
    assert ok.json()["result"]["item_id"] == item_id
    result = await gw.client.get_workflow_handle(wid).result()
    [received] = result["resolutions"]
    assert received["actor"] == "dana.manager"
    assert received["actor_roles"] == ["delivery_manager"]
    assert received["action"] == "retry_with_data"
    assert received["corrections"] == {"cost_center": "CC-200"}
    assert received["note"] == "fixed in ERP"

    # The run has completed: a second resolution cannot reach it.
    late = await gw.http.post(url, json=decision, headers=dm)
    assert late.status_code == 409, late.text
    metrics = (await gw.http.get("/metrics", headers=OPS_AUTH)).text
    assert metric(metrics, "pssync_gateway_resolutions_total",
                  action="retry_with_data", outcome="accepted") == 1  # fmt: skip
    assert metric(metrics, "pssync_gateway_resolutions_total",
                  action="retry_with_data", outcome="forbidden") == 1  # fmt: skip
    assert metric(metrics, "pssync_gateway_resolutions_total",
                  action="unknown", outcome="unauthorized") == 2  # fmt: skip


async def test_workflow_validator_refusal_and_resolved_items(gw: Gw) -> None:
    opp = new_opp()
    assert (await post_event(gw, won_event(opp))).status_code == 202
    # An item the store attributes to the run but the run does not have open.
    stray = await asyncio.to_thread(open_item, gw.store, opp, item_id=f"stray-{opp}")
    ops = {"Authorization": "Bearer dev-ops-token"}
    refused = await gw.http.post(
        f"/api/exceptions/{stray}/resolution", json={"action": "skip"}, headers=ops
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "UnknownExceptionItem"

    done = await asyncio.to_thread(open_item, gw.store, opp, item_id=f"done-{opp}")
    await asyncio.to_thread(gw.store.resolve_exception, done, {"action": "skip"}, "ops")
    resolved = await gw.http.post(
        f"/api/exceptions/{done}/resolution", json={"action": "skip"}, headers=ops
    )
    assert resolved.status_code == 409
    assert resolved.json()["error"]["code"] == "already_resolved"


async def test_exceptions_are_listed_with_their_age(gw: Gw) -> None:
    opp = new_opp()
    first = await asyncio.to_thread(open_item, gw.store, opp)
    second = await asyncio.to_thread(open_item, gw.store, opp, item_id=f"b-{opp}")
    await asyncio.to_thread(gw.store.resolve_exception, second, {"action": "skip"}, "ops")
    resp = await gw.http.get("/api/exceptions", params={"status": "open"}, headers=OPS_AUTH)
    assert resp.status_code == 200
    [item] = resp.json()["items"]
    assert item["id"] == first
    assert item["workflow_id"] == opportunity_workflow_id(CRM_TENANT, opp)
    assert item["process"] == PROCESS_OPPORTUNITY_TO_PROJECT
    assert item["cause_code"] == "COST_CENTER_INVALID"
    assert item["field"] == "cost_center"
    assert item["status"] == "open"
    assert item["owner"] == "ops"
    assert item["age_s"] >= 0
    assert item["resolution"] is None
    everything = await gw.http.get(
        "/api/exceptions", params={"process": PROCESS_OPPORTUNITY_TO_PROJECT}, headers=OPS_AUTH
    )
    assert [i["id"] for i in everything.json()["items"]] == [first, second]
    assert everything.json()["items"][1]["resolution"] == {"action": "skip", "actor": "ops"}
    bad = await gw.http.get("/api/exceptions", params={"status": "sideways"}, headers=OPS_AUTH)
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "status"
    assert (await gw.http.get(f"/api/exceptions/{first}", headers=OPS_AUTH)).json()["id"] == first
    assert (await gw.http.get("/api/exceptions/none", headers=OPS_AUTH)).status_code == 404


# --------------------------------------------------------------------------- status, ops


async def test_project_status_shows_ids_and_the_run(gw: Gw) -> None:
    opp = new_opp()
    assert (await post_event(gw, won_event(opp))).status_code == 202
    eid = f"01J{uuid.uuid4().hex[:23].upper()}"
    links = [
        ("CRM", CRM_TENANT, "opportunity", opp),
        ("PSA", "acme-psa", "workspace", "4242"),
        ("ERP", "acme-erp", "job", "PRJ-1"),
        ("ERP", "acme-erp", "customer", "CUST-9"),
    ]
    for system, tenant, object_type, external_id in links:
        await asyncio.to_thread(
            gw.store.link_xref, eid, "project", system, tenant, object_type, external_id
        )
    resp = await gw.http.get(f"/api/projects/{eid}", headers=OPS_AUTH)
    assert resp.status_code == 200, resp.text
    view = resp.json()
    assert view["ids"] == {
        "CRM": {"opportunity": opp},
        "ERP": {"customer": "CUST-9", "job": "PRJ-1"},
        "PSA": {"workspace": "4242"},
    }
    assert len(view["links"]) == 4
    run = view["workflow"]
    assert run["workflow_id"] == opportunity_workflow_id(CRM_TENANT, opp)
    assert run["status"] == "RUNNING"
    assert run["progress"]["step"] == "waiting_for_resolution"

    orphan = f"01J{uuid.uuid4().hex[:23].upper()}"
    await asyncio.to_thread(
        gw.store.link_xref, orphan, "project", "CRM", CRM_TENANT, "opportunity", new_opp()
    )
    no_run = await gw.http.get(f"/api/projects/{orphan}", headers=OPS_AUTH)
    assert no_run.status_code == 200
    assert no_run.json()["workflow"] is None
    unknown = await gw.http.get("/api/projects/01JUNKNOWN", headers=OPS_AUTH)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "project_not_found"


async def test_healthz_and_metrics(gw: Gw) -> None:
    health = await gw.http.get("/healthz")
    assert health.status_code == 200
    checks = health.json()["checks"]
    assert health.json()["status"] == "ok"
    assert (checks["store"], checks["temporal"]) == ({"ok": True}, {"ok": True})
    assert checks["relay"]["ok"] is True and checks["relay"]["state"] != "stopped"
    await post_event(gw, won_event(new_opp()))
    await gw.http.post("/webhooks/crm", content=b"{}")
    resp = await gw.http.get("/metrics", headers=OPS_AUTH)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert metric(text, "pssync_gateway_webhooks_received_total", source="crm") == 2
    assert metric(text, "pssync_gateway_webhooks_refused_total",
                  source="crm", reason="missing_signature") == 1  # fmt: skip
    assert metric(text, "pssync_gateway_webhooks_accepted_total",
                  source="crm", event_type="opportunity.won", result="started") == 1  # fmt: skip
    assert metric(text, "pssync_gateway_webhook_seconds_count", source="crm") == 2
    assert "# TYPE pssync_gateway_resolutions_total counter" in text


async def test_unknown_route_is_a_typed_404(gw: Gw) -> None:
    resp = await gw.http.get("/nope")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"
