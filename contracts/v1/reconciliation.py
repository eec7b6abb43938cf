"""Reconciliation: prove the four systems agree after the fact, repair what is safe to repair
through the existing processes, and hand the rest to a person with the evidence.

    from contracts.v1.reconciliation import Domain, DriftKind, Drift, ReconciliationInput

A run (`Reconciliation` workflow) compares one *domain* over one scope (a tenant, or one project
of it, from a date on). Every difference it finds is a `Drift` of a closed set of kinds
(`DriftKind`), with the business keys, each system's value and the system of record that holds
the wrong one. Its `fingerprint` comes from the domain, kind and keys only, so the same drift
found by the next run is the same drift (its values may have moved). What happens to it is the
drift's `Disposition`, and `decide` (pure) turns that and what the store remembers of the drift
into the run's action:

- `repair` -> the existing process is asked to make it right (the time pipeline re-signalled,
  its ledger told that a posting is in doubt); the next run verifies it (gone), repeats the
  repair up to `max_repairs` times, then escalates;
- `escalate` -> an exception item on the tenant's `ReconciliationDesk`, once per drift;
  a person acknowledges it (`skip`) or asks for the repair anyway (`retry`);
- `report` -> recorded and counted, nothing more (e.g. an entry the time pipeline already holds
  for a person).

A dry run decides nothing: it records what it finds as `open` and leaves every drift it knew
as it was. No I/O here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from contracts.ids import canonical_psa_id, canonical_tenant
from contracts.settings import Settings
from contracts.systems import System
from contracts.v1.processes import DeskState, Message, ResolutionAction

RECONCILIATION = "Reconciliation"
"""Workflow type of one run over one domain and scope."""
RECONCILIATION_DESK = "ReconciliationDesk"
"""Workflow type of the tenant's entity workflow that owns escalated drifts."""
PROCESS_RECONCILIATION = "reconciliation"
DRIFTS_ESCALATED_SIGNAL = "drifts_escalated"
DRIFTS_GONE_SIGNAL = "drifts_gone"
DESK_STATUS_QUERY = "status"
RECON_RESOLVER_ROLES = frozenset({"ops", "finance_controller"})
"""Roles that may resolve a reconciliation item (also in `RESOLVER_ROLES`)."""
RECONCILE_ROLES = frozenset({"ops"})
"""Roles that may start a run through the API."""

_FINGERPRINT_NS = uuid.UUID("3b0d7c52-5d0e-4a53-9c51-5a0f3f6e1c2d")


class Domain(StrEnum):
    PROJECT_MASTER = "project_master"
    LABOR_ACTUALS = "labor_actuals"
    BILLING_STATUS = "billing_status"
    FORECAST_ALIGNMENT = "forecast_alignment"
    WORKFORCE = "workforce"


