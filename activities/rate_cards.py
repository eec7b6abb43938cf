"""Activities of the rate card sync: read a PSA rate card revision with the invoiced time it
would re-rate, and write pssync's decision on it to the ERP (on the ERP task queue); and the
sweep that announces revisions a lost webhook missed.

    await ensure_rate_card_sweep_schedule(
        client, every=timedelta(minutes=15), task_queue=TASK_QUEUE, psa_tenant="acme"
    )

Each Schedule action runs `RateCardSweep`, whose one activity `rate_cards.sweep` lists the
PSA's rate card versions published in the window `[cursor - overlap, now]` and signal-with-starts
each card's `RateCardSync` with every revision no sweep announced before (the store's inbox
remembers them; the sync itself drops a revision it has decided or queued, so a webhook and the
sweep announcing the same revision sync it once). The cursor moves only after every revision of
the window was announced: a crash reads the window again.

No business rules here beyond the port calls: the conflicts and dates are the pure functions of
`contracts.v1.rate_cards`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.client import Client
from temporalio.common import SearchAttributePair

from activities._errors import translate_errors
from connectors.erp.rate_card_port import ErpRateCardsPort
from connectors.psa import PsaProjectsPort, PsaTimePort
from connectors.psa.rate_card_port import PsaRateCardRevisionsPort
from contracts.errors import NotFoundError
from contracts.v1.rate_cards import (
    PROCESS_RATE_CARD_SYNC,
    RATE_CARD_SWEEP,
    RATE_CARD_SYNC,
    REVISION_SIGNAL,
    ErpRateCardRevision,
    InvoicedEntry,
    RateCardRevision,
    RateCardSweepInput,
    RateCardSweepResult,
    RateCardSyncInput,
    RevisionSeen,
    invoiced_conflicts,
    rate_card_sweep_schedule_id,
    rate_card_sync_workflow_id,
)
from plumbing.temporal import BUSINESS_PROCESS, ensure_interval_schedule, signal_with_start
from store import Store

SWEEP_INBOX = "psa.rate_card_sweep"
"""The store inbox's source for the revisions the sweep announced."""


class RateCardPsa(PsaProjectsPort, PsaTimePort, PsaRateCardRevisionsPort, Protocol):
    """The PSA as the rate card sync reads it."""


class ReadRevision(BaseModel):
    psa_tenant: str
    rate_card_id: str
    revision_id: str


class RevisionFacts(BaseModel):
    revision: RateCardRevision
    conflicts: list[InvoicedEntry] = Field(default_factory=list)
    """Invoiced time the revision would re-rate (old rate as invoiced, new rate)."""


class RateCardActivities:
    def __init__(self, psa: RateCardPsa) -> None:
        self.psa = psa

    @activity.defn(name="rate_cards.read_revision")
    @translate_errors
    async def read_revision(self, request: ReadRevision) -> RevisionFacts:
        """The revision and the invoiced time on or after its effective date, on projects
        priced from the card. NotFoundError when the PSA has no such revision."""
        revisions = await self.psa.list_rate_card_revisions(request.rate_card_id)
        revision = next((r for r in revisions if r.revision_id == request.revision_id), None)
        if revision is None:
            raise NotFoundError(
                f"rate card {request.rate_card_id} has no revision {request.revision_id}"
            )
        card = await self.psa.get_rate_card(request.rate_card_id)
        roles = {r.role for r in revision.rates}
        invoiced: list[InvoicedEntry] = []
        for project_id in await self.psa.list_projects_on_rate_card(request.rate_card_id):
            async for t in self.psa.list_approved_time(project_id=project_id, invoiced=True):
                if not t.billable or t.role not in roles:
                    continue
                if t.date_performed < revision.effective_from:
                    continue
                old = t.bill_rate or card.rate_for(t.role, t.date_performed)
                if old is None:
                    continue
                invoiced.append(
                    InvoicedEntry(
                        entry_id=t.external_id,
                        project_id=project_id,
                        role=t.role,
                        date_performed=t.date_performed,
                        hours=t.hours,
                        old_rate=old,
                        new_rate=old,
                    )
                )
        return RevisionFacts(
            revision=revision, conflicts=invoiced_conflicts(card, revision, invoiced)
        )


