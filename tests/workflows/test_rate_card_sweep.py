"""The rate card sweep on the time-skipping server over the in-memory PSA and ERP and a real
SQLite store: a revision whose webhook was lost is announced by the sweep and reaches the ERP
once; a second sweep announces nothing new; a revision the webhook already synced is not synced
again when the sweep sees it; and a version committed late (stamped before the cursor) is still
found in the overlap."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import store
from activities.rate_cards import (
    RateCardActivities,
    RateCardErpActivities,
    RateCardSweepActivities,
    sweep_cursor_name,
)
from activities.store import StoreActivities
from connectors.erp import FakeErp
from connectors.psa import FakePsa
from contracts.money import Money
from contracts.naming import erp_task_queue
from contracts.systems import System
from contracts.v1 import RateCard, RateCardLine
from contracts.v1.rate_cards import (
    RateCardRevision,
    RateCardSweepInput,
    RateCardSweepResult,
    RateCardSyncView,
    RevisionStatus,
    RoleRate,
    rate_card_sync_workflow_id,
)
from tests.workflows._worlds import acme_project, query_until, sqlite_store
from workflows.rate_card_sweep import RateCardSweepWorkflow
from workflows.rate_card_sync import RateCardSyncWorkflow, route_rate_card_revised

START = date(2026, 1, 1)


@dataclass
class World:
    client: Client
    queue: str
    psa: FakePsa
    erp: FakeErp
    store: store.Store
    tenant: str

    @property
    def sync_id(self) -> str:
        return rate_card_sync_workflow_id(self.tenant, "RC-1")

    async def sweep(self) -> RateCardSweepResult:
        """One Schedule action's run."""
        return await self.client.execute_workflow(
            RateCardSweepWorkflow.run,
            RateCardSweepInput(psa_tenant=self.tenant),
            id=f"rate-card-sweep-{uuid.uuid4().hex[:8]}",
            task_queue=self.queue,
        )

    async def decided(self, *revisions: str) -> RateCardSyncView:
        """The card's sync once it has applied `revisions` and has nothing queued."""
        return await query_until(
            self.client.get_workflow_handle(self.sync_id),
            RateCardSyncWorkflow.rate_card,
            RateCardSyncView,
            lambda v: (
                all(v.done.get(r) is RevisionStatus.APPLIED for r in revisions) and not v.pending
            ),
            timeout_s=30,
            poll_s=0.1,
            stuck=lambda v: f"never decided: {v.model_dump_json()}",
        )

    async def erp_holds(self) -> list[tuple[str, RevisionStatus, date | None]]:
        return [
            (r.revision_id, r.status, r.applied_from)
            for r in await self.erp.list_rate_card_revisions("RC-1")
        ]


def publish(w: World, rid: str, on: date, rate: str, *, at: datetime | None = None) -> None:
    """The PSA publishes a revision of RC-1 (Consultant at `rate` from `on`); its webhook is
    lost: nobody announces it."""
    w.psa.add_rate_card_revision(
        RateCardRevision(
            rate_card_id="RC-1",
            revision_id=rid,
            effective_from=on,
            currency="USD",
            rates=[RoleRate(role="Consultant", bill_rate=Money(Decimal(rate), "USD"))],
        ),
        published_at=at,
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
    await psa.create_project_shell(project, enterprise_id="01JPROJECT00000000000000001")
    erp = FakeErp()
    queue = f"rcs-{uuid.uuid4().hex[:8]}"
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    with sqlite_store(tmp_path) as (_url, st):
        sta = StoreActivities(st, {"PSA": tenant})
        main = Worker(
            client,
            task_queue=queue,
            workflows=[RateCardSyncWorkflow, RateCardSweepWorkflow],
            activities=[
                RateCardActivities(psa).read_revision,
                RateCardSweepActivities(psa, st, client).sweep,
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
            w = World(client, queue, psa, erp, st, tenant)
            try:
                yield w
            finally:
                with contextlib.suppress(Exception):
                    await client.get_workflow_handle(w.sync_id).terminate()


async def test_a_revision_whose_webhook_was_lost_is_announced_once(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with world(ts_env.client, tmp_path) as w:
        publish(w, "2", date(2026, 3, 1), "180")

        first = await w.sweep()
        assert (first.seen, first.announced, first.duplicates) == (1, ["RC-1/2"], 0)
        await w.decided("2")
        assert await w.erp_holds() == [("2", RevisionStatus.APPLIED, date(2026, 3, 1))]

        # The next sweep reads the same window again (the overlap): nothing new to announce,
        # and the ERP still holds the one revision, written once.
        second = await w.sweep()
        assert (second.seen, second.announced, second.duplicates) == (1, [], 1)
        await w.decided("2")
        assert await w.erp_holds() == [("2", RevisionStatus.APPLIED, date(2026, 3, 1))]
        assert w.erp.rate_card_writes == 1
        assert w.store.list_exceptions() == []


async def test_the_sweep_after_the_webhook_syncs_nothing_twice(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with world(ts_env.client, tmp_path) as w:
        publish(w, "2", date(2026, 3, 1), "180")
        await route_rate_card_revised(w.client, w.tenant, "RC-1", "2", task_queue=w.queue)
        await w.decided("2")

        # The sweep does not know what the webhook announced: it announces it too, and the
        # card's sync drops it (already applied). The ERP holds it once, written once.
        swept = await w.sweep()
        assert swept.announced == ["RC-1/2"]
        await w.decided("2")
        assert await w.erp_holds() == [("2", RevisionStatus.APPLIED, date(2026, 3, 1))]
        assert w.erp.rate_card_writes == 1


async def test_a_version_committed_late_is_found_in_the_overlap(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with world(ts_env.client, tmp_path) as w:
        assert (await w.sweep()).seen == 0  # sets the cursor
        cursor = datetime.fromisoformat(str(w.store.get_state(sweep_cursor_name(w.tenant))))
        # Stamped ten minutes before the cursor (a slow commit, a skewed clock): the next
        # window starts an hour before the cursor, so it is found.
        publish(w, "2", date(2026, 4, 1), "190", at=cursor - timedelta(minutes=10))
        swept = await w.sweep()
        assert swept.announced == ["RC-1/2"]
        assert swept.window_from <= cursor - timedelta(minutes=10) < swept.window_through
        await w.decided("2")
        assert await w.erp_holds() == [("2", RevisionStatus.APPLIED, date(2026, 4, 1))]
        moved = datetime.fromisoformat(str(w.store.get_state(sweep_cursor_name(w.tenant))))
        assert cursor < moved <= datetime.now(UTC)
