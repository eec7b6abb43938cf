"""Labor actuals: a chunk of projects compared (`recon.compare.labor_actuals`, ERP queue) and a
person's "repair anyway" of one escalated labor drift (`labor_force`, called by
`recon.force_repair`).

Per chunk of projects: the PSA's approved time and expenses of each (`list_approved_time` /
`list_approved_expenses`, paged by the connector), the ERP's postings of them all at once
(`list_postings_of`: SuiteQL `customer IN (...)`, pages of 1,000) and the time-posting
ledger; `labor_rules` compares them. Safe repairs go through the time pipeline
(`TimeToInvoice`), which is idempotent by its posting keys and ledger: the entries are
signalled to it (`EntriesChanged`, source `reconciliation`), and where the ledger says posted
but the ERP has nothing (or a person asked to restore an edited posting) the ledger row is
first put back to `posting`, so the pipeline posts the entry again under the same key (an
upsert) instead of calling it unchanged.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP
from typing import Any

from temporalio import activity

from activities._errors import translate_errors
from activities.reconciliation._base import (
    HEARTBEAT_EVERY_S,
    _CallCounter,
    _ReconBase,
    heartbeat_every,
)
from activities.reconciliation.labor_rules import (
    CENTS,
    HOURS,
    EntryRepair,
    ErpPosting,
    Finding,
    LaborContext,
    LedgerEntry,
    PsaEntry,
    compare_labor,
    live_postings,
    periods_to_check,
)
from activities.time_to_invoice import signal_pipeline
from connectors.erp import reversal_of
from contracts.errors import BusinessRuleViolation, NotFoundError
from contracts.systems import System
from contracts.v1 import CostPosting
from contracts.v1.reconciliation import CompareChunk, DriftDecision, DriftKind, RunTotals
from contracts.v1.time_to_invoice import (
    ENTRIES_CHANGED_SIGNAL,
    EntriesChanged,
    EntryKind,
    EntryRef,
    TimePipelineInput,
    period_of,
)
from store import TimePostingRow, TimePostingState

PROJECTS_AT_ONCE = 4
"""Projects whose systems a chunk reads concurrently (the connectors pace their requests)."""
SIGNAL_PAGE = 1000


class _ProjectSides:
    def __init__(
        self,
        psa_project_id: str,
        psa: list[PsaEntry],
        erp: list[ErpPosting],
        ledger: list[LedgerEntry],
    ) -> None:
        self.psa_project_id = psa_project_id
        self.psa = psa
        self.erp = erp
        self.ledger = ledger


class _LaborMixin(_ReconBase):
    @activity.defn(name="recon.compare.labor_actuals")
    @translate_errors
    async def compare_labor_actuals(self, request: CompareChunk) -> RunTotals:
        """Compare a chunk of projects, repair what is safe, escalate the rest, record all."""
        ticker = asyncio.create_task(heartbeat_every(HEARTBEAT_EVERY_S))
        try:
            return await self._compare_labor(request)
        finally:
            ticker.cancel()

    async def _compare_labor(self, request: CompareChunk) -> RunTotals:
        counter = _CallCounter(self.psa, self.erp)
        now = datetime.now(UTC)
        since = period_of(request.since) if request.since else None
        limit = asyncio.Semaphore(PROJECTS_AT_ONCE)

        async def erp_project_of(psa_project_id: str, known: str | None) -> str | None:
            async with limit:
                return known or await self._erp_project_of(psa_project_id, counter)

        erp_projects = await asyncio.gather(
            *(erp_project_of(u.psa_project_id, u.erp_project) for u in request.units)
        )
        # Every project's postings at once: a few SuiteQL queries for the whole chunk.
        counter.note(self.erp)
        postings = await self.erp.list_postings_of([p for p in erp_projects if p])

        async def read(psa_project_id: str, erp_project: str | None) -> _ProjectSides:
            async with limit:
                erp = postings.get(erp_project, []) if erp_project else []
                return await self._labor_sides(psa_project_id, erp, counter)

        sides = await asyncio.gather(
            *(read(u.psa_project_id, e) for u, e in zip(request.units, erp_projects, strict=True))
        )

        def compare(closed: frozenset[str]) -> list[Finding]:
            return [
                finding
                for side in sides
                for finding in compare_labor(
                    LaborContext(
                        tenant=request.tenant,
                        psa_project_id=side.psa_project_id,
                        now=now,
                        settle_s=request.settle_s,
                        since_period=since,
                        closed_periods=closed,
                    ),
                    side.psa,
                    side.erp,
                    side.ledger,
                )
            ]

        closed: set[str] = set()
        for period in sorted(periods_to_check(compare(frozenset()))):
            counter.note(self.erp)
            if not await self.erp.period_open(period):
                closed.add(period)
        totals = await self._settle(request, compare(frozenset(closed)), self._repair_labor)
        totals.records = sum(len(s.psa) + len(s.erp) for s in sides)
        totals.projects = len(sides)
        totals.vendor_calls = counter.total()
        return totals

    async def _labor_sides(
        self, psa_project_id: str, postings: list[CostPosting], counter: _CallCounter
    ) -> _ProjectSides:
        psa: list[PsaEntry] = []
        counter.note(self.psa, 2)
        async for t in self.psa.list_approved_time(project_id=psa_project_id):
            psa.append(
                PsaEntry(
                    kind="time",
                    entry_id=t.external_id,
                    version=t.source_version or "1",
                    work_date=t.date_performed,
                    quantity=t.hours.quantize(HOURS, ROUND_HALF_UP),
                    invoiced=t.invoiced,
                    updated_at=t.updated_at,
                )
            )
        async for x in self.psa.list_approved_expenses(project_id=psa_project_id):
            psa.append(
                PsaEntry(
                    kind="expense",
                    entry_id=x.external_id,
                    version=x.source_version or "1",
                    work_date=x.date_incurred,
                    quantity=x.amount.amount.quantize(CENTS),
                    invoiced=x.invoiced,
                    updated_at=x.updated_at,
                )
            )
        activity.heartbeat()
        erp = [_erp_posting(p) for p in postings]
        rows = await asyncio.to_thread(self.store.ledger_rows, psa_project_id)
        return _ProjectSides(psa_project_id, psa, erp, [_ledger_entry(r) for r in rows])

    async def _erp_project_of(self, psa_project_id: str, counter: _CallCounter) -> str | None:
        """The ERP project of a PSA project pssync has not linked: `eid:` + the enterprise ID
        the PSA project carries (None when it carries none)."""
        counter.note(self.psa)
        try:
            project = await self.psa.get_project(psa_project_id)
        except NotFoundError:
            return None
        return f"eid:{project.enterprise_id}" if project.enterprise_id else None

    async def _postings(
        self, psa_project_id: str, erp_project: str | None, counter: _CallCounter
    ) -> list[CostPosting]:
        """The ERP's postings of the PSA project's ERP project (none if it has none)."""
        erp_project = erp_project or await self._erp_project_of(psa_project_id, counter)
        if erp_project is None:
            return []
        counter.note(self.erp)
        try:
            return await self.erp.list_postings(erp_project)
        except NotFoundError:
            return []

    async def _repair_labor(self, request: CompareChunk, findings: Sequence[Any]) -> None:
        """Hand the entries back to their projects' pipelines (after putting the ledger rows
        whose posting is in doubt back to `posting`)."""
        repairs: list[tuple[str, EntryRepair]] = [
            (f.drift.keys["psa_project_id"], f.repair) for f in findings if f.repair is not None
        ]
        await self._hand_to_pipelines(repairs, task_queue=request.task_queue)

    async def _hand_to_pipelines(
        self, repairs: Sequence[tuple[str, EntryRepair]], *, task_queue: str
    ) -> None:
        resets = [
            {"entry_key": f"{r.kind}:{r.entry_id}", "state": TimePostingState.POSTING.value}
            for _, r in repairs
            if r.reset
        ]
        if resets:
            await asyncio.to_thread(self.store.record_time_postings, resets)
        by_project: dict[str, list[EntryRef]] = defaultdict(list)
        for project, r in repairs:
            by_project[project].append(
                EntryRef(kind=EntryKind(r.kind), entry_id=r.entry_id, version=r.version)
            )
        defaults = self.pipeline_defaults or TimePipelineInput(psa_tenant="-", psa_project_id="-")
        for project, refs in sorted(by_project.items()):
            for i in range(0, len(refs), SIGNAL_PAGE):
                await signal_pipeline(
                    self._client(),
                    defaults,
                    project,
                    ENTRIES_CHANGED_SIGNAL,
                    EntriesChanged(refs=refs[i : i + SIGNAL_PAGE], source="reconciliation"),
                    task_queue=task_queue,
                )
                activity.heartbeat()

    # ------------------------------------------------------------------ repair anyway

    async def labor_force(self, decision: DriftDecision) -> str:
        """A person asked for the repair of an escalated labor drift anyway: read the entry's
        state now; reverse the live postings the pipeline cannot (not in its ledger, or one
        too many); then hand the entry to the pipeline (the ledger row put back to `posting`
        where the posting must be made again). Returns what was done, in words."""
        drift = decision.drift.drift
        project = drift.keys["psa_project_id"]
        entry_key = drift.keys.get("entry")
        if entry_key is None:
            raise BusinessRuleViolation(
                "NOT_REPAIRABLE",
                f"{drift.kind.value} cannot be repaired by pssync",
                system="PSSYNC",
            )
        kind, _, entry_id = entry_key.partition(":")
        current = await self._current_entry(kind, entry_id)
        counter = _CallCounter()
        postings = await self._postings(project, None, counter)
        live, _ = live_postings(_erp_posting(p) for p in postings)
        mine = {p.key for p in live if p.entry_key == entry_key}
        row = (await asyncio.to_thread(self.store.time_postings, [entry_key])).get(entry_key)
        ledger_key = row.posting_key if row and row.state in _LIVE else None
        keep: str | None = None
        if current is not None:
            key_now = f"psa-{kind}-{entry_id}-v{current}"
            keep = ledger_key if ledger_key in mine else (key_now if key_now in mine else None)
        if drift.kind is DriftKind.LABOR_POSTED_NOT_APPROVED and ledger_key in mine:
            keep = ledger_key  # the pipeline reverses its own posting
        to_reverse = [p for p in postings if p.idempotency_key in mine - {keep}]
        done = []
        if to_reverse:
            await self._reverse(to_reverse)
            done.append(f"reversed {', '.join(sorted(p.idempotency_key for p in to_reverse))}")
            if ledger_key is not None and ledger_key in {p.idempotency_key for p in to_reverse}:
                await asyncio.to_thread(
                    self.store.record_time_postings,
                    [{"entry_key": entry_key, "state": TimePostingState.REVERSED.value}],
                )
        reset = drift.kind in (DriftKind.LABOR_MISSING_IN_ERP, DriftKind.LABOR_AMOUNT_MISMATCH)
        reset = reset and row is not None and row.state in _LIVE
        repair = EntryRepair(kind, entry_id, current, reset=reset)
        await self._hand_to_pipelines([(project, repair)], task_queue=decision.task_queue)
        done.append(
            f"{entry_key} handed to the time pipeline" + (" to post again" if reset else "")
        )
        return "; ".join(done)

    async def _current_entry(self, kind: str, entry_id: str) -> str | None:
        """The entry's version if the PSA holds it approved, else None."""
        if kind == EntryKind.TIME.value:
            found: list[Any] = await self.psa.get_time_entries([entry_id])
        else:
            found = await self.psa.get_expenses([entry_id])
        approved = [e for e in found if e.approved]
        return (approved[0].source_version or "1") if approved else None

    async def _reverse(self, postings: Sequence[CostPosting]) -> None:
        results = await self.erp.post_time([reversal_of(p) for p in postings])
        for posting, result in zip(postings, results, strict=True):
            code = result.error.code if result.error else None
            if not result.ok and code != "ALREADY_REVERSED":
                raise BusinessRuleViolation(
                    code or "REVERSAL_REFUSED",
                    f"the ERP refused to reverse {posting.idempotency_key}: "
                    f"{result.error.detail or result.error.message if result.error else ''}",
                    system=System.ERP.value,
                )


_LIVE = (TimePostingState.POSTED.value, TimePostingState.POSTING.value)


def _erp_posting(p: CostPosting) -> ErpPosting:
    return ErpPosting(
        key=p.idempotency_key,
        kind=p.kind.value,
        posting_date=p.posting_date,
        hours=p.hours,
        cost=p.cost_amount.amount,
        bill=p.bill_amount.amount if p.bill_amount is not None else None,
        reverses=p.reverses,
    )


def _ledger_entry(row: TimePostingRow) -> LedgerEntry:
    return LedgerEntry(
        entry_key=row.entry_key,
        version=row.entry_version or "1",
        state=row.state,
        posting_key=row.posting_key,
        hours=row.hours,
        cost=row.cost_amount,
        bill=row.bill_amount,
        item_id=row.item_id,
        updated_at=row.updated_at,
    )
