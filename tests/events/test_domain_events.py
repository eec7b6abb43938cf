"""The domain events of facts only activities (or a workflow's own last outbox row) record:
each is written once with the right subject and data, even when the step runs twice (a
retried activity); SLA breaches raise one `alert.raised` each, with what to act on; the alerts
webhook receives them signed; `pssync events relay` starts and stops cleanly."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Table, insert
from standardwebhooks import Webhook

from activities.change_order import ChangeOrderActivities, OutboxNotifier, SetChangeOrderState
from activities.events_relay import (
    AlertsSink,
    EventsRelay,
    SlaWatch,
    WebhookSink,
    serve_relay,
)
from activities.time_to_invoice.billing import InvoicePlan, InvoiceRef, VoidInvoice, _BillingMixin
from contracts.ids import mint_ulid
from contracts.money import Money
from contracts.settings import Settings
from contracts.systems import System
from contracts.v1 import ChangeOrder, ChangeOrderLine, Invoice, InvoiceLine, Project
from contracts.v1.events import outbox_payload
from contracts.v1.models import ChangeOrderStatus
from contracts.v1.time_to_invoice import BillingRequest, BillingTrigger
from store import Store
from store.models import ExceptionItemRow, OutboxRow, TimePostingRow
from store.repository.indicators import IndicatorThresholds
from tests.workflows._worlds import acme_project

SECRET = "whsec_" + base64.b64encode(b"alerts-test-secret-0123456789ab").decode()
EID = mint_ulid(1_760_000_000_000, 7)
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def events(store: Store, event_type: str | None = None) -> list[OutboxRow]:
    return [r for r in store.pending_outbox(1000) if event_type in (None, r.event_type)]


# --------------------------------------------------------------------------- change orders


def test_an_applied_change_order_is_approved_and_its_budget_revised_once(store: Store) -> None:
    forecast = {
        "enterprise_id": EID,
        "psa_project_id": "4100",
        "change_order_id": "CO-7",
        "impact": {
            "budget_delta": {"amount": "5000.00", "currency": "USD"},
            "hours_delta": "25",
            "currency": "USD",
        },
        "approved_by": ["dana.manager", "fin.controller"],
        "applied_at": "2026-06-10T12:00:00+00:00",
    }
    for _attempt in range(2):  # the store activity retried
        store.add_outbox("forecast.adjustment", "change_order:test:CO-7", forecast)
    [approved] = events(store, "change_order.approved")
    [revised] = events(store, "budget.revised")
    assert approved.payload["subject"] == revised.payload["subject"] == EID
    data = approved.payload["data"]
    assert data["decision"] == "approved" and data["change_order_id"] == "CO-7"
    assert data["decided_by"] == ["dana.manager", "fin.controller"]
    assert Decimal(data["budget_delta"]) == 5000 and Decimal(data["hours_delta"]) == 25
    assert Decimal(revised.payload["data"]["budget_delta"]) == 5000
    assert revised.payload["data"]["erp_project_id"] == f"eid:{EID}"


class _Psa:
    """The PSA as the rejection step sees it: the change order and its project."""

    def __init__(self) -> None:
        self.change_order = ChangeOrder(
            external_id="CO-9",
            project_id="4100",
            title="More dashboards",
            budget_delta=Money(20000, "USD"),
            lines=[ChangeOrderLine(role="Consultant", hours_delta=Decimal(100))],
            requested_by="pm",
            submitted_at=NOW,
            source_system=System.PSA,
        )
        self.project = acme_project(enterprise_id=EID)

    async def set_change_order_state(
        self, change_order_id: str, state: ChangeOrderStatus
    ) -> ChangeOrder:
        self.change_order = self.change_order.model_copy(update={"status": state})
        return self.change_order

    async def get_project(self, psa_id: str) -> Project:
        return self.project


async def test_a_rejected_change_order_is_recorded_once_across_retries(store: Store) -> None:
    psa = _Psa()
    acts = ChangeOrderActivities(psa, store, OutboxNotifier(store))  # type: ignore[arg-type]
    rejected = SetChangeOrderState(change_order_id="CO-9", state=ChangeOrderStatus.REJECTED)
    await acts.set_state(rejected)
    await acts.set_state(rejected)  # retried after its answer was lost
    await acts.set_state(
        SetChangeOrderState(change_order_id="CO-9", state=ChangeOrderStatus.APPROVED)
    )
    [event] = events(store)
    assert event.event_type == "change_order.rejected"
    assert event.payload["subject"] == EID
    data = event.payload["data"]
    assert data["decision"] == "rejected" and data["title"] == "More dashboards"
    assert Decimal(data["budget_delta"]) == 20000 and data["currency"] == "USD"


# --------------------------------------------------------------------------- terminations


def test_a_termination_takes_effect_and_is_rescinded_once_each(store: Store) -> None:
    base = {"process": "worker_termination", "worker_id": "W-17", "termination_date": "2026-06-30"}
    wf = "worker-termination-W-17-2026-06-30"
    for _attempt in range(2):
        store.add_outbox(
            "notification",
            f"{wf}/termination.effective",
            base | {"kind": "termination.effective", "message": "left", "details": {"n": 1}},
        )
        store.add_outbox(
            "notification", f"{wf}/termination.rescinded", base | {"kind": "termination.rescinded"}
        )
        store.add_outbox(
            "notification", f"{wf}/termination.entered", base | {"kind": "termination.entered"}
        )
    [terminated] = events(store, "worker.terminated")
    [rescinded] = events(store, "worker.rescinded")
    assert terminated.payload["subject"] == rescinded.payload["subject"] == "W-17"
    assert terminated.payload["data"] == {
        "worker_id": "W-17",
        "termination_date": "2026-06-30",
        "workflow_id": wf,
        "message": "left",
        "details": {"n": 1},
    }
    assert terminated.key == rescinded.key == "W-17:2026-06-30"
    assert len(events(store, "notification")) == 3  # the notifications themselves, once


# --------------------------------------------------------------------------- invoices


class _Erp:
    def __init__(self) -> None:
        self.invoices: dict[str, Invoice] = {}
        self.voided: list[str] = []

    async def create_invoice(self, invoice: Invoice) -> str:
        for erp_id, existing in self.invoices.items():
            if existing.idempotency_key == invoice.idempotency_key:
                return erp_id
        erp_id = f"INV-{len(self.invoices) + 1}"
        self.invoices[erp_id] = invoice
        return erp_id

    async def void_invoice(self, erp_id: str, *, reason: str) -> None:
        self.voided.append(erp_id)


class _PsaBilling:
    async def unmark_invoiced(self, *, invoice_ref: str) -> None:
        return None


class _Billing(_BillingMixin):
    def __init__(self, store: Store) -> None:
        self.store = store
        self.erp = _Erp()  # type: ignore[assignment]
        self.psa = _PsaBilling()  # type: ignore[assignment]


def _plan(key: str = "inv-4100-ms-M2") -> InvoicePlan:
    request = BillingRequest(trigger=BillingTrigger.MILESTONE, milestone_id="77")
    return InvoicePlan(
        psa_project_id="4100",
        request=request,
        invoice=Invoice(
            source_system=System.PSSYNC,
            idempotency_key=key,
            project_id=f"eid:{EID}",
            customer_id="001A",
            milestone_code="M2",
            invoice_date=NOW.date(),
            lines=[
                InvoiceLine(
                    description="Milestone M2", quantity=Decimal(1), amount=Money(12000, "USD")
                )
            ],
        ),
        milestone_codes=["M2"],
    )


async def test_an_invoice_is_created_and_voided_once_each_with_its_milestone_time(
    store: Store,
) -> None:
    completed = "2026-06-09T08:30:00+00:00"
    body = {"type": "billing_milestone.completed", "timestamp": completed}
    body["data"] = {"workspace_id": "4100", "billing_milestone_id": "77"}  # type: ignore[assignment]
    other = {"type": "billing_milestone.completed", "timestamp": "2026-01-01T00:00:00+00:00"}
    other["data"] = {"workspace_id": "4100", "billing_milestone_id": "770"}  # type: ignore[assignment]
    for n, envelope in enumerate((body, other)):
        store.inbox_accept(
            "psa",
            f"evt-{n}",
            f"h{n}",
            event_type="billing_milestone.completed",
            body=json.dumps(envelope),
        )
    billing = _Billing(store)
    plan = _plan()
    erp_id = await billing.create_invoice(plan)
    assert await billing.create_invoice(plan) == erp_id  # retried: the same ERP invoice
    [created] = events(store, "invoice.created")
    assert created.payload["subject"] == EID
    data = created.payload["data"]
    assert data["erp_invoice_id"] == erp_id and data["invoice_ref"] == "inv-4100-ms-M2"
    assert Decimal(data["total"]) == 12000 and data["currency"] == "USD"
    assert data["milestone_completed_at"].startswith("2026-06-09T08:30:00")
    row = store.invoice("inv-4100-ms-M2")
    assert row is not None and row.milestone_completed_at == datetime.fromisoformat(completed)

    void = VoidInvoice(plan=plan, invoice_erp_id=erp_id, reason="PSA refused")
    await billing.void_invoice(void)
    await billing.void_invoice(void)
    [voided] = events(store, "invoice.voided")
    assert voided.payload["subject"] == EID and voided.payload["data"]["reason"] == "PSA refused"
    row = store.invoice("inv-4100-ms-M2")
    assert row is not None and row.voided_at is not None
    assert InvoiceRef(plan=plan, invoice_erp_id=erp_id)  # the mark step's input is unchanged


# --------------------------------------------------------------------------- SLA alerts


def _breaches(store: Store) -> None:
    """Two time entries unposted for 2 h and 1 h (SLA 15 min), one exception item open 6 h
    (SLA 4 h), May's billable time of P1 not invoiced 9 days after it closed (SLA 1 day)."""
    tp: Table = TimePostingRow.__table__  # type: ignore[attr-defined]
    it: Table = ExceptionItemRow.__table__  # type: ignore[attr-defined]

    def posting(key: str, state: str, at: datetime, **kw: Any) -> dict[str, Any]:
        return {
            "entry_key": key, "kind": "time", "entry_id": key.split(":")[1],
            "psa_project_id": "P1", "entry_version": "1", "state": state, "hours": Decimal(2),
            "billable": True, "period": "2026-06", "bill_amount": None, "invoice_ref": None,
            "updated_at": at,
        } | kw  # fmt: skip

    with store._writer.begin() as conn:
        conn.execute(
            insert(tp),
            [
                posting("time:1", "posting", NOW - timedelta(hours=2)),
                posting("time:2", "exception", NOW - timedelta(hours=1)),
                posting("time:3", "posting", NOW - timedelta(minutes=5)),
                posting(
                    "time:4",
                    "posted",
                    NOW - timedelta(days=9),
                    period="2026-05",
                    bill_amount=Decimal(300),
                ),
            ],
        )
        conn.execute(
            insert(it),
            [
                {
                    "id": "tti.P1.e1",
                    "workflow_id": "tti-P1",
                    "process": "time_to_invoice",
                    "cause_code": "missing_cost_center",
                    "detail": "-",
                    "owner": "finance",
                    "context": {"enterprise_id": EID},
                    "status": "open",
                    "created_at": NOW - timedelta(hours=6),
                }
            ],
        )


