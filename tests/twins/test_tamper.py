"""The twins' tamper endpoints over real HTTP: each changes a twin the way a person (or a
vendor that never sent an event) does, and afterwards the vendor's normal API shows exactly
that change — and webhooks a drop rule names are never delivered.

Tamper calls go without a token (`admin`), like every `/_admin` route; the reads after them go
through the vendor API with the static bearer token (`client`). To show an event was not
sent, a test drains the twin's sender: every event it queued has then been delivered."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook

from contracts.settings import DEV_WEBHOOK_SECRET
from sandbox import crm, erp, hcm, psa
from sandbox._tamper import DroppingWebhookSender
from sandbox.seed import Firm, build_firm
from tests._servers import serve
from tests._twins import Clock, employee
from tests.twins._erp_fixtures import ACTIVE_CC, AUTH, CUSTOMER, RECORD, small_firm

TODAY = date(2025, 6, 15)
SF = "/services/data/v61.0"
KANTATA = "/api/v1"
WORKERS = "/ccx/api/v1/acme/workers"


@dataclass
class Receiver:
    """One webhook endpoint per twin (`/hooks/psa`, `/hooks/crm`), checking signatures."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hooks/{system}")
        async def hook(system: str, request: Request) -> Response:
            body = await request.body()
            payload = Webhook(DEV_WEBHOOK_SECRET).verify(body, dict(request.headers))
            self.events.append((system, payload))
            return Response(status_code=204)

        return app

    def of(self, system: str, event_type: str) -> list[dict[str, Any]]:
        return [p["data"] for s, p in self.events if s == system and p["type"] == event_type]


