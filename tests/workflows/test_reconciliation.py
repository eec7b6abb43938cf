"""Reconciliation of labor actuals on the time-skipping server, over the in-memory fakes and a
real SQLite store, wired exactly as `worker.build_workers` does.

Time is posted by the real time pipeline, then the systems drift the way real life makes them
drift — a webhook never sent, a posting deleted or edited by hand in the ERP, an entry
unapproved or edited in the PSA behind pssync's back, a second posting, a posting outside
pssync, time in a closed period — and a `Reconciliation` run finds each, repairs the safe ones
through the pipeline and hands the rest to people on the tenant's `ReconciliationDesk`.
Asserted on the systems: after the repairs the ERP's live postings equal the PSA's approved
time; a second pass finds nothing new and verifies the repairs; a person's `skip` and `retry`
(through the gateway) settle the rest, and the third pass agrees.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
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
from contracts.v1 import BillingRule, CostPosting, Customer, PostingKind, TimeEntry
from contracts.v1 import Worker as HcmWorker
from contracts.v1.reconciliation import (
    DESK_STATUS_QUERY,
    DeskStatus,
    ReconciliationReport,
    reconciliation_desk_workflow_id,
    reconciliation_input,
)
from contracts.v1.time_to_invoice import (
    ENTRIES_CHANGED_SIGNAL,
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

W1, W2 = "W-00001", "W-00002"
OPS = {"Authorization": "Bearer dev-ops-token"}


@pytest.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_temporal() as env:
        yield env


@dataclass
class World:
    client: Client
    queue: str
    settings: Settings
    psa: FakePsa
    erp: FakeErp
    store: store.Store
    project: str
    erp_project: str
    today: date
    gateway: httpx.AsyncClient

    async def post(self, entries: list[TimeEntry]) -> None:
        """Announce entries to the project's pipeline (the webhooks) and wait until posted."""
        refs = [
            EntryRef(kind=EntryKind.TIME, entry_id=e.external_id, version=e.source_version)
            for e in entries
        ]
        await signal_pipeline(
            self.client,
            pipeline_input(self.settings, self.project),
            self.project,
            ENTRIES_CHANGED_SIGNAL,
            EntriesChanged(refs=refs),
            task_queue=self.queue,
        )
        await eventually(lambda: self.agrees(), "the pipeline did not post the entries")

    async def reconcile(self, **changes: Any) -> ReconciliationReport:
        request = reconciliation_input(self.settings, "labor_actuals", requested_by="test")
        request = request.model_copy(update={"settle_s": 0.0, **changes})
        handle = await start_reconciliation(self.client, request, task_queue=self.queue)
        return await handle.result()

    def live(self) -> dict[str, list[CostPosting]]:
        """PSA entry -> its live ERP postings (net of reversals)."""
        postings = [p for _, p in self.erp.postings.values() if p.project_id == self.erp_project]
        reversed_keys = {p.reverses for p in postings if p.reverses}
        live: dict[str, list[CostPosting]] = defaultdict(list)
        for p in postings:
            if p.kind is not PostingKind.REVERSAL and p.idempotency_key not in reversed_keys:
                live[p.source_entry_id].append(p)
        return live

    def agrees(self, *, except_: set[str] = frozenset()) -> bool:  # type: ignore[assignment]
        """Every approved entry has exactly one live posting of its version and hours, and
        nothing else is live (entries in `except_` aside)."""
        approved = {
            e.external_id: e
            for e in self.psa.time_entries.values()
            if e.approved and e.project_id == self.project and e.external_id not in except_
        }
        live = {k: v for k, v in self.live().items() if k not in except_}
        return set(live) == set(approved) and all(
            len(live[k]) == 1
            and live[k][0].idempotency_key.endswith(f"-v{e.source_version}")
            and live[k][0].hours == e.hours.quantize(Decimal("0.000001"))
            for k, e in approved.items()
        )

    def items(self) -> dict[str, Any]:
        """cause (drift kind) -> the open reconciliation item."""
        return {
            i.cause_code: i
            for i in self.store.list_exceptions(process="reconciliation")
            if i.status != "resolved"
        }

    async def desk(self) -> DeskStatus:
        handle = self.client.get_workflow_handle(
            reconciliation_desk_workflow_id(self.settings.psa.tenant)
        )
        return await handle.query(DESK_STATUS_QUERY, result_type=DeskStatus)

    async def resolve(self, item_id: str, action: str) -> httpx.Response:
        return await self.gateway.post(
            f"/api/exceptions/{item_id}/resolution",
            json={"action": action, "note": "looked at it"},
            headers=OPS,
            timeout=60,
        )


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def world_of(env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[World]:
    today = (await env.get_current_time()).astimezone(UTC).date()
    months = sorted({f"{(today + timedelta(days=d)):%Y-%m}" for d in range(-200, 60)})
    erp = FakeErp(
        cost_centers=["CC-100"],
        open_periods=months,
        cost_rates={W1: Money("80.00", "USD"), W2: Money("90.00", "USD")},
    )
    psa = FakePsa()
    psa.add_rate_card(
        rate_card(
            rate("Consultant", Money("150.00", "USD"), today - timedelta(days=400)),
            external_id="RC-STD",
            name="Standard",
        )
    )
    customer = await erp.upsert_customer(
        Customer(external_id="ACC-1", name="Acme", source_system=System.CRM),
        enterprise_id="01JCUSTOMER0000000000000000",
    )
    eid = "01JP0000000000000000000777"
    project = make_project().model_copy(
        update={
            "name": "Reconciled",
            "billing_rule": BillingRule.TIME_AND_MATERIALS,
            "start_date": today - timedelta(days=200),
            "end_date": today + timedelta(days=365),
        }
    )
    pid = await psa.create_project_shell(project, enterprise_id=eid)
    erp_id = await erp.upsert_project(
        project, enterprise_id=eid, customer_erp_id=customer, budget=project.contract_value
    )
    hcm_workers = []
    for w in (W1, W2):
        psa.add_user(w, w, role="Consultant", start_date=today - timedelta(days=400))
        hcm_workers.append(
            HcmWorker(
                external_id=w,
                name=w,
                hire_date=today - timedelta(days=400),
                cost_center="CC-100",
                source_system=System.HCM,
            )
        )
    with sqlite_store(tmp_path) as (url, st):
        settings = load_settings(home=tmp_path, database_url=url)
        settings.psa.tenant = f"t-{uuid.uuid4().hex[:8]}"
        settings.time_linger_ms = 20
        deployment = fake_deployment(
            settings=settings, store=st, psa=psa, erp=erp, hcm=FakeHcm(hcm_workers)
        )
        queue = f"recon-{uuid.uuid4().hex[:8]}"
        app = create_app(settings, st, env.client, task_queue=queue)
        async with (
            running_workers(env.client, deployment, queue),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw,
        ):
            world = World(env.client, queue, settings, psa, erp, st, pid, erp_id, today, gw)
            try:
                yield world
            finally:
                for wid in (
                    f"time-to-invoice/{settings.psa.tenant}/{pid}",
                    reconciliation_desk_workflow_id(settings.psa.tenant),
                ):
                    with contextlib.suppress(Exception):
                        await env.client.get_workflow_handle(wid).terminate()


def _entries(world: World, n: int, *, first_day: int = 1) -> list[TimeEntry]:
    return [
        world.psa.add_time_entry(
            world.project,
            W1 if i % 2 else W2,
            world.today - timedelta(days=first_day + i),
            60 + 15 * i,
            approved=True,
        )
        for i in range(n)
    ]


def _edit(world: World, entry: TimeEntry, minutes: int) -> None:
    """In the PSA, behind pssync's back: unapprove, change the duration, approve again (no
    webhook reaches pssync)."""
    world.psa.approve_time_entry(entry.external_id, approved=False)
    current = world.psa.time_entries[entry.external_id]
    world.psa.time_entries[entry.external_id] = current.model_copy(
        update={"minutes": minutes, "source_version": str(int(current.source_version or 1) + 1)}
    )
    world.psa.approve_time_entry(entry.external_id)


async def test_labor_drift_is_found_repaired_or_escalated_and_a_second_pass_agrees(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with world_of(ts_env, tmp_path) as world:
        deleted, unapproved, edited, hand_edited, doubled = _entries(world, 5)
        await world.post([deleted, unapproved, edited, hand_edited, doubled])
        erp, psa = world.erp, world.psa

        # The drift real life makes, none of it announced to pssync:
        _entries(world, 1, first_day=20)  # approved; its webhook was never sent
        old_month = world.today.replace(day=1) - timedelta(days=95)
        closed_period = f"{old_month:%Y-%m}"
        erp.set_period(closed_period, is_open=False)
        late = psa.add_time_entry(world.project, W1, old_month, 45, approved=True)
        del erp.postings[f"psa-time-{deleted.external_id}-v{deleted.source_version}"]
        psa.approve_time_entry(unapproved.external_id, approved=False)
        _edit(world, edited, 300)
        key = f"psa-time-{hand_edited.external_id}-v{hand_edited.source_version}"
        erp_id, posting = erp.postings[key]
        erp.postings[key] = (erp_id, posting.model_copy(update={"hours": Decimal("0.5")}))
        key = f"psa-time-{doubled.external_id}-v{doubled.source_version}"
        twin = erp.postings[key][1].model_copy(
            update={"idempotency_key": f"psa-time-{doubled.external_id}-v0"}
        )
        erp.postings[twin.idempotency_key] = ("9001", twin)
        manual = posting.model_copy(
            update={"idempotency_key": "timebill-9002", "source_entry_id": "9002",
                    "hours": Decimal("2"), "worker_id": W2},
        )  # fmt: skip
        erp.postings[manual.idempotency_key] = ("9002", manual)

        dry = await world.reconcile(dry_run=True)
        assert dry.found == 8 and dry.repaired == dry.escalated == 0 and dry.unrepaired == 8
        assert not world.items()

        first = await world.reconcile()
        assert first.by_kind == {
            "amount_mismatch": 1,
            "duplicate_posting": 1,
            "missing_in_erp": 3,
            "period_total_mismatch": 1,
            "posted_not_approved": 1,
            "stale_version": 1,
        }, first
        assert (first.found, first.repaired, first.escalated) == (8, 4, 4)
        assert first.records > 0 and first.projects == 1

        # Repaired through the pipeline: the ERP agrees again about these four entries.
        settled = {hand_edited.external_id, doubled.external_id, late.external_id, "9002"}
        await eventually(lambda: world.agrees(except_=settled), "the repairs did not land")
        assert len(world.live()[deleted.external_id]) == 1
        assert unapproved.external_id not in world.live()
        # Escalated: one item each, with the evidence, on the tenant's desk.
        await eventually(lambda: len(world.items()) == 4, "the desk did not open four items")
        items = world.items()
        assert set(items) == {
            "amount_mismatch", "duplicate_posting", "missing_in_erp", "period_total_mismatch",
        }  # fmt: skip
        amount = items["amount_mismatch"]
        assert amount.context["values"]["erp"] == "0.500000"
        assert amount.context["psa_project_id"] == world.project
        assert "closed" in items["missing_in_erp"].detail
        assert len((await world.desk()).open) == 4

        # The second pass: nothing new, the repairs verified, the escalations not repeated.
        second = await world.reconcile()
        assert (second.new, second.repaired, second.escalated) == (0, 0, 0), second
        assert (second.found, second.kept, second.gone) == (4, 4, 4)
        assert second.unrepaired == 4
        assert len(world.store.list_exceptions(process="reconciliation")) == 4

        # People decide: the hand edit and the manual posting stand (acknowledged); the
        # duplicate is reversed; the late entry is posted once its period is reopened.
        assert (await world.resolve(items["amount_mismatch"].id, "skip")).status_code == 200
        assert (await world.resolve(items["period_total_mismatch"].id, "skip")).status_code == 200
        response = await world.resolve(items["duplicate_posting"].id, "retry")
        assert response.status_code == 200, response.text
        assert response.json()["result"]["outcome"] == "repaired"
        refused = await world.resolve(items["missing_in_erp"].id, "abandon")
        assert refused.status_code == 422, refused.text
        erp.set_period(closed_period, is_open=True)
        assert (await world.resolve(items["missing_in_erp"].id, "retry")).status_code == 200
        await eventually(
            lambda: world.agrees(except_={hand_edited.external_id, "9002"}),
            "the forced repairs did not land",
        )

        third = await world.reconcile()
        assert (third.new, third.repaired, third.escalated, third.unrepaired) == (0, 0, 0, 0)
        assert third.gone == 2 and third.kept == 2, third  # acknowledged, and not raised again
        assert not world.items()

        # The API serves the runs and their drifts.
        runs = (await world.gateway.get("/api/reconciliations", headers=OPS)).json()["runs"]
        assert [r["run_id"] for r in runs[:3]] == [third.run_id, second.run_id, first.run_id]
        page = await world.gateway.get(
            f"/api/reconciliations/{first.run_id}", params={"limit": 3}, headers=OPS
        )
        body = page.json()
        assert body["run"]["found"] == 8 and body["total"] > 3 and body["next_offset"] == 3
        metrics = (await world.gateway.get("/metrics", headers=OPS)).text
        assert 'pssync_reconciliation_drift_open{domain="labor_actuals"' not in metrics
        assert 'pssync_reconciliation_last_success_timestamp_seconds{domain="labor_actuals"}' in (
            metrics
        )


async def test_a_large_scope_continues_as_new_and_resumes_its_walk(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with world_of(ts_env, tmp_path) as world:
        first = _entries(world, 2)
        await world.post(first)
        world.psa.approve_time_entry(first[0].external_id, approved=False)  # unannounced
        request = reconciliation_input(world.settings, "labor_actuals", requested_by="test")
        # One project per chunk and one chunk per run: every chunk is a new run of the id.
        request = request.model_copy(update={"settle_s": 0.0, "page_size": 1, "chunks_per_run": 1})
        # Two more projects pssync knows (linked in the xref), with nothing posted yet.
        for n in (1, 2):
            world.store.link_xref(f"01JP000000000000000000077{n}", "project", "PSA",
                                  world.settings.psa.tenant, "workspace", f"zz{n}")  # fmt: skip
        handle = await start_reconciliation(world.client, request, task_queue=world.queue)
        report = await handle.result()
        assert report.projects == 3 and report.found == 1 and report.repaired == 1
        description = await handle.describe()
        assert description.run_id != handle.first_execution_run_id  # it continued as new
        row = world.store.get_reconciliation_run(report.run_id)
        assert row is not None and row.state == "finished" and row.projects == 3
        await eventually(lambda: world.agrees(), "the reversal did not land")


async def test_the_api_starts_runs_for_operators_only_and_for_implemented_domains(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with world_of(ts_env, tmp_path) as world:
        gw = world.gateway
        finance = {"Authorization": "Bearer dev-finance-token"}
        refused = await gw.post("/api/reconciliations", json={}, headers=finance)
        assert refused.status_code == 403, refused.text
        unknown = await gw.post("/api/reconciliations", json={"domain": "payroll"}, headers=OPS)
        assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "domain"
        bad = await gw.post("/api/reconciliations", json={"project": "../x"}, headers=OPS)
        assert bad.status_code == 422
        started = await gw.post(
            "/api/reconciliations", json={"dry_run": True, "project": world.project}, headers=OPS
        )
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        assert run_id.startswith(f"reconcile/labor_actuals/{world.settings.psa.tenant}/")
        handle = world.client.get_workflow_handle(run_id, result_type=ReconciliationReport)
        report = await handle.result()
        assert (
            report.dry_run
            and report.project == world.project
            and report.requested_by == ("api:ops")
        )
        # A finance reader sees it; nobody sees a run that does not exist.
        seen = await gw.get(f"/api/reconciliations/{run_id}", headers=finance)
        assert seen.status_code == 200 and seen.json()["run"]["dry_run"] is True
        missing = await gw.get("/api/reconciliations/reconcile/nope", headers=OPS)
        assert missing.status_code == 404
        trail = await gw.get("/api/audit", params={"action": "reconciliation.dry_run"},
                             headers=OPS)  # fmt: skip
        assert trail.status_code == 200 and len(trail.json()["items"]) == 1, trail.text
