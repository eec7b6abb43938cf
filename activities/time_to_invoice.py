"""Activities of the time-to-invoice pipeline: reconcile a batch of PSA entries with the ERP,
reject an entry back to the PSA, bill a project, and sweep the PSA for what webhooks missed.

    acts = TimeToInvoiceActivities(psa, erp, hcm, store, client=client)
    result = await acts.process_batch(ProcessBatch(...))     # ERP queue

`process_batch` reads each entry's *current* state in the PSA and makes the ERP agree with it, so
a repeated, late or out-of-order event is harmless:

- approved, never posted -> validate (`check_entry`) -> post, or open an exception item;
- approved, posted at this version -> nothing (`unchanged`);
- approved, posted at another version (edited, re-approved) -> reverse that posting, post anew;
- no longer approved but posted -> reverse the posting (never an edit of a posted record).

Exactly once: each posting's ERP idempotency key comes from the entry's id and version (a
reversal's from the posting it reverses), so a retried batch posts nothing twice. Before the ERP
call the ledger (`time_posting` in the store) records the key as `posting`; a crash after the ERP
accepted it is repaired by the retry, which posts the same key again (an upsert) or reverses it.

Master data (HCM workers, rate cards, cost centers, ERP projects and cost rates) is cached for a
few seconds per worker process: 200 entries usually share a handful of workers and one project.
A person's retry (`fresh`) reads it afresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from prometheus_client import Counter, Histogram
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.client import Client
from temporalio.common import SearchAttributePair

from activities._errors import translate_errors
from connectors.erp import ErpPort, PostingResult, reversal_of
from connectors.hcm import HcmPort
from connectors.psa import PsaPort
from contracts.errors import NotFoundError
from contracts.money import Money
from contracts.naming import time_pipeline_workflow_id, time_sweep_schedule_id
from contracts.systems import System
from contracts.v1 import (
    BillingRule,
    CostPosting,
    ExpenseEntry,
    Invoice,
    InvoiceLine,
    PostingKind,
    Project,
    ProjectStatus,
    TimeEntry,
)
from contracts.v1.posting_keys import posting_key
from contracts.v1.time_to_invoice import (
    BILLING_SIGNAL,
    CORRECTABLE,
    ENTRIES_CHANGED_SIGNAL,
    PROCESS_TIME_TO_INVOICE,
    SWEEP_CURSOR,
    TIME_SWEEP,
    TIME_TO_INVOICE,
    BatchEntry,
    BatchResult,
    BillingRequest,
    BillingTrigger,
    CostCenterState,
    EntriesChanged,
    EntryException,
    EntryFacts,
    EntryKind,
    EntryOutcomeKind,
    EntryRef,
    ProcessBatch,
    RejectEntry,
    SweepInput,
    SweepResult,
    TimeExceptionCause,
    TimePipelineInput,
    check_entry,
    duplicate_fingerprint,
    entry_key,
    invoice_key,
    item_id_for,
    period_of,
)
from plumbing.temporal import BUSINESS_PROCESS, ensure_interval_schedule, signal_with_start
from store import NewExceptionItem, Store, TimePostingRow, TimePostingState

log = logging.getLogger("pssync.time_to_invoice")

CACHE_TTL_S = 30.0
HOURS = Decimal("0.000001")
"""Hours are posted (and kept in the ledger) to six places; minutes / 60 may not end."""
HEARTBEAT_EVERY_S = 2.0
SWEEP_PAGE = 1000
"""Entries signalled to one project's pipeline per signal by the sweep."""

