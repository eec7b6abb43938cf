"""Batch reconciliation of the time-to-invoice pipeline (`time.process_batch`, ERP queue): each
entry's current PSA state made true in the ERP by postings and reversals, invalid entries held
as exception items; and `time.reject_entry`, which sends an entry back to its submitter."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from prometheus_client import Counter, Histogram
from pydantic import BaseModel
from temporalio import activity

from activities._errors import translate_errors
from activities.time_to_invoice import evidence
from activities.time_to_invoice._support import (
    HEARTBEAT_EVERY_S,
    _activity_info,
    _heartbeat_every,
)
from activities.time_to_invoice.caches import _Base, _Entry, _ProjectContext
from connectors.erp import PostingResult, reversal_of
from contracts.errors import NotFoundError
from contracts.money import Money
from contracts.systems import System
from contracts.v1 import CostPosting, ExpenseEntry, PostingKind, RateCard, TimeEntry
from contracts.v1.posting_keys import posting_key
from contracts.v1.time_to_invoice import (
    CORRECTABLE,
    PROCESS_TIME_TO_INVOICE,
    BatchEntry,
    BatchResult,
    EntryException,
    EntryFacts,
    EntryKind,
    EntryOutcomeKind,
    ProcessBatch,
    RejectEntry,
    TimeExceptionCause,
    check_entry,
    duplicate_fingerprint,
    item_id_for,
    period_of,
)
from store import NewExceptionItem, TimePostingRow, TimePostingState

POSTING_LATENCY = Histogram(
    "pssync_time_posting_latency_seconds",
    "From the PSA approval event to the entry's posting in the ERP",
    buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300, 3600),
)
ENTRY_OUTCOMES = Counter(
    "pssync_time_entries_total", "Time and expense entries reconciled, by outcome", ["outcome"]
)


class ResolvedRow(BaseModel):
    """What the workflow's resolution handler needs back from a rejection."""

    outcome: EntryOutcomeKind
    detail: str = ""


@dataclass
class _Batch:
    """One batch's working state, handed from step to step of `_process`."""

    request: ProcessBatch
    info: tuple[str, str | None]
    ctx: _ProjectContext
    result: BatchResult
    reversals: list[tuple[_Entry, CostPosting]] = field(default_factory=list)
    to_post: list[tuple[_Entry, CostPosting, str]] = field(default_factory=list)
    """(entry, posting, fingerprint)"""
    invalid: list[tuple[_Entry, TimeExceptionCause, str | None, str]] = field(default_factory=list)
    found: dict[str, dict[str, Any]] = field(default_factory=dict)
    """entry key -> what was checked and found for its item (`evidence`)."""
    ledger_rows: list[dict[str, Any]] = field(default_factory=list)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    """Lineage of what was posted, recorded in the ledger's transaction."""