class DriftKind(StrEnum):
    """Every difference reconciliation knows, by domain (a closed set)."""

    # labor actuals: per project and period, PSA approved time and expense vs ERP postings
    LABOR_MISSING_IN_ERP = "missing_in_erp"
    """Approved in the PSA, no live ERP posting."""
    LABOR_POSTED_NOT_APPROVED = "posted_not_approved"
    """A live ERP posting whose PSA entry is no longer approved (or was deleted)."""
    LABOR_STALE_VERSION = "stale_version"
    """The live ERP posting is of an older version of the PSA entry."""
    LABOR_DUPLICATE_POSTING = "duplicate_posting"
    """More than one live ERP posting for one PSA entry."""
    LABOR_AMOUNT_MISMATCH = "amount_mismatch"
    """The live posting's hours or amounts differ from the entry's (edited in the ERP)."""
    LABOR_PERIOD_TOTAL_MISMATCH = "period_total_mismatch"
    """The part of a period's difference no entry explains (postings not from pssync)."""
    # project master
    PROJECT_MISSING_PSA_PROJECT = "missing_psa_project"
    PROJECT_MISSING_ERP_PROJECT = "missing_erp_project"
    PROJECT_XREF_MISSING = "xref_missing"
    PROJECT_FIELD_MISMATCH = "field_mismatch"
    PROJECT_DUPLICATE_PROJECT = "duplicate_project"
    # forecast alignment: per project and period, PSA staffing vs the ERP labor forecast
    FORECAST_MISSING = "forecast_missing"
    """Staffed in a period, no ERP forecast for it."""
    FORECAST_STALE = "forecast_stale"
    """The ERP forecast differs and the assignment sync missed a staffing change."""
    FORECAST_HOURS_MISMATCH = "forecast_hours_mismatch"
    """The ERP forecast differs though the sync knows the staffing (edited in the ERP), or a
    finance-approved or locked forecast differs from the staffing."""
    FORECAST_ASSIGNMENT_BUDGET_VARIANCE = "assignment_budget_variance"
    """The staffing's labor cost exceeds the project's budget beyond the threshold."""
    # workforce: HCM leavers with PSA staffing or time left
    WORKFORCE_LEAVER_OPEN_ASSIGNMENT = "leaver_open_assignment"
    """A leaver's PSA assignment runs past their last day."""
    WORKFORCE_LEAVER_OPEN_TIME_ENTRY = "leaver_open_time_entry"
    """A leaver's unapproved PSA time on or before their last day."""
    WORKFORCE_LEAVER_FUTURE_TIME = "leaver_future_time"
    """A leaver's PSA time after their last day."""
    # billing status: completed milestones and closed T&M periods vs ERP invoices, PSA flags
    BILLING_INVOICE_MISSING = "invoice_missing"
    """A completed milestone or closed T&M period (unbilled entries) with no live invoice."""
    BILLING_INVOICE_DUPLICATE = "invoice_duplicate"
    """More than one live ERP invoice for one milestone or period's entries."""
    BILLING_INVOICE_AMOUNT_MISMATCH = "invoice_amount_mismatch"
    """The invoice's total differs from what pssync billed (edited in the ERP)."""
    BILLING_INVOICE_VOIDED = "invoice_voided"
    """An invoice pssync billed (its entries or milestone invoiced) was voided in the ERP."""
    BILLING_INVOICED_FLAG_MISMATCH = "invoiced_flag_mismatch"
    """The PSA's invoiced flags differ from what the ERP invoiced."""
    BILLING_INVOICE_WITHOUT_SOURCE = "invoice_without_source"
    """An invoice pssync made whose milestone or period does not exist or is not complete."""


KIND_DOMAIN: dict[DriftKind, Domain] = {
    **{k: Domain.LABOR_ACTUALS for k in DriftKind if k.name.startswith("LABOR_")},
    **{k: Domain.PROJECT_MASTER for k in DriftKind if k.name.startswith("PROJECT_")},
    **{k: Domain.FORECAST_ALIGNMENT for k in DriftKind if k.name.startswith("FORECAST_")},
    **{k: Domain.WORKFORCE for k in DriftKind if k.name.startswith("WORKFORCE_")},
    **{k: Domain.BILLING_STATUS for k in DriftKind if k.name.startswith("BILLING_")},
}


class Disposition(StrEnum):
    REPAIR = "repair"
    """Safe: the existing process is asked to make it right."""
    ESCALATE = "escalate"
    """Not safe: an exception item for a person, with the evidence."""
    REPORT = "report"
    """Recorded and counted only."""


class DriftState(StrEnum):
    OPEN = "open"
    """Found, nothing done (a report, or a dry run)."""
    REPAIRED = "repaired"
    """A repair went out; the next run verifies it."""
    ESCALATED = "escalated"
    """An exception item is open for it."""
    ACKNOWLEDGED = "acknowledged"
    """A person accepted it as it is; raised again only if its values change."""
    GONE = "gone"
    """A later run did not find it: the systems agree again."""


UNSETTLED = (DriftState.OPEN, DriftState.REPAIRED, DriftState.ESCALATED)
"""States of a drift that still stands between the systems."""


