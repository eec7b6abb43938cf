"""Change orders: the impact of a submitted change, who must approve it, and the messages of
the `ChangeOrder` workflow. Pure functions and models, so the workflow calls them directly and
unit tests cover them without Temporal. No I/O here.

Impact, defined once:

- budget delta: the change order's own `budget_delta` (the price agreed with the client);
- hours delta: the sum of the lines' `hours_delta`;
- rate-card value: sum over lines of hours x the project's rate-card bill rate for the line's
  role on the line's start date (the change order's submission date when a line has none);
- cost delta: sum over lines of hours x the role's standard cost rate (`standard_cost_rates`,
  else `standard_cost_ratio` x the bill rate — the fallback when finance configured no rate);
- projected margin: (rate-card value - cost delta) / rate-card value — the margin of the added
  work at the project's rate card; None when the rate-card value is not positive (a
  reduction has no margin to protect).

Approval policy: the project's delivery manager always; a finance controller as well when
|budget delta| exceeds the threshold, the projected margin is below the floor, or a line's role
has no rate on the project's rate card (its margin cannot be known).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from contracts.money import Money
from contracts.v1.models import ChangeOrder, RateCard

CHANGE_ORDER = "ChangeOrder"
"""Workflow type name."""
DECIDE_UPDATE = "decide"
CHANGE_ORDER_STATUS_QUERY = "status"
PROCESS_CHANGE_ORDER = "change_order"

DELIVERY_MANAGER = "delivery_manager"
FINANCE_CONTROLLER = "finance_controller"
APPROVER_ROLES: tuple[str, ...] = (DELIVERY_MANAGER, FINANCE_CONTROLLER)
"""In the order a decision is attributed to them when an actor holds several."""

DEFAULT_STANDARD_COST_RATIO = Decimal("0.6")
_MARGIN_PLACES = Decimal("0.0001")


class Message(BaseModel):
    """A workflow input, signal, update, query answer or carried state.

    Unknown fields are ignored, not refused: during a rolling deploy an older worker must
    still accept a message that a newer gateway or workflow sent with a field it added."""

    model_config = ConfigDict(extra="ignore")


# --------------------------------------------------------------------------- ERP budget


class ErpBudget(BaseModel):
    """A project's budget as the ERP holds it, with the version its optimistic concurrency
    checks (what `ErpPort.get_budget` / `revise_budget` answer; the change-order saga carries
    it between its activities)."""

    model_config = ConfigDict(frozen=True)

    project_erp_id: str
    amount: Money
    version: int


# --------------------------------------------------------------------------- impact


class LineImpact(Message):
    role: str
    hours_delta: Decimal
    bill_rate: Money | None = None
    """None: the role has no rate on the project's rate card that day."""
    cost_rate: Money | None = None
    value: Money | None = None
    cost: Money | None = None


class ChangeOrderImpact(Message):
    change_order_id: str
    currency: str
    budget_delta: Money
    hours_delta: Decimal
    rate_card_value: Money
    cost_delta: Money
    projected_margin: Decimal | None = None
    """A fraction (0.35 = 35 %); None when there is no positive rate-card value."""
    unpriced_roles: list[str] = Field(default_factory=list)
    lines: list[LineImpact] = Field(default_factory=list)


def compute_impact(
    change_order: ChangeOrder,
    rate_card: RateCard | None,
    *,
    standard_cost_rates: dict[str, Money] | None = None,
    standard_cost_ratio: Decimal = DEFAULT_STANDARD_COST_RATIO,
) -> ChangeOrderImpact:
    """The impact of `change_order` at `rate_card` (see the module docstring)."""
    currency = change_order.budget_delta.currency
    rates = standard_cost_rates or {}
    value = Money.zero(currency)
    cost = Money.zero(currency)
    unpriced: list[str] = []
    lines: list[LineImpact] = []
    for line in change_order.lines:
        on: date = line.start_date or change_order.submitted_at.date()
        bill = rate_card.rate_for(line.role, on) if rate_card is not None else None
        if bill is not None and bill.currency != currency:
            bill = None  # a card in another currency cannot price this change
        cost_rate = rates.get(line.role)
        if cost_rate is not None and cost_rate.currency != currency:
            cost_rate = None
        if cost_rate is None and bill is not None:
            cost_rate = bill * standard_cost_ratio
        if bill is None and line.role not in unpriced:
            unpriced.append(line.role)
        line_value = bill * line.hours_delta if bill is not None else None
        line_cost = cost_rate * line.hours_delta if cost_rate is not None else None
        if line_value is not None:
            value = value + line_value
        if line_cost is not None:
            cost = cost + line_cost
        lines.append(
            LineImpact(
                role=line.role,
                hours_delta=line.hours_delta,
                bill_rate=bill,
                cost_rate=cost_rate,
                value=line_value,
                cost=line_cost,
            )
        )
    margin: Decimal | None = None
    if value.amount > 0:
        margin = ((value.amount - cost.amount) / value.amount).quantize(
            _MARGIN_PLACES, rounding=ROUND_HALF_EVEN
        )
    return ChangeOrderImpact(
        change_order_id=change_order.external_id,
        currency=currency,
        budget_delta=change_order.budget_delta,
        hours_delta=change_order.hours_delta,
        rate_card_value=value.rounded(),
        cost_delta=cost.rounded(),
        projected_margin=margin,
        unpriced_roles=unpriced,
        lines=lines,
    )