class _BatchMixin(_Base):
    # ------------------------------------------------------------------ batch reconciliation

    @activity.defn(name="time.process_batch")
    @translate_errors
    async def process_batch(self, request: ProcessBatch) -> BatchResult:
        ticker = asyncio.create_task(_heartbeat_every(HEARTBEAT_EVERY_S))
        try:
            return await self._process(request)
        finally:
            ticker.cancel()

    async def _process(self, request: ProcessBatch) -> BatchResult:
        info = _activity_info()
        result = BatchResult(batch_id=request.batch_id)
        entries = await self._read_entries(request.entries)
        ledger = await asyncio.to_thread(self.store.time_postings, [e.key for e in entries])
        fresh = any(e.item.fresh for e in entries)
        ctx = await self._project_context(request.psa_project_id, fresh=fresh)
        batch = _Batch(request=request, info=info, ctx=ctx, result=result)

        candidates = _classify(batch, entries, ledger)
        await self._validate(batch, candidates)
        reversed_ok = await self._reverse(batch)
        if batch.to_post:
            await self._post(batch, reversed_ok)
        await self._open_exceptions(batch)
        if batch.ledger_rows or batch.lineage:
            await asyncio.to_thread(
                functools.partial(self.store.record_time_postings, lineage=batch.lineage),
                batch.ledger_rows,
            )
        for outcome in result.outcomes.values():
            ENTRY_OUTCOMES.labels(outcome=outcome.value).inc()
        return result

    async def _validate(
        self, batch: _Batch, candidates: list[tuple[_Entry, TimePostingRow | None]]
    ) -> None:
        """Validate the approved candidates (master data cached, duplicates by fingerprint)."""
        request = batch.request
        prints = {}
        for e, _prev in candidates:
            prints[e.key] = _fingerprint(request.psa_project_id, e)
        posted_prints = await asyncio.to_thread(
            self.store.posted_fingerprints, list(prints.values()), exclude=list(prints)
        )
        seen_in_batch: dict[str, str] = {}
        for e, _prev in candidates:
            fp = prints[e.key]
            duplicate_of = posted_prints.get(fp) or seen_in_batch.get(fp)
            facts, posting = await self._facts(batch.ctx, e, duplicate_of)
            violation = check_entry(facts)
            if violation is None and posting is None:
                batch.found[e.key] = evidence.checked(e, facts, TimeExceptionCause.POSTING_REFUSED)
                batch.invalid.append(
                    (
                        e,
                        TimeExceptionCause.POSTING_REFUSED,
                        "worker_id",
                        f"the ERP has no cost rate for {facts.worker_id}",
                    )
                )
                continue
            if violation is not None:
                batch.found[e.key] = await self._checked(batch.ctx, e, facts, violation.cause)
                batch.invalid.append((e, violation.cause, violation.field, violation.detail))
                continue
            assert posting is not None
            seen_in_batch.setdefault(fp, e.key)
            batch.to_post.append((e, posting, fp))

    async def _reverse(self, batch: _Batch) -> set[str]:
        """Reversals first: a new posting only goes in once the old one is reversed. The keys
        of the entries whose old posting is gone."""
        reversals, result, ctx = batch.reversals, batch.result, batch.ctx
        reversed_ok: set[str] = set()
        if reversals:
            rev_postings = [reversal_of(p) for _, p in reversals]
            rev_results = await self.erp.post_time(rev_postings)
            for (e, original), res in zip(reversals, rev_results, strict=True):
                if res.ok or _nothing_to_reverse(res):
                    reversed_ok.add(e.key)
                    if res.ok:
                        result.erp_postings += 1
                    cur = e.current
                    if cur is None or not cur.approved:
                        result.outcomes[e.key] = EntryOutcomeKind.REVERSED
                        batch.ledger_rows.append(
                            _row(e, ctx, TimePostingState.REVERSED, original, erp_id=None)
                            | {"entry_version": e.version or "", "item_id": None, "cause": None}
                        )
                else:
                    batch.found[e.key] = evidence.refused(e, reversal_of(original), res)
                    batch.invalid.append(
                        (
                            e,
                            TimeExceptionCause.POSTING_REFUSED,
                            res.error.field if res.error else None,
                            _error_detail(res, "the ERP refused the reversal"),
                        )
                    )
            batch.to_post = [
                t
                for t in batch.to_post
                if t[0].key in reversed_ok or t[0].key not in _keys(reversals)
            ]
        return reversed_ok

    async def _post(self, batch: _Batch, reversed_ok: set[str]) -> None:
        """Record the intents in the ledger, post to the ERP, record what landed (and its
        lineage); a refused posting becomes an exception."""
        to_post, result, ctx, info = batch.to_post, batch.result, batch.ctx, batch.info
        intents = [
            _row(e, ctx, TimePostingState.POSTING, p, erp_id=None, fingerprint=fp)
            for e, p, fp in to_post
        ]
        await asyncio.to_thread(self.store.record_time_postings, intents)
        post_results = await self.erp.post_time([p for _, p, _ in to_post])
        now = datetime.now(UTC)
        for (e, posting, _fp), res in zip(to_post, post_results, strict=True):
            if res.ok:
                result.erp_postings += 1
                result.outcomes[e.key] = (
                    EntryOutcomeKind.REPOSTED if e.key in reversed_ok else EntryOutcomeKind.POSTED
                )
                # The intent above holds every other column of this posting.
                batch.ledger_rows.append(
                    {
                        "entry_key": e.key,
                        "state": TimePostingState.POSTED.value,
                        "erp_id": res.erp_id,
                    }
                )
                batch.lineage.append(
                    {
                        "entity_type": f"{e.kind.value}_entry",
                        "entity_key": e.key,
                        "fields": ["hours", "cost_amount", "bill_amount", "erp_posting"],
                        "source_system": System.PSA.value,
                        "source_version": e.version,
                        "workflow_id": info[0],
                        "run_id": info[1],
                        "activity": "time.process_batch",
                    }
                )
                observed = e.item.ref.observed_at
                if observed is not None:
                    POSTING_LATENCY.observe(max(0.0, (now - observed).total_seconds()))
            else:
                cause = _cause_of(res)
                batch.found[e.key] = evidence.refused(e, posting, res)
                batch.invalid.append(
                    (
                        e,
                        cause,
                        res.error.field if res.error else None,
                        _error_detail(res, "the ERP refused the posting"),
                    )
                )

    async def _open_exceptions(self, batch: _Batch) -> None:
        """Exceptions: one item per entry, owned by the calling workflow."""
        request, result, info = batch.request, batch.result, batch.info
        for e, cause, field_name, detail in batch.invalid:
            base = item_id_for(request.psa_project_id, e.key, e.version)
            item_id = f"{base}.{request.batch_id}" if e.item.item_id else base
            item = NewExceptionItem(
                id=item_id,
                workflow_id=info[0],
                run_id=info[1],
                process=PROCESS_TIME_TO_INVOICE,
                cause_code=cause.value,
                field=field_name,
                detail=detail,
                owner="delivery_manager",
                context={
                    "entry_key": e.key,
                    "entry_version": e.version,
                    "psa_project_id": request.psa_project_id,
                    "worker_id": e.current.worker_id if e.current is not None else None,
                    **batch.found.get(e.key, {"entry": evidence.entry(e)}),
                    "correctable": sorted(CORRECTABLE[cause]),
                    "actions": ["retry", "retry_with_data", "reject"],
                },
            )
            await asyncio.to_thread(self.store.open_exception, item)
            result.outcomes[e.key] = EntryOutcomeKind.EXCEPTION
            result.exceptions.append(
                EntryException(
                    key=e.key,
                    version=e.version,
                    item_id=item_id,
                    cause=cause,
                    field=field_name,
                    detail=detail,
                )
            )
            batch.ledger_rows.append(
                _row(e, batch.ctx, TimePostingState.EXCEPTION, None, erp_id=None)
                | {"cause": cause.value, "item_id": item_id}
            )

    async def _checked(
        self, ctx: _ProjectContext, e: _Entry, facts: EntryFacts, cause: TimeExceptionCause
    ) -> dict[str, Any]:
        """What validation checked for the item; for a missing rate the project's rate card
        (from the cache `_facts` just filled) with the roles it does have."""
        card_id = ctx.project.rate_card_id
        if cause is not TimeExceptionCause.MISSING_RATE_CARD or not card_id:
            return evidence.checked(e, facts, cause, rate_card_id=card_id)

        async def load_card() -> RateCard | None:
            try:
                return await self.psa.get_rate_card(card_id)
            except NotFoundError:
                return None

        card = await self._rate_cards.get(card_id, load_card)
        return evidence.checked(e, facts, cause, rate_card_id=card_id, card=card)

    async def _read_entries(self, items: Sequence[BatchEntry]) -> list[_Entry]:
        unique: dict[str, BatchEntry] = {}
        for item in items:
            unique[item.ref.key] = item  # the latest wins (it may carry a resolution)
        times = [i.ref.entry_id for i in unique.values() if i.ref.kind is EntryKind.TIME]
        expenses = [i.ref.entry_id for i in unique.values() if i.ref.kind is EntryKind.EXPENSE]
        found_time = (
            {t.external_id: t for t in await self.psa.get_time_entries(times)} if times else {}
        )
        found_exp = (
            {x.external_id: x for x in await self.psa.get_expenses(expenses)} if expenses else {}
        )
        entries = []
        for key, item in unique.items():
            kind = item.ref.kind
            entries.append(
                _Entry(
                    item=item,
                    kind=kind,
                    key=key,
                    time=found_time.get(item.ref.entry_id) if kind is EntryKind.TIME else None,
                    expense=found_exp.get(item.ref.entry_id) if kind is EntryKind.EXPENSE else None,
                )
            )
        return entries

    # ------------------------------------------------------------------ reject back to PSA

    @activity.defn(name="time.reject_entry")
    @translate_errors
    async def reject_entry(self, request: RejectEntry) -> ResolvedRow:
        """Send the entry back to its submitter: unapproved in the PSA with the reason."""
        ref = request.ref
        reason = request.reason or "rejected by pssync"
        if ref.kind is EntryKind.TIME:
            entry: TimeEntry | ExpenseEntry = await self.psa.reject_time_entry(ref.entry_id, reason)
        else:
            entry = await self.psa.reject_expense(ref.entry_id, reason)
        existing = (await asyncio.to_thread(self.store.time_postings, [ref.key])).get(ref.key)
        if existing is None or existing.state not in (
            TimePostingState.POSTED.value,
            TimePostingState.POSTING.value,
        ):
            row: dict[str, Any] = {
                "entry_key": ref.key,
                "kind": ref.kind.value,
                "entry_id": ref.entry_id,
                "psa_project_id": request.psa_project_id,
                "entry_version": entry.source_version or "",
                "state": TimePostingState.REJECTED.value,
                "item_id": request.item_id,
                "hours": Decimal(0),
                "billable": entry.billable,
                "workflow_id": _activity_info()[0],
            }
            await asyncio.to_thread(self.store.record_time_postings, [row])
        return ResolvedRow(outcome=EntryOutcomeKind.REJECTED, detail=reason)