def drift_fingerprint(domain: Domain | str, kind: DriftKind | str, keys: Mapping[str, str]) -> str:
    """Stable identity of a drift: its domain, kind and business keys (never its values)."""
    text = "|".join(
        [Domain(domain).value, DriftKind(kind).value, *(f"{k}={keys[k]}" for k in sorted(keys))]
    )
    return str(uuid.uuid5(_FINGERPRINT_NS, text))


class Drift(Message):
    """One difference between the systems."""

    domain: Domain
    kind: DriftKind
    keys: dict[str, str]
    """Business keys: tenant, psa_project_id, period, entry, ..."""
    values: dict[str, str | None] = Field(default_factory=dict)
    """Each side's value, e.g. {"psa": "8.000000", "erp": "7.500000"}."""
    owner: System
    """The system of record that holds the value to change."""
    disposition: Disposition
    detail: str = ""
    fingerprint: str = ""

    @model_validator(mode="after")
    def _identity(self) -> Drift:
        if KIND_DOMAIN[self.kind] is not self.domain:
            raise ValueError(f"{self.kind.value} is not a drift of {self.domain.value}")
        self.fingerprint = drift_fingerprint(self.domain, self.kind, self.keys)
        return self

    @property
    def project(self) -> str | None:
        return self.keys.get("psa_project_id")

    @property
    def period(self) -> str | None:
        return self.keys.get("period")


# --------------------------------------------------------------------------- decisions


class DriftAction(StrEnum):
    REPAIR = "repair"
    ESCALATE = "escalate"
    REPORT = "report"
    KEEP = "keep"
    """Known and in hand (an item is open, or a person acknowledged it): nothing new."""


class PriorDrift(Message):
    """What the store remembers of a drift from earlier runs."""

    state: DriftState
    values: dict[str, str | None] = Field(default_factory=dict)
    repairs: int = 0
    escalations: int = 0


class Decision(Message):
    state: DriftState
    action: DriftAction
    repairs: int = 0
    escalations: int = 0
    detail: str = ""


def decide(drift: Drift, prior: PriorDrift | None, *, dry_run: bool, max_repairs: int) -> Decision:
    """What a run does with a drift it found, given what earlier runs did (pure)."""
    repairs = prior.repairs if prior else 0
    escalations = prior.escalations if prior else 0
    known = prior if prior is not None and prior.state is not DriftState.GONE else None

    def decision(state: DriftState, action: DriftAction, detail: str = "") -> Decision:
        return Decision(
            state=state,
            action=action,
            repairs=repairs + (action is DriftAction.REPAIR),
            escalations=escalations + (action is DriftAction.ESCALATE),
            detail=detail,
        )

    if dry_run:
        return decision(known.state if known else DriftState.OPEN, DriftAction.REPORT)
    if known is not None and (
        known.state is DriftState.ESCALATED
        or (known.state is DriftState.ACKNOWLEDGED and known.values == drift.values)
    ):
        return decision(known.state, DriftAction.KEEP)
    if drift.disposition is Disposition.REPORT:
        return decision(DriftState.OPEN, DriftAction.REPORT)
    if drift.disposition is Disposition.REPAIR:
        again = known is not None and known.state is DriftState.REPAIRED
        if not (again and repairs >= max_repairs):
            return decision(DriftState.REPAIRED, DriftAction.REPAIR)
        return decision(
            DriftState.ESCALATED,
            DriftAction.ESCALATE,
            f"repaired {repairs} times and found again: " + drift.detail,
        )
    return decision(DriftState.ESCALATED, DriftAction.ESCALATE)


def item_scope(fingerprint: str, generation: int) -> str:
    """The desk item's content key: one item per drift and escalation (a drift a person
    acknowledged and that changed since is escalated anew, under a new item)."""
    return f"{fingerprint}/{generation}"


# --------------------------------------------------------------------------- names


def reconciliation_workflow_id(
    domain: Domain | str, tenant: str, project: str | None, stamp: str
) -> str:
    """`reconcile/{domain}/{tenant}/{project|all}/{stamp}` (a date, a time, or a uuid)."""
    where = canonical_psa_id(project) if project else "all"
    return f"reconcile/{Domain(domain).value}/{canonical_tenant(tenant)}/{where}/{stamp}"