class RateCardErpActivities:
    def __init__(self, erp: ErpRateCardsPort) -> None:
        self.erp = erp

    @activity.defn(name="rate_cards.write_erp_revision")
    @translate_errors
    async def write_erp_revision(self, revision: ErpRateCardRevision) -> bool:
        """Upsert pssync's decision on the revision in the ERP; False when it already held
        it (a repeated revision writes nothing)."""
        return await self.erp.put_rate_card_revision(revision)


HEARTBEAT_EVERY_S = 2.0


async def _heartbeat_every(seconds: float) -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(seconds)


def sweep_cursor_name(psa_tenant: str) -> str:
    return f"psa.rate_card_versions/{psa_tenant}"


async def announce_revision(
    client: Client, psa_tenant: str, rate_card_id: str, revision_id: str, *, task_queue: str
) -> str:
    """Signal-with-start the card's `RateCardSync` with a revision, as the gateway does for the
    PSA's webhook; its workflow id."""
    workflow_id = rate_card_sync_workflow_id(psa_tenant, rate_card_id)
    await signal_with_start(
        client,
        RATE_CARD_SYNC,
        RateCardSyncInput(psa_tenant=psa_tenant, rate_card_id=rate_card_id),
        id=workflow_id,
        signal=REVISION_SIGNAL,
        signal_arg=RevisionSeen(revision_id=revision_id),
        task_queue=task_queue,
        search_attributes=[SearchAttributePair(BUSINESS_PROCESS, PROCESS_RATE_CARD_SYNC)],
        static_summary=f"PSA rate card {rate_card_id} revisions -> ERP",
    )
    return workflow_id


class RateCardSweepActivities:
    def __init__(self, psa: PsaRateCardRevisionsPort, store: Store, client: Client) -> None:
        self.psa = psa
        self.store = store
        self.client = client

    @activity.defn(name="rate_cards.sweep")
    @translate_errors
    async def sweep(self, request: RateCardSweepInput) -> RateCardSweepResult:
        """Announce the revisions published in the window that no sweep announced before;
        then move the cursor to the window's end. Heartbeats on a ticker: a slow PSA page (its
        429s retried in the connector) must not look like a lost worker."""
        ticker = asyncio.create_task(_heartbeat_every(HEARTBEAT_EVERY_S))
        try:
            return await self._sweep(request)
        finally:
            ticker.cancel()

    async def _sweep(self, request: RateCardSweepInput) -> RateCardSweepResult:
        tenant = request.psa_tenant
        task_queue = activity.info().task_queue
        now = datetime.now(UTC)
        stored = await asyncio.to_thread(self.store.get_state, sweep_cursor_name(tenant))
        if stored is None:
            start = now - timedelta(seconds=request.initial_lookback_s)
        else:
            start = datetime.fromisoformat(stored) - timedelta(seconds=request.overlap_s)
        start = min(start, now)
        published = await self.psa.list_revisions_published_since(start)
        result = RateCardSweepResult(window_from=start, window_through=now, seen=len(published))
        for revision in published:
            card, rev = revision.rate_card_id, revision.revision_id
            key = f"{tenant}/{card}/{rev}"
            if await asyncio.to_thread(self.store.inbox_get, SWEEP_INBOX, key):
                result.duplicates += 1
                continue
            workflow_id = await announce_revision(
                self.client, tenant, card, rev, task_queue=task_queue
            )
            # Only once the sync holds it: a crash before this line announces it again.
            await asyncio.to_thread(
                self.store.inbox_accept,
                SWEEP_INBOX,
                key,
                f"published_at:{revision.published_at.isoformat()}",
                event_type="rate_card_version.published",
            )
            await asyncio.to_thread(self.store.inbox_set_workflow, SWEEP_INBOX, key, workflow_id)
            result.announced.append(f"{card}/{rev}")
        await asyncio.to_thread(self.store.put_state, sweep_cursor_name(tenant), now.isoformat())
        return result


async def ensure_rate_card_sweep_schedule(
    client: Client, *, every: timedelta, task_queue: str, psa_tenant: str
) -> None:
    """Create (or bring up to date) the Schedule that sweeps the PSA every `every` for rate
    card revisions whose webhook was lost. Overlaps are skipped (one sweep owns the cursor)."""
    await ensure_interval_schedule(
        client,
        rate_card_sweep_schedule_id(psa_tenant),
        RATE_CARD_SWEEP,
        RateCardSweepInput(psa_tenant=psa_tenant),
        every=every,
        task_queue=task_queue,
    )