async def test_each_sla_breach_raises_one_alert_with_what_to_act_on(store: Store) -> None:
    _breaches(store)
    watch = SlaWatch(store, IndicatorThresholds(), clock=lambda: NOW)
    assert await watch.check() == 3
    assert await watch.check() == 3  # the next minute: the same breaches, no new alerts
    alerts = {r.payload["data"]["alert"]: r.payload for r in events(store, "alert.raised")}
    assert sorted(alerts) == ["sla.exception_resolution", "sla.invoice", "sla.posting"]
    posting = alerts["sla.posting"]["data"]
    assert posting["process"] == "time_to_invoice"
    assert posting["context"]["breached"] == 2 and posting["context"]["oldest_entry_id"] == "1"
    assert posting["context"]["age_s"] == 2 * 3600
    assert "2 approved time entries (4 h)" in posting["summary"]
    item = alerts["sla.exception_resolution"]
    assert item["subject"] == EID
    assert item["data"]["item_id"] == "tti.P1.e1" and item["data"]["owner"] == "finance"
    assert item["data"]["workflow_id"] == "tti-P1"
    invoice = alerts["sla.invoice"]["data"]["context"]
    assert (invoice["psa_project_id"], invoice["period"]) == ("P1", "2026-05")
    assert len(events(store, "alert.raised")) == 3