POSTING_LATENCY = Histogram(
    "pssync_time_posting_latency_seconds",
    "From the PSA approval event to the entry's posting in the ERP",
    buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300, 3600),
)
ENTRY_OUTCOMES = Counter(
    "pssync_time_entries_total", "Time and expense entries reconciled, by outcome", ["outcome"]
)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _TtlCache:
    """Master data for a few seconds; concurrent misses for one key make one call."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]], *, fresh: bool = False) -> V:
        now = time.monotonic()
        hit = self._values.get(key)
        if hit is not None and hit[0] > now and not fresh:
            return hit[1]  # type: ignore[no-any-return]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self._values.get(key)
            if hit is not None and hit[0] > time.monotonic() and not fresh:
                return hit[1]  # type: ignore[no-any-return]
            value = await load()
            self._values[key] = (time.monotonic() + self.ttl_s, value)
            return value


async def _heartbeat_every(seconds: float) -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(seconds)


# --------------------------------------------------------------------------- per-entry work


@dataclass
class _Entry:
    """One entry of a batch with what the PSA says about it now."""

    item: BatchEntry
    kind: EntryKind
    key: str
    time: TimeEntry | None = None
    expense: ExpenseEntry | None = None

    @property
    def current(self) -> TimeEntry | ExpenseEntry | None:
        return self.time if self.kind is EntryKind.TIME else self.expense

    @property
    def version(self) -> str | None:
        cur = self.current
        return cur.source_version if cur is not None else self.item.ref.version


@dataclass
class _ProjectContext:
    psa_project_id: str
    project: Project
    erp_project: str | None
    """`eid:<enterprise id>` of the ERP project, None when the PSA project is not linked."""
    erp_status: ProjectStatus | None
    erp_cost_center: str | None
    currency: str


class ResolvedRow(BaseModel):
    """What the workflow's resolution handler needs back from a rejection."""

    outcome: EntryOutcomeKind
    detail: str = ""


class InvoicePlan(BaseModel):
    psa_project_id: str
    request: BillingRequest
    attempt: int = 0
    invoice: Invoice | None = None
    entry_keys: list[str] = Field(default_factory=list)
    time_entry_ids: list[str] = Field(default_factory=list)
    expense_ids: list[str] = Field(default_factory=list)
    milestone_codes: list[str] = Field(default_factory=list)
    status: str = "ready"
    """ready | nothing_to_bill | not_applicable"""
    detail: str = ""


class InvoiceRef(BaseModel):
    plan: InvoicePlan
    invoice_erp_id: str


class VoidInvoice(BaseModel):
    plan: InvoicePlan
    invoice_erp_id: str
    reason: str


class PrepareInvoice(BaseModel):
    psa_project_id: str
    request: BillingRequest
    attempt: int = 0


