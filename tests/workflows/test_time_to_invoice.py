"""Time to invoice on the time-skipping server, over the in-memory fakes and a real SQLite
store, wired exactly as `worker.build_workers` does. Resolutions go through the gateway's API.

What a user cares about is asserted on the systems: the ERP's postings per project and period
equal the PSA's approved time, nothing is posted twice, a posted record is never edited (only
reversed), each kind of bad entry is held for a person and posts exactly once after the fix,
and billing leaves one ERP invoice that the PSA knows about (or none, after compensation).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
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
from activities.time_to_invoice import signal_pipeline
from connectors.crm import FakeCrm
from connectors.erp import FakeErp
from connectors.hcm import FakeHcm
from connectors.psa import FakePsa
from contracts import Money, System
from contracts.errors import BusinessRuleViolation, TransientError
from contracts.naming import time_pipeline_workflow_id
from contracts.settings import Settings, load_settings
from contracts.v1 import (
    BillingRule,
    Customer,
    InvoiceStatus,
    PostingKind,
    ProjectStatus,
    RateCard,
    RateCardLine,
    TimeEntry,
)
from contracts.v1 import Worker as HcmWorker
from contracts.v1.time_to_invoice import (
    BILLING_SIGNAL,
    ENTRIES_CHANGED_SIGNAL,
    TIME_SWEEP,
    BillingRequest,
    BillingTrigger,
    EntriesChanged,
    EntryKind,
    EntryRef,
    PipelineStatus,
    SweepInput,
    SweepResult,
    pipeline_input,
)
from gateway import create_app
from sandbox.temporal import time_skipping_temporal
from tests._builders import rate, rate_card
from tests.connectors._psa_fixtures import make_project
from tests.workflows._worlds import (
    fake_deployment,
    running_workers,
    sqlite_store,
)

W1, W2, LEAVER = "W-00001", "W-00002", "W-00003"
OPS = {"Authorization": "Bearer dev-ops-token"}


@pytest.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_temporal() as env:
        yield env


@dataclass
class World:
    client: Client
    env: WorkflowEnvironment
    task_queue: str
    settings: Settings
    psa: FakePsa
    erp: FakeErp
    hcm: FakeHcm
    store: store.Store
    projects: dict[str, str]
    """name -> PSA project id"""
    erp_projects: dict[str, str]
    """PSA project id -> ERP internal id"""
    today: date
    gateway: httpx.AsyncClient

    def workflow_id(self, project: str) -> str:
        return time_pipeline_workflow_id(self.settings.psa.tenant, self.projects[project])

    async def signal(self, project: str, entries: list[TimeEntry], **overrides: Any) -> None:
        """Signal-with-start the project's pipeline with input `overrides` (used if it starts)."""
        await self._send(project, ENTRIES_CHANGED_SIGNAL, entries_changed(entries), overrides)

    async def bill(self, project: str, request: BillingRequest, **overrides: Any) -> None:
        await self._send(project, BILLING_SIGNAL, request, overrides)

    async def close_period(self, project: str, period: str, **overrides: Any) -> None:
        """Ask the pipeline to bill the period (as the sweep does once it has closed)."""
        request = BillingRequest(trigger=BillingTrigger.PERIOD_CLOSE, period=period)
        await self.bill(project, request, **overrides)

    async def _send(self, project: str, signal: str, arg: Any, overrides: dict[str, Any]) -> None:
        pid = self.projects[project]
        defaults = pipeline_input(self.settings, pid)
        await signal_pipeline(
            self.client,
            defaults.model_copy(update=overrides) if overrides else defaults,
            pid,
            signal,
            arg,
            task_queue=self.task_queue,
        )

    async def status(self, project: str) -> PipelineStatus:
        handle = self.client.get_workflow_handle(self.workflow_id(project))
        return await handle.query("status", result_type=PipelineStatus)

    async def settled(
        self, project: str, *, done: int, key: str = "", timeout_s: float = 30
    ) -> PipelineStatus:
        """Wait until nothing is pending or in flight and `done` entries have an outcome."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            status = await self.status(project)
            outcomes = sum(
                n
                for k, n in status.counters.items()
                if k not in ("events", "batches", "batches_failed", "invoices", "escalations")
            )
            if not status.pending and not status.in_flight and outcomes >= done:
                if not key or status.counters.get(key, 0) > 0:
                    return status
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"pipeline did not settle: {status}")
            await asyncio.sleep(0.05)

    async def item_opens(
        self, project: str, cause: str, *, timeout_s: float = 30, poll_s: float = 0.05
    ) -> Any:
        """Wait until an exception item for `cause` is open on the project; returns it."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while cause not in (items := _open_items(self, project)):
            assert asyncio.get_running_loop().time() < deadline, await self.status(project)
            await asyncio.sleep(poll_s)
        return items[cause]

    def postings(self, project: str) -> list[Any]:
        erp_id = self.erp_projects[self.projects[project]]
        return [p for _, p in self.erp.postings.values() if p.project_id == erp_id]

    def erp_by_period(self, project: str) -> dict[str, tuple[Decimal, Decimal]]:
        totals: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
        for p in self.postings(project):
            totals[p.period][0] += p.hours
            totals[p.period][1] += p.bill_amount.amount if p.bill_amount else Decimal(0)
        return {k: (v[0], v[1]) for k, v in totals.items()}

    def psa_by_period(self, project: str, rate: Decimal) -> dict[str, tuple[Decimal, Decimal]]:
        totals: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
        for e in self.psa.time_entries.values():
            if e.project_id == self.projects[project] and e.approved:
                period = f"{e.date_performed:%Y-%m}"
                totals[period][0] += e.hours
                totals[period][1] += (rate * e.hours).quantize(Decimal("0.01"))
        return {k: (v[0], v[1]) for k, v in totals.items()}


