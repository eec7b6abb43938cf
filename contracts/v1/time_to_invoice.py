"""Inputs, outputs, messages and pure rules of the time-to-invoice pipeline.

    from contracts.v1.time_to_invoice import EntryRef, EntriesChanged, check_entry

Approved PSA time and expense reach the ERP through one long-lived `TimeToInvoice` run per PSA
project (no workflow per entry). Webhooks and the sweep Schedule signal it with `EntryRef`s; it
batches them and an ERP-bound activity reads each entry's *current* state in the PSA, validates it
(`check_entry`), and makes the ERP agree with it: post, reverse and repost an edited entry,
reverse an unapproved one, or leave it as it is. An invalid entry becomes an exception item with a
typed `TimeExceptionCause` while the rest of the batch goes on. No I/O here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import Field

from contracts.money import Money
from contracts.settings import Settings
from contracts.v1.models import ProjectStatus
from contracts.v1.processes import RESOLVER_ROLES, DeskState, Message, ResolutionAction

TIME_TO_INVOICE = "TimeToInvoice"
TIME_SWEEP = "TimeToInvoiceSweep"
PROCESS_TIME_TO_INVOICE = "time_to_invoice"
ENTRIES_CHANGED_SIGNAL = "entries_changed"
BILLING_SIGNAL = "billing_requested"
STATUS_QUERY = "status"
TIME_SWEEP_SCHEDULE_ID = "time-to-invoice-sweep"
SWEEP_CURSOR = "time_to_invoice.sweep_cursor"
"""`sync_state` name of the sweep's watermark (the newest `updated_at` it has read)."""

DEFAULT_BATCH_SIZE = 200
"""Entries per ERP async job (NetSuite's batch limit in the twin is 200 records)."""


class EntryKind(StrEnum):
    TIME = "time"
    EXPENSE = "expense"


def entry_key(kind: EntryKind | str, entry_id: str) -> str:
    """The pipeline's (and the ledger's) key of a PSA time entry or expense."""
    return f"{EntryKind(kind).value}:{entry_id}"


class TimeExceptionCause(StrEnum):
    """Why an approved entry cannot go to the ledger as it is; each waits for a person."""

    MISSING_RATE_CARD = "MissingRateCard"
    """The project's rate card has no bill rate for the entry's role on its date."""
    INVALID_COST_CENTER = "InvalidCostCenter"
    """The cost center is unknown to the ERP or inactive there."""
    INACTIVE_WORKER = "InactiveWorker"
    """HCM says the worker was not employed (or had stopped working) on the entry's date."""
    PROJECT_CLOSED = "ProjectClosed"
    """The project is closed for time in the PSA or the ERP, or has no ERP project."""
    DUPLICATE = "Duplicate"
    """Another entry of the same worker, project, day, task and duration is already posted."""
    POSTING_REFUSED = "PostingRefused"
    """The ERP refused the posting for another business reason (e.g. a closed period)."""
    BILLING_FAILED = "BillingFailed"
    """The PSA refused to mark an invoice's entries invoiced; the ERP invoice was voided."""
    CURRENCY_MISMATCH = "CurrencyMismatch"
    """The worker's labor cost and the project's bill rate are in different currencies: the
    ERP takes one currency per posting (fix the cost rate or the rate card, then retry)."""
    BILLING_STALLED = "BillingStalled"
    """The PSA did not answer while marking an invoice's entries invoiced, for longer than
    the pipeline waits: the ERP invoice stands (not voided); a retry marks it again."""


CORRECTABLE: dict[TimeExceptionCause, frozenset[str]] = {
    TimeExceptionCause.MISSING_RATE_CARD: frozenset({"role"}),
    TimeExceptionCause.INVALID_COST_CENTER: frozenset({"cost_center"}),
    TimeExceptionCause.DUPLICATE: frozenset({"not_duplicate"}),
    TimeExceptionCause.INACTIVE_WORKER: frozenset(),
    TimeExceptionCause.PROJECT_CLOSED: frozenset(),
    TimeExceptionCause.POSTING_REFUSED: frozenset({"cost_center"}),
    TimeExceptionCause.BILLING_FAILED: frozenset(),
    TimeExceptionCause.BILLING_STALLED: frozenset(),
    TimeExceptionCause.CURRENCY_MISMATCH: frozenset(),
}
"""Corrections a person may send with `retry_with_data`, per cause. Only ERP-side dimensions
(cost center, billing role) and a duplicate confirmation: the hours, date and project belong to
the PSA, so a wrong one is rejected back to the PSA and comes again once fixed there."""

