"""Approved PSA time -> ERP cost postings, for one worker up to a day.

    report = await post_approved_time(psa, erp, "W-00042", through=date(2026, 6, 30))
    report.posted, report.already_posted, report.failed, report.unapproved

Reusable beyond the termination process (the time-to-invoice pipeline can call the function):
an entry counts as posted when the ERP holds a time posting for it that has not been reversed,
so a re-run posts only what is missing. Each posting's idempotency key derives from the PSA
entry's id and version (`contracts.v1.posting_keys`, which the time-to-invoice pipeline uses
too), so neither a retried batch nor the other path posts an entry twice. Postings are priced
at the worker's labor cost in force on the entry's date (`cost_rate_on`: the ERP's
effective-dated rate history where it has one, else the employee's current labor cost), so a
cost-rate change applies only to time dated from its day. No business decisions here: what to
do about failures is the caller's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, Field
from temporalio import activity

from activities._errors import translate_errors
from connectors.erp import ErpPort
from connectors.erp.labor_cost import ErpLaborCostPort, rate_on
from connectors.psa import PsaPort
from contracts.errors import NotFoundError
from contracts.money import Money
from contracts.systems import System
from contracts.v1 import CostPosting, PostingKind, TimeEntry
from contracts.v1.posting_keys import entry_posting_key


class UnpostedEntry(BaseModel):
    entry_id: str
    project_id: str
    date_performed: date
    minutes: int
    code: str
    detail: str


class TimePostingReport(BaseModel):
    worker_id: str
    through: date
    posted: list[str] = Field(default_factory=list)
    """Entries posted by this call."""
    already_posted: list[str] = Field(default_factory=list)
    failed: list[UnpostedEntry] = Field(default_factory=list)
    """Approved entries the ERP did not accept (or that cannot be priced or placed)."""
    unapproved: list[UnpostedEntry] = Field(default_factory=list)
    """Entries on or before `through` still waiting for approval in the PSA."""

    @property
    def complete(self) -> bool:
        return not self.failed and not self.unapproved


async def post_approved_time(
    psa: PsaPort,
    erp: ErpPort,
    worker_id: str,
    *,
    through: date,
    performed_from: date | None = None,
    cost_center: str | None = None,
) -> TimePostingReport:
    """Post every approved, not yet posted entry of `worker_id` performed up to `through`."""
    report = TimePostingReport(worker_id=worker_id, through=through)
    entries = await psa.list_worker_time(
        worker_id, performed_from=performed_from, performed_through=through
    )
    for entry in entries:
        if not entry.approved:
            report.unapproved.append(_unposted(entry, "TIME_NOT_APPROVED", "not approved yet"))
    approved = [e for e in entries if e.approved]
    if not approved:
        return report
    rate_of = await cost_rate_on(erp, worker_id)
    by_project: dict[str, list[TimeEntry]] = {}
    for entry in approved:
        by_project.setdefault(entry.project_id, []).append(entry)
    todo: list[tuple[TimeEntry, CostPosting]] = []
    for psa_project, project_entries in by_project.items():
        project = await psa.get_project(psa_project)
        if not project.enterprise_id:
            for entry in project_entries:
                report.failed.append(
                    _unposted(entry, "PROJECT_NOT_LINKED", "the PSA project has no ERP project")
                )
            continue
        erp_project = f"eid:{project.enterprise_id}"
        posted = await _posted_entry_ids(erp, erp_project)
        for entry in project_entries:
            rate = rate_of(entry.date_performed)
            if entry.external_id in posted:
                report.already_posted.append(entry.external_id)
            elif rate is None:
                report.failed.append(
                    _unposted(entry, "NO_COST_RATE", f"the ERP has no cost rate for {worker_id}")
                )
            elif entry.billable and entry.bill_rate and entry.bill_rate.currency != rate.currency:
                # One posting carries one currency: a person fixes the cost rate or the rate
                # card (the same rule as the time-to-invoice pipeline's CurrencyMismatch).
                report.failed.append(
                    _unposted(
                        entry,
                        "CURRENCY_MISMATCH",
                        f"labor cost in {rate.currency}, bill rate in {entry.bill_rate.currency}",
                    )
                )
            else:
                todo.append(
                    (entry, _posting(entry, erp_project, rate, cost_center or project.cost_center))
                )
    if todo:
        results = await erp.post_time([p for _, p in todo])
        for (entry, _), result in zip(todo, results, strict=True):
            if result.ok:
                report.posted.append(entry.external_id)
            else:
                error = result.error
                report.failed.append(
                    _unposted(
                        entry,
                        error.code if error and error.code else "POSTING_REFUSED",
                        error.detail or error.message if error else "refused",
                    )
                )
    return report


async def cost_rate_on(erp: ErpPort, worker_id: str) -> Callable[[date], Money | None]:
    """What an hour of the worker's time costs on a given day: the row of the ERP's labor cost
    history in force that day (`ErpLaborCostPort`), else — no history, or a day before its
    first row — the employee's current labor cost (`get_cost_rate`). Reads the ERP once."""
    current = await erp.get_cost_rate(worker_id)
    history = await erp.labor_cost_rates(worker_id) if isinstance(erp, ErpLaborCostPort) else []

    def on(day: date) -> Money | None:
        row = rate_on(history, day)
        return row.rate if row is not None else current

    return on


