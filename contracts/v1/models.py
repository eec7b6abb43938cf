"""Canonical models, version 1: the only types workflows see.

Every entity carries `enterprise_id`, `source_system`, `source_version` and `updated_at`.
Unknown fields are refused (`extra="forbid"`) so a vendor's field can never leak in unmapped,
and validation errors name the offending field. Money is `Money`; no floats. No I/O here.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.ids import EnterpriseId, ExternalId
from contracts.money import Money
from contracts.systems import System

NonNegativeDecimal = Annotated[Decimal, Field(ge=0)]


class CanonicalModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


class Entity(CanonicalModel):
    """Fields every canonical entity carries."""

    enterprise_id: EnterpriseId | None = None
    source_system: System
    source_version: str | None = None
    updated_at: datetime | None = None
    """When the source system last changed it, as that system says. No default reads the
    clock: canonical entities are built inside workflows, where only `workflow.now()` is
    deterministic, so whoever knows the time sets it."""


def _currency_of(values: list[Money | None], expected: str, where: str) -> None:
    for value in values:
        if value is not None and value.currency != expected:
            raise ValueError(f"{where} is in {value.currency}, expected {expected}")


# --------------------------------------------------------------------------- customers, deals


class Customer(Entity):
    external_id: ExternalId
    name: str = Field(min_length=1)
    currency: str = "USD"
    billing_country: str | None = None
    credit_hold: bool = False


class LineType(StrEnum):
    TIME_AND_MATERIALS = "time_and_materials"
    FIXED_FEE = "fixed_fee"
    MILESTONE = "milestone"


class OpportunityLine(CanonicalModel):
    line_id: ExternalId
    product_code: str
    description: str = ""
    line_type: LineType = LineType.TIME_AND_MATERIALS
    role: str | None = None
    quantity: NonNegativeDecimal
    unit_price: Money
    total_price: Money
    service_date: date | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _currency_of([self.total_price], self.unit_price.currency, "total_price")
        return self


class Opportunity(Entity):
    external_id: ExternalId
    name: str
    account_id: ExternalId
    amount: Money
    close_date: date
    stage: str
    is_won: bool = False
    is_closed: bool = False
    cost_center: str | None = None
    practice: str | None = None
    rate_card_id: str | None = None
    delivery_manager: str | None = None
    lines: list[OpportunityLine] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_currency(self) -> Self:
        for i, line in enumerate(self.lines):
            _currency_of([line.unit_price], self.amount.currency, f"lines[{i}].unit_price")
        return self


# --------------------------------------------------------------------------- projects


class BillingRule(StrEnum):
    TIME_AND_MATERIALS = "time_and_materials"
    FIXED_FEE = "fixed_fee"
    MILESTONE = "milestone"


class WbsNodeType(StrEnum):
    PHASE = "phase"
    TASK = "task"
    MILESTONE = "milestone"


class WbsNode(CanonicalModel):
    code: str
    name: str
    node_type: WbsNodeType = WbsNodeType.TASK
    parent_code: str | None = None
    role: str | None = None
    estimated_minutes: int = Field(default=0, ge=0)
    budget: Money
    billable: bool = True


class MilestoneStatus(StrEnum):
    PLANNED = "planned"
    COMPLETED = "completed"
    INVOICED = "invoiced"


class Milestone(CanonicalModel):
    code: str
    name: str
    external_id: ExternalId | None = None
    """The PSA's id of the billing milestone (its webhooks name it by id)."""
    amount: Money
    target_date: date | None = None
    status: MilestoneStatus = MilestoneStatus.PLANNED


class ProjectStatus(StrEnum):
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    CLOSED_FOR_TIME = "closed_for_time"
    CLOSED = "closed"
    ARCHIVED = "archived"


class Project(Entity):
    name: str = Field(min_length=1)
    customer_id: ExternalId
    opportunity_id: ExternalId | None = None
    billing_rule: BillingRule
    contract_value: Money
    start_date: date
    end_date: date | None = None
    cost_center: str
    practice: str | None = None
    rate_card_id: str | None = None
    delivery_manager: str | None = None
    status: ProjectStatus = ProjectStatus.ACTIVE
    wbs: list[WbsNode] = Field(default_factory=list)
    milestones: list[Milestone] = Field(default_factory=list)

    @property
    def currency(self) -> str:
        return self.contract_value.currency

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        cur = self.contract_value.currency
        for i, node in enumerate(self.wbs):
            _currency_of([node.budget], cur, f"wbs[{i}].budget")
        for i, ms in enumerate(self.milestones):
            _currency_of([ms.amount], cur, f"milestones[{i}].amount")
        return self


# --------------------------------------------------------------------------- rate cards


class RateCardLine(CanonicalModel):
    role: str
    bill_rate: Money
    """Per hour."""
    effective_from: date
    effective_to: date | None = None

    def covers(self, on: date) -> bool:
        return self.effective_from <= on and (self.effective_to is None or on <= self.effective_to)


class RateCard(Entity):
    external_id: ExternalId
    name: str
    currency: str
    lines: list[RateCardLine] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for i, line in enumerate(self.lines):
            _currency_of([line.bill_rate], self.currency, f"lines[{i}].bill_rate")
        return self

    def rate_for(self, role: str, on: date) -> Money | None:
        """The bill rate for `role` on `on`, or None when the card has none."""
        for line in self.lines:
            if line.role == role and line.covers(on):
                return line.bill_rate
        return None


