"""Kantata JSON <-> canonical types: the `*_from_kantata` readers, the vendor's value tables and
the small parsing helpers both adapters share.

The readers take both shapes a record comes in: the twin's (plain columns: `user_id` on an
assignment, `status` a string, legacy custom-field stand-ins such as `cost_center` on a
workspace the twin made before it stored custom field values) and
the one Kantata publishes (`assignee_id` only with `include=assignee`, an assignment's project
and dates on its story, `status` an object `{"color", "key", "message"}`, custom fields as
`custom_field_values`, money as `*_in_cents` that may be null beside a formatted string such as
`"$21,375"`). Every `*_from_kantata` raises `UnmappableRecord` (naming the record, its id and
the field) on a record it cannot read, never a bare `KeyError`/`ValueError`/`TypeError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from connectors._vendor_errors import unmappable
from connectors.psa._constants import (
    CUSTOM_FIELD_SUBJECT,
    CUSTOM_FIELD_VALUE_TYPE,
    CUSTOM_FIELDS,
    MILESTONE_MARKER,
    REJECTION_PREFIX,
    SYSTEM,
    WBS_MARKER,
)
from connectors.psa._values import (
    _date_or_raise,
    _day,
    _marker_code,
    _money,
    _version,
    _when,
    cents,
    missing,
    required_ref,
    status_closed,
)
from connectors.psa._values import ref as _ref
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


@unmappable(SYSTEM, "time entry")
def time_entry_from_kantata(obj: dict[str, Any], worker_id: str) -> TimeEntry:
    return TimeEntry(
        external_id=str(obj["id"]),
        project_id=str(obj["workspace_id"]),
        worker_id=worker_id,
        role=obj.get("role"),
        task_id=str(obj["story_id"]) if obj.get("story_id") else None,
        date_performed=_date_or_raise(obj, "date_performed", "time entry"),
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


@unmappable(SYSTEM, "expense")
def expense_from_kantata(obj: dict[str, Any], worker_id: str) -> ExpenseEntry:
    return ExpenseEntry(
        external_id=str(obj["id"]),
        project_id=required_ref(obj, "expense", "workspace_id"),
        worker_id=worker_id,
        date_incurred=_date_or_raise(obj, "date", "expense"),
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


@unmappable(SYSTEM, "assignment")
def assignment_from_kantata(
    obj: dict[str, Any], worker_id: str | None, story: Mapping[str, Any] | None = None
) -> Assignment:
    """A Kantata assignment, in the twin's shape (workspace, role, dates and `user_id` on the
    assignment) or Kantata's: a task assignment whose project and dates are its story's
    (`story`, side-loaded with `include=story`), whose person is `assignee_id`, and whose time
    is `allocated_minutes` (the scheduled hours; `estimated_minutes` when none are scheduled).

    Kantata's role is the resource's (`resource_id`), which no include of an assignment
    returns: without a role on the assignment or its story, the role reads
    `psa-resource:<resource_id>`, which matches no rate and shows where to look."""
    story = story or {}
    project = _ref(obj, "workspace_id") or _ref(story, "workspace_id")
    if project is None:
        raise missing("assignment", obj, "workspace_id", "neither it nor its story names a project")
    start = _day(obj.get("start_date")) or _day(story.get("start_date"))
    end = _day(obj.get("end_date")) or _day(story.get("due_date"))
    if start is None or end is None:
        field = "start_date" if start is None else "end_date"
        raise missing("assignment", obj, field, f"neither it nor its story has a {field}")
    role = obj.get("role") or story.get("role")
    if not role and obj.get("resource_id") is not None:
        role = f"psa-resource:{obj['resource_id']}"
    if not role:
        raise missing("assignment", obj, "role")
    minutes = obj.get("allocated_minutes")
    if minutes is None:
        minutes = obj.get("estimated_minutes")
    return _assignment(obj, worker_id, minutes, project=project, role=str(role), dates=(start, end))


@unmappable(SYSTEM, "resource request")
def resource_request_from_kantata(obj: dict[str, Any]) -> Assignment:
    """A resource request as canonical role demand (`external_id` is the PSA request id)."""
    return _assignment(
        obj,
        None,
        obj.get("minutes"),
        project=str(obj["workspace_id"]),
        role=str(obj["role"]),
        dates=(
            _date_or_raise(obj, "start_date", "resource request"),
            _date_or_raise(obj, "end_date", "resource request"),
        ),
    )


def _assignment(
    obj: dict[str, Any],
    worker_id: str | None,
    minutes: Any,
    *,
    project: str,
    role: str,
    dates: tuple[date, date],
) -> Assignment:
    """A named assignment (with `worker_id`) or role demand (without) of a Kantata record."""
    return Assignment(
        external_id=str(obj["id"]),
        project_id=project,
        role=role,
        kind=AssignmentKind.NAMED if worker_id else AssignmentKind.ROLE_DEMAND,
        worker_id=worker_id,
        start_date=dates[0],
        end_date=dates[1],
        allocated_minutes=int(minutes or 0),
        source_system=System.PSA,
        source_version=_version(obj),
        updated_at=_when(obj.get("updated_at")),
    )


@unmappable(SYSTEM, "billing milestone")
def milestone_from_kantata(obj: dict[str, Any]) -> Milestone:
    return Milestone(
        code=_marker_code(obj.get("description"), MILESTONE_MARKER) or str(obj["id"]),
        name=str(obj["title"]),
        external_id=str(obj["id"]),
        amount=_money(obj, "amount_in_cents"),
        target_date=_day(obj.get("target_date")),
        status=MilestoneStatus(obj.get("state") or "planned"),
    )


@unmappable(SYSTEM, "change order")
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


@unmappable(SYSTEM, "rate card")
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
                effective_from=_date_or_raise(r, "effective_from", "rate card role"),
                effective_to=_day(r.get("effective_to")),
            )
            for r in roles
        ],
        source_system=System.PSA,
        updated_at=_when(obj.get("updated_at")),
    )


@unmappable(SYSTEM, "external reference")
def reference_from_kantata(obj: dict[str, Any]) -> tuple[str, str]:
    """(subject id, the other system's id) of an external reference: for `hcm_worker`, the
    Kantata user and the HCM worker; for `enterprise_project`, the workspace and the enterprise
    id. Kantata ids are numbers (sent as strings)."""
    return str(int(obj["subject_id"])), str(obj["service_model_ref"])


@unmappable(SYSTEM, "workspace")
def budget_from_kantata(ws: dict[str, Any]) -> Money | None:
    """A budgeted workspace's budget: the twin's `budget_in_cents`, or Kantata's own budget,
    the project's price (`price_in_cents`, else a formatted `price`); None when the
    workspace is not budgeted or states no amount."""
    if not ws.get("budgeted"):
        return None
    field = "budget_in_cents" if "budget_in_cents" in ws else "price_in_cents"
    amount = cents(ws, field)
    if amount is None:
        return None
    return Money.from_minor(amount, str(ws.get("currency") or "USD"))


def custom_field_values_by_name(
    ws: Mapping[str, Any], values: Mapping[str, Mapping[str, Any]]
) -> dict[str, str]:
    """A workspace's custom field values by field name (`include=custom_field_values`)."""
    found: dict[str, str] = {}
    for value_id in ws.get("custom_field_value_ids") or []:
        value = values.get(str(value_id))
        if value and value.get("custom_field_name") and value.get("value") is not None:
            found[str(value["custom_field_name"])] = str(value["value"])
    return found


def _workspace_fact(ws: Mapping[str, Any], column: str, custom: Mapping[str, str]) -> str | None:
    """A fact Kantata keeps in a custom field: the custom field value named in
    `CUSTOM_FIELDS`, else (a workspace the twin made before it stored custom field values)
    the twin's legacy stand-in column."""
    name = CUSTOM_FIELDS[column]
    value = custom[name] if name in custom else ws.get(column)
    return None if value is None or value == "" else str(value)


def workspace_facts(project: Project) -> dict[str, str | None]:
    """The facts of a project Kantata keeps in workspace custom fields, by custom field name
    (`CUSTOM_FIELDS`); None where the project has none."""
    by_column: dict[str, str | None] = {
        "client_ref": project.customer_id,
        "opportunity_ref": project.opportunity_id,
        "billing_rule": _BILLING_RULES[project.billing_rule],
        "cost_center": project.cost_center or None,
        "practice": project.practice,
        "delivery_manager": project.delivery_manager,
    }
    return {CUSTOM_FIELDS[column]: value for column, value in by_column.items()}


def workspace_custom_field_ids(
    fields: Iterable[Mapping[str, Any]],
    sets: Mapping[str, Mapping[str, Any]],
    names: Sequence[str],
) -> dict[str, str]:
    """The ids of the Workspace custom fields called `names`, from a custom field list read
    with `include=custom_field_set` (`fields`) and its side-loaded `custom_field_sets`.

    A field counts when its set's `subject_type` is Workspace. The tenant's setup is checked
    before anything is written: a name with no such field is `MISSING_CUSTOM_FIELD` (naming
    the first, listing all), one with several `AMBIGUOUS_CUSTOM_FIELD`, and a field that is
    not text `CUSTOM_FIELD_NOT_TEXT` (a choice field takes choice ids, not pssync's text);
    each is a business rule whose `field` is the custom field's name."""
    found: dict[str, list[Mapping[str, Any]]] = {}
    for field in fields:
        field_set = sets.get(str(field.get("custom_field_set_id")))
        if field_set is not None and field_set.get("subject_type") == CUSTOM_FIELD_SUBJECT:
            found.setdefault(str(field.get("name")), []).append(field)
    missing = [name for name in names if name not in found]
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        raise BusinessRuleViolation(
            "MISSING_CUSTOM_FIELD",
            f"the PSA has no {CUSTOM_FIELD_SUBJECT} custom field named {listed}: an account "
            f"administrator creates them as text fields in a custom field set for projects",
            field=missing[0],
            system=SYSTEM,
        )
    ids: dict[str, str] = {}
    for name in names:
        (field, *others) = found[name]
        if others:
            raise BusinessRuleViolation(
                "AMBIGUOUS_CUSTOM_FIELD",
                f"the PSA has {len(others) + 1} {CUSTOM_FIELD_SUBJECT} custom fields named "
                f"{name!r}; keep one",
                field=name,
                system=SYSTEM,
            )
        value_type = str(field.get("value_type") or CUSTOM_FIELD_VALUE_TYPE)
        if value_type != CUSTOM_FIELD_VALUE_TYPE:
            raise BusinessRuleViolation(
                "CUSTOM_FIELD_NOT_TEXT",
                f"{CUSTOM_FIELD_SUBJECT} custom field {name!r} is a {value_type!r} field; "
                f"pssync writes text, so it must be a {CUSTOM_FIELD_VALUE_TYPE!r} field",
                field=name,
                system=SYSTEM,
            )
        ids[name] = required_ref(field, "custom field", "id")
    return ids


def _project_status(ws: dict[str, Any], ref_status: str | None) -> ProjectStatus:
    if ws.get("archived"):
        return ProjectStatus.ARCHIVED
    if status_closed(ws):
        return ProjectStatus.CLOSED
    if ws.get("closed_for_time_entry"):
        return ProjectStatus.CLOSED_FOR_TIME
    if ref_status in ("pending", "failed"):
        return ProjectStatus.PROVISIONING
    return ProjectStatus.ACTIVE


def _wbs_node(s: Mapping[str, Any], codes: Mapping[str, str], currency: str) -> WbsNode:
    return WbsNode(
        code=codes[str(s["id"])],
        name=str(s["title"]),
        node_type=_STORY_TYPES_BACK.get(str(s.get("story_type")), WbsNodeType.TASK),
        parent_code=codes.get(str(s["parent_id"])) if s.get("parent_id") else None,
        role=s.get("role"),
        estimated_minutes=int(s.get("time_estimate_in_minutes") or 0),
        budget=Money.from_minor(cents(s, "budget_estimate_in_cents") or 0, currency),
        billable=bool(s.get("billable", True)),
    )


@unmappable(SYSTEM, "workspace")
def project_from_kantata(
    ws: dict[str, Any],
    stories: Sequence[dict[str, Any]],
    milestones: Sequence[dict[str, Any]],
    ref: dict[str, Any] | None,
    custom: Mapping[str, str] | None = None,
) -> Project:
    """A workspace with its stories (the WBS), billing milestones, pssync's external reference
    and, on Kantata, its custom field values by name (`custom_field_values_by_name`)."""
    custom = custom or {}
    currency = str(ws.get("currency") or "USD")
    codes = {
        str(s["id"]): _marker_code(s.get("description"), WBS_MARKER) or str(s["id"])
        for s in stories
    }
    eid = str(ref["service_model_ref"]) if ref else None
    rate_card = ws.get("rate_card_id")
    return Project(
        enterprise_id=eid if eid and is_ulid(eid) else None,
        name=str(ws["title"]),
        customer_id=_workspace_fact(ws, "client_ref", custom) or "unassigned",
        opportunity_id=_workspace_fact(ws, "opportunity_ref", custom),
        billing_rule=_BILLING_RULES_BACK.get(
            str(_workspace_fact(ws, "billing_rule", custom)), BillingRule.TIME_AND_MATERIALS
        ),
        contract_value=Money.from_minor(cents(ws, "price_in_cents") or 0, currency),
        # Kantata workspaces may have no start date; the day it was created stands in.
        start_date=_day(ws.get("start_date")) or _when(ws.get("created_at")).date(),
        end_date=_day(ws.get("due_date")),
        cost_center=_workspace_fact(ws, "cost_center", custom) or "",
        practice=_workspace_fact(ws, "practice", custom),
        rate_card_id=str(rate_card) if rate_card else None,
        delivery_manager=_workspace_fact(ws, "delivery_manager", custom),
        status=_project_status(ws, ref.get("status") if ref else None),
        wbs=[_wbs_node(s, codes, currency) for s in stories],
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
