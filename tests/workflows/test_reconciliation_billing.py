"""Reconciliation of billing status on the time-skipping server, over the in-memory fakes and a
real SQLite store, wired exactly as `worker.build_workers` does.

A fixed-fee project bills its milestones and a T&M project its closed periods through the real
time pipeline; then billing drifts the way real life makes it drift — a milestone completed
without its webhook, an invoice voided by hand in the ERP, the PSA's invoiced flags lost, an
invoice's amount edited, a second invoice for one milestone, an invoice whose milestone does
not exist, an entry marked invoiced in the PSA outside pssync — and a `Reconciliation` run
finds each, bills and re-marks through the existing processes, and hands the rest to people
on the tenant's desk. Asserted on the systems: after the repairs the milestone has its one
invoice and the PSA shows the invoiced entries; a second pass finds nothing new and verifies
the repairs; a person's `skip` settles an item for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

import store
from activities.reconciliation import start_reconciliation
from activities.time_to_invoice import signal_pipeline
from connectors.erp import FakeErp
from connectors.hcm import FakeHcm
from connectors.psa import FakePsa
from contracts import Money, System
from contracts.settings import Settings, load_settings
from contracts.v1 import BillingRule, Customer, Invoice, InvoiceLine, InvoiceStatus, Milestone
from contracts.v1 import Worker as HcmWorker
from contracts.v1.reconciliation import (
    ReconciliationReport,
    reconciliation_desk_workflow_id,
    reconciliation_input,
)
from contracts.v1.time_to_invoice import (
    BILLING_SIGNAL,
    ENTRIES_CHANGED_SIGNAL,
    BillingRequest,
    BillingTrigger,
    EntriesChanged,
    EntryKind,
    EntryRef,
    pipeline_input,
)
from gateway import create_app
from sandbox.temporal import time_skipping_temporal
from tests._builders import rate, rate_card
from tests.connectors._psa_fixtures import make_project
from tests.workflows._worlds import fake_deployment, running_workers, sqlite_store

W1 = "W-00001"
OPS = {"Authorization": "Bearer dev-ops-token"}


@pytest.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_temporal() as env:
        yield env


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.05)


@dataclass
class World:
    client: Client
    queue: str
    settings: Settings
    psa: FakePsa
    erp: FakeErp
    store: store.Store
    fixed: str
    """The fixed-fee project (billed by milestone)."""
    tm: str
    """The time-and-materials project (billed by closed period)."""
    gateway: httpx.AsyncClient

    async def signal(self, project: str, name: str, arg: Any) -> None:
        await signal_pipeline(
            self.client,
            pipeline_input(self.settings, project),
            project,
            name,
            arg,
            task_queue=self.queue,
        )

    def invoices(self, project: str, *, live: bool = True) -> dict[str, Invoice]:
        erp_id = self.erp._job(f"eid:{self.eid(project)}").erp_id
        return {
            i.idempotency_key: i
            for i in self.erp.invoices.values()
            if i.project_id == erp_id and (i.status is not InvoiceStatus.VOID or not live)
        }

    def eid(self, project: str) -> str:
        return self.psa.projects[project].enterprise_id or ""

    async def bill_milestone(self, code: str) -> Invoice:
        done = await self.psa.complete_milestone(self.fixed, code)
        request = BillingRequest(trigger=BillingTrigger.MILESTONE, milestone_id=done.external_id)
        await self.signal(self.fixed, BILLING_SIGNAL, request)
        await eventually(
            lambda: any(i.milestone_code == code for i in self.invoices(self.fixed).values()),
            f"milestone {code} was not invoiced",
        )
        return next(i for i in self.invoices(self.fixed).values() if i.milestone_code == code)

    async def reconcile(self, **changes: Any) -> ReconciliationReport:
        request = reconciliation_input(self.settings, "billing_status", requested_by="test")
        request = request.model_copy(update={"settle_s": 0.0, **changes})
        handle = await start_reconciliation(self.client, request, task_queue=self.queue)
        return await handle.result()

    def items(self) -> dict[str, Any]:
        """cause (drift kind) -> the open reconciliation items of that kind."""
        found: dict[str, Any] = {}
        for i in self.store.list_exceptions(process="reconciliation"):
            if i.status != "resolved":
                found.setdefault(i.cause_code, []).append(i)
        return found


@contextlib.asynccontextmanager
async def world_of(env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[World]:
    today = (await env.get_current_time()).astimezone(UTC).date()
    months = sorted({f"{(today + timedelta(days=d)):%Y-%m}" for d in range(-200, 60)})
    erp = FakeErp(
        cost_centers=["CC-100"], open_periods=months, cost_rates={W1: Money("80.00", "USD")}
    )
    psa = FakePsa()
    psa.add_rate_card(
        rate_card(
            rate("Consultant", Money("150.00", "USD"), today - timedelta(days=400)),
            external_id="RC-STD",
            name="Standard",
        )
    )
    psa.add_user(W1, W1, role="Consultant", start_date=today - timedelta(days=400))
    customer = await erp.upsert_customer(
        Customer(external_id="ACC-1", name="Acme", source_system=System.CRM),
        enterprise_id="01JCUSTOMER0000000000000000",
    )
    base = make_project().model_copy(
        update={
            "start_date": today - timedelta(days=200),
            "end_date": today + timedelta(days=365),
        }
    )
    fixed = base.model_copy(
        update={
            "name": "Fixed fee",
            "milestones": [
                *base.milestones,
                Milestone(code="M3", name="Hand-over", amount=Money("7500.00", "USD")),
            ],
        }
    )
    tm = base.model_copy(
        update={
            "name": "Time and materials",
            "billing_rule": BillingRule.TIME_AND_MATERIALS,
            "milestones": [],
        }
    )
    ids = {}
    for name, project, eid in (
        ("fixed", fixed, "01JP0000000000000000000881"),
        ("tm", tm, "01JP0000000000000000000882"),
    ):
        ids[name] = await psa.create_project_shell(project, enterprise_id=eid)
        await erp.upsert_project(
            project, enterprise_id=eid, customer_erp_id=customer, budget=project.contract_value
        )
    worker = HcmWorker(
        external_id=W1,
        name=W1,
        hire_date=today - timedelta(days=400),
        cost_center="CC-100",
        source_system=System.HCM,
    )
    with sqlite_store(tmp_path) as (url, st):
        settings = load_settings(home=tmp_path, database_url=url)
        settings.psa.tenant = f"t-{uuid.uuid4().hex[:8]}"
        settings.time_linger_ms = 20
        for name, eid in (("fixed", "01JP0000000000000000000881"),
                          ("tm", "01JP0000000000000000000882")):  # fmt: skip
            st.link_xref(eid, "project", "PSA", settings.psa.tenant, "workspace", ids[name])
        deployment = fake_deployment(
            settings=settings, store=st, psa=psa, erp=erp, hcm=FakeHcm([worker])
        )
        queue = f"recon-b-{uuid.uuid4().hex[:8]}"
        app = create_app(settings, st, env.client, task_queue=queue)
        async with (
            running_workers(env.client, deployment, queue),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw,
        ):
            world = World(env.client, queue, settings, psa, erp, st, ids["fixed"], ids["tm"], gw)
            try:
                yield world
            finally:
                for wid in (
                    f"time-to-invoice/{settings.psa.tenant}/{ids['fixed']}",
                    f"time-to-invoice/{settings.psa.tenant}/{ids['tm']}",
                    reconciliation_desk_workflow_id(settings.psa.tenant),
                ):
                    with contextlib.suppress(Exception):
                        await env.client.get_workflow_handle(wid).terminate()


async def bill_periods(world: World, today: date) -> tuple[str, str]:
    """Approved time in the last two closed months, posted and billed by the pipeline."""
    first = today.replace(day=1)
    p2 = first - timedelta(days=1)
    p1 = p2.replace(day=1) - timedelta(days=1)
    entries = [
        world.psa.add_time_entry(world.tm, W1, day.replace(day=10 + i), 60 * (i + 1),
                                 approved=True)
        for day in (p1, p2)
        for i in range(2)
    ]  # fmt: skip
    refs = [EntryRef(kind=EntryKind.TIME, entry_id=e.external_id, version=e.source_version)
            for e in entries]  # fmt: skip
    await world.signal(world.tm, ENTRIES_CHANGED_SIGNAL, EntriesChanged(refs=refs))
    await eventually(
        lambda: len([r for r in world.store.ledger_rows(world.tm) if r.state == "posted"]) == 4,
        "the pipeline did not post the entries",
    )
    periods = (f"{p1:%Y-%m}", f"{p2:%Y-%m}")
    for period in periods:
        request = BillingRequest(trigger=BillingTrigger.PERIOD_CLOSE, period=period)
        await world.signal(world.tm, BILLING_SIGNAL, request)
    await eventually(
        lambda: (
            len(world.invoices(world.tm)) == 2
            and all(e.invoiced for e in world.psa.time_entries.values())
        ),
        "the periods were not invoiced",
    )
    return periods


async def test_billing_drift_is_found_repaired_or_escalated_and_a_second_pass_agrees(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with world_of(ts_env, tmp_path) as world:
        today = (await ts_env.get_current_time()).astimezone(UTC).date()
        psa, erp = world.psa, world.erp
        m1 = await world.bill_milestone("M1")
        m3 = await world.bill_milestone("M3")
        p1, p2 = await bill_periods(world, today)
        assert (await world.reconcile()).found == 0  # the systems agree

        # The drift real life makes, none of it announced to pssync:
        await psa.complete_milestone(world.fixed, "M2")  # its webhook was never sent
        await erp.void_invoice(m1.external_id or "", reason="voided by hand")
        await psa.unmark_invoiced(invoice_ref=f"inv-{world.tm}-period-{p1}")  # flags lost
        key2 = f"inv-{world.tm}-period-{p2}"
        (p2_id,) = [i for i, v in erp.invoices.items() if v.idempotency_key == key2]
        edited = [InvoiceLine(description="edited", quantity=Decimal(1),
                              amount=Money("1.00", "USD"))]  # fmt: skip
        erp.invoices[p2_id] = erp.invoices[p2_id].model_copy(update={"lines": edited})
        await erp.create_invoice(
            m3.model_copy(update={"idempotency_key": f"{m3.idempotency_key}-a1"})
        )
        await erp.create_invoice(
            m3.model_copy(update={"idempotency_key": f"inv-{world.fixed}-ms-999",
                                  "milestone_code": "M9"})
        )  # fmt: skip
        outside = psa.add_time_entry(world.tm, W1, today.replace(day=1) - timedelta(days=3),
                                     30, approved=True)  # fmt: skip
        psa.time_entries[outside.external_id] = outside.model_copy(update={"invoiced": True})

        dry = await world.reconcile(dry_run=True)
        assert (dry.found, dry.repaired, dry.escalated, dry.unrepaired) == (7, 0, 0, 7), dry
        assert "M2" not in {i.milestone_code for i in world.invoices(world.fixed).values()}

        first = await world.reconcile()
        assert first.by_kind == {
            "invoice_amount_mismatch": 1,
            "invoice_duplicate": 1,
            "invoice_missing": 1,
            "invoice_voided": 1,
            "invoice_without_source": 1,
            "invoiced_flag_mismatch": 2,
        }, first
        assert (first.found, first.repaired, first.escalated) == (7, 2, 5), first
        assert first.projects == 2 and first.vendor_calls > 0

        # Repaired through the pipeline: M2 has its one invoice, the PSA its flags back.
        await eventually(
            lambda: [i.total for i in world.invoices(world.fixed).values()
                     if i.milestone_code == "M2"] == [Money("100000.00", "USD")],
            "the pipeline did not bill M2",
        )  # fmt: skip
        assert all(
            e.invoiced
            for e in psa.time_entries.values()
            if e.project_id == world.tm and f"{e.date_performed:%Y-%m}" == p1
        )
        await eventually(lambda: len(world.items()) == 5, "the desk did not open five items")
        items = world.items()
        assert set(items) == {
            "invoice_amount_mismatch", "invoice_duplicate", "invoice_voided",
            "invoice_without_source", "invoiced_flag_mismatch",
        }  # fmt: skip
        (voided,) = items["invoice_voided"]
        assert voided.context["keys"]["milestone"] == "M1"
        assert voided.context["values"]["erp"] == "void"
        (amount,) = items["invoice_amount_mismatch"]
        assert amount.context["values"]["erp"] == "1.00"

        second = await world.reconcile()
        assert (second.new, second.repaired, second.escalated) == (0, 0, 0), second
        assert (second.found, second.kept, second.gone, second.unrepaired) == (5, 5, 2, 5)

        # A person accepts the edited amount: it is not raised again.
        response = await world.gateway.post(
            f"/api/exceptions/{amount.id}/resolution",
            json={"action": "skip", "note": "agreed discount"},
            headers=OPS,
            timeout=60,
        )
        assert response.status_code == 200, response.text
        third = await world.reconcile()
        assert (third.new, third.escalated, third.kept, third.unrepaired) == (0, 0, 5, 4), third
