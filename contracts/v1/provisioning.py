"""Business rules of opportunity-to-project: what a provisionable deal is, and the project,
budget and staffing demand it becomes. Pure functions, so the workflow calls them directly
and unit tests cover them without Temporal. No I/O here.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from contracts.money import Money
from contracts.systems import System
from contracts.v1.models import (
    Assignment,
    AssignmentKind,
    BillingRule,
    Customer,
    LineType,
    Milestone,
    Opportunity,
    Project,
    WbsNode,
    WbsNodeType,
)

CONTRACTED_STAGE = "Closed Won"

# Fields a person may correct when resolving an exception item with retry_with_data.
CORRECTABLE_FIELDS: frozenset[str] = frozenset(
    {"cost_center", "rate_card_id", "delivery_manager", "practice"}
)


class RuleViolation(BaseModel):
    """A business-rule failure: becomes an exception item a person resolves."""

    code: str
    detail: str
    field: str | None = None
    evidence: dict[str, Any] | None = None
    """What the system was sent and answered when it refused (redacted, bounded); None for
    pssync's own checks."""


def apply_corrections(opportunity: Opportunity, corrections: dict[str, str]) -> Opportunity:
    """The opportunity with a person's corrections applied (only correctable fields)."""
    unknown = set(corrections) - CORRECTABLE_FIELDS
    if unknown:
        raise ValueError(
            f"cannot correct {sorted(unknown)}; correctable: {sorted(CORRECTABLE_FIELDS)}"
        )
    return opportunity.model_copy(update=dict(corrections))


def validate_commercial_structure(opportunity: Opportunity) -> list[RuleViolation]:
    """Everything wrong with a won deal's commercial structure (empty when provisionable).

    Credit hold is not checked here: the ERP owns it and refuses the project itself."""
    found: list[RuleViolation] = []
    if not opportunity.is_won or opportunity.stage != CONTRACTED_STAGE:
        found.append(
            RuleViolation(
                code="NOT_CONTRACTED",
                field="stage",
                detail=f"opportunity is at {opportunity.stage!r}, not {CONTRACTED_STAGE!r}",
            )
        )
    if not opportunity.lines:
        found.append(RuleViolation(code="NO_LINES", field="lines", detail="the deal has no lines"))
    else:
        total = Money.zero(opportunity.amount.currency)
        for line in opportunity.lines:
            total = total + line.total_price
        if total.rounded() != opportunity.amount.rounded():
            found.append(
                RuleViolation(
                    code="AMOUNT_MISMATCH",
                    field="amount",
                    detail=f"amount {opportunity.amount} is not the sum of its lines ({total})",
                )
            )
    for i, line in enumerate(opportunity.lines):
        if line.line_type is LineType.TIME_AND_MATERIALS and not line.role:
            found.append(
                RuleViolation(
                    code="LINE_WITHOUT_ROLE",
                    field=f"lines[{i}].role",
                    detail=f"time-and-materials line {line.line_id} names no role",
                )
            )
    for name in ("cost_center", "rate_card_id", "delivery_manager"):
        if not getattr(opportunity, name):
            found.append(
                RuleViolation(code="MISSING_FIELD", field=name, detail=f"the deal has no {name}")
            )
    return found


def billing_rule_for(opportunity: Opportunity) -> BillingRule:
    kinds = {line.line_type for line in opportunity.lines}
    if LineType.MILESTONE in kinds:
        return BillingRule.MILESTONE
    if LineType.FIXED_FEE in kinds:
        return BillingRule.FIXED_FEE
    return BillingRule.TIME_AND_MATERIALS


def project_from_opportunity(opportunity: Opportunity, customer: Customer) -> Project:
    """The project shell a won deal becomes: WBS from the lines, milestones, billing rule."""
    currency = opportunity.amount.currency
    wbs: list[WbsNode] = []
    milestones: list[Milestone] = []
    for i, line in enumerate(opportunity.lines, start=1):
        code = f"{i:02d}"
        if line.line_type is LineType.MILESTONE:
            milestones.append(
                Milestone(
                    code=f"M{code}",
                    name=line.description or line.product_code,
                    amount=line.total_price,
                    target_date=line.service_date,
                )
            )
            continue
        minutes = int(line.quantity * 60) if line.line_type is LineType.TIME_AND_MATERIALS else 0
        wbs.append(
            WbsNode(
                code=code,
                name=line.description or line.product_code,
                node_type=WbsNodeType.TASK,
                role=line.role,
                estimated_minutes=minutes,
                budget=line.total_price,
                billable=True,
            )
        )
    service_dates = [line.service_date for line in opportunity.lines if line.service_date]
    start = opportunity.close_date
    end = max(service_dates) if service_dates else None
    if end is not None and end < start:
        end = start
    return Project(
        name=opportunity.name,
        customer_id=customer.external_id,
        opportunity_id=opportunity.external_id,
        billing_rule=billing_rule_for(opportunity),
        contract_value=Money(opportunity.amount.amount, currency),
        start_date=start,
        end_date=end,
        cost_center=opportunity.cost_center or "",
        practice=opportunity.practice,
        rate_card_id=opportunity.rate_card_id,
        delivery_manager=opportunity.delivery_manager,
        wbs=wbs,
        milestones=milestones,
        source_system=System.PSSYNC,
    )


def staffing_demand(project: Project, enterprise_id: str) -> list[Assignment]:
    """One role demand per role on the project's time-and-materials WBS, hours summed.

    Keyed by enterprise ID and role so seeding twice asks for the same resource requests."""
    minutes: dict[str, int] = defaultdict(int)
    for node in project.wbs:
        if node.role and node.estimated_minutes:
            minutes[node.role] += node.estimated_minutes
    end = project.end_date or (project.start_date + timedelta(days=90))
    return [
        Assignment(
            external_id=f"{enterprise_id}:{role}",
            project_id=enterprise_id,
            role=role,
            kind=AssignmentKind.ROLE_DEMAND,
            start_date=project.start_date,
            end_date=max(end, project.start_date),
            allocated_minutes=total,
            source_system=System.PSSYNC,
        )
        for role, total in sorted(minutes.items())
    ]


def budget_for(project: Project) -> Money:
    """The ERP budget at provisioning: the contract value."""
    return project.contract_value