# --------------------------------------------------------------------------- helpers


def _classify(
    batch: _Batch, entries: list[_Entry], ledger: dict[str, TimePostingRow]
) -> list[tuple[_Entry, TimePostingRow | None]]:
    """What each entry needs against the ledger: nothing (its outcome is set), a reversal
    (queued on the batch), and/or a posting (returned as a candidate to validate)."""
    result = batch.result
    candidates: list[tuple[_Entry, TimePostingRow | None]] = []
    for e in entries:
        row = ledger.get(e.key)
        live = row is not None and row.state in (
            TimePostingState.POSTED.value,
            TimePostingState.POSTING.value,
        )
        cur = e.current
        if cur is None or not cur.approved:
            if live and row is not None:
                batch.reversals.append((e, _posting_from_row(row)))
            else:
                outcome = (
                    EntryOutcomeKind.NOT_FOUND if cur is None else EntryOutcomeKind.NOT_APPROVED
                )
                result.outcomes[e.key] = outcome
            continue
        if row is not None and row.entry_version == cur.source_version:
            if row.state == TimePostingState.POSTED.value:
                result.outcomes[e.key] = EntryOutcomeKind.UNCHANGED
                continue
            if row.state == TimePostingState.REJECTED.value and not e.item.item_id:
                result.outcomes[e.key] = EntryOutcomeKind.REJECTED
                continue
        if live and row is not None and row.entry_version != cur.source_version:
            if cur.invoiced:
                result.outcomes[e.key] = EntryOutcomeKind.INVOICED
                continue
            batch.reversals.append((e, _posting_from_row(row)))
        candidates.append((e, row))
    return candidates