@dataclass
class Served:
    app: FastAPI
    client: httpx.AsyncClient
    """The vendor API, with the static bearer token."""
    admin: httpx.AsyncClient
    """No token: the tamper endpoints need none."""

    @property
    def sender(self) -> DroppingWebhookSender:
        sender = self.app.state.twin.webhooks
        assert isinstance(sender, DroppingWebhookSender)
        return sender

    async def tamper(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.admin.post(f"/_admin/tamper/{path}", json=body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


@dataclass
class Twins:
    erp: Served
    psa: Served
    crm: Served
    hcm: Served
    receiver: Receiver
    firm: Firm
    clock: Clock


@pytest.fixture(scope="module")
async def twins() -> AsyncIterator[Twins]:
    """The four twins served for the module (each test works on its own records), CRM and
    PSA sending their events to one receiver."""
    firm = build_firm(5, workers=30, today=TODAY)
    clock = Clock(datetime(2025, 6, 15, 12, 0, tzinfo=UTC))
    receiver = Receiver()
    apps = {
        "erp": erp.create_app(),
        "psa": psa.create_app(),
        "crm": crm.create_app(None, tenant="acme"),
        "hcm": hcm.create_app(None, tenant="acme", clock=clock),
    }
    erp.load_firm(apps["erp"], small_firm())
    crm.load_firm(apps["crm"], firm)
    hcm.load_firm(apps["hcm"], firm)
    async with contextlib.AsyncExitStack() as stack:
        hooks = await stack.enter_async_context(serve(receiver.app()))
        served: dict[str, Served] = {}
        for name, app in apps.items():
            base = await stack.enter_async_context(serve(app))
            client = httpx.AsyncClient(base_url=base, headers=AUTH, timeout=10)
            admin = httpx.AsyncClient(base_url=base, timeout=10)
            served[name] = Served(app, await stack.enter_async_context(client), admin)
            await stack.enter_async_context(admin)
            if name in ("psa", "crm"):
                target = {"url": f"{hooks}/hooks/{name}"}
                assert (await admin.post("/_admin/webhooks", json=target)).status_code == 200
        yield Twins(receiver=receiver, firm=firm, clock=clock, **served)


# --------------------------------------------------------------------------- ERP


async def erp_id(t: Twins, record_type: str, external_id: str) -> str:
    response = await t.erp.client.get(f"{RECORD}/{record_type}/eid:{external_id}")
    assert response.status_code == 200, response.text
    ident: str = response.json()["id"]
    return ident


async def erp_job(t: Twins, eid: str) -> str:
    body = {
        "companyName": f"Project {eid}",
        "customer": {"id": await erp_id(t, "customer", CUSTOMER)},
        "department": {"id": await erp_id(t, "department", ACTIVE_CC)},
    }
    response = await t.erp.client.put(f"{RECORD}/job/eid:{eid}", json=body)
    assert response.status_code == 204, response.text
    return response.headers["location"].rsplit("/", 1)[-1]


async def post_timebill(t: Twins, job: str, eid: str, **fields: Any) -> httpx.Response:
    body: dict[str, Any] = {
        "externalId": eid,
        "customer": {"id": job},
        "tranDate": "2025-06-10",
        "hours": 8,
        "rate": 100,
        "costAmount": 800,
        "billAmount": 1200,
        "currency": {"id": "USD"},
        "department": {"id": await erp_id(t, "department", ACTIVE_CC)},
    }
    return await t.erp.client.post(f"{RECORD}/timebill", json=body | fields)


async def erp_get(t: Twins, record_type: str, ident: str) -> dict[str, Any]:
    response = await t.erp.client.get(f"{RECORD}/{record_type}/{ident}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = json.loads(response.text, parse_float=Decimal)
    return body


def stored_stamp(t: Twins, table: Any, ident: str) -> datetime:
    with t.erp.app.state.twin.session() as s:
        row = s.get(table, int(ident))
        assert row is not None
        stamp: datetime = row.last_modified
        return stamp


async def test_erp_timebill_edited_by_hand(twins: Twins) -> None:
    job = await erp_job(twins, "PRJ-TB-EDIT")
    assert (await post_timebill(twins, job, "TB-EDIT")).status_code == 204
    ident = await erp_id(twins, "timebill", "TB-EDIT")
    before = stored_stamp(twins, erp.ErpTimebill, ident)

    answer = await twins.erp.tamper(f"timebill/{ident}/edit", {"hours": 7.5})
    record = await erp_get(twins, "timebill", ident)
    assert answer["hours"] == 7.5 and answer["id"] == ident
    # Hours at the rate, the bill scaled with them: what NetSuite recomputes on a hand edit.
    assert (record["hours"], record["costAmount"], record["billAmount"]) == (
        Decimal("7.5"),
        750,
        1125,
    )
    assert stored_stamp(twins, erp.ErpTimebill, ident) > before
    assert record["lastModifiedDate"] >= before.strftime("%Y-%m-%dT%H:%M:%SZ")
    # SuiteQL (what reconciliation reads) sees the same.
    rows = await twins.erp.client.post(
        "/services/rest/query/v1/suiteql",
        json={"q": f"SELECT id, hours, costamount FROM timebill WHERE id = {ident}"},
    )
    assert rows.json()["items"][0]["hours"] == "7.5"

    await twins.erp.tamper(f"timebill/{ident}/edit", {"billAmount": 999.99})
    assert (await erp_get(twins, "timebill", ident))["billAmount"] == Decimal("999.99")


async def test_erp_timebill_deleted_by_hand(twins: Twins) -> None:
    job = await erp_job(twins, "PRJ-TB-DEL")
    for eid in ("TB-DEL-1", "TB-DEL-2"):
        assert (await post_timebill(twins, job, eid)).status_code == 204
    ident = await erp_id(twins, "timebill", "TB-DEL-1")

    assert await twins.erp.tamper(f"timebill/{ident}/delete") == {"deleted": ident}
    gone = await twins.erp.client.get(f"{RECORD}/timebill/{ident}")
    assert gone.status_code == 404
    assert gone.json()["o:errorDetails"][0]["o:errorCode"] == "NONEXISTENT_ID"
    listed = await twins.erp.client.get(
        f"{RECORD}/timebill", params={"q": f"customer ANY_OF {job}"}
    )
    assert [i["id"] for i in listed.json()["items"]] == [
        await erp_id(twins, "timebill", "TB-DEL-2")
    ]

    # A posting a reversal points at cannot go (NetSuite keeps dependent records whole).
    other = await erp_id(twins, "timebill", "TB-DEL-2")
    reversal = await post_timebill(
        twins,
        job,
        "TB-DEL-2-R",
        hours=-8,
        costAmount=-800,
        billAmount=-1200,
        reverses={"id": other},
    )
    assert reversal.status_code == 204, reversal.text
    refused = await twins.erp.admin.post(f"/_admin/tamper/timebill/{other}/delete")
    assert refused.status_code == 400
    assert "DEPENDENT_RECORDS" in refused.json()["o:errorDetails"][0]["o:errorCode"]


async def test_erp_job_fields_edited_by_hand(twins: Twins) -> None:
    job = await erp_job(twins, "PRJ-JOB-EDIT")
    before = stored_stamp(twins, erp.ErpJob, job)
    await twins.erp.tamper(
        f"job/{job}/edit",
        {
            "name": "Renamed by finance",
            "currency": "EUR",
            "department": ACTIVE_CC,
            "status": "Closed",
        },
    )
    record = await erp_get(twins, "job", job)
    assert record["companyName"] == "Renamed by finance"
    assert record["currency"]["id"] == "EUR"
    assert record["entityStatus"] == {"id": "1", "refName": "Closed"}
    assert stored_stamp(twins, erp.ErpJob, job) > before
    # Closed by hand: the ERP now refuses postings to it, as it would after a real close.
    refused = await post_timebill(twins, job, "TB-ON-CLOSED")
    assert refused.json()["o:errorDetails"][0]["o:errorCode"] == "PROJECT_CLOSED"
    await twins.erp.tamper("job/eid:PRJ-JOB-EDIT/edit", {"status": "2"})
    assert (await erp_get(twins, "job", job))["entityStatus"]["id"] == "2"


async def test_erp_period_closed_and_reopened_by_hand(twins: Twins) -> None:
    job = await erp_job(twins, "PRJ-PERIOD")
    closed = await twins.erp.tamper("accountingPeriod/2025-07/close", {"allLocked": True})
    assert (closed["periodName"], closed["closed"], closed["allLocked"]) == ("2025-07", True, True)
    record = await erp_get(twins, "accountingPeriod", "eid:2025-07")
    assert record["closed"] is True
    refused = await post_timebill(twins, job, "TB-JULY", tranDate="2025-07-02")
    assert refused.json()["o:errorDetails"][0]["o:errorCode"] == "PERIOD_CLOSED"
    # A posting already in a closed period can't be edited by hand either.
    assert (await post_timebill(twins, job, "TB-JUNE")).status_code == 204
    june = await erp_id(twins, "timebill", "TB-JUNE")
    await twins.erp.tamper("accountingPeriod/eid:2025-06/close")
    edit = await twins.erp.admin.post(f"/_admin/tamper/timebill/{june}/edit", json={"hours": 1})
    assert edit.json()["o:errorDetails"][0]["o:errorCode"] == "PERIOD_CLOSED"

    for name in ("2025-06", "2025-07"):
        reopened = await twins.erp.tamper(f"accountingPeriod/{name}/reopen")
        assert (reopened["closed"], reopened["allLocked"]) == (False, False)
    assert (await post_timebill(twins, job, "TB-JULY", tranDate="2025-07-02")).status_code == 204


async def test_erp_invoice_voided_behind_pssyncs_back(twins: Twins) -> None:
    body = {
        "externalId": "INV-TAMPER",
        "entity": {"id": await erp_id(twins, "customer", CUSTOMER)},
        "tranDate": "2025-06-12",
        "currency": {"id": "USD"},
        "memo": "Milestone M1",
        "item": {"items": [{"description": "M1", "amount": 5000}]},
    }
    assert (await twins.erp.client.post(f"{RECORD}/invoice", json=body)).status_code == 204
    ident = await erp_id(twins, "invoice", "INV-TAMPER")
    await twins.erp.tamper(f"invoice/{ident}/void", {"memo": "customer dispute"})
    record = await erp_get(twins, "invoice", ident)
    assert record["status"] == "Voided"
    assert record["memo"] == "Milestone M1\nVoided: customer dispute"


# --------------------------------------------------------------------------- PSA


def stamp(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["updated_at"])


async def psa_record(t: Twins, collection: str, ident: str | int) -> httpx.Response:
    return await t.psa.client.get(f"{KANTATA}/{collection}/{ident}.json")


def only(body: dict[str, Any]) -> dict[str, Any]:
    first = body["results"][0]
    obj: dict[str, Any] = body[first["key"]][first["id"]]
    return obj


async def psa_one(t: Twins, collection: str, ident: str | int) -> dict[str, Any]:
    response = await psa_record(t, collection, ident)
    assert response.status_code == 200, response.text
    return only(response.json())


async def psa_post(t: Twins, collection: str, key: str, fields: dict[str, Any]) -> dict[str, Any]:
    response = await t.psa.client.post(f"{KANTATA}/{collection}.json", json={key: fields})
    assert response.status_code == 200, response.text
    return only(response.json())


async def workspace(t: Twins, title: str) -> str:
    return str((await psa_post(t, "workspaces", "workspace", {"title": title}))["id"])


async def approved_entry(t: Twins, ws: str, minutes: int = 60) -> dict[str, Any]:
    user = psa.add_user(t.psa.app, full_name=f"User of {ws}")
    entry = await psa_post(
        t,
        "time_entries",
        "time_entry",
        {
            "workspace_id": ws,
            "user_id": user,
            "date_performed": "2025-06-10",
            "time_in_minutes": minutes,
        },
    )
    response = await t.psa.client.put(
        f"{KANTATA}/time_entries/{entry['id']}.json", json={"time_entry": {"approved": True}}
    )
    assert response.status_code == 200, response.text
    return only(response.json())


async def psa_events(t: Twins, event_type: str, ws: str) -> list[dict[str, Any]]:
    """The events of this type about workspace `ws` the receiver got, once every event
    queued is delivered."""
    await t.psa.sender.drain(10)
    return [d for d in t.receiver.of("psa", event_type) if d["workspace_id"] == ws]


async def test_psa_time_entry_unapproved_without_an_event(twins: Twins) -> None:
    entry = await approved_entry(twins, await workspace(twins, "Unapprove"))
    answer = await twins.psa.tamper(f"time_entries/{entry['id']}/unapprove")
    now = await psa_one(twins, "time_entries", entry["id"])
    assert answer["results"] == [{"key": "time_entries", "id": entry["id"]}]
    assert now["approved"] is False
    assert now["lock_version"] == entry["lock_version"] + 1
    assert stamp(now) > stamp(entry)
    listed = await twins.psa.client.get(
        f"{KANTATA}/time_entries.json",
        params={"approved": "true", "workspace_id": entry["workspace_id"]},
    )
    assert listed.json()["count"] == 0
    ws = entry["workspace_id"]
    approved = await psa_events(twins, "time_entry.approved", ws)
    assert [d["time_entry_id"] for d in approved] == [entry["id"]]
    assert await psa_events(twins, "time_entry.unapproved", ws) == []


async def test_psa_time_entry_minutes_edited_by_hand(twins: Twins) -> None:
    entry = await approved_entry(twins, await workspace(twins, "Edit"), minutes=60)
    await twins.psa.tamper(f"time_entries/{entry['id']}/edit", {"time_in_minutes": 45})
    now = await psa_one(twins, "time_entries", entry["id"])
    assert (now["time_in_minutes"], now["approved"]) == (45, True)
    assert now["lock_version"] == entry["lock_version"] + 1
    assert stamp(now) > stamp(entry)
    # What a change walk (`updated_after` the entry's old stamp) finds: the new version.
    changed = await twins.psa.client.get(
        f"{KANTATA}/time_entries.json",
        params={
            "approved": "true",
            "updated_after": entry["updated_at"],
            "order": "updated_at:asc",
        },
    )
    assert entry["id"] in [r["id"] for r in changed.json()["results"]]
    bad = await twins.psa.admin.post(
        f"/_admin/tamper/time_entries/{entry['id']}/edit", json={"time_in_minutes": 0}
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "time_in_minutes"


async def test_psa_approved_time_entry_deleted_by_hand(twins: Twins) -> None:
    entry = await approved_entry(twins, await workspace(twins, "Delete"))
    assert await twins.psa.tamper(f"time_entries/{entry['id']}/delete") == {"deleted": entry["id"]}
    gone = await psa_record(twins, "time_entries", entry["id"])
    assert gone.status_code == 404 and gone.json()["errors"][0]["type"] == "system"
    listed = await twins.psa.client.get(
        f"{KANTATA}/time_entries.json", params={"workspace_id": entry["workspace_id"]}
    )
    assert listed.json()["count"] == 0


async def test_psa_assignment_deleted_without_an_event(twins: Twins) -> None:
    ws = await workspace(twins, "Staffing")
    row = await psa_post(
        twins,
        "assignments",
        "assignment",
        {
            "workspace_id": ws,
            "role": "Analyst",
            "start_date": "2025-06-01",
            "end_date": "2025-08-31",
        },
    )
    assert await twins.psa.tamper(f"assignments/{row['id']}/delete") == {"deleted": row["id"]}
    assert (await psa_record(twins, "assignments", row["id"])).status_code == 404
    changes = await psa_events(twins, "assignment.changed", ws)
    assert [(d["assignment_id"], d["action"]) for d in changes] == [(row["id"], "created")]


async def test_psa_milestone_completed_without_an_event(twins: Twins) -> None:
    ws = await workspace(twins, "Milestones")
    ms = await psa_post(
        twins, "billing_milestones", "billing_milestone", {"workspace_id": ws, "title": "Go-live"}
    )
    await twins.psa.tamper(f"billing_milestones/{ms['id']}/complete")
    now = await psa_one(twins, "billing_milestones", ms["id"])
    assert now["state"] == "completed" and now["completed_at"]
    assert now["lock_version"] == ms["lock_version"] + 1
    completed = await twins.psa.client.get(
        f"{KANTATA}/billing_milestones.json", params={"workspace_id": ws, "state": "completed"}
    )
    assert [r["id"] for r in completed.json()["results"]] == [ms["id"]]
    assert await psa_events(twins, "billing_milestone.completed", ws) == []


async def test_psa_workspace_archived_by_hand(twins: Twins) -> None:
    ws = await workspace(twins, "Archive me")
    await twins.psa.tamper(f"workspaces/{ws}/archive")
    now = await psa_one(twins, "workspaces", ws)
    assert now["archived"] is True and now["status"]["message"] == "Archived"
    listed = await twins.psa.client.get(
        f"{KANTATA}/workspaces.json", params={"search": "Archive me"}
    )
    assert listed.json()["count"] == 0  # archived workspaces are hidden unless asked for
    refused = await twins.psa.client.post(
        f"{KANTATA}/stories.json", json={"story": {"workspace_id": ws, "title": "More work"}}
    )
    assert refused.status_code == 422


async def test_psa_webhooks_dropped_as_never_sent(twins: Twins) -> None:
    ws = await workspace(twins, "Dropped events")
    report = await twins.psa.tamper("drop-webhooks", {"type": "time_entry.approved", "count": 1})
    assert report["rules"] == [{"type": "time_entry.approved", "remaining": 1}]
    lost = await approved_entry(twins, ws)
    sent = await approved_entry(twins, ws)
    approved = await psa_events(twins, "time_entry.approved", ws)
    assert [d["time_entry_id"] for d in approved] == [sent["id"]]
    deliveries = (await twins.psa.admin.get("/_admin/webhooks/deliveries")).json()
    dropped = (await twins.psa.admin.get("/_admin/tamper/drop-webhooks")).json()
    assert dropped["rules"] == [] and dropped["dropped_by_type"] == {"time_entry.approved": 1}
    assert dropped["events"][-1]["data"]["time_entry_id"] == lost["id"]
    assert not any(d["event_id"] == dropped["events"][-1]["event_id"] for d in deliveries)

    # "*" takes any type; DELETE cancels what is left of a rule.
    await twins.psa.tamper("drop-webhooks", {"type": "*", "count": 5})
    await psa_post(
        twins,
        "assignments",
        "assignment",
        {
            "workspace_id": ws,
            "role": "Analyst",
            "start_date": "2025-06-01",
            "end_date": "2025-06-30",
        },
    )
    left = (await twins.psa.admin.delete("/_admin/tamper/drop-webhooks")).json()
    assert left["rules"] == [] and left["dropped_by_type"]["assignment.changed"] == 1
    assert await psa_events(twins, "assignment.changed", ws) == []


# --------------------------------------------------------------------------- CRM


async def opportunity(t: Twins, n: int) -> dict[str, Any]:
    ident = t.firm.opportunities[n].id
    response = await t.crm.client.get(f"{SF}/sobjects/Opportunity/{ident}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def crm_events(t: Twins, event_type: str) -> list[dict[str, Any]]:
    await t.crm.sender.drain(10)
    return t.receiver.of("crm", event_type)


async def test_crm_opportunity_edited_by_hand_without_an_event(twins: Twins) -> None:
    before = await opportunity(twins, 0)
    answer = await twins.crm.tamper(
        f"Opportunity/{before['Id']}/edit",
        {"Name": "Renamed in Salesforce", "StageName": "Closed Won"},
    )
    after = await opportunity(twins, 0)
    assert answer == after
    assert after["Name"] == "Renamed in Salesforce"
    assert (after["StageName"], after["IsWon"], after["IsClosed"]) == ("Closed Won", True, True)
    assert after["SystemModstamp"] > before["SystemModstamp"]
    soql = await twins.crm.client.get(
        f"{SF}/query", params={"q": f"SELECT Name FROM Opportunity WHERE Id = '{before['Id']}'"}
    )
    assert soql.json()["records"][0]["Name"] == "Renamed in Salesforce"
    assert before["Id"] not in [d["id"] for d in await crm_events(twins, "opportunity.won")]
    # The vendor's rules still hold: Amount follows the products.
    refused = await twins.crm.admin.post(
        f"/_admin/tamper/Opportunity/{before['Id']}/edit", json={"Amount": 1}
    )
    assert (
        refused.status_code == 400 and refused.json()[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    )


async def test_crm_won_webhook_dropped_as_never_sent(twins: Twins) -> None:
    await twins.crm.tamper("drop-webhooks", {"type": "opportunity.won", "count": 1})
    lost, sent = (await opportunity(twins, 1))["Id"], (await opportunity(twins, 2))["Id"]
    for ident in (lost, sent):
        won = await twins.crm.client.patch(
            f"{SF}/sobjects/Opportunity/{ident}", json={"StageName": "Closed Won"}
        )
        assert won.status_code == 204, won.text
    ids = [d["id"] for d in await crm_events(twins, "opportunity.won")]
    assert sent in ids and lost not in ids
    report = (await twins.crm.admin.get("/_admin/tamper/drop-webhooks")).json()
    assert [e["data"]["id"] for e in report["events"]] == [lost]
    assert (await opportunity(twins, 1))["IsWon"] is True  # the change itself happened


# --------------------------------------------------------------------------- HCM


async def hcm_window(t: Twins, start: datetime, end: datetime) -> dict[str, list[str]]:
    response = await t.hcm.client.get(
        WORKERS,
        params={"updatedFrom": start.isoformat(), "updatedThrough": end.isoformat(), "limit": 100},
    )
    assert response.status_code == 200, response.text
    return {w["workerId"]: [e["type"] for e in w["events"]] for w in response.json()["data"]}


async def test_hcm_worker_terminated_like_any_hcm_change(twins: Twins) -> None:
    now = twins.clock.now
    plain, late = employee(twins.firm, 0, TODAY), employee(twins.firm, 1, TODAY)
    ended = (TODAY - timedelta(days=1)).isoformat()
    answer = await twins.hcm.tamper(f"workers/{plain.wid}/terminate", {"terminationDate": ended})
    assert answer["status"] == "Successfully Completed" and answer["type"] == "terminate"
    worker = (await twins.hcm.client.get(f"{WORKERS}/{plain.wid}")).json()
    assert (
        worker["workerStatus"]["terminated"] is True and worker["workerStatus"]["active"] is False
    )
    assert worker["workerStatus"]["terminationDate"] == ended
    # In the poller's window like a termination entered through Workday.
    window = await hcm_window(twins, now - timedelta(minutes=1), now + timedelta(minutes=1))
    assert window[plain.id] == ["terminate"]

    # Entered at a moment a poll already covered: the current window never shows it.
    entered = now - timedelta(days=2)
    await twins.hcm.tamper(
        f"workers/Employee_ID={late.id}/terminate",
        {"terminationDate": ended, "enteredAt": entered.isoformat()},
    )
    assert late.id not in await hcm_window(
        twins, now - timedelta(hours=1), now + timedelta(minutes=1)
    )
    assert (await hcm_window(twins, entered, entered + timedelta(seconds=1)))[late.id] == [
        "terminate"
    ]
    gone = (await twins.hcm.client.get(f"{WORKERS}/Employee_ID={late.id}")).json()
    assert gone["workerStatus"]["active"] is False


async def test_hcm_worker_placed_on_leave_like_any_hcm_change(twins: Twins) -> None:
    now = twins.clock.now
    w = employee(twins.firm, 2, TODAY)
    await twins.hcm.tamper(f"workers/{w.wid}/leave", {"onLeave": True})
    worker = (await twins.hcm.client.get(f"{WORKERS}/{w.wid}")).json()
    assert worker["workerStatus"]["onLeave"] is True
    window = await hcm_window(twins, now - timedelta(minutes=1), now + timedelta(minutes=1))
    assert window[w.id][-1] == "leave"
    await twins.hcm.tamper(f"workers/{w.wid}/leave", {"onLeave": False})
    back = (await twins.hcm.client.get(f"{WORKERS}/{w.wid}")).json()
    assert back["workerStatus"]["onLeave"] is False