def reconciliation_schedule_id(domain: Domain | str, tenant: str) -> str:
    return f"reconcile/{Domain(domain).value}/{canonical_tenant(tenant)}"


def reconciliation_desk_workflow_id(tenant: str) -> str:
    return f"reconcile-desk/{canonical_tenant(tenant)}"


def desk_item_id(tenant: str, fingerprint: str, generation: int) -> str:
    """The exception item of an escalated drift, by the one id scheme of exception items
    (`exc_` + uuid5 of `{workflow_id}/{scope}`, see `workflows._desk`), computed here so the
    run that escalates and the desk that opens it name the same item."""
    key = f"{reconciliation_desk_workflow_id(tenant)}/{item_scope(fingerprint, generation)}"
    return "exc_" + uuid.uuid5(uuid.NAMESPACE_URL, key).hex


# --------------------------------------------------------------------------- run messages


class RunTotals(Message):
    """What a run (or a part of it) found and did."""

    by_kind: dict[str, int] = Field(default_factory=dict)
    found: int = 0
    new: int = 0
    repaired: int = 0
    escalated: int = 0
    reported: int = 0
    kept: int = 0
    """Found again while already escalated or acknowledged."""
    records: int = 0
    """Records compared (PSA entries and ERP postings)."""
    projects: int = 0
    vendor_calls: int = 0

    def add(self, other: RunTotals) -> RunTotals:
        by_kind = dict(self.by_kind)
        for kind, n in other.by_kind.items():
            by_kind[kind] = by_kind.get(kind, 0) + n
        numbers = {
            name: getattr(self, name) + getattr(other, name)
            for name in RunTotals.model_fields
            if name != "by_kind"
        }
        return RunTotals(by_kind=by_kind, **numbers)


class ReconciliationCarry(Message):
    run_id: str
    started_at: datetime
    cursor: str | None = None
    totals: RunTotals = Field(default_factory=RunTotals)
    chunks: int = 0


class RunScope(Message):
    """What a run compares, whether it repairs, and who asked: the fields every message of
    a run carries."""

    domain: Domain
    tenant: str
    project: str | None = None
    """One PSA project, or the tenant's every project."""
    since: date | None = None
    """Compare periods from this date's month on (None: every period)."""
    dry_run: bool = False
    """Report only: nothing is repaired or escalated."""
    requested_by: str = "schedule"
    """`schedule`, `cli` or `api:<actor>`."""

    def scope(self) -> dict[str, Any]:
        """The scope fields, to build the run's next message from this one."""
        return {name: getattr(self, name) for name in RunScope.model_fields}


class ReconciliationInput(RunScope):
    page_size: int = Field(default=25, ge=1, le=500)
    """Projects per comparison activity."""
    settle_s: float = Field(default=300.0, ge=0)
    """Records changed (in the PSA or the ledger) this recently are left for the next run:
    the webhook-driven processes are still on them."""
    max_repairs: int = Field(default=3, ge=1, le=20)
    chunks_per_run: int = Field(default=100, ge=1, le=10_000)
    """Continue as new after this many chunks (or when the server suggests it)."""
    escalation_after_s: float = Field(default=86_400.0, gt=0)
    """The desk escalates an item nobody resolved after this long."""
    carry: ReconciliationCarry | None = None


class ReconciliationReport(RunScope):
    run_id: str
    by_kind: dict[str, int] = Field(default_factory=dict)
    found: int = 0
    new: int = 0
    repaired: int = 0
    escalated: int = 0
    reported: int = 0
    kept: int = 0
    gone: int = 0
    """Drifts of earlier runs this run did not find again (verified repaired)."""
    unrepaired: int = 0
    """Drifts in scope still standing after this run (open, repaired but unverified aside,
    escalated): `pssync reconcile` exits non-zero when any remain."""
    records: int = 0
    projects: int = 0
    vendor_calls: int = 0
    seconds: float = 0.0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    finished: bool = False