def entries_changed(entries: list[TimeEntry]) -> EntriesChanged:
    """The signal a PSA webhook (or the sweep) sends for these time entries."""
    return EntriesChanged(
        refs=[
            EntryRef(kind=EntryKind.TIME, entry_id=e.external_id, version=e.source_version)
            for e in entries
        ]
    )


def _card(today: date) -> RateCard:
    return rate_card(
        rate("Consultant", Money("150.00", "USD"), today - timedelta(days=365)),
        external_id="RC-STD",
        name="Standard",
    )


def _worker(worker_id: str, today: date) -> HcmWorker:
    return HcmWorker(
        external_id=worker_id,
        name=worker_id,
        hire_date=today - timedelta(days=400),
        cost_center="CC-100",
        source_system=System.HCM,
    )


@contextlib.asynccontextmanager
async def tti_world(env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[World]:
    today = (await env.get_current_time()).astimezone(UTC).date()
    months = sorted({f"{(today + timedelta(days=d)):%Y-%m}" for d in range(-120, 60)})
    erp = FakeErp(
        cost_centers=["CC-100", "CC-200", "CC-300"],
        open_periods=months,
        cost_rates={
            W1: Money("80.00", "USD"),
            W2: Money("90.00", "USD"),
            LEAVER: Money("70.00", "USD"),
        },
    )
    psa = FakePsa()
    psa.add_rate_card(_card(today))
    customer = await erp.upsert_customer(
        Customer(external_id="ACC-1", name="Acme", source_system=System.CRM),
        enterprise_id="01JCUSTOMER0000000000000000",
    )
    projects: dict[str, str] = {}
    erp_projects: dict[str, str] = {}
    for idx, (name, cost_center, rule) in enumerate(
        (
            ("tm", "CC-100", BillingRule.TIME_AND_MATERIALS),
            ("cc", "CC-300", BillingRule.TIME_AND_MATERIALS),
            ("closing", "CC-100", BillingRule.TIME_AND_MATERIALS),
            ("milestones", "CC-100", BillingRule.MILESTONE),
        )
    ):
        eid = f"01JP{idx:022d}"
        project = make_project().model_copy(
            update={
                "name": f"Project {name}",
                "billing_rule": rule,
                "cost_center": cost_center,
                "start_date": today - timedelta(days=120),
                "end_date": today + timedelta(days=365),
            }
        )
        pid = await psa.create_project_shell(project, enterprise_id=eid)
        erp_id = await erp.upsert_project(
            project, enterprise_id=eid, customer_erp_id=customer, budget=project.contract_value
        )
        projects[name], erp_projects[pid] = pid, erp_id
    for w in (W1, W2, LEAVER):
        psa.add_user(w, w, role="Consultant", start_date=today - timedelta(days=400))
    hcm = FakeHcm([_worker(w, today) for w in (W1, W2, LEAVER)])
    with sqlite_store(tmp_path) as (url, st):
        settings = load_settings(home=tmp_path, database_url=url)
        # Pipelines are per tenant and project; the fakes number projects alike in every test.
        settings.psa.tenant = f"t-{uuid.uuid4().hex[:8]}"
        deployment = fake_deployment(
            settings=settings, store=st, crm=FakeCrm(tenant="test"), psa=psa, erp=erp, hcm=hcm
        )
        queue = f"tti-{uuid.uuid4().hex[:8]}"
        app = create_app(settings, st, env.client, task_queue=queue)
        async with (
            running_workers(env.client, deployment, queue),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://gw"
            ) as gateway,
        ):
            world = World(
                env.client, env, queue, settings, psa, erp, hcm, st, projects, erp_projects, today,
                gateway,
            )  # fmt: skip
            try:
                yield world
            finally:
                # Runs idle for an hour before they complete: end them with their test.
                for name in projects:
                    with contextlib.suppress(Exception):
                        await env.client.get_workflow_handle(world.workflow_id(name)).terminate()