def _keys(pairs: Sequence[tuple[_Entry, Any]]) -> set[str]:
    return {e.key for e, _ in pairs}


def _fingerprint(psa_project_id: str, e: _Entry) -> str:
    cur = e.current
    assert cur is not None
    if isinstance(cur, TimeEntry):
        return duplicate_fingerprint(
            EntryKind.TIME,
            psa_project_id,
            cur.worker_id,
            cur.date_performed,
            cur.task_id,
            Decimal(cur.minutes),
        )
    return duplicate_fingerprint(
        EntryKind.EXPENSE,
        psa_project_id,
        cur.worker_id,
        cur.date_incurred,
        cur.category,
        cur.amount.amount,
    )


def _posting_from_row(row: TimePostingRow) -> CostPosting:
    """The live posting the ledger remembers, to reverse it."""
    currency = row.currency or "USD"
    on = row.work_date or date.today()
    return CostPosting(
        source_system=System.PSSYNC,
        idempotency_key=row.posting_key
        or posting_key(EntryKind(row.kind), row.entry_id, row.entry_version),
        kind=PostingKind.EXPENSE if row.kind == EntryKind.EXPENSE.value else PostingKind.TIME,
        project_id=row.erp_project or "",
        worker_id=row.worker_id,
        source_entry_id=row.entry_id,
        posting_date=on,
        period=row.period or period_of(on),
        hours=row.hours,
        cost_amount=Money(amount=row.cost_amount or Decimal(0), currency=currency),
        bill_amount=(
            Money(amount=row.bill_amount, currency=currency)
            if row.bill_amount is not None
            else None
        ),
        cost_center=row.cost_center or "",
    )