class TimeToInvoiceActivities:
    """Everything the pipeline does outside the workflow. `process_batch`, `create_invoice`
    and `void_invoice` are ERP-bound (the ERP task queue); the rest run on the main queue."""

    def __init__(
        self,
        psa: PsaPort,
        erp: ErpPort,
        hcm: HcmPort,
        store: Store,
        *,
        client: Client | None = None,
        cache_ttl_s: float = CACHE_TTL_S,
        pipeline_defaults: TimePipelineInput | None = None,
    ) -> None:
        self.psa = psa
        self.erp = erp
        self.hcm = hcm
        self.store = store
        self.client = client
        self.pipeline_defaults = pipeline_defaults
        self._workers = _TtlCache(cache_ttl_s)
        self._projects = _TtlCache(cache_ttl_s)
        self._rate_cards = _TtlCache(cache_ttl_s)
        self._cost_centers = _TtlCache(cache_ttl_s)
        self._cost_rates = _TtlCache(cache_ttl_s)

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

        reversals: list[tuple[_Entry, CostPosting]] = []
        to_post: list[tuple[_Entry, CostPosting, str]] = []
        """(entry, posting, fingerprint)"""
        invalid: list[tuple[_Entry, TimeExceptionCause, str | None, str]] = []
        ledger_rows: list[dict[str, Any]] = []
        fingerprints: dict[str, str] = {}

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
                    reversals.append((e, _posting_from_row(row)))
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
                reversals.append((e, _posting_from_row(row)))
            candidates.append((e, row))

        # Validate the approved candidates (master data cached, duplicates by fingerprint).
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
            facts, posting = await self._facts(ctx, e, duplicate_of)
            violation = check_entry(facts)
            if violation is None and posting is None:
                invalid.append(
                    (
                        e,
                        TimeExceptionCause.POSTING_REFUSED,
                        "worker_id",
                        f"the ERP has no cost rate for {facts.worker_id}",
                    )
                )
                continue
            if violation is not None:
                invalid.append((e, violation.cause, violation.field, violation.detail))
                continue
            assert posting is not None
            seen_in_batch.setdefault(fp, e.key)
            fingerprints[e.key] = fp
            to_post.append((e, posting, fp))

        # Reversals first: a new posting only goes in once the old one is reversed.
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
                        ledger_rows.append(
                            _row(e, ctx, TimePostingState.REVERSED, original, erp_id=None)
                            | {"entry_version": e.version or "", "item_id": None, "cause": None}
                        )
                else:
                    invalid.append(
                        (
                            e,
                            TimeExceptionCause.POSTING_REFUSED,
                            res.error.field if res.error else None,
                            _error_detail(res, "the ERP refused the reversal"),
                        )
                    )
            to_post = [
                t for t in to_post if t[0].key in reversed_ok or t[0].key not in _keys(reversals)
            ]

        if to_post:
            intents = [
                _row(e, ctx, TimePostingState.POSTING, p, erp_id=None, fingerprint=fp)
                for e, p, fp in to_post
            ]
            await asyncio.to_thread(self.store.record_time_postings, intents)
            post_results = await self.erp.post_time([p for _, p, _ in to_post])
            now = datetime.now(UTC)
            lineage: list[dict[str, Any]] = []
            for (e, posting, fp), res in zip(to_post, post_results, strict=True):
                if res.ok:
                    result.erp_postings += 1
                    result.outcomes[e.key] = (
                        EntryOutcomeKind.REPOSTED
                        if e.key in reversed_ok
                        else EntryOutcomeKind.POSTED
                    )
                    ledger_rows.append(
                        _row(
                            e,
                            ctx,
                            TimePostingState.POSTED,
                            posting,
                            erp_id=res.erp_id,
                            fingerprint=fp,
                        )
                    )
                    lineage.append(
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
                    invalid.append(
                        (
                            e,
                            cause,
                            res.error.field if res.error else None,
                            _error_detail(res, "the ERP refused the posting"),
                        )
                    )
            if lineage:
                await asyncio.to_thread(self.store.record_lineage_many, lineage)

        # Exceptions: one item per entry, owned by the calling workflow.
        for e, cause, field, detail in invalid:
            base = item_id_for(request.psa_project_id, e.key, e.version)
            item_id = f"{base}.{request.batch_id}" if e.item.item_id else base
            item = NewExceptionItem(
                id=item_id,
                workflow_id=info[0],
                run_id=info[1],
                process=PROCESS_TIME_TO_INVOICE,
                cause_code=cause.value,
                field=field,
                detail=detail,
                owner="delivery_manager",
                context={
                    "entry_key": e.key,
                    "entry_version": e.version,
                    "psa_project_id": request.psa_project_id,
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
                    field=field,
                    detail=detail,
                )
            )
            ledger_rows.append(
                _row(e, ctx, TimePostingState.EXCEPTION, None, erp_id=None)
                | {"cause": cause.value, "item_id": item_id}
            )
        if ledger_rows:
            await asyncio.to_thread(self.store.record_time_postings, ledger_rows)
        for outcome in result.outcomes.values():
            ENTRY_OUTCOMES.labels(outcome=outcome.value).inc()
        return result

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

    async def _project_context(self, psa_project_id: str, *, fresh: bool) -> _ProjectContext:
        async def load() -> _ProjectContext:
            project = await self.psa.get_project(psa_project_id)
            erp_project: str | None = None
            erp_status: ProjectStatus | None = None
            erp_cc: str | None = None
            if project.enterprise_id:
                erp_project = f"eid:{project.enterprise_id}"
                try:
                    erp = await self.erp.get_project(erp_project)
                    erp_status, erp_cc = erp.status, erp.cost_center
                except NotFoundError:
                    erp_project = None
            return _ProjectContext(
                psa_project_id=psa_project_id,
                project=project,
                erp_project=erp_project,
                erp_status=erp_status,
                erp_cost_center=erp_cc,
                currency=project.currency,
            )

        return await self._projects.get(psa_project_id, load, fresh=fresh)

    async def _facts(
        self, ctx: _ProjectContext, e: _Entry, duplicate_of: str | None
    ) -> tuple[EntryFacts, CostPosting | None]:
        cur = e.current
        assert cur is not None
        fresh = e.item.fresh
        corrections = e.item.corrections
        work_date = cur.date_performed if isinstance(cur, TimeEntry) else cur.date_incurred
        worker_id = cur.worker_id

        async def load_worker() -> Any:
            try:
                return await self.hcm.get_worker(worker_id)
            except NotFoundError:
                return None

        worker = await self._workers.get(worker_id, load_worker, fresh=fresh) if worker_id else None
        cost_center = (
            corrections.get("cost_center") or ctx.erp_cost_center or ctx.project.cost_center
        )

        async def load_cc() -> CostCenterState:
            return CostCenterState((await self.erp.cost_center_status(cost_center)).value)

        cc_state = await self._cost_centers.get(cost_center, load_cc, fresh=fresh)
        role = corrections.get("role") or (cur.role if isinstance(cur, TimeEntry) else None)
        bill_rate: Money | None = None
        if isinstance(cur, TimeEntry) and cur.billable and ctx.project.rate_card_id:
            card_id = ctx.project.rate_card_id

            async def load_card() -> Any:
                try:
                    return await self.psa.get_rate_card(card_id)
                except NotFoundError:
                    return None

            card = await self._rate_cards.get(card_id, load_card, fresh=fresh)
            if card is not None and role:
                bill_rate = card.rate_for(role, work_date)

        async def load_rate() -> Money | None:
            return await self.erp.get_cost_rate(worker_id)

        rate: Money | None = None
        if isinstance(cur, TimeEntry) and worker_id:
            rate = await self._cost_rates.get(worker_id, load_rate, fresh=fresh)
        facts = EntryFacts(
            kind=e.kind,
            work_date=work_date,
            worker_id=worker_id,
            role=role,
            psa_project_status=ctx.project.status,
            erp_project_status=ctx.erp_status if ctx.erp_project else None,
            cost_center=cost_center,
            cost_center_state=cc_state,
            worker_known=worker is not None,
            worker_active=worker is not None and worker.active_on(work_date),
            billable=cur.billable,
            bill_rate=bill_rate,
            duplicate_of=duplicate_of,
            not_duplicate=corrections.get("not_duplicate", "").lower() in ("1", "true", "yes"),
            cost_currency=rate.currency if rate is not None else None,
        )
        if check_entry(facts) is not None or ctx.erp_project is None:
            return facts, None
        on = work_date
        if isinstance(cur, TimeEntry):
            if rate is None:
                return facts, None
            hours = cur.hours.quantize(HOURS)
            posting = CostPosting(
                source_system=System.PSSYNC,
                source_version=cur.source_version,
                idempotency_key=posting_key(e.kind, cur.external_id, cur.source_version),
                kind=PostingKind.TIME,
                project_id=ctx.erp_project,
                worker_id=worker_id,
                source_entry_id=cur.external_id,
                posting_date=on,
                period=period_of(on),
                hours=hours,
                cost_amount=(rate * hours).rounded(),
                bill_amount=(bill_rate * hours).rounded() if bill_rate is not None else None,
                cost_center=cost_center,
            )
        else:
            posting = CostPosting(
                source_system=System.PSSYNC,
                source_version=cur.source_version,
                idempotency_key=posting_key(e.kind, cur.external_id, cur.source_version),
                kind=PostingKind.EXPENSE,
                project_id=ctx.erp_project,
                worker_id=worker_id,
                source_entry_id=cur.external_id,
                posting_date=on,
                period=period_of(on),
                hours=Decimal(0),
                cost_amount=cur.amount,
                bill_amount=cur.amount if cur.billable else None,
                cost_center=cost_center,
            )
        return facts, posting

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

    # ------------------------------------------------------------------ billing

    @activity.defn(name="time.prepare_invoice")
    @translate_errors
    async def prepare_invoice(self, request: PrepareInvoice) -> InvoicePlan:
        """What to bill: posted, billable, not yet invoiced entries (and the milestone)."""
        plan = InvoicePlan(
            psa_project_id=request.psa_project_id,
            request=request.request,
            attempt=request.attempt,
        )
        project = await self.psa.get_project(request.psa_project_id)
        if not project.enterprise_id:
            plan.status, plan.detail = "not_applicable", "the PSA project has no ERP project"
            return plan
        trigger = request.request
        lines: list[InvoiceLine] = []
        period: str | None = None
        milestone_code: str | None = None
        if trigger.trigger is BillingTrigger.MILESTONE:
            milestones = await self.psa.list_milestones(request.psa_project_id)
            ms = next(
                (m for m in milestones if trigger.milestone_id in (m.external_id, m.code)), None
            )
            if ms is None:
                raise NotFoundError(
                    f"no billing milestone {trigger.milestone_id} in project "
                    f"{request.psa_project_id}",
                    system=System.PSA,
                )
            milestone_code = ms.code
            plan.milestone_codes = [ms.code]
            if project.billing_rule is not BillingRule.TIME_AND_MATERIALS:
                lines.append(
                    InvoiceLine(
                        description=f"Milestone {ms.code}: {ms.name}",
                        quantity=Decimal(1),
                        amount=ms.amount,
                    )
                )
            rows = await asyncio.to_thread(self.store.unbilled_time, request.psa_project_id, None)
        else:
            if project.billing_rule is not BillingRule.TIME_AND_MATERIALS:
                plan.status = "not_applicable"
                plan.detail = f"{project.billing_rule.value} projects are billed by milestone"
                return plan
            period = trigger.period
            rows = await asyncio.to_thread(self.store.unbilled_time, request.psa_project_id, period)
        if project.billing_rule is BillingRule.TIME_AND_MATERIALS:
            lines += _tm_lines(rows, project.currency)
        plan.entry_keys = [r.entry_key for r in rows]
        plan.time_entry_ids = [r.entry_id for r in rows if r.kind == EntryKind.TIME.value]
        plan.expense_ids = [r.entry_id for r in rows if r.kind == EntryKind.EXPENSE.value]
        if not lines:
            plan.status, plan.detail = "nothing_to_bill", "no billable, unbilled entries"
            return plan
        plan.invoice = Invoice(
            source_system=System.PSSYNC,
            idempotency_key=invoice_key(request.psa_project_id, trigger, request.attempt),
            project_id=f"eid:{project.enterprise_id}",
            customer_id=project.customer_id,
            period=period,
            milestone_code=milestone_code,
            invoice_date=_today(),
            lines=lines,
        )
        return plan

    @activity.defn(name="time.create_invoice")
    @translate_errors
    async def create_invoice(self, plan: InvoicePlan) -> str:
        assert plan.invoice is not None
        return await self.erp.create_invoice(plan.invoice)

    @activity.defn(name="time.mark_invoiced")
    @translate_errors
    async def mark_invoiced(self, ref: InvoiceRef) -> str:
        """Mark the entries (and milestone) invoiced in the PSA, then in the ledger."""
        plan = ref.plan
        assert plan.invoice is not None
        psa_invoice = await self.psa.mark_invoiced(
            plan.time_entry_ids,
            invoice_ref=plan.invoice.idempotency_key,
            expense_ids=plan.expense_ids,
            project_id=plan.psa_project_id,
            milestone_codes=plan.milestone_codes,
        )
        await asyncio.to_thread(
            self.store.mark_time_billed, plan.entry_keys, plan.invoice.idempotency_key
        )
        return psa_invoice

    @activity.defn(name="time.void_invoice")
    @translate_errors
    async def void_invoice(self, request: VoidInvoice) -> None:
        """Compensation: the PSA could not be marked, so the ERP invoice must not stand."""
        assert request.plan.invoice is not None
        await self.erp.void_invoice(request.invoice_erp_id, reason=request.reason)
        try:
            await self.psa.unmark_invoiced(invoice_ref=request.plan.invoice.idempotency_key)
        finally:
            await asyncio.to_thread(
                self.store.unmark_time_billed, request.plan.invoice.idempotency_key
            )

    # ------------------------------------------------------------------ the sweep

    @activity.defn(name="time.sweep")
    @translate_errors
    async def sweep(self, request: SweepInput) -> SweepResult:
        """Approved, not invoiced entries changed since the cursor whose version the ledger
        has not seen go to their project's pipeline (signal-with-start). The cursor moves only
        after every signal went out, so a crash re-reads the window."""
        ticker = asyncio.create_task(_heartbeat_every(HEARTBEAT_EVERY_S))
        try:
            return await self._sweep(request)
        finally:
            ticker.cancel()

    async def _sweep(self, request: SweepInput) -> SweepResult:
        if self.client is None:
            raise RuntimeError("the sweep needs a Temporal client")
        defaults = self.pipeline_defaults or TimePipelineInput(
            psa_tenant=request.psa_tenant, psa_project_id="-"
        )
        defaults = defaults.model_copy(update={"psa_tenant": request.psa_tenant})
        cursor_name = f"{SWEEP_CURSOR}/{request.psa_tenant}"
        stored = await asyncio.to_thread(self.store.get_state, cursor_name)
        since = (
            datetime.fromisoformat(stored) - timedelta(seconds=request.overlap_s)
            if stored
            else None
        )
        result = SweepResult()
        newest: datetime | None = None
        by_project: dict[str, list[EntryRef]] = {}
        refs: list[tuple[str, EntryRef]] = []
        async for t in self.psa.list_approved_time(since, invoiced=False):
            refs.append(
                (
                    t.project_id,
                    EntryRef(kind=EntryKind.TIME, entry_id=t.external_id, version=t.source_version),
                )
            )
            newest = (
                max(newest, t.updated_at) if newest and t.updated_at else (t.updated_at or newest)
            )
        async for x in self.psa.list_approved_expenses(since, invoiced=False):
            refs.append(
                (
                    x.project_id,
                    EntryRef(
                        kind=EntryKind.EXPENSE, entry_id=x.external_id, version=x.source_version
                    ),
                )
            )
            newest = (
                max(newest, x.updated_at) if newest and x.updated_at else (x.updated_at or newest)
            )
        result.seen = len(refs)
        ledger = await asyncio.to_thread(self.store.time_postings, [r.key for _, r in refs])
        for project_id, ref in refs:
            row = ledger.get(ref.key)
            if (
                row is not None
                and row.entry_version == ref.version
                and row.state != (TimePostingState.POSTING.value)
            ):
                continue  # the pipeline has seen this version (posted, held, or rejected)
            by_project.setdefault(project_id, []).append(ref)
        task_queue = activity.info().task_queue
        for project_id, project_refs in by_project.items():
            for i in range(0, len(project_refs), SWEEP_PAGE):
                await signal_pipeline(
                    self.client,
                    defaults,
                    project_id,
                    ENTRIES_CHANGED_SIGNAL,
                    EntriesChanged(refs=project_refs[i : i + SWEEP_PAGE], source="sweep"),
                    task_queue=task_queue,
                )
                activity.heartbeat()
            result.signalled += len(project_refs)
            result.projects.append(project_id)
        # T&M periods that have closed (a month before this one) with unbilled entries.
        this_period = period_of(_today())
        for project_id, period in await asyncio.to_thread(self.store.unbilled_periods, this_period):
            await signal_pipeline(
                self.client,
                defaults,
                project_id,
                BILLING_SIGNAL,
                BillingRequest(
                    trigger=BillingTrigger.PERIOD_CLOSE, period=period, requested_by="sweep"
                ),
                task_queue=task_queue,
            )
            result.billing_requested.append(f"{project_id}/{period}")
        if newest is not None:
            await asyncio.to_thread(self.store.put_state, cursor_name, newest.isoformat())
            result.cursor = newest.isoformat()
        return result


async def signal_pipeline(
    client: Client,
    defaults: TimePipelineInput,
    psa_project_id: str,
    signal: str,
    arg: EntriesChanged | BillingRequest,
    *,
    task_queue: str,
) -> str:
    """Signal-with-start the project's pipeline; its workflow id. `defaults` carries the
    deployment's batch settings (see `contracts.v1.time_to_invoice.pipeline_input`)."""
    workflow_id = time_pipeline_workflow_id(defaults.psa_tenant, psa_project_id)
    await signal_with_start(
        client,
        TIME_TO_INVOICE,
        defaults.model_copy(update={"psa_project_id": psa_project_id, "carry": None}),
        id=workflow_id,
        signal=signal,
        signal_arg=arg,
        task_queue=task_queue,
        search_attributes=[SearchAttributePair(BUSINESS_PROCESS, PROCESS_TIME_TO_INVOICE)],
        static_summary=f"Time and expense of PSA project {psa_project_id} -> ERP and invoices",
    )
    return workflow_id


async def ensure_time_sweep_schedule(
    client: Client, *, every: timedelta, task_queue: str, psa_tenant: str
) -> None:
    """Create (or bring up to date) the Schedule that sweeps the PSA every `every` for
    approved entries webhooks missed, and bills closed T&M periods. Overlaps are skipped."""
    await ensure_interval_schedule(
        client,
        time_sweep_schedule_id(psa_tenant),
        TIME_SWEEP,
        SweepInput(psa_tenant=psa_tenant),
        every=every,
        task_queue=task_queue,
    )


# --------------------------------------------------------------------------- helpers


def _activity_info() -> tuple[str, str | None]:
    try:
        info = activity.info()
    except RuntimeError:  # called outside an activity (unit tests)
        return "local", None
    return info.workflow_id or "local", info.workflow_run_id


def _today() -> date:
    return datetime.now(UTC).date()


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


def _tm_lines(rows: Sequence[TimePostingRow], currency: str) -> list[InvoiceLine]:
    """T&M invoice lines: one per period and kind, with the entries they cover."""
    grouped: dict[tuple[str, str], list[TimePostingRow]] = {}
    for r in rows:
        grouped.setdefault((r.period or "", r.kind), []).append(r)
    lines = []
    for (period, kind), group in sorted(grouped.items()):
        amount = sum((r.bill_amount or Decimal(0) for r in group), Decimal(0))
        quantity = (
            sum((r.hours for r in group), Decimal(0))
            if kind == EntryKind.TIME.value
            else Decimal(len(group))
        )
        label = "Time and materials" if kind == EntryKind.TIME.value else "Billable expenses"
        lines.append(
            InvoiceLine(
                description=f"{label} {period}".strip(),
                quantity=quantity,
                amount=Money(amount=amount, currency=currency),
                source_entry_ids=[r.entry_id for r in group],
            )
        )
    return lines


__all__ = [
    "InvoicePlan",
    "InvoiceRef",
    "PrepareInvoice",
    "ResolvedRow",
    "TimeToInvoiceActivities",
    "VoidInvoice",
    "entry_key",
    "posting_key",
    "signal_pipeline",
]