def _approved(world: World, project: str, n: int, *, minutes: int = 60) -> list[TimeEntry]:
    """`n` approved entries spread over two workers and the last 60 days (two periods); no two
    alike (same worker, day and duration would be flagged as a duplicate)."""
    out = []
    for i in range(n):
        on = world.today - timedelta(days=1 + i % 60)
        worker_id = W1 if i % 2 else W2
        out.append(
            world.psa.add_time_entry(
                world.projects[project], worker_id, on, minutes + 15 * (i // 60), approved=True
            )
        )
    return out


async def _posted(world: World, project: str, n: int, **overrides: Any) -> list[TimeEntry]:
    """`n` approved entries (see `_approved`), announced and settled."""
    entries = _approved(world, project, n)
    await world.signal(project, entries, **overrides)
    await world.settled(project, done=n)
    return entries


RATE = Decimal("150.00")


# --------------------------------------------------------------------------- posting


async def test_approved_time_posts_exactly_once_in_batches(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        entries = _approved(world, "tm", 450)
        # Every entry announced twice (a redelivered webhook, then the sweep), out of order.
        await world.signal("tm", entries[::-1])
        await world.signal("tm", entries)
        status = await world.settled("tm", done=450)

        postings = world.postings("tm")
        assert len(postings) == 450, (status, world.store.list_exceptions()[:2])
        assert len({p.source_entry_id for p in postings}) == 450
        assert all(p.kind is PostingKind.TIME for p in postings)
        assert world.erp_by_period("tm") == world.psa_by_period("tm", RATE)
        assert status.counters["posted"] == 450
        # Batches, not a call per entry: at most a handful of ERP jobs for 900 events.
        assert status.counters["batches"] <= 8
        assert world.store.time_posting_counts(world.projects["tm"])["posted"] == 450

        # Announced again later (the sweep): nothing new reaches the ERP.
        await world.signal("tm", entries[:50])
        await world.settled("tm", done=500, key="unchanged")
        assert len(world.postings("tm")) == 450


async def test_unapproved_and_edited_entries_are_reversed_never_edited(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        dropped, edited, kept = _approved(world, "tm", 3)
        await world.signal("tm", [dropped, edited, kept])
        await world.settled("tm", done=3)
        before = {key: p.model_copy() for key, (_, p) in world.erp.postings.items()}

        world.psa.approve_time_entry(dropped.external_id, approved=False)
        world.psa.approve_time_entry(edited.external_id, approved=False)
        entry = world.psa.time_entries[edited.external_id]
        world.psa.time_entries[edited.external_id] = entry.model_copy(
            update={"minutes": 240, "source_version": str(int(entry.source_version or 1) + 1)}
        )
        world.psa.approve_time_entry(edited.external_id)
        await world.signal(
            "tm",
            [
                world.psa.time_entries[edited.external_id],
                world.psa.time_entries[dropped.external_id],
            ],
        )
        await world.settled("tm", done=5, key="reposted")

        # Posted records are unchanged: corrections are new records.
        for key, original in before.items():
            assert world.erp.postings[key][1] == original
        reversals = [p for p in world.postings("tm") if p.kind is PostingKind.REVERSAL]
        assert {p.source_entry_id for p in reversals} == {
            dropped.external_id,
            edited.external_id,
        }
        assert world.erp_by_period("tm") == world.psa_by_period("tm", RATE)
        net = defaultdict(Decimal)
        for p in world.postings("tm"):
            net[p.source_entry_id] += p.hours
        assert net[dropped.external_id] == 0
        assert net[edited.external_id] == Decimal(4)
        assert net[kept.external_id] == kept.hours


async def test_transient_erp_failures_only_delay_the_batch(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        entries = _approved(world, "tm", 30)
        original = world.erp.post_time
        failures = iter([TransientError("ERP down", system=System.ERP)] * 3)

        async def flaky(postings: Any) -> Any:
            failure = next(failures, None)
            if failure is not None:
                raise failure
            return await original(postings)

        world.erp.post_time = flaky  # type: ignore[method-assign]
        await world.signal("tm", entries)
        await world.settled("tm", done=30, timeout_s=60)
        assert len(world.postings("tm")) == 30
        assert world.erp_by_period("tm") == world.psa_by_period("tm", RATE)


# --------------------------------------------------------------------------- exceptions


async def _resolve(
    world: World, item_id: str, action: str, corrections: dict[str, str] | None = None
) -> httpx.Response:
    return await world.gateway.post(
        f"/api/exceptions/{item_id}/resolution",
        json={"action": action, "corrections": corrections or {}, "note": "checked"},
        headers=OPS,
        timeout=30,
    )


def _open_items(world: World, project: str) -> dict[str, Any]:
    """cause -> open exception item (one per cause in these tests)."""
    return {
        i.cause_code: i
        for i in world.store.list_exceptions(workflow_id=world.workflow_id(project))
        if i.status != "resolved"
    }


def _no_rate(world: World, days_ago: int = 2, minutes: int = 75) -> TimeEntry:
    """Approved time on `tm` in a role its rate card lacks (W1 as an Architect)."""
    on = world.today - timedelta(days=days_ago)
    return world.psa.add_time_entry(
        world.projects["tm"], W1, on, minutes, role="Architect", approved=True
    )


async def _held_for_a_rate(
    world: World, days_ago: int = 2, minutes: int = 75
) -> tuple[TimeEntry, Any]:
    """`_no_rate` time, announced and settled: held as a MissingRateCard item."""
    entry = _no_rate(world, days_ago, minutes)
    await world.signal("tm", [entry])
    await world.settled("tm", done=1)
    return entry, _open_items(world, "tm")["MissingRateCard"]


async def test_each_exception_cause_is_held_and_resolved_through_the_gateway(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        today = world.today
        tm = world.projects["tm"]
        good = _approved(world, "tm", 5)
        no_rate = _no_rate(world)
        first = world.psa.add_time_entry(tm, W2, today - timedelta(days=3), 90, approved=True)
        duplicate = world.psa.add_time_entry(tm, W2, today - timedelta(days=3), 90, approved=True)
        leaver_day = today - timedelta(days=5)
        leaver_entry = world.psa.add_time_entry(tm, LEAVER, leaver_day, 60, approved=True)
        await world.hcm.terminate(LEAVER, today - timedelta(days=9), today - timedelta(days=10))
        await world.signal("tm", [*good, no_rate, first, duplicate, leaver_entry])

        world.erp.set_cost_center("CC-300", active=False)
        cc_entry = world.psa.add_time_entry(
            world.projects["cc"], W1, today - timedelta(days=1), 60, approved=True
        )
        await world.signal("cc", [cc_entry])
        closed_entry = world.psa.add_time_entry(
            world.projects["closing"], W1, today - timedelta(days=1), 60, approved=True
        )
        await world.erp.close_project(world.erp_projects[world.projects["closing"]], reason="done")
        await world.signal("closing", [closed_entry])

        status = await world.settled("tm", done=9)
        await world.settled("cc", done=1)
        await world.settled("closing", done=1)
        # The rest of the batch posted; the bad ones wait, each with its typed cause.
        assert status.counters["posted"] == 6
        items = _open_items(world, "tm")
        assert set(items) == {"MissingRateCard", "Duplicate", "InactiveWorker"}
        assert set(_open_items(world, "cc")) == {"InvalidCostCenter"}
        assert set(_open_items(world, "closing")) == {"ProjectClosed"}
        listed = (
            await world.gateway.get("/api/exceptions?process=time_to_invoice", headers=OPS)
        ).json()
        assert listed["count"] == 5

        def posted(entry: TimeEntry) -> int:
            return sum(
                1
                for _, p in world.erp.postings.values()
                if p.source_entry_id == entry.external_id and p.kind is PostingKind.TIME
            )

        # A correction the cause does not take is refused, and nothing changes.
        refused = await _resolve(
            world, items["MissingRateCard"].id, "retry_with_data", {"cost_center": "CC-200"}
        )
        assert refused.status_code == 422, refused.text
        # MissingRateCard: bill it as a Consultant.
        response = await _resolve(
            world, items["MissingRateCard"].id, "retry_with_data", {"role": "Consultant"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["result"]["outcome"] == "posted"
        assert posted(no_rate) == 1
        # Duplicate: a person confirms it is real work.
        response = await _resolve(
            world, items["Duplicate"].id, "retry_with_data", {"not_duplicate": "true"}
        )
        assert response.json()["result"]["outcome"] == "posted"
        assert posted(duplicate) == 1 and posted(first) == 1
        # InactiveWorker: HR is right, the entry goes back to the PSA with the reason.
        response = await _resolve(world, items["InactiveWorker"].id, "reject")
        assert response.json()["result"]["outcome"] == "rejected"
        back = world.psa.time_entries[leaver_entry.external_id]
        assert not back.approved and "checked" in back.notes
        assert posted(leaver_entry) == 0
        # InvalidCostCenter: post to another cost center.
        cc_item = _open_items(world, "cc")["InvalidCostCenter"]
        response = await _resolve(world, cc_item.id, "retry_with_data", {"cost_center": "CC-200"})
        assert response.json()["result"]["outcome"] == "posted"
        assert [p.cost_center for p in world.postings("cc")] == ["CC-200"]
        # ProjectClosed: finance reopens the project in the ERP, then retry.
        closing_job = world.erp.jobs[world.erp_projects[world.projects["closing"]]]
        closing_job.status = ProjectStatus.ACTIVE
        closed_item = _open_items(world, "closing")["ProjectClosed"]
        response = await _resolve(world, closed_item.id, "retry")
        assert response.json()["result"]["outcome"] == "posted"
        assert len(world.postings("closing")) == 1

        # Every item is resolved, and resolving one twice is refused.
        assert not _open_items(world, "tm") and not _open_items(world, "cc")
        again = await _resolve(world, closed_item.id, "retry")
        assert again.status_code == 409
        # Nothing was posted twice.
        keys = [p.idempotency_key for _, p in world.erp.postings.values()]
        assert len(keys) == len(set(keys))
        entries = [p.source_entry_id for _, p in world.erp.postings.values()]
        assert len(entries) == len(set(entries))


async def test_a_retry_that_fails_again_opens_a_new_item(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        _, item = await _held_for_a_rate(world, days_ago=1, minutes=60)
        response = await _resolve(world, item.id, "retry")  # nothing was fixed
        result = response.json()["result"]
        assert result["outcome"] == "exception" and result["new_item_id"]
        # The rate card gets the role; the new item's retry posts it.
        card = world.psa.rate_cards["RC-STD"]
        world.psa.rate_cards["RC-STD"] = card.model_copy(
            update={
                "lines": [
                    *card.lines,
                    RateCardLine(
                        role="Architect",
                        bill_rate=Money("200.00", "USD"),
                        effective_from=world.today - timedelta(days=30),
                    ),
                ]
            }
        )
        response = await _resolve(world, result["new_item_id"], "retry")
        assert response.json()["result"]["outcome"] == "posted"
        (posting,) = world.postings("tm")
        assert posting.bill_amount == Money("200.00", "USD")


# --------------------------------------------------------------------------- billing


async def test_closing_a_tm_period_invoices_it_once_and_marks_the_psa(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        entries = await _posted(world, "tm", 40)
        period = f"{entries[0].date_performed:%Y-%m}"
        in_period = [e for e in entries if f"{e.date_performed:%Y-%m}" == period]
        await world.close_period("tm", period)
        await world.close_period("tm", period)  # a repeated request
        status = await world.settled("tm", done=40, key="invoices")

        (invoice,) = world.erp.invoices.values()
        expected = sum(((RATE * e.hours).quantize(Decimal("0.01")) for e in in_period), Decimal(0))
        assert invoice.total == Money(expected, "USD")
        assert invoice.period == period
        invoiced = {e.external_id for e in world.psa.time_entries.values() if e.invoiced}
        assert invoiced == {e.external_id for e in in_period}
        # The repeat either joined the first request or found nothing left to bill.
        assert [b.status for b in status.billed if b.status != "nothing_to_bill"] == ["invoiced"]
        assert not world.store.unbilled_time(world.projects["tm"], period)


async def test_psa_refusal_after_the_invoice_voids_it_and_a_retry_bills_again(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        entries = await _posted(world, "tm", 10)
        period = f"{entries[0].date_performed:%Y-%m}"
        world.psa.fail_next(
            "mark_invoiced",
            BusinessRuleViolation("LOCKED", "the period is locked for invoicing"),
        )
        await world.close_period("tm", period)
        await world.item_opens("tm", "BillingFailed")

        (voided,) = world.erp.invoices.values()
        assert voided.status is InvoiceStatus.VOID
        assert not any(e.invoiced for e in world.psa.time_entries.values())
        assert world.store.unbilled_time(world.projects["tm"], period)

        item = _open_items(world, "tm")["BillingFailed"]
        response = await _resolve(world, item.id, "retry")
        assert response.status_code == 200, response.text
        await world.settled("tm", done=10, key="invoices")
        live = [i for i in world.erp.invoices.values() if i.status is not InvoiceStatus.VOID]
        assert len(live) == 1 and live[0].idempotency_key.endswith("-a1")
        assert all(
            e.invoiced
            for e in world.psa.time_entries.values()
            if f"{e.date_performed:%Y-%m}" == period
        )


async def test_milestone_completion_invoices_the_milestone(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        pid = world.projects["milestones"]
        milestone = await world.psa.complete_milestone(pid, "M1")
        await world.bill(
            "milestones",
            BillingRequest(
                trigger=BillingTrigger.MILESTONE, milestone_id=milestone.external_id or "M1"
            ),
        )
        status = await world.settled("milestones", done=0, key="invoices")
        (invoice,) = world.erp.invoices.values()
        assert invoice.total == milestone.amount
        assert invoice.milestone_code == "M1"
        assert status.billed[0].status == "invoiced"
        assert world.psa.invoices  # the PSA holds the invoice for the milestone


async def test_a_milestone_billed_again_after_it_was_invoiced_makes_no_second_invoice(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A second billing request for an invoiced milestone (a re-sent event, the sweep,
    reconciliation) is nothing to bill: before, it made a second ERP invoice, the PSA refused
    to mark it, pssync voided it and opened a BillingFailed item."""
    async with tti_world(ts_env, tmp_path) as world:
        pid = world.projects["milestones"]
        milestone = await world.psa.complete_milestone(pid, "M1")
        request = BillingRequest(
            trigger=BillingTrigger.MILESTONE, milestone_id=milestone.external_id or "M1"
        )
        await world.bill("milestones", request)
        await world.settled("milestones", done=0, key="invoices")
        await world.bill("milestones", request)
        deadline = asyncio.get_running_loop().time() + 30
        while len((status := await world.status("milestones")).billed) < 2:
            assert asyncio.get_running_loop().time() < deadline, status
            await asyncio.sleep(0.05)
        assert [b.status for b in status.billed] == ["invoiced", "nothing_to_bill"]
        (invoice,) = world.erp.invoices.values()  # one invoice, not voided
        assert invoice.status is not InvoiceStatus.VOID
        assert not _open_items(world, "milestones")


@pytest.fixture
async def own_ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server for one test. Skipping four hours of virtual time on the module's
    server blocked for over 30 s (the test service's deadline: `Timeout expired`, once `h2
    protocol error`) in two full CI runs on a 2-core machine, while the test alone skips in
    0.03 s. The test server does not skip time while an activity is running (seen here: a
    100 s activity holds `env.sleep` until that deadline), so an activity an earlier test
    left running on the shared clock can hold it. A server of its own has no one else's."""
    async with time_skipping_temporal() as env:
        yield env


async def test_an_item_left_open_escalates_to_finance(
    own_ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(own_ts_env, tmp_path) as world:
        entry = _no_rate(world, days_ago=1, minutes=60)
        await world.signal("tm", [entry])
        await world.settled("tm", done=1)
        (item,) = _open_items(world, "tm").values()
        assert item.status == "open"
        await world.env.sleep(timedelta(seconds=world.settings.escalation_after_s + 60))
        deadline = asyncio.get_running_loop().time() + 30
        while (row := world.store.get_exception(item.id)) is None or row.status != "escalated":
            assert asyncio.get_running_loop().time() < deadline, row
            await asyncio.sleep(0.05)
        assert row.owner == "finance_controller"
        (held,) = (await world.status("tm")).open_items
        assert held.escalated


async def test_the_sweep_posts_what_webhooks_missed_and_bills_closed_periods(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        # Approved in the PSA, but no webhook ever arrived.
        last_month = world.today.replace(day=1) - timedelta(days=3)
        missed = [
            world.psa.add_time_entry(
                world.projects["tm"], W1 if i % 2 else W2, last_month - timedelta(days=i), 60,
                approved=True,
            )
            for i in range(12)
        ]  # fmt: skip
        sweep = SweepInput(psa_tenant=world.settings.psa.tenant)
        result = await world.client.execute_workflow(
            TIME_SWEEP,
            sweep,
            id=f"sweep-{uuid.uuid4().hex[:6]}",
            task_queue=world.task_queue,
            result_type=SweepResult,
        )
        assert result.signalled == 12 and result.projects == [world.projects["tm"]]
        await world.settled("tm", done=12)
        assert len(world.postings("tm")) == 12

        # The next sweep finds nothing new, and asks to bill the month that has closed.
        again = await world.client.execute_workflow(
            TIME_SWEEP,
            sweep,
            id=f"sweep-{uuid.uuid4().hex[:6]}",
            task_queue=world.task_queue,
            result_type=SweepResult,
        )
        assert again.signalled == 0
        periods = {f"{e.date_performed:%Y-%m}" for e in missed}
        assert {p.split("/")[1] for p in again.billing_requested} == periods
        deadline = asyncio.get_running_loop().time() + 30
        while (await world.status("tm")).counters.get("invoices", 0) < len(periods):
            assert asyncio.get_running_loop().time() < deadline, await world.status("tm")
            await asyncio.sleep(0.05)
        assert all(world.psa.time_entries[e.external_id].invoiced for e in missed)
        assert len(world.erp.invoices) == len(periods)