ALLOWED_ACTIONS = (
    ResolutionAction.RETRY,
    ResolutionAction.RETRY_WITH_DATA,
    ResolutionAction.REJECT,
)
TIME_RESOLVER_ROLES = RESOLVER_ROLES[PROCESS_TIME_TO_INVOICE]
"""Roles that may resolve this process's exception items."""


# --------------------------------------------------------------------------- messages


class EntryRef(Message):
    """A PSA time entry or expense that changed (a webhook or the sweep saw it)."""

    kind: EntryKind = EntryKind.TIME
    entry_id: str = Field(min_length=1, max_length=64)
    version: str | None = None
    observed_at: datetime | None = None
    """When the change was announced (the webhook's timestamp), for the posting latency."""

    @property
    def key(self) -> str:
        return entry_key(self.kind, self.entry_id)


class EntriesChanged(Message):
    """Signal: entries of one project changed; the pipeline reconciles each with the ERP."""

    refs: list[EntryRef] = Field(min_length=1)
    source: str = "webhook"


class BillingTrigger(StrEnum):
    MILESTONE = "milestone"
    """A PSA billing milestone was completed."""
    PERIOD_CLOSE = "period_close"
    """A T&M billing period (a calendar month) closed."""


class BillingRequest(Message):
    """Signal: bill the project — a completed milestone or a closed T&M period."""

    trigger: BillingTrigger
    period: str | None = Field(default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    milestone_id: str | None = None
    requested_by: str = "psa"

    @property
    def key(self) -> str:
        if self.trigger is BillingTrigger.MILESTONE:
            return f"ms-{self.milestone_id}"
        return f"period-{self.period}"


class BatchEntry(Message):
    """One entry of a batch: what to reconcile, with a person's corrections when retried."""

    ref: EntryRef
    corrections: dict[str, str] = Field(default_factory=dict)
    fresh: bool = False
    """Read master data afresh (a person says it was fixed) instead of the short cache."""
    item_id: str | None = None
    """The exception item this attempt resolves."""


class ProcessBatch(Message):
    psa_tenant: str
    psa_project_id: str
    batch_id: str
    entries: list[BatchEntry] = Field(min_length=1)


class EntryOutcomeKind(StrEnum):
    POSTED = "posted"
    REPOSTED = "reposted"
    """Posted before at another version: reversed, then posted as it is now."""
    REVERSED = "reversed"
    """No longer approved: its posting was reversed."""
    UNCHANGED = "unchanged"
    """Already posted at this version (a repeated event)."""
    NOT_APPROVED = "not_approved"
    """Not approved and never posted: nothing to do."""
    NOT_FOUND = "not_found"
    INVOICED = "invoiced"
    """Already invoiced in the PSA at another version: left for a person (never edited)."""
    EXCEPTION = "exception"
    REJECTED = "rejected"
    QUEUED = "queued"
    """The retry is queued: the ERP did not answer in time; it goes out when it does."""


class EntryException(Message):
    """An entry that needs a person: the exception item the activity recorded."""

    key: str
    version: str | None = None
    item_id: str
    cause: TimeExceptionCause
    field: str | None = None
    detail: str


class BatchResult(Message):
    batch_id: str
    outcomes: dict[str, EntryOutcomeKind] = Field(default_factory=dict)
    """Entry key -> what happened to it."""
    exceptions: list[EntryException] = Field(default_factory=list)
    erp_postings: int = 0
    """Postings (and reversals) the ERP holds because of this batch."""


class RejectEntry(Message):
    psa_project_id: str
    ref: EntryRef
    item_id: str
    reason: str


class OpenTimeItem(Message):
    """An exception item the pipeline holds open, with what it needs to retry the entry."""

    item_id: str
    key: str
    ref: EntryRef
    cause: TimeExceptionCause
    field: str | None = None
    detail: str
    opened_at: datetime
    escalated: bool = False


class TimeResolutionResult(Message):
    item_id: str
    action: ResolutionAction
    outcome: EntryOutcomeKind
    new_item_id: str | None = None
    """When the retry hit another (or the same) problem: the new item to look at."""
    detail: str = ""


class BillingOutcome(Message):
    key: str
    status: str
    """invoiced | nothing_to_bill | not_applicable | voided"""
    invoice_key: str | None = None
    invoice_erp_id: str | None = None
    psa_invoice_id: str | None = None
    total: Money | None = None
    entries: int = 0
    detail: str = ""


class PipelineCarry(Message):
    """What a run hands to its continuation (continue-as-new)."""

    pending: list[BatchEntry] = Field(default_factory=list)
    open_items: list[OpenTimeItem] = Field(default_factory=list)
    billing: list[BillingRequest] = Field(default_factory=list)
    billing_attempts: dict[str, int] = Field(default_factory=dict)
    billing_held: dict[str, BillingRequest] = Field(default_factory=dict)
    """Billing waiting for a person (exception item id -> request)."""
    counters: dict[str, int] = Field(default_factory=dict)
    billed: list[BillingOutcome] = Field(default_factory=list)
    desk: DeskState | None = None
    """The exception desk (open and recently closed items); None from runs before it."""
    pending_refs: list[str] = Field(default_factory=list)
    """Pending entries with nothing but their ref, compact (`compact_ref`): an outage can
    leave many thousands waiting, and the carry must stay far below the payload limit."""
    marks_held: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Invoices standing in the ERP whose PSA marking stalled (item id -> the marking's
    input, as JSON): a retry marks them again, never invoices again."""
    remarks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Re-marks a person asked for and the run had not yet done (item id -> input, JSON)."""


def compact_ref(ref: EntryRef) -> str:
    """An `EntryRef` in a few dozen bytes: `["kind","id","version","observed_at"]`."""
    observed = ref.observed_at.isoformat() if ref.observed_at else ""
    return json.dumps(
        [ref.kind.value, ref.entry_id, ref.version or "", observed], separators=(",", ":")
    )


def expand_ref(text: str) -> EntryRef:
    kind, entry_id, version, observed = json.loads(text)
    return EntryRef(
        kind=EntryKind(kind),
        entry_id=entry_id,
        version=version or None,
        observed_at=datetime.fromisoformat(observed) if observed else None,
    )


class TimePipelineInput(Message):
    psa_tenant: str
    psa_project_id: str
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1, le=DEFAULT_BATCH_SIZE)
    linger_ms: int = Field(default=1_000, ge=0, le=60_000)
    """While a batch of the project is at the ERP, how long a part-full one waits for it to
    come back or fill before taking another slot (latency vs. ERP calls). With no batch out,
    a part-full batch goes at once. A Temporal timer fires no sooner than about a second
    (50, 200 and 500 ms timers all fired after 1.0 s on the dev server), so less acts as 1 s."""
    max_batches_in_flight: int = Field(default=2, ge=1, le=16)
    escalation_after_s: float = Field(default=86_400, gt=0)
    idle_close_s: float = Field(default=3_600, gt=0)
    """A run with nothing pending and nothing open completes after this long idle."""
    max_history_events: int = Field(default=20_000, ge=100, le=50_000)
    """Continue as new past this many history events (or when the server suggests it)."""
    drain_grace_s: float = Field(default=30, gt=0)
    """Before continuing as new, batches in flight get this long to finish; then they are
    cancelled and their entries carried (an ERP outage must not keep history growing)."""
    billing_psa_wait_s: float = Field(default=3_600, gt=0)
    """How long marking an invoice in the PSA is retried through an outage before a person
    is asked (the ERP invoice stands meanwhile; only a PSA refusal voids it)."""
    carry: PipelineCarry | None = None