# --------------------------------------------------------------------------- people, staffing


class WorkerStatus(StrEnum):
    ACTIVE = "active"
    LEAVE = "leave"
    TERMINATED = "terminated"


class Worker(Entity):
    external_id: ExternalId
    name: str
    email: str | None = None
    status: WorkerStatus = WorkerStatus.ACTIVE
    hire_date: date
    termination_date: date | None = None
    last_day_worked: date | None = None
    cost_center: str
    location: str | None = None
    role: str | None = None
    cost_rate: Money | None = None
    """Per hour; HCM does not own it (ERP / PSA do)."""

    @model_validator(mode="after")
    def _dates(self) -> Self:
        if self.termination_date and self.termination_date < self.hire_date:
            raise ValueError("termination_date is before hire_date")
        if self.last_day_worked and self.termination_date:
            if self.last_day_worked > self.termination_date:
                raise ValueError("last_day_worked is after termination_date")
        return self

    def active_on(self, day: date) -> bool:
        """Was the worker employed and working on `day`?"""
        if day < self.hire_date:
            return False
        last = self.last_day_worked or self.termination_date
        return last is None or day <= last


class AssignmentKind(StrEnum):
    NAMED = "named"
    ROLE_DEMAND = "role_demand"


class Assignment(Entity):
    external_id: ExternalId
    project_id: ExternalId
    role: str
    kind: AssignmentKind = AssignmentKind.NAMED
    worker_id: ExternalId | None = None
    start_date: date
    end_date: date
    allocated_minutes: int = Field(ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        if self.kind is AssignmentKind.NAMED and not self.worker_id:
            raise ValueError("a named assignment needs worker_id")
        return self


# --------------------------------------------------------------------------- time, expense


class TimeEntry(Entity):
    external_id: ExternalId
    project_id: ExternalId
    worker_id: ExternalId
    role: str | None = None
    task_id: ExternalId | None = None
    date_performed: date
    minutes: int = Field(ge=0, le=24 * 60)
    billable: bool = True
    approved: bool = False
    invoiced: bool = False
    notes: str = ""
    bill_rate: Money | None = None
    """Per hour, as the PSA priced the entry (None when the PSA has no rate for it)."""

    @property
    def hours(self) -> Decimal:
        return Decimal(self.minutes) / Decimal(60)


class ExpenseEntry(Entity):
    external_id: ExternalId
    project_id: ExternalId
    worker_id: ExternalId
    date_incurred: date
    amount: Money
    category: str
    billable: bool = True
    reimbursable: bool = True
    approved: bool = False
    invoiced: bool = False

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if self.amount.amount < 0:
            raise ValueError("amount must not be negative")
        return self


class PostingKind(StrEnum):
    TIME = "time"
    EXPENSE = "expense"
    REVERSAL = "reversal"


class CostPosting(Entity):
    """A posting to the ERP ledger; never edited once posted, only reversed."""

    idempotency_key: str = Field(min_length=1)
    kind: PostingKind
    project_id: ExternalId
    worker_id: ExternalId | None = None
    source_entry_id: ExternalId
    posting_date: date
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    hours: Decimal = Decimal(0)
    cost_amount: Money
    bill_amount: Money | None = None
    cost_center: str
    reverses: str | None = None
    """Idempotency key of the posting this one reverses."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _currency_of([self.bill_amount], self.cost_amount.currency, "bill_amount")
        if self.kind is PostingKind.REVERSAL and not self.reverses:
            raise ValueError("a reversal must name the posting it reverses")
        return self


# --------------------------------------------------------------------------- billing


class InvoiceLine(CanonicalModel):
    description: str
    quantity: Decimal
    amount: Money
    source_entry_ids: list[ExternalId] = Field(default_factory=list)


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"


class Invoice(Entity):
    external_id: ExternalId | None = None
    idempotency_key: str
    project_id: ExternalId
    customer_id: ExternalId
    period: str | None = None
    milestone_code: str | None = None
    invoice_date: date
    lines: list[InvoiceLine] = Field(min_length=1)
    status: InvoiceStatus = InvoiceStatus.DRAFT

    @property
    def total(self) -> Money:
        first = self.lines[0].amount
        result = Money.zero(first.currency)
        for line in self.lines:
            result = result + line.amount
        return result


# --------------------------------------------------------------------------- change, forecast


class ChangeOrderLine(CanonicalModel):
    role: str
    hours_delta: Decimal
    start_date: date | None = None
    end_date: date | None = None


class ChangeOrderStatus(StrEnum):
    SUBMITTED = "submitted"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    APPLIED = "applied"


class ChangeOrder(Entity):
    external_id: ExternalId
    project_id: ExternalId
    title: str
    description: str = ""
    budget_delta: Money
    lines: list[ChangeOrderLine] = Field(default_factory=list)
    requested_by: str
    submitted_at: datetime
    status: ChangeOrderStatus = ChangeOrderStatus.SUBMITTED

    @property
    def hours_delta(self) -> Decimal:
        return sum((line.hours_delta for line in self.lines), Decimal(0))


class ForecastStatus(StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    LOCKED = "locked"


class Forecast(Entity):
    project_id: ExternalId
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    hours: Decimal = Field(ge=0)
    labor_cost: Money
    version: int = Field(ge=0)
    status: ForecastStatus = ForecastStatus.DRAFT

    @property
    def writable(self) -> bool:
        """Finance-approved or locked forecasts are never overwritten by a sync."""
        return self.status is ForecastStatus.DRAFT
