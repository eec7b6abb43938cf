"""Kantata JSON <-> canonical types: the `*_from_kantata` readers, the vendor's value tables and
the small parsing helpers both adapters share.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from connectors.psa._constants import MILESTONE_MARKER, REJECTION_PREFIX, SYSTEM, WBS_MARKER
from contracts.errors import BusinessRuleViolation
from contracts.ids import is_ulid
from contracts.money import Money
from contracts.systems import System
from contracts.v1 import (
    Assignment,
    AssignmentKind,
    BillingRule,
    ChangeOrder,
    ChangeOrderLine,
    ChangeOrderStatus,
    ExpenseEntry,
    Milestone,
    MilestoneStatus,
    Project,
    ProjectStatus,
    RateCard,
    RateCardLine,
    TimeEntry,
    WbsNode,
    WbsNodeType,
)

_BILLING_RULES: dict[BillingRule, str] = {
    BillingRule.TIME_AND_MATERIALS: "Time and Materials",
    BillingRule.FIXED_FEE: "Fixed Price",
    BillingRule.MILESTONE: "Milestone",
}
_BILLING_RULES_BACK = {v: k for k, v in _BILLING_RULES.items()}

_STORY_TYPES: dict[WbsNodeType, str] = {
    WbsNodeType.PHASE: "deliverable",
    WbsNodeType.TASK: "task",
    WbsNodeType.MILESTONE: "milestone",
}
_STORY_TYPES_BACK = {v: k for k, v in _STORY_TYPES.items()}

_CO_STATES: dict[ChangeOrderStatus, str] = {
    ChangeOrderStatus.SUBMITTED: "submitted",
    ChangeOrderStatus.PENDING_APPROVAL: "submitted",
    ChangeOrderStatus.APPROVED: "approved",
    ChangeOrderStatus.REJECTED: "rejected",
    ChangeOrderStatus.EXPIRED: "expired",
    ChangeOrderStatus.APPLIED: "applied",
}
_CO_STATES_BACK: dict[str, ChangeOrderStatus] = {
    "submitted": ChangeOrderStatus.SUBMITTED,
    "approved": ChangeOrderStatus.APPROVED,
    "rejected": ChangeOrderStatus.REJECTED,
    "expired": ChangeOrderStatus.EXPIRED,
    "applied": ChangeOrderStatus.APPLIED,
}


def _when(raw: str | None) -> datetime:
    if not raw:
        return datetime.now(UTC)
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _day(raw: str | None) -> date | None:
    return date.fromisoformat(raw) if raw else None


def _marker_code(text: str | None, marker: str) -> str | None:
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith(marker):
            return line[len(marker) :]
    return None


def _version(obj: dict[str, Any]) -> str:
    return str(obj.get("lock_version", ""))


def _money(obj: dict[str, Any], cents_field: str) -> Money:
    return Money.from_minor(int(obj.get(cents_field) or 0), str(obj.get("currency") or "USD"))


def _rejection_line(reason: str) -> str:
    """The notes line of a rejection: one line, whatever the reason's whitespace."""
    text = " ".join(reason.split())
    if not text:
        raise BusinessRuleViolation(
            "MISSING_REASON", "a rejection needs a reason", field="reason", system=SYSTEM
        )
    return f"{REJECTION_PREFIX}{text}"


def notes_with(notes: str, line: str) -> str:
    """`notes` with `line` added at the end, unless it is one of its lines already."""
    if line in notes.splitlines():
        return notes
    return f"{notes.rstrip()}\n{line}" if notes.strip() else line


def _date_or_raise(obj: dict[str, Any], name: str) -> date:
    value = _day(obj.get(name))
    if value is None:
        raise BusinessRuleViolation(
            "MISSING_FIELD", f"PSA record has no {name}", field=name, system=SYSTEM
        )
    return value


def time_entry_from_kantata(obj: dict[str, Any], worker_id: str) -> TimeEntry:
    return TimeEntry(
        external_id=str(obj["id"]),
        project_id=str(obj["workspace_id"]),
        worker_id=worker_id,
        role=obj.get("role"),
        task_id=str(obj["story_id"]) if obj.get("story_id") else None,
        date_performed=_date_or_raise(obj, "date_performed"),
        minutes=int(obj["time_in_minutes"]),
        billable=bool(obj.get("billable", True)),
        approved=bool(obj.get("approved")),
        invoiced=bool(obj.get("is_invoiced")),
        notes=str(obj.get("notes") or ""),
        bill_rate=_money(obj, "rate_in_cents") if obj.get("rate_in_cents") else None,
        source_system=System.PSA,
        source_version=_version(obj),
        updated_at=_when(obj.get("updated_at")),
    )