def pipeline_input(settings: Settings, psa_project_id: str) -> TimePipelineInput:
    """A project's pipeline as the deployment's settings configure it."""
    return TimePipelineInput(
        psa_tenant=settings.psa.tenant,
        psa_project_id=psa_project_id,
        batch_size=settings.time_batch_size,
        linger_ms=settings.time_linger_ms,
        max_batches_in_flight=settings.time_batches_in_flight,
        escalation_after_s=settings.escalation_after_s,
    )


class PipelineStatus(Message):
    psa_project_id: str
    pending: int
    in_flight: int
    counters: dict[str, int]
    open_items: list[OpenTimeItem]
    billed: list[BillingOutcome]


class SweepInput(Message):
    psa_tenant: str
    overlap_s: float = Field(default=300, ge=0)


class SweepResult(Message):
    seen: int = 0
    signalled: int = 0
    projects: list[str] = Field(default_factory=list)
    billing_requested: list[str] = Field(default_factory=list)
    """project/period of closed T&M periods the sweep asked to bill."""
    cursor: str | None = None


# --------------------------------------------------------------------------- pure rules


class CostCenterState(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class EntryFacts:
    """What validation needs to know about one entry, gathered by the activity."""

    kind: EntryKind
    work_date: date
    worker_id: str
    role: str | None
    psa_project_status: ProjectStatus
    erp_project_status: ProjectStatus | None
    """None: the PSA project has no ERP project."""
    cost_center: str
    cost_center_state: CostCenterState
    worker_known: bool
    worker_active: bool
    billable: bool
    bill_rate: Money | None
    """The rate card's bill rate for the (corrected) role on the date; None when none."""
    duplicate_of: str | None = None
    """Entry key of an already-posted twin of this entry, if any."""
    not_duplicate: bool = False
    """A person confirmed it is not a duplicate."""
    cost_currency: str | None = None
    """The currency of the worker's labor cost in the ERP (None: not known)."""


@dataclass(frozen=True)
class Violation:
    cause: TimeExceptionCause
    field: str | None
    detail: str


_OPEN = (ProjectStatus.ACTIVE, ProjectStatus.PROVISIONING)


def check_entry(facts: EntryFacts) -> Violation | None:
    """The first rule an entry breaks, in the order a person would fix them, or None."""
    if facts.psa_project_status not in _OPEN:
        return Violation(
            TimeExceptionCause.PROJECT_CLOSED,
            "project_id",
            f"the PSA project is {facts.psa_project_status.value}",
        )
    if facts.erp_project_status is None:
        return Violation(
            TimeExceptionCause.PROJECT_CLOSED, "project_id", "the PSA project has no ERP project"
        )
    if facts.erp_project_status not in _OPEN:
        return Violation(
            TimeExceptionCause.PROJECT_CLOSED,
            "project_id",
            f"the ERP project is {facts.erp_project_status.value}",
        )
    if not facts.worker_known:
        return Violation(
            TimeExceptionCause.INACTIVE_WORKER,
            "worker_id",
            f"HCM has no worker {facts.worker_id}",
        )
    if not facts.worker_active:
        return Violation(
            TimeExceptionCause.INACTIVE_WORKER,
            "worker_id",
            f"HCM says {facts.worker_id} was not working on {facts.work_date.isoformat()}",
        )
    if facts.cost_center_state is not CostCenterState.ACTIVE:
        return Violation(
            TimeExceptionCause.INVALID_COST_CENTER,
            "cost_center",
            f"cost center {facts.cost_center} is {facts.cost_center_state.value} in the ERP",
        )
    if facts.kind is EntryKind.TIME and facts.billable and facts.bill_rate is None:
        return Violation(
            TimeExceptionCause.MISSING_RATE_CARD,
            "role",
            f"no bill rate for role {facts.role or '(none)'} on {facts.work_date.isoformat()}",
        )
    if (
        facts.bill_rate is not None
        and facts.cost_currency is not None
        and facts.cost_currency != facts.bill_rate.currency
    ):
        return Violation(
            TimeExceptionCause.CURRENCY_MISMATCH,
            "role",
            f"the worker's labor cost is in {facts.cost_currency} and the project bills in "
            f"{facts.bill_rate.currency}: one posting cannot carry both",
        )
    if facts.duplicate_of is not None and not facts.not_duplicate:
        return Violation(
            TimeExceptionCause.DUPLICATE,
            "entry_id",
            f"same worker, day, task and hours as {facts.duplicate_of}, already posted",
        )
    return None


def duplicate_fingerprint(
    kind: EntryKind,
    psa_project_id: str,
    worker_id: str,
    work_date: date,
    task_or_category: str | None,
    quantity: Decimal,
) -> str:
    """Entries with one fingerprint look like the same work entered twice."""
    return "|".join(
        [
            kind.value,
            psa_project_id,
            worker_id,
            work_date.isoformat(),
            task_or_category or "",
            str(quantity.normalize()),
        ]
    )


def period_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def item_id_for(psa_project_id: str, key: str, version: str | None, attempt: int = 0) -> str:
    """Exception item id (URL-safe): project, entry, version, and the retry attempt."""
    safe = key.replace(":", "-")
    suffix = f".r{attempt}" if attempt else ""
    return f"tti.{psa_project_id}.{safe}.v{version or '0'}{suffix}"


def invoice_key(psa_project_id: str, request: BillingRequest, attempt: int) -> str:
    """The ERP invoice's idempotency key: project + what triggered it + attempt (a voided
    invoice keeps its key, so a new attempt after a compensation needs a new one)."""
    base = f"inv-{psa_project_id}-{request.key}"
    return base if attempt == 0 else f"{base}-a{attempt}"