async def test_the_alerts_webhook_receives_signed_alerts_only(store: Store) -> None:
    _breaches(store)
    store.add_outbox("time.posted", "t1", outbox_payload("EP-1", {"entry_key": "time:9"}))
    await SlaWatch(store, IndicatorThresholds(), clock=lambda: NOW).check()
    verifier = Webhook(SECRET)
    received: list[dict[str, Any]] = []
    refuse = [True]

    def receive(request: httpx.Request) -> httpx.Response:
        received.append(verifier.verify(request.content, dict(request.headers)))
        if refuse[0]:
            refuse[0] = False
            return httpx.Response(503)
        return httpx.Response(204)

    published: list[str] = []

    class Main:
        async def publish(self, batch: Any) -> int:
            published.extend(e.id for e in batch)
            return len(batch)

        async def close(self) -> None:
            return None

    client = httpx.AsyncClient(transport=httpx.MockTransport(receive))
    relay = EventsRelay(
        store, AlertsSink(Main(), WebhookSink("http://alerts/", SECRET, client=client))
    )
    try:
        await relay.run_once()  # the first alert is refused: the batch stops there
    except Exception:
        pass
    assert len(events(store)) == 3
    assert await relay.run_once() == 3
    await client.aclose()
    assert events(store) == []
    delivered = [e for e in received[1:]]
    assert [e["type"] for e in delivered] == ["com.pssync.alert.raised"] * 3
    assert {e["data"]["alert"] for e in delivered} == {
        "sla.posting",
        "sla.exception_resolution",
        "sla.invoice",
    }
    assert received[0]["id"] == delivered[0]["id"]  # the refused one, delivered again
    assert len(set(published)) == 4  # the main sink got every event, alerts and the posting


# --------------------------------------------------------------------------- the relay command


async def test_the_relay_process_runs_until_stopped(tmp_path: Path, store: Store) -> None:
    _breaches(store)
    settings = Settings(
        home=tmp_path,
        events={"sink": "none", "sla_check_interval_s": 0.05, "interval_s": 0.05},  # type: ignore[arg-type]
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve_relay(settings, stop, store=store))
    for _ in range(500):  # until the SLA watch ran (10 s at most)
        if events(store, "alert.raised"):
            break
        await asyncio.sleep(0.02)
    assert not task.done()
    stop.set()
    async with asyncio.timeout(5):
        await task  # returns, no exception
    assert len(events(store, "alert.raised")) >= 2


def test_pssync_events_relay_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = os.environ | {
        "PYTHONUNBUFFERED": "1",
        "PSSYNC_HOME": str(tmp_path),
        "PSSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}",
        "PSSYNC_EVENTS__SINK": "none",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", "import starter; starter.main()", "events", "relay"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        started = proc.stdout.readline().decode()  # printed once the loop runs
        assert "relaying events" in started, started
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "events relay stopped" in out