def expense_from_kantata(obj: dict[str, Any], worker_id: str) -> ExpenseEntry:
    return ExpenseEntry(
        external_id=str(obj["id"]),
        project_id=str(obj["workspace_id"]),
        worker_id=worker_id,
        date_incurred=_date_or_raise(obj, "date"),
        amount=_money(obj, "amount_in_cents"),
        category=str(obj.get("category") or "Other"),
        billable=bool(obj.get("is_billable", True)),
        reimbursable=bool(obj.get("reimbursable", True)),
        approved=bool(obj.get("approved")),
        invoiced=bool(obj.get("is_invoiced")),
        source_system=System.PSA,
        source_version=_version(obj),
        updated_at=_when(obj.get("updated_at")),
    )


def assignment_from_kantata(obj: dict[str, Any], worker_id: str | None) -> Assignment:
    return _assignment(obj, worker_id, obj.get("allocated_minutes"))


def resource_request_from_kantata(obj: dict[str, Any]) -> Assignment:
    """A resource request as canonical role demand (`external_id` is the PSA request id)."""
    return _assignment(obj, None, obj.get("minutes"))


def _assignment(obj: dict[str, Any], worker_id: str | None, minutes: Any) -> Assignment:
    """A named assignment (with `worker_id`) or role demand (without) of a Kantata record."""
    return Assignment(
        external_id=str(obj["id"]),
        project_id=str(obj["workspace_id"]),
        role=str(obj["role"]),
        kind=AssignmentKind.NAMED if worker_id else AssignmentKind.ROLE_DEMAND,
        worker_id=worker_id,
        start_date=_date_or_raise(obj, "start_date"),
        end_date=_date_or_raise(obj, "end_date"),
        allocated_minutes=int(minutes or 0),
        source_system=System.PSA,
        source_version=_version(obj),
        updated_at=_when(obj.get("updated_at")),
    )


def milestone_from_kantata(obj: dict[str, Any]) -> Milestone:
    return Milestone(
        code=_marker_code(obj.get("description"), MILESTONE_MARKER) or str(obj["id"]),
        name=str(obj["title"]),
        external_id=str(obj["id"]),
        amount=_money(obj, "amount_in_cents"),
        target_date=_day(obj.get("target_date")),
        status=MilestoneStatus(obj.get("state") or "planned"),
    )


def change_order_from_kantata(obj: dict[str, Any]) -> ChangeOrder:
    return ChangeOrder(
        external_id=str(obj["id"]),
        project_id=str(obj["workspace_id"]),
        title=str(obj["title"]),
        description=str(obj.get("description") or ""),
        budget_delta=_money(obj, "budget_delta_in_cents"),
        lines=[
            ChangeOrderLine(
                role=str(line["role"]),
                hours_delta=Decimal(int(line["minutes_delta"])) / Decimal(60),
                start_date=_day(line.get("start_date")),
                end_date=_day(line.get("end_date")),
            )
            for line in obj.get("lines") or []
        ],
        requested_by=str(obj.get("requested_by") or ""),
        submitted_at=_when(obj.get("submitted_at")),
        status=_CO_STATES_BACK.get(str(obj.get("state")), ChangeOrderStatus.SUBMITTED),
        source_system=System.PSA,
        source_version=_version(obj),
        updated_at=_when(obj.get("updated_at")),
    )


def rate_card_from_kantata(obj: dict[str, Any], roles: Iterable[dict[str, Any]]) -> RateCard:
    currency = str(obj.get("currency") or "USD")
    return RateCard(
        external_id=str(obj["id"]),
        name=str(obj.get("title") or ""),
        currency=currency,
        lines=[
            RateCardLine(
                role=str(r["role"]),
                bill_rate=Money.from_minor(int(r["rate_in_cents"]), currency),
                effective_from=_date_or_raise(r, "effective_from"),
                effective_to=_day(r.get("effective_to")),
            )
            for r in roles
        ],
        source_system=System.PSA,
        updated_at=_when(obj.get("updated_at")),
    )