def _row(
    e: _Entry,
    ctx: _ProjectContext,
    state: TimePostingState,
    posting: CostPosting | None,
    *,
    erp_id: str | None,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    cur = e.current
    work_date: date | None = None
    if isinstance(cur, TimeEntry):
        work_date = cur.date_performed
    elif isinstance(cur, ExpenseEntry):
        work_date = cur.date_incurred
    billable = bool(cur.billable) if cur is not None else False
    row: dict[str, Any] = {
        "entry_key": e.key,
        "kind": e.kind.value,
        "entry_id": e.item.ref.entry_id,
        "psa_project_id": ctx.psa_project_id,
        "erp_project": posting.project_id if posting else ctx.erp_project,
        "worker_id": cur.worker_id if cur is not None else None,
        "work_date": work_date or (posting.posting_date if posting else None),
        "period": period_of(work_date) if work_date else (posting.period if posting else None),
        "entry_version": e.version or "",
        "state": state.value,
        "posting_key": posting.idempotency_key if posting else None,
        "erp_id": erp_id,
        "hours": posting.hours if posting else Decimal(0),
        "cost_amount": posting.cost_amount.amount if posting else None,
        "bill_amount": (
            posting.bill_amount.amount if posting and posting.bill_amount is not None else None
        ),
        "currency": posting.cost_amount.currency if posting else ctx.currency,
        "cost_center": posting.cost_center if posting else None,
        "billable": billable,
        "cause": None,
        "item_id": None,
        "fingerprint": fingerprint,
        "workflow_id": _activity_info()[0],
    }
    return row


def _nothing_to_reverse(res: PostingResult) -> bool:
    """The ERP never held the original (a crash before it landed) or it is reversed already."""
    code = res.error.code if res.error else None
    return code == "ALREADY_REVERSED" or (
        code == "INVALID_KEY_OR_REF" and (res.error.field if res.error else None) == "reverses"
    )


def _cause_of(res: PostingResult) -> TimeExceptionCause:
    code = (res.error.code if res.error else None) or ""
    if code == "INVALID_COST_CENTER" or "DEPARTMENT" in code:
        return TimeExceptionCause.INVALID_COST_CENTER
    if code == "PROJECT_CLOSED":
        return TimeExceptionCause.PROJECT_CLOSED
    return TimeExceptionCause.POSTING_REFUSED


def _error_detail(res: PostingResult, default: str) -> str:
    if res.error is None:
        return default
    return res.error.detail or res.error.message or default
