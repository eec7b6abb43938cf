"""Master data of the time-to-invoice activities, cached for a few seconds per worker process
(HCM workers, rate cards, cost centers, ERP projects and cost rates), and `_Base`: the ports
and caches every seam of `TimeToInvoiceActivities` shares, with the reads through the caches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

from temporalio.client import Client

from activities.time_posting import cost_rate_on
from connectors.erp import ErpPort
from connectors.hcm import HcmPort
from connectors.psa import PsaPort
from contracts.errors import NotFoundError
from contracts.money import Money
from contracts.systems import System
from contracts.v1 import (
    CostPosting,
    ExpenseEntry,
    PostingKind,
    Project,
    ProjectStatus,
    TimeEntry,
)
from contracts.v1.posting_keys import posting_key
from contracts.v1.rate_cards import ErpRateCardRevision, bill_rate_on
from contracts.v1.time_to_invoice import (
    BatchEntry,
    CostCenterState,
    EntryFacts,
    EntryKind,
    TimePipelineInput,
    check_entry,
    period_of,
)
from store import Store

CACHE_TTL_S = 30.0
HOURS = Decimal("0.000001")
"""Hours are posted (and kept in the ledger) to six places; minutes / 60 may not end."""

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


class _Base:
    """The ports and master-data caches of `TimeToInvoiceActivities` (set by its constructor),
    and the reads of master data through the caches."""

    psa: PsaPort
    erp: ErpPort
    hcm: HcmPort
    store: Store
    client: Client | None
    pipeline_defaults: TimePipelineInput | None
    _workers: _TtlCache
    _projects: _TtlCache
    _rate_cards: _TtlCache
    _cost_centers: _TtlCache
    _cost_rates: _TtlCache

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

    async def _rate_card_decisions(self, card_id: str, *, fresh: bool) -> list[ErpRateCardRevision]:
        """pssync's decisions on the card's revisions as the ERP keeps them (a revision held
        for finance or rejected does not price time; an acknowledged one only from its
        date)."""

        async def load() -> list[ErpRateCardRevision]:
            return await self.erp.list_rate_card_revisions(card_id)

        return await self._rate_cards.get(("decisions", card_id), load, fresh=fresh)

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
                decisions = await self._rate_card_decisions(card_id, fresh=fresh)
                bill_rate = bill_rate_on(card, role, work_date, decisions)

        async def load_rate() -> Callable[[date], Money | None]:
            return await cost_rate_on(self.erp, worker_id)

        rate: Money | None = None
        if isinstance(cur, TimeEntry) and worker_id:
            # the labor cost in force on the entry's date, not today's
            rate = (await self._cost_rates.get(worker_id, load_rate, fresh=fresh))(work_date)
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
        if isinstance(cur, TimeEntry):
            if rate is None:
                return facts, None
            return facts, _time_posting(e, cur, ctx.erp_project, cost_center, rate, bill_rate)
        return facts, _expense_posting(e, cur, ctx.erp_project, cost_center)


def _time_posting(
    e: _Entry,
    cur: TimeEntry,
    erp_project: str,
    cost_center: str,
    rate: Money,
    bill_rate: Money | None,
) -> CostPosting:
    """A valid time entry's ERP cost posting, at the worker's cost rate."""
    hours = cur.hours.quantize(HOURS)
    return _posting(
        e,
        cur,
        cur.date_performed,
        erp_project,
        cost_center,
        kind=PostingKind.TIME,
        hours=hours,
        cost_amount=(rate * hours).rounded(),
        bill_amount=(bill_rate * hours).rounded() if bill_rate is not None else None,
    )


def _expense_posting(
    e: _Entry, cur: ExpenseEntry, erp_project: str, cost_center: str
) -> CostPosting:
    """A valid expense's ERP cost posting, at its amount."""
    return _posting(
        e,
        cur,
        cur.date_incurred,
        erp_project,
        cost_center,
        kind=PostingKind.EXPENSE,
        hours=Decimal(0),
        cost_amount=cur.amount,
        bill_amount=cur.amount if cur.billable else None,
    )


def _posting(
    e: _Entry,
    cur: TimeEntry | ExpenseEntry,
    on: date,
    erp_project: str,
    cost_center: str,
    *,
    kind: PostingKind,
    hours: Decimal,
    cost_amount: Money,
    bill_amount: Money | None,
) -> CostPosting:
    """The cost posting of one version of a PSA record, dated `on`: keyed by that version,
    on the worker, the ERP project and the cost center."""
    return CostPosting(
        source_system=System.PSSYNC,
        source_version=cur.source_version,
        idempotency_key=posting_key(e.kind, cur.external_id, cur.source_version),
        kind=kind,
        project_id=erp_project,
        worker_id=cur.worker_id,
        source_entry_id=cur.external_id,
        posting_date=on,
        period=period_of(on),
        hours=hours,
        cost_amount=cost_amount,
        bill_amount=bill_amount,
        cost_center=cost_center,
    )