class ApprovalPolicy(Message):
    finance_threshold: Decimal = Field(default=Decimal(10000), ge=0)
    """A finance controller must approve when |budget delta| exceeds this (in the change
    order's currency)."""
    margin_floor: Decimal = Field(default=Decimal("0.25"), ge=-1, le=1)
    """... or when the projected margin falls below this fraction."""


class RequiredApprovals(Message):
    roles: list[str]
    reasons: list[str] = Field(default_factory=list)
    """Why finance must approve too (empty when the delivery manager alone suffices)."""


def required_approvals(impact: ChangeOrderImpact, policy: ApprovalPolicy) -> RequiredApprovals:
    reasons: list[str] = []
    if abs(impact.budget_delta.amount) > policy.finance_threshold:
        reasons.append(
            f"budget delta {impact.budget_delta} exceeds {policy.finance_threshold} "
            f"{impact.currency}"
        )
    if impact.projected_margin is not None and impact.projected_margin < policy.margin_floor:
        reasons.append(
            f"projected margin {impact.projected_margin:.2%} is below {policy.margin_floor:.2%}"
        )
    if impact.unpriced_roles:
        reasons.append(f"no rate-card rate for {', '.join(impact.unpriced_roles)}")
    roles = [DELIVERY_MANAGER] + ([FINANCE_CONTROLLER] if reasons else [])
    return RequiredApprovals(roles=roles, reasons=reasons)


# --------------------------------------------------------------------------- messages


class ChangeOrderInput(Message):
    """Start of the change-order saga (from the PSA's signed `change_order.submitted`)."""

    psa_tenant: str
    change_order_id: str
    psa_project_id: str | None = None
    """Default: the change order's workspace."""
    enterprise_id: str | None = None
    """Default: the PSA project's enterprise ID, else the store's xref of the workspace."""
    event_id: str | None = None
    policy: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    standard_cost_rates: dict[str, Money] = Field(default_factory=dict)
    """Role -> cost per hour; roles missing here cost `standard_cost_ratio` x bill rate."""
    standard_cost_ratio: Decimal = Field(default=DEFAULT_STANDARD_COST_RATIO, ge=0)
    escalation_after_s: int = Field(default=2 * 24 * 3600, ge=1)
    """Without a complete decision by then, approvers' managers are notified."""
    expires_after_s: int = Field(default=7 * 24 * 3600, ge=1)
    """Without a complete decision by then (from the start), the change order expires."""
    activity_timeout_s: int = Field(default=60, ge=1, le=3600)
    demand_days_default: int = Field(default=30, ge=1)
    """Length of a resource request whose line and project give no end date."""


class ChangeOrderDecision(Message):
    """An approver's decision, sent as the workflow update `decide`."""

    actor: str = Field(min_length=1)
    roles: list[str] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)
    """Project IDs (enterprise or PSA), practices, or "*" — as the gateway's actor has them."""
    approve: bool
    as_role: str | None = None
    """Decide in this role; default: the first still-missing required role the actor holds."""
    note: str = Field(default="", max_length=4000)


class DecisionAccepted(Message):
    actor: str
    role: str
    approve: bool
    remaining_roles: list[str]
    accepted_at: datetime


class RecordedDecision(Message):
    actor: str
    role: str
    approve: bool
    note: str = ""
    at: datetime


class ChangeOrderStep(StrEnum):
    READING = "reading"
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    REVISING_ERP_BUDGET = "revising_erp_budget"
    UPDATING_PSA_BUDGET = "updating_psa_budget"
    RAISING_DEMAND = "raising_demand"
    NOTIFYING = "notifying"
    RECORDING_FORECAST = "recording_forecast"
    COMPENSATING = "compensating"
    APPLIED = "applied"
    REJECTED = "rejected"
    EXPIRED = "expired"
    FAILED = "failed"


class ChangeOrderOutcome(StrEnum):
    APPLIED = "applied"
    REJECTED = "rejected"
    EXPIRED = "expired"


class ChangeOrderProgress(Message):
    """What the `status` query answers."""

    step: ChangeOrderStep
    change_order_id: str
    enterprise_id: str | None = None
    psa_project_id: str | None = None
    impact: ChangeOrderImpact | None = None
    required_roles: list[str] = Field(default_factory=list)
    finance_reasons: list[str] = Field(default_factory=list)
    decisions: list[RecordedDecision] = Field(default_factory=list)
    escalated: bool = False
    waiting_since: datetime | None = None
    escalates_at: datetime | None = None
    expires_at: datetime | None = None
    completed: list[str] = Field(default_factory=list)
    ids: dict[str, str | list[str] | int] = Field(default_factory=dict)

    def missing_roles(self) -> list[str]:
        approved = {d.role for d in self.decisions if d.approve}
        return [r for r in self.required_roles if r not in approved]


class ChangeOrderResult(Message):
    change_order_id: str
    outcome: ChangeOrderOutcome
    decisions: list[RecordedDecision] = Field(default_factory=list)
    impact: ChangeOrderImpact | None = None
    erp_budget_version: int | None = None
    psa_budget_version: str | None = None
    resource_request_ids: list[str] = Field(default_factory=list)