class ProjectUnit(Message):
    """One project of a run's scope: its PSA id and, when known, its ERP project."""

    psa_project_id: str
    erp_project: str | None = None
    """`eid:<enterprise id>` or the ERP internal id; None: read from the PSA project."""


class PlanRequest(Message):
    domain: Domain
    tenant: str
    project: str | None = None
    after: str | None = None
    limit: int = Field(default=25, ge=1, le=500)


class PlanPage(Message):
    units: list[ProjectUnit] = Field(default_factory=list)
    cursor: str | None = None
    """The last project of this page (pass it as `after`); None when this was the last."""


class BeginRun(RunScope):
    run_id: str
    started_at: datetime


class CompareChunk(Message):
    run_id: str
    domain: Domain
    tenant: str
    units: list[ProjectUnit]
    since: date | None = None
    dry_run: bool = False
    settle_s: float = 300.0
    max_repairs: int = 3
    task_queue: str
    """The workflows' queue: repairs signal pipelines there, escalations the desk."""
    escalation_after_s: float = 86_400.0


class FinishRun(RunScope):
    run_id: str
    totals: RunTotals
    started_at: datetime
    finished_at: datetime
    task_queue: str
    escalation_after_s: float = 86_400.0


# --------------------------------------------------------------------------- the desk


class EscalatedDrift(Message):
    """A drift handed to a person: the item's content key, the drift and its evidence."""

    drift: Drift
    generation: int = 1
    run_id: str
    actions: list[ResolutionAction] = Field(
        default_factory=lambda: [ResolutionAction.SKIP, ResolutionAction.RETRY]
    )
    evidence: dict[str, Any] = Field(default_factory=dict)

    @property
    def scope(self) -> str:
        return item_scope(self.drift.fingerprint, self.generation)


class DriftsEscalated(Message):
    drifts: list[EscalatedDrift] = Field(min_length=1)


class DriftsGone(Message):
    fingerprints: list[str] = Field(min_length=1)
    run_id: str


class DeskCarry(Message):
    desk: DeskState | None = None
    items: dict[str, EscalatedDrift] = Field(default_factory=dict)
    """Open item id -> its drift."""
    pending: list[EscalatedDrift] = Field(default_factory=list)
    gone: list[str] = Field(default_factory=list)
    counters: dict[str, int] = Field(default_factory=dict)
    closed: list[str] = Field(default_factory=list)
    """Items closed lately (a late repeat of their escalation opens nothing)."""


class DeskInput(Message):
    tenant: str
    escalation_after_s: float = Field(default=86_400.0, gt=0)
    idle_close_s: float = Field(default=3_600.0, gt=0)
    max_history_events: int = Field(default=10_000, ge=100, le=50_000)
    carry: DeskCarry | None = None


class DeskItem(Message):
    item_id: str
    kind: DriftKind
    fingerprint: str
    keys: dict[str, str]
    detail: str
    opened_at: datetime
    escalated: bool = False


class DeskStatus(Message):
    tenant: str
    open: list[DeskItem] = Field(default_factory=list)
    counters: dict[str, int] = Field(default_factory=dict)


class DriftDecision(Message):
    """Activity input: a person's decision on an escalated drift."""

    item_id: str
    drift: EscalatedDrift
    action: ResolutionAction
    actor: str
    task_queue: str


class DriftResolutionResult(Message):
    item_id: str
    action: ResolutionAction
    outcome: str
    """acknowledged | repaired | refused"""
    detail: str = ""


def reconciliation_input(
    settings: Settings,
    domain: Domain | str,
    *,
    project: str | None = None,
    since: date | None = None,
    dry_run: bool = False,
    requested_by: str = "schedule",
) -> ReconciliationInput:
    """A run over the PSA tenant as the deployment's settings configure it."""
    return ReconciliationInput(
        domain=Domain(domain),
        tenant=settings.psa.tenant,
        project=project,
        since=since,
        dry_run=dry_run,
        page_size=settings.reconcile.page_size,
        settle_s=settings.reconcile.settle_s,
        max_repairs=settings.reconcile.max_repairs,
        escalation_after_s=float(settings.escalation_after_s),
        requested_by=requested_by,
    )