async def _posted_entry_ids(erp: ErpPort, erp_project: str) -> set[str]:
    try:
        postings = await erp.list_postings(erp_project)
    except NotFoundError:
        return set()
    reversed_keys = {p.reverses for p in postings if p.reverses}
    return {
        p.source_entry_id
        for p in postings
        if p.kind is PostingKind.TIME and p.idempotency_key not in reversed_keys
    }


HOURS = Decimal("0.000001")


def _posting(entry: TimeEntry, erp_project: str, rate: Money, cost_center: str) -> CostPosting:
    """The same posting the time-to-invoice pipeline makes for the entry (same key, hours to
    six places, bill amount at the PSA's rate), so whichever of the two posts first, the other
    finds an identical record under the key."""
    on = entry.date_performed
    hours = entry.hours.quantize(HOURS)
    bill = entry.bill_rate if entry.billable else None
    return CostPosting(
        source_system=System.PSSYNC,
        idempotency_key=entry_posting_key(entry),
        kind=PostingKind.TIME,
        project_id=erp_project,
        worker_id=entry.worker_id,
        source_entry_id=entry.external_id,
        posting_date=on,
        period=f"{on.year:04d}-{on.month:02d}",
        hours=hours,
        cost_amount=(rate * hours).rounded(),
        bill_amount=(bill * hours).rounded() if bill is not None else None,
        cost_center=cost_center,
    )


def _unposted(entry: TimeEntry, code: str, detail: str) -> UnpostedEntry:
    return UnpostedEntry(
        entry_id=entry.external_id,
        project_id=entry.project_id,
        date_performed=entry.date_performed,
        minutes=entry.minutes,
        code=code,
        detail=detail,
    )


class PostApprovedTime(BaseModel):
    worker_id: str
    through: date
    performed_from: date | None = None
    cost_center: str | None = None
    """Default: each project's cost center."""


class TimePostingActivities:
    """ERP-bound (runs on the ERP queue): reads the PSA, posts to the ERP."""

    def __init__(self, psa: PsaPort, erp: ErpPort) -> None:
        self.psa = psa
        self.erp = erp

    @activity.defn(name="time.post_approved_time")
    @translate_errors
    async def post_approved_time(self, request: PostApprovedTime) -> TimePostingReport:
        return await post_approved_time(
            self.psa,
            self.erp,
            request.worker_id,
            through=request.through,
            performed_from=request.performed_from,
            cost_center=request.cost_center,
        )