def _project_status(ws: dict[str, Any], ref_status: str | None) -> ProjectStatus:
    if ws.get("archived"):
        return ProjectStatus.ARCHIVED
    if str(ws.get("status")) in ("closed", "completed"):
        return ProjectStatus.CLOSED
    if ws.get("closed_for_time_entry"):
        return ProjectStatus.CLOSED_FOR_TIME
    if ref_status in ("pending", "failed"):
        return ProjectStatus.PROVISIONING
    return ProjectStatus.ACTIVE


def project_from_kantata(
    ws: dict[str, Any],
    stories: Sequence[dict[str, Any]],
    milestones: Sequence[dict[str, Any]],
    ref: dict[str, Any] | None,
) -> Project:
    currency = str(ws.get("currency") or "USD")
    codes = {
        str(s["id"]): _marker_code(s.get("description"), WBS_MARKER) or str(s["id"])
        for s in stories
    }
    eid = str(ref["service_model_ref"]) if ref else None
    return Project(
        enterprise_id=eid if eid and is_ulid(eid) else None,
        name=str(ws["title"]),
        customer_id=str(ws.get("client_ref") or "unassigned"),
        opportunity_id=ws.get("opportunity_ref"),
        billing_rule=_BILLING_RULES_BACK.get(
            str(ws.get("billing_rule")), BillingRule.TIME_AND_MATERIALS
        ),
        contract_value=Money.from_minor(int(ws.get("price_in_cents") or 0), currency),
        # Kantata workspaces may have no start date; the day it was created stands in.
        start_date=_day(ws.get("start_date")) or _when(ws.get("created_at")).date(),
        end_date=_day(ws.get("due_date")),
        cost_center=str(ws.get("cost_center") or ""),
        practice=ws.get("practice"),
        rate_card_id=str(ws["rate_card_id"]) if ws.get("rate_card_id") else None,
        delivery_manager=ws.get("delivery_manager"),
        status=_project_status(ws, ref.get("status") if ref else None),
        wbs=[
            WbsNode(
                code=codes[str(s["id"])],
                name=str(s["title"]),
                node_type=_STORY_TYPES_BACK.get(str(s.get("story_type")), WbsNodeType.TASK),
                parent_code=codes.get(str(s["parent_id"])) if s.get("parent_id") else None,
                role=s.get("role"),
                estimated_minutes=int(s.get("time_estimate_in_minutes") or 0),
                budget=Money.from_minor(int(s.get("budget_estimate_in_cents") or 0), currency),
                billable=bool(s.get("billable", True)),
            )
            for s in stories
        ],
        milestones=[milestone_from_kantata(m) for m in milestones],
        source_system=System.PSA,
        source_version=_version(ws),
        updated_at=_when(ws.get("updated_at")),
    )


def wbs_in_creation_order(project: Project) -> list[WbsNode]:
    """Parents before children; refuses duplicate codes, unknown parents and cycles before
    anything is written, so a bad WBS never leaves half a project behind."""
    by_code: dict[str, WbsNode] = {}
    for i, node in enumerate(project.wbs):
        if node.code in by_code:
            raise BusinessRuleViolation(
                "INVALID_WBS", f"duplicate WBS code {node.code}", field=f"wbs[{i}].code"
            )
        by_code[node.code] = node
    for i, node in enumerate(project.wbs):
        if node.parent_code is not None and node.parent_code not in by_code:
            raise BusinessRuleViolation(
                "INVALID_WBS",
                f"WBS node {node.code} has unknown parent {node.parent_code}",
                field=f"wbs[{i}].parent_code",
            )
    ordered: list[WbsNode] = []
    placed: set[str] = set()
    remaining = list(project.wbs)
    while remaining:
        ready = [n for n in remaining if n.parent_code is None or n.parent_code in placed]
        if not ready:
            raise BusinessRuleViolation(
                "INVALID_WBS",
                f"WBS parents form a cycle: {sorted(n.code for n in remaining)}",
                field="wbs",
            )
        for node in ready:
            ordered.append(node)
            placed.add(node.code)
        remaining = [n for n in remaining if n.code not in placed]
    codes = [m.code for m in project.milestones]
    if len(codes) != len(set(codes)):
        raise BusinessRuleViolation(
            "INVALID_MILESTONES", "duplicate milestone codes", field="milestones"
        )
    return ordered
