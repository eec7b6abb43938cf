"""RateCardSync on the time-skipping server over the in-memory PSA and ERP and a real SQLite
store: a revision reaches the ERP once however often it is announced; a revision that reaches
into invoiced time is held for finance with its evidence, and finance's decision is what the
ERP keeps."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import store
from activities.rate_cards import RateCardActivities, RateCardErpActivities
from activities.store import StoreActivities
from connectors.erp import FakeErp
from connectors.psa import FakePsa
from contracts.money import Money
from contracts.naming import erp_task_queue
from contracts.systems import System
from contracts.v1 import RateCard, RateCardLine
from contracts.v1.processes import ExceptionResolution, ResolutionAction
from contracts.v1.rate_cards import (
    RateCardRevision,
    RateCardSyncView,
    RevisionStatus,
    RoleRate,
    rate_card_sync_workflow_id,
)
from tests.workflows._worlds import acme_project, query_until, sqlite_store
from workflows.rate_card_sync import RateCardSyncWorkflow, route_rate_card_revised

START = date(2026, 1, 1)


@dataclass
class World:
    client: Client
    queue: str
    psa: FakePsa
    erp: FakeErp
    store: store.Store
    project: str
    tenant: str

    @property
    def workflow_id(self) -> str:
        return rate_card_sync_workflow_id(self.tenant, "RC-1")

    async def announce(self, revision_id: str) -> None:
        await route_rate_card_revised(
            self.client, self.tenant, "RC-1", revision_id, task_queue=self.queue
        )

    async def decided(self, revision_id: str, *statuses: RevisionStatus) -> RateCardSyncView:
        return await query_until(
            self.client.get_workflow_handle(self.workflow_id),
            RateCardSyncWorkflow.rate_card,
            RateCardSyncView,
            lambda v: v.done.get(revision_id) in statuses and (not v.pending or bool(v.open_items)),
            timeout_s=30,
            poll_s=0.1,
            stuck=lambda v: f"never decided: {v.model_dump_json()}",
        )


@contextlib.asynccontextmanager
async def world(client: Client, tmp_path: Path) -> AsyncIterator[World]:
    psa = FakePsa()
    psa.add_rate_card(
        RateCard(
            external_id="RC-1",
            name="Standard",
            currency="USD",
            lines=[
                RateCardLine(
                    role="Consultant", bill_rate=Money(Decimal(150), "USD"), effective_from=START
                )
            ],
            source_system=System.PSA,
        )
    )
    psa.add_user("W-1", "W-1", role="Consultant", start_date=START)
    project = acme_project().model_copy(update={"rate_card_id": "RC-1", "start_date": START})
    pid = await psa.create_project_shell(project, enterprise_id="01JPROJECT00000000000000001")
    erp = FakeErp()
    queue = f"rc-{uuid.uuid4().hex[:8]}"
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    with sqlite_store(tmp_path) as (_url, st):
        sta = StoreActivities(st, {"PSA": tenant})
        main = Worker(
            client,
            task_queue=queue,
            workflows=[RateCardSyncWorkflow],
            activities=[
                RateCardActivities(psa).read_revision,
                sta.open_exception,
                sta.resolve_exception,
                sta.escalate_exception,
            ],
        )
        erp_worker = Worker(
            client,
            task_queue=erp_task_queue(queue),
            activities=[RateCardErpActivities(erp).write_erp_revision],
        )
        async with main, erp_worker:
            w = World(client, queue, psa, erp, st, pid, tenant)
            try:
                yield w
            finally:
                with contextlib.suppress(Exception):
                    await client.get_workflow_handle(w.workflow_id).terminate()


def revision(rid: str, on: date, rate: str) -> RateCardRevision:
    return RateCardRevision(
        rate_card_id="RC-1",
        revision_id=rid,
        effective_from=on,
        currency="USD",
        rates=[RoleRate(role="Consultant", bill_rate=Money(Decimal(rate), "USD"))],
    )


async def test_a_revision_announced_again_reaches_the_erp_once(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with world(ts_env.client, tmp_path) as w:
        w.psa.add_rate_card_revision(revision("2", date(2026, 3, 1), "180"))
        await w.announce("2")
        await w.decided("2", RevisionStatus.APPLIED)
        await w.announce("2")  # the webhook again
        await w.announce("2")  # and the sweep
        await w.decided("2", RevisionStatus.APPLIED)

        held = await w.erp.list_rate_card_revisions("RC-1")
        assert [(r.revision_id, r.status, r.applied_from) for r in held] == [
            ("2", RevisionStatus.APPLIED, date(2026, 3, 1))
        ]
        assert w.erp.rate_card_writes == 1
        assert w.store.list_exceptions() == []


async def _invoiced(w: World, on: date, minutes: int) -> str:
    entry = w.psa.add_time_entry(w.project, "W-1", on, minutes, approved=True)
    await w.psa.mark_invoiced([entry.external_id], invoice_ref="INV-1", project_id=w.project)
    return entry.external_id


async def test_a_revision_reaching_into_invoiced_time_waits_for_finance(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with world(ts_env.client, tmp_path) as w:
        before = await _invoiced(w, date(2026, 2, 27), 480)
        inside = await _invoiced(w, date(2026, 3, 10), 150)
        w.psa.add_rate_card_revision(revision("2", date(2026, 3, 1), "180"))
        await w.announce("2")
        view = await w.decided("2", RevisionStatus.HELD)

        # Held in the ERP (it prices no time meanwhile) and an item for finance with evidence.
        (held,) = await w.erp.list_rate_card_revisions("RC-1")
        assert (held.status, held.applied_from) == (RevisionStatus.HELD, None)
        (item,) = w.store.list_exceptions(workflow_id=w.workflow_id)
        assert (item.owner, item.cause_code) == ("finance_controller", "INVOICED_TIME_REVISED")
        ctx = item.context
        assert [e["entry_id"] for e in ctx["entries"]] == [inside]
        assert before not in str(ctx["entries"])
        assert Decimal(ctx["entries"][0]["old_rate"]["amount"]) == 150
        assert Decimal(ctx["entries"][0]["new_rate"]["amount"]) == 180
        assert Decimal(ctx["difference"]["amount"]) == Decimal("75.00")  # 30/h over 2.5 h
        assert ctx["apply_from_if_acknowledged"] == "2026-03-11"

        handle = w.client.get_workflow_handle(w.workflow_id)
        await handle.execute_update(
            "resolve_exception",
            ExceptionResolution(
                item_id=view.open_items[0],
                action=ResolutionAction.SKIP,
                actor="fin",
                actor_roles=["finance_controller"],
            ),
        )
        await w.decided("2", RevisionStatus.APPLIED)
        (applied,) = await w.erp.list_rate_card_revisions("RC-1")
        assert (applied.status, applied.applied_from) == (
            RevisionStatus.APPLIED,
            date(2026, 3, 11),
        )


async def test_finance_rejects_a_revision_and_it_is_never_applied(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with world(ts_env.client, tmp_path) as w:
        await _invoiced(w, date(2026, 3, 2), 60)
        w.psa.add_rate_card_revision(revision("2", date(2026, 3, 1), "170"))
        await w.announce("2")
        view = await w.decided("2", RevisionStatus.HELD)
        await w.client.get_workflow_handle(w.workflow_id).execute_update(
            "resolve_exception",
            ExceptionResolution(
                item_id=view.open_items[0],
                action=ResolutionAction.REJECT,
                actor="fin",
                actor_roles=["finance_controller"],
            ),
        )
        await w.decided("2", RevisionStatus.REJECTED)
        await w.announce("2")  # announced again: stays rejected, no new item
        await w.decided("2", RevisionStatus.REJECTED)
        (rejected,) = await w.erp.list_rate_card_revisions("RC-1")
        assert rejected.status is RevisionStatus.REJECTED
        assert len(w.store.list_exceptions(workflow_id=w.workflow_id)) == 1
