"""Twin of the PSA: a Kantata (Mavenlink) API v1 subset at `/api/v1/...json`.

Only what pssync's processes use, shaped the vendor's way:

- responses are `{"count", "meta": {count, page_count, page_number, page_size}, "results":
  [{"key", "id"}], "<key>": {"<id>": {...}}}` with side-loaded collections (`include=`),
  numeric-string IDs, `page` / `per_page` paging (default 20, max 200), `only=` and `order=`;
- create/update bodies wrap the object (`{"workspace": {...}}`); unknown fields are refused;
- errors are `{"errors": [{"type": "validation", "message", "field"}]}`, 422 for validation,
  401 / 404 as usual; rate limiting answers 429 *without* Retry-After;
- external references (`POST /api/v1/external_references/create_or_update`) are the vendor's
  own ID map, and the only place another system's IDs live.

Business rules the processes depend on: no time (or expense) for a resource who is inactive,
not yet started or closed to time entry on that date; none on an archived workspace or one
closed for time entry; 0 < time_in_minutes <= 1440; approved entries are locked until
unapproved, invoiced entries are locked until their invoice is cancelled.

Kantata proper has no outbound webhooks. The twin's signed thin events (Standard Webhooks)
stand in for its event subscriptions / Zapier-style push: data is IDs plus a version only, so
the receiver always re-reads the record. Event types: `time_entry.approved`,
`time_entry.unapproved`, `expense.approved`, `assignment.changed` (with `action`),
`change_order.submitted`, `billing_milestone.completed`.

Fields that stand in for Kantata custom fields (cost_center, practice, billing_rule,
delivery_manager, client_ref, opportunity_ref on workspaces; role on users) are plain columns.

Twin admin (no auth, like the shared `/_admin/faults`): `POST /_admin/time_entries/bulk`
`{"entries": [{"workspace_id", "user_id", "date_performed", "time_in_minutes", "role"?,
"story_id"?, "billable"?}], "approved": true, "emit": false}` inserts many time entries in one
transaction with the same rules and defaults as `POST /api/v1/time_entries.json` (all or
none; a refusal names `entries[i].<field>`), approved unless `"approved": false`, emitting
`time_entry.approved` per entry only with `"emit": true`; it answers `{"ids": [...]}` in input
order. It is for benchmarks and tests, not a Kantata endpoint.

Posts are the workspace's activity feed (`POST /api/v1/posts.json`, `GET /api/v1/posts.json`);
pssync posts its notifications there. `recipient_ids` are users (Kantata's private posts);
`recipient_roles` stands in for addressing people by role (resource managers, approvers).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydField
from sqlalchemy import JSON, Column, func, or_
from sqlmodel import Field, Session, SQLModel, col, select

from contracts.settings import DEV_WEBHOOK_SECRET
from sandbox._twin import TwinError, TwinState, WebhookSender, create_twin_app, make_twin_engine
from sandbox.seed import Firm

SYSTEM = "psa"
API = "/api/v1"
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 200
MAX_MINUTES_PER_DAY = 24 * 60


Day = date
"""Alias for annotations in classes that have a field named `date` (Kantata's name)."""


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- tables


class PsaWorkspace(SQLModel, table=True):
    __tablename__ = "psa_workspace"

    id: int | None = Field(default=None, primary_key=True)
    title: str
    description: str = ""
    start_date: date | None = None
    due_date: date | None = None
    price_in_cents: int = 0
    budgeted: bool = False
    budget_in_cents: int | None = None
    currency: str = "USD"
    rate_card_id: int | None = None
    status: str = "active"
    archived: bool = False
    cost_center: str | None = None
    practice: str | None = None
    billing_rule: str | None = None
    delivery_manager: str | None = None
    client_ref: str | None = None
    opportunity_ref: str | None = None
    change_orders_enabled: bool = False
    target_margin: float | None = None
    closed_for_time_entry: bool = False
    lock_version: int = 1
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now, index=True)


class PsaStory(SQLModel, table=True):
    __tablename__ = "psa_story"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(index=True)
    title: str
    description: str = ""
    parent_id: int | None = None
    root_id: int | None = None
    story_type: str = "task"
    state: str = "not started"
    time_estimate_in_minutes: int = 0
    budget_estimate_in_cents: int = 0
    billable: bool = True
    role: str | None = None
    position: int = 0
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class PsaUser(SQLModel, table=True):
    __tablename__ = "psa_user"

    id: int | None = Field(default=None, primary_key=True)
    full_name: str
    email_address: str | None = None
    role: str | None = None
    active: bool = True
    start_date: date | None = None
    time_entry_closed_after: date | None = None
    cost_rate_in_cents: int | None = None
    currency: str = "USD"
    lock_version: int = 1
    updated_at: datetime = Field(default_factory=_now)


class PsaTimeEntry(SQLModel, table=True):
    __tablename__ = "psa_time_entry"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(index=True)
    user_id: int = Field(index=True)
    story_id: int | None = None
    role: str | None = None
    date_performed: date
    time_in_minutes: int
    billable: bool = True
    notes: str = ""
    rate_in_cents: int = 0
    cost_rate_in_cents: int = 0
    currency: str = "USD"
    approved: bool = False
    approved_at: datetime | None = None
    is_invoiced: bool = False
    invoice_id: int | None = None
    lock_version: int = 1
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now, index=True)


class PsaExpense(SQLModel, table=True):
    __tablename__ = "psa_expense"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(index=True)
    user_id: int = Field(index=True)
    date: Day
    amount_in_cents: int
    currency: str = "USD"
    category: str = "Other"
    notes: str = ""
    is_billable: bool = True
    reimbursable: bool = True
    approved: bool = False
    approved_at: datetime | None = None
    is_invoiced: bool = False
    invoice_id: int | None = None
    lock_version: int = 1
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now, index=True)


class PsaAssignment(SQLModel, table=True):
    __tablename__ = "psa_assignment"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(index=True)
    user_id: int | None = Field(default=None, index=True)
    role: str
    start_date: date
    end_date: date
    allocated_minutes: int = 0
    lock_version: int = 1
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class PsaResourceRequest(SQLModel, table=True):
    __tablename__ = "psa_resource_request"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(index=True)
    role: str
    start_date: date
    end_date: date
    minutes: int = 0
    status: str = "open"
    notes: str = ""
    lock_version: int = 1
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class PsaRateCard(SQLModel, table=True):
    __tablename__ = "psa_rate_card"

    id: int | None = Field(default=None, primary_key=True)
    title: str
    currency: str = "USD"
    updated_at: datetime = Field(default_factory=_now)


class PsaRateCardRole(SQLModel, table=True):
    __tablename__ = "psa_rate_card_role"

    id: int | None = Field(default=None, primary_key=True)
    rate_card_id: int = Field(index=True)
    role: str
    rate_in_cents: int
    effective_from: date
    effective_to: date | None = None


class PsaBillingMilestone(SQLModel, table=True):
    __tablename__ = "psa_billing_milestone"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(index=True)
    title: str
    description: str = ""
    amount_in_cents: int = 0
    currency: str = "USD"
    target_date: date | None = None
    state: str = "planned"
    completed_at: datetime | None = None
    invoice_id: int | None = None
    lock_version: int = 1
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class PsaChangeOrder(SQLModel, table=True):
    __tablename__ = "psa_change_order"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(index=True)
    title: str
    description: str = ""
    budget_delta_in_cents: int = 0
    currency: str = "USD"
    lines: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    state: str = "submitted"
    requested_by: str = ""
    submitted_at: datetime = Field(default_factory=_now)
    lock_version: int = 1
    updated_at: datetime = Field(default_factory=_now)


class PsaInvoice(SQLModel, table=True):
    __tablename__ = "psa_invoice"

    id: int | None = Field(default=None, primary_key=True)
    reference_number: str | None = Field(default=None, index=True)
    invoice_date: date
    state: str = "draft"
    workspace_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    time_entry_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    expense_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    billing_milestone_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class PsaExternalReference(SQLModel, table=True):
    __tablename__ = "psa_external_reference"

    id: int | None = Field(default=None, primary_key=True)
    subject_type: str = Field(index=True)
    subject_id: int = Field(index=True)
    service_name: str
    service_model: str
    service_model_ref: str = Field(index=True)
    status: str = "pending"
    external_status: str | None = None
    external_message: str | None = None
    external_link: str | None = None
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class PsaPost(SQLModel, table=True):
    __tablename__ = "psa_post"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(index=True)
    message: str
    recipient_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    recipient_roles: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


TABLES = [
    m.__table__  # type: ignore[attr-defined]
    for m in (
        PsaWorkspace,
        PsaStory,
        PsaUser,
        PsaTimeEntry,
        PsaExpense,
        PsaAssignment,
        PsaResourceRequest,
        PsaRateCard,
        PsaRateCardRole,
        PsaBillingMilestone,
        PsaChangeOrder,
        PsaInvoice,
        PsaExternalReference,
        PsaPost,
    )
]

KEYS: dict[type[SQLModel], str] = {
    PsaWorkspace: "workspaces",
    PsaStory: "stories",
    PsaUser: "users",
    PsaTimeEntry: "time_entries",
    PsaExpense: "expenses",
    PsaAssignment: "assignments",
    PsaResourceRequest: "resource_requests",
    PsaRateCard: "rate_cards",
    PsaRateCardRole: "rate_card_roles",
    PsaBillingMilestone: "billing_milestones",
    PsaChangeOrder: "change_orders",
    PsaInvoice: "invoices",
    PsaExternalReference: "external_references",
    PsaPost: "posts",
}

SUBJECT_TYPES: dict[str, type[SQLModel]] = {
    "Workspace": PsaWorkspace,
    "Story": PsaStory,
    "User": PsaUser,
    "TimeEntry": PsaTimeEntry,
    "Expense": PsaExpense,
    "Assignment": PsaAssignment,
    "RateCard": PsaRateCard,
    "BillingMilestone": PsaBillingMilestone,
    "Invoice": PsaInvoice,
}


# --------------------------------------------------------------------------- errors


_ERROR_TYPES = {"validation", "system", "oauth"}


def error_body(status: int, code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """Kantata's error shape: `{"errors": [{"type", "message", "field"?}]}`."""
    if code in _ERROR_TYPES:
        kind = code
    elif status == 401:
        kind = "oauth"
    elif status in (400, 422):
        kind = "validation"
    else:
        kind = "system"
    err: dict[str, Any] = {"type": kind, "message": message}
    if field:
        err["field"] = field
    return {"errors": [err]}


def _invalid(message: str, field: str | None = None) -> TwinError:
    return TwinError(422, "validation", message, field)


def _not_found(what: str, ident: int | str) -> TwinError:
    return TwinError(404, "system", f"{what} {ident} not found")


# --------------------------------------------------------------------------- rendering


def _render_value(name: str, value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int) and (name == "id" or name.endswith("_id")):
        return str(value)
    if isinstance(value, list) and name.endswith("_ids"):
        return [str(v) for v in value]
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def render(row: SQLModel) -> dict[str, Any]:
    return {k: _render_value(k, v) for k, v in row.model_dump().items()}


@dataclass(frozen=True)
class HasMany:
    model: type[SQLModel]
    foreign_key: str
    ids_attr: str


@dataclass(frozen=True)
class BelongsTo:
    model: type[SQLModel]
    local_key: str


INCLUDES: dict[str, dict[str, HasMany | BelongsTo]] = {
    "workspaces": {
        "stories": HasMany(PsaStory, "workspace_id", "story_ids"),
        "billing_milestones": HasMany(PsaBillingMilestone, "workspace_id", "billing_milestone_ids"),
        "rate_card": BelongsTo(PsaRateCard, "rate_card_id"),
    },
    "stories": {
        "workspace": BelongsTo(PsaWorkspace, "workspace_id"),
        "parent": BelongsTo(PsaStory, "parent_id"),
    },
    "time_entries": {
        "user": BelongsTo(PsaUser, "user_id"),
        "workspace": BelongsTo(PsaWorkspace, "workspace_id"),
        "story": BelongsTo(PsaStory, "story_id"),
    },
    "expenses": {
        "user": BelongsTo(PsaUser, "user_id"),
        "workspace": BelongsTo(PsaWorkspace, "workspace_id"),
    },
    "assignments": {
        "user": BelongsTo(PsaUser, "user_id"),
        "workspace": BelongsTo(PsaWorkspace, "workspace_id"),
    },
    "resource_requests": {"workspace": BelongsTo(PsaWorkspace, "workspace_id")},
    "rate_cards": {
        "rate_card_roles": HasMany(PsaRateCardRole, "rate_card_id", "rate_card_role_ids")
    },
    "billing_milestones": {"workspace": BelongsTo(PsaWorkspace, "workspace_id")},
    "change_orders": {"workspace": BelongsTo(PsaWorkspace, "workspace_id")},
    "users": {},
    "invoices": {},
    "external_references": {},
    "posts": {"workspace": BelongsTo(PsaWorkspace, "workspace_id")},
}


@dataclass
class ListParams:
    page: int
    per_page: int
    include: list[str]
    only: list[int] | None
    order: str | None


def _id_list(raw: str | None, name: str) -> list[int] | None:
    if raw is None or raw == "":
        return None
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        raise TwinError(400, "validation", f"{name} must be a comma-separated list of ids", name)
    return [int(p) for p in parts]


def list_params(
    page: int = Query(1, ge=1),
    per_page: int = Query(DEFAULT_PER_PAGE, ge=1),
    include: str | None = None,
    only: str | None = None,
    order: str | None = None,
) -> ListParams:
    includes = [i.strip() for i in (include or "").split(",") if i.strip()]
    return ListParams(
        page=page,
        per_page=min(per_page, MAX_PER_PAGE),
        include=includes,
        only=_id_list(only, "only"),
        order=order,
    )


def include_params(include: str | None = None) -> ListParams:
    return list_params(page=1, per_page=MAX_PER_PAGE, include=include, only=None, order=None)


def envelope(
    session: Session,
    model: type[SQLModel],
    rows: Sequence[SQLModel],
    *,
    total: int | None = None,
    params: ListParams | None = None,
) -> dict[str, Any]:
    """Kantata's response shape with side-loaded includes."""
    key = KEYS[model]
    params = params or ListParams(1, max(1, len(rows)), [], None, None)
    total = len(rows) if total is None else total
    objects = {str(r.id): render(r) for r in rows}  # type: ignore[attr-defined]
    body: dict[str, Any] = {
        "count": total,
        "meta": {
            "count": total,
            "page_count": math.ceil(total / params.per_page) if total else 0,
            "page_number": params.page,
            "page_size": params.per_page,
        },
        "results": [{"key": key, "id": str(r.id)} for r in rows],  # type: ignore[attr-defined]
        key: objects,
    }
    specs = INCLUDES.get(key, {})
    for name in params.include:
        spec = specs.get(name)
        if spec is None:
            raise TwinError(400, "validation", f"unknown include '{name}' for {key}", "include")
        target_key = KEYS[spec.model]
        collection: dict[str, Any] = body.setdefault(target_key, {})
        if isinstance(spec, HasMany):
            ids = [r.id for r in rows]  # type: ignore[attr-defined]
            fk = getattr(spec.model, spec.foreign_key)
            related = session.exec(
                select(spec.model).where(col(fk).in_(ids)).order_by(spec.model.id)  # type: ignore[attr-defined]
            ).all()
            by_parent: dict[str, list[str]] = {str(i): [] for i in ids}
            for rel in related:
                collection.setdefault(str(rel.id), render(rel))  # type: ignore[attr-defined]
                by_parent[str(getattr(rel, spec.foreign_key))].append(str(rel.id))  # type: ignore[attr-defined]
            for rid, obj in objects.items():
                obj[spec.ids_attr] = by_parent.get(rid, [])
        else:
            wanted = {getattr(r, spec.local_key) for r in rows} - {None}
            if wanted:
                related = session.exec(
                    select(spec.model).where(col(spec.model.id).in_(wanted))  # type: ignore[attr-defined]
                ).all()
                for rel in related:
                    collection.setdefault(str(rel.id), render(rel))  # type: ignore[attr-defined]
    return body


def list_rows(
    session: Session,
    model: type[SQLModel],
    params: ListParams,
    clauses: Iterable[Any] = (),
    orderable: Sequence[str] = ("id", "updated_at", "created_at"),
) -> dict[str, Any]:
    pk = model.id  # type: ignore[attr-defined]
    stmt = select(model)
    for clause in clauses:
        stmt = stmt.where(clause)
    if params.only is not None:
        stmt = stmt.where(col(pk).in_(params.only))
    total = session.exec(select(func.count()).select_from(stmt.subquery())).one()
    ordering: list[Any] = []
    for part in (params.order or "").split(","):
        if not part.strip():
            continue
        name, _, direction = part.strip().partition(":")
        if name not in orderable or direction.lower() not in ("", "asc", "desc"):
            raise TwinError(400, "validation", f"cannot order by '{part}'", "order")
        column = col(getattr(model, name))
        ordering.append(column.desc() if direction.lower() == "desc" else column.asc())
    ordering.append(col(pk).asc())
    rows = session.exec(
        stmt.order_by(*ordering).offset((params.page - 1) * params.per_page).limit(params.per_page)
    ).all()
    return envelope(session, model, rows, total=total, params=params)


def _parse_when(raw: str | None, name: str) -> datetime | None:
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise TwinError(400, "validation", f"{name} must be an ISO 8601 datetime", name) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _get(session: Session, model: type[SQLModel], ident: int, what: str) -> Any:
    row = session.get(model, ident)
    if row is None:
        raise _not_found(what, ident)
    return row


def _touch(row: Any) -> None:
    row.updated_at = _now()
    if hasattr(row, "lock_version"):
        row.lock_version += 1


def _check_lock(row: Any, lock_version: int | None) -> None:
    if lock_version is not None and lock_version != row.lock_version:
        raise TwinError(
            409,
            "system",
            f"record changed since it was read (lock_version {lock_version} != {row.lock_version})",
            "lock_version",
        )


def _workspace_open(session: Session, workspace_id: int | None, *, for_time: bool = False) -> Any:
    if workspace_id is None:
        raise _invalid("Please choose a project", "workspace_id")
    ws = session.get(PsaWorkspace, workspace_id)
    if ws is None:
        raise _invalid(f"project {workspace_id} does not exist", "workspace_id")
    if ws.archived:
        raise _invalid(f"project {workspace_id} is archived", "workspace_id")
    if for_time and ws.closed_for_time_entry:
        raise _invalid(f"project {workspace_id} is closed for time entry", "workspace_id")
    return ws


def _resource_can_work(session: Session, user_id: int | None, on: date) -> Any:
    """The rule the PSA enforces: no time or expense for a resource inactive on that date."""
    if user_id is None:
        raise _invalid("Please choose a user", "user_id")
    user = session.get(PsaUser, user_id)
    if user is None:
        raise _invalid(f"user {user_id} does not exist", "user_id")
    if not user.active:
        raise _invalid(f"{user.full_name} is inactive", "user_id")
    if user.start_date is not None and on < user.start_date:
        raise _invalid(
            f"{user.full_name} starts on {user.start_date.isoformat()}", "date_performed"
        )
    if user.time_entry_closed_after is not None and on > user.time_entry_closed_after:
        raise _invalid(
            f"{user.full_name} is closed to time entry after "
            f"{user.time_entry_closed_after.isoformat()}",
            "date_performed",
        )
    return user


def _rate_for(session: Session, rate_card_id: int | None, role: str | None, on: date) -> int | None:
    if rate_card_id is None or role is None:
        return None
    return _rate_on(_card_roles(session, rate_card_id, role), on)


def _card_roles(session: Session, rate_card_id: int, role: str) -> Sequence[PsaRateCardRole]:
    return session.exec(
        select(PsaRateCardRole).where(
            PsaRateCardRole.rate_card_id == rate_card_id, PsaRateCardRole.role == role
        )
    ).all()


def _rate_on(rows: Iterable[PsaRateCardRole], on: date) -> int | None:
    for r in rows:
        if r.effective_from <= on and (r.effective_to is None or on <= r.effective_to):
            return r.rate_in_cents
    return None


# --------------------------------------------------------------------------- request bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkspaceFields(_Body):
    title: str | None = None
    description: str | None = None
    start_date: date | None = None
    due_date: date | None = None
    price_in_cents: int | None = PydField(default=None, ge=0)
    budgeted: bool | None = None
    budget_in_cents: int | None = PydField(default=None, ge=0)
    currency: str | None = PydField(default=None, min_length=3, max_length=3)
    rate_card_id: int | None = None
    status: str | None = None
    archived: bool | None = None
    cost_center: str | None = None
    practice: str | None = None
    billing_rule: str | None = None
    delivery_manager: str | None = None
    client_ref: str | None = None
    opportunity_ref: str | None = None
    change_orders_enabled: bool | None = None
    target_margin: float | None = None
    closed_for_time_entry: bool | None = None
    lock_version: int | None = None


class WorkspaceBody(_Body):
    workspace: WorkspaceFields


class StoryFields(_Body):
    workspace_id: int | None = None
    title: str | None = None
    description: str = ""
    parent_id: int | None = None
    story_type: Literal["task", "milestone", "deliverable", "issue"] = "task"
    state: Literal["not started", "started", "completed", "blocked"] = "not started"
    time_estimate_in_minutes: int = PydField(default=0, ge=0)
    budget_estimate_in_cents: int = PydField(default=0, ge=0)
    billable: bool = True
    role: str | None = None
    position: int = 0


class StoryBody(_Body):
    story: StoryFields


class TimeEntryFields(_Body):
    workspace_id: int | None = None
    user_id: int | None = None
    story_id: int | None = None
    role: str | None = None
    date_performed: date | None = None
    time_in_minutes: int | None = None
    billable: bool | None = None
    notes: str | None = None
    rate_in_cents: int | None = PydField(default=None, ge=0)
    cost_rate_in_cents: int | None = PydField(default=None, ge=0)
    currency: str | None = None
    approved: bool | None = None
    lock_version: int | None = None


class TimeEntryBody(_Body):
    time_entry: TimeEntryFields


class BulkTimeEntry(_Body):
    workspace_id: int
    user_id: int
    date_performed: date
    time_in_minutes: int
    role: str | None = None
    story_id: int | None = None
    billable: bool = True


class BulkTimeEntries(_Body):
    """`POST /_admin/time_entries/bulk` (twin admin, for benchmarks and tests)."""

    entries: list[BulkTimeEntry]
    approved: bool = True
    """Insert them approved (`approved_at` set), as if created and then approved."""
    emit: bool = False
    """Emit one `time_entry.approved` event per approved entry."""


class ExpenseFields(_Body):
    workspace_id: int | None = None
    user_id: int | None = None
    date: Day | None = None
    amount_in_cents: int | None = None
    currency: str | None = None
    category: str | None = None
    notes: str | None = None
    is_billable: bool | None = None
    reimbursable: bool | None = None
    approved: bool | None = None
    lock_version: int | None = None


class ExpenseBody(_Body):
    expense: ExpenseFields


class AssignmentFields(_Body):
    workspace_id: int | None = None
    user_id: int | None = None
    role: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    allocated_minutes: int | None = PydField(default=None, ge=0)
    lock_version: int | None = None


class AssignmentBody(_Body):
    assignment: AssignmentFields


class ResourceRequestFields(_Body):
    workspace_id: int | None = None
    role: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    minutes: int | None = PydField(default=None, ge=0)
    status: Literal["open", "cancelled", "filled"] | None = None
    notes: str | None = None


class ResourceRequestBody(_Body):
    resource_request: ResourceRequestFields


class UserFields(_Body):
    active: bool | None = None
    time_entry_closed_after: date | None = None
    role: str | None = None
    cost_rate_in_cents: int | None = PydField(default=None, ge=0)


class UserBody(_Body):
    user: UserFields


class MilestoneFields(_Body):
    workspace_id: int | None = None
    title: str | None = None
    description: str | None = None
    amount_in_cents: int | None = PydField(default=None, ge=0)
    currency: str | None = None
    target_date: date | None = None
    state: Literal["planned", "completed"] | None = None
    lock_version: int | None = None


class MilestoneBody(_Body):
    billing_milestone: MilestoneFields


class ChangeOrderLineFields(_Body):
    role: str = PydField(min_length=1)
    minutes_delta: int
    start_date: date | None = None
    end_date: date | None = None


class ChangeOrderFields(_Body):
    workspace_id: int | None = None
    title: str | None = None
    description: str | None = None
    budget_delta_in_cents: int | None = None
    currency: str | None = None
    lines: list[ChangeOrderLineFields] | None = None
    requested_by: str | None = None
    state: Literal["submitted", "approved", "rejected", "applied", "expired"] | None = None
    lock_version: int | None = None


class ChangeOrderBody(_Body):
    change_order: ChangeOrderFields


class InvoiceFields(_Body):
    invoice_date: date | None = None
    reference_number: str | None = None
    time_entry_ids: list[int] = PydField(default_factory=list)
    expense_ids: list[int] = PydField(default_factory=list)
    billing_milestone_ids: list[int] = PydField(default_factory=list)


class InvoiceBody(_Body):
    invoice: InvoiceFields


class ExternalReferenceFields(_Body):
    subject_type: str
    subject_id: int
    service_name: str = PydField(min_length=1)
    service_model: str = PydField(min_length=1)
    service_model_ref: str = PydField(min_length=1)
    status: Literal["pending", "successful", "failed"] | None = None
    external_status: str | None = None
    external_message: str | None = None
    external_link: str | None = None


class ExternalReferenceBody(_Body):
    external_reference: ExternalReferenceFields


class PostFields(_Body):
    workspace_id: int | None = None
    message: str | None = None
    recipient_ids: list[int] = PydField(default_factory=list)
    recipient_roles: list[str] = PydField(default_factory=list)


class PostBody(_Body):
    post: PostFields


# Change-order transitions; a repeat of the current state is accepted as a no-op.
CHANGE_ORDER_TRANSITIONS: dict[str, set[str]] = {
    "submitted": {"approved", "rejected", "expired"},
    "approved": {"applied", "rejected"},
    "applied": {"approved"},
    "rejected": set(),
    "expired": set(),
}


# --------------------------------------------------------------------------- router


def _router(state: TwinState) -> APIRouter:
    router = APIRouter(prefix=API)

    def emit(event_type: str, data: dict[str, Any]) -> None:
        if state.webhooks is not None:
            state.webhooks.emit(event_type, data)

    # ---------------------------------------------------------------- workspaces

    @router.get("/workspaces.json", tags=["workspaces"])
    async def list_workspaces(
        params: ListParams = Depends(list_params),
        search: str | None = None,
        include_archived: bool = False,
        updated_after: str | None = None,
    ) -> dict[str, Any]:
        clauses: list[Any] = []
        if not include_archived:
            clauses.append(col(PsaWorkspace.archived).is_(False))
        if search:
            like = f"%{search.lower()}%"
            clauses.append(
                or_(
                    func.lower(PsaWorkspace.title).like(like),
                    func.lower(PsaWorkspace.description).like(like),
                )
            )
        since = _parse_when(updated_after, "updated_after")
        if since is not None:
            clauses.append(col(PsaWorkspace.updated_at) > since)
        with state.session() as s:
            return list_rows(s, PsaWorkspace, params, clauses)

    @router.get("/workspaces/{workspace_id}.json", tags=["workspaces"])
    async def get_workspace(
        workspace_id: int, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        with state.session() as s:
            ws = _get(s, PsaWorkspace, workspace_id, "workspace")
            return envelope(s, PsaWorkspace, [ws], params=params)

    @router.post("/workspaces.json", status_code=200, tags=["workspaces"])
    async def create_workspace(
        body: WorkspaceBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.workspace
        if not f.title or not f.title.strip():
            raise _invalid("Please give your project a title", "title")
        if f.start_date and f.due_date and f.due_date < f.start_date:
            raise _invalid("due date must be on or after the start date", "due_date")
        with state.session() as s:
            if f.rate_card_id is not None and s.get(PsaRateCard, f.rate_card_id) is None:
                raise _invalid(f"rate card {f.rate_card_id} does not exist", "rate_card_id")
            values = f.model_dump(exclude_none=True, exclude={"lock_version"})
            ws = PsaWorkspace(**values)
            s.add(ws)
            s.commit()
            s.refresh(ws)
            return envelope(s, PsaWorkspace, [ws], params=params)

    @router.put("/workspaces/{workspace_id}.json", tags=["workspaces"])
    async def update_workspace(
        workspace_id: int, body: WorkspaceBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.workspace
        changes = f.model_dump(exclude_unset=True, exclude={"lock_version"})
        with state.session() as s:
            ws = _get(s, PsaWorkspace, workspace_id, "workspace")
            _check_lock(ws, f.lock_version)
            changes = {k: v for k, v in changes.items() if getattr(ws, k) != v}
            if ws.archived and changes.get("archived") is not False:
                if set(changes) - {"archived", "status"}:
                    raise _invalid(f"project {workspace_id} is archived", "archived")
            if "title" in changes and not (changes["title"] or "").strip():
                raise _invalid("Please give your project a title", "title")
            if changes.get("rate_card_id") is not None:
                if s.get(PsaRateCard, changes["rate_card_id"]) is None:
                    raise _invalid(
                        f"rate card {changes['rate_card_id']} does not exist", "rate_card_id"
                    )
            start = changes.get("start_date", ws.start_date)
            due = changes.get("due_date", ws.due_date)
            if start and due and due < start:
                raise _invalid("due date must be on or after the start date", "due_date")
            if changes.get("archived") is True and "status" not in changes:
                changes["status"] = "archived"
            if changes.get("archived") is False and ws.status == "archived":
                changes.setdefault("status", "active")
            if changes:
                for k, v in changes.items():
                    setattr(ws, k, v)
                _touch(ws)
                s.add(ws)
                s.commit()
                s.refresh(ws)
            return envelope(s, PsaWorkspace, [ws], params=params)

    # ---------------------------------------------------------------- stories

    @router.get("/stories.json", tags=["stories"])
    async def list_stories(
        params: ListParams = Depends(list_params),
        workspace_id: str | None = None,
        parent_id: int | None = None,
    ) -> dict[str, Any]:
        clauses: list[Any] = []
        ids = _id_list(workspace_id, "workspace_id")
        if ids is not None:
            clauses.append(col(PsaStory.workspace_id).in_(ids))
        if parent_id is not None:
            clauses.append(PsaStory.parent_id == parent_id)
        with state.session() as s:
            return list_rows(s, PsaStory, params, clauses, ("id", "position", "updated_at"))

    @router.get("/stories/{story_id}.json", tags=["stories"])
    async def get_story(
        story_id: int, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        with state.session() as s:
            return envelope(s, PsaStory, [_get(s, PsaStory, story_id, "story")], params=params)

    @router.post("/stories.json", tags=["stories"])
    async def create_story(
        body: StoryBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.story
        if not f.title or not f.title.strip():
            raise _invalid("Please give the task a title", "title")
        with state.session() as s:
            _workspace_open(s, f.workspace_id)
            root_id = None
            if f.parent_id is not None:
                parent = s.get(PsaStory, f.parent_id)
                if parent is None or parent.workspace_id != f.workspace_id:
                    raise _invalid(
                        f"parent task {f.parent_id} is not in project {f.workspace_id}",
                        "parent_id",
                    )
                root_id = parent.root_id or parent.id
            story = PsaStory(**f.model_dump(), root_id=root_id)
            s.add(story)
            s.commit()
            s.refresh(story)
            return envelope(s, PsaStory, [story], params=params)

    # ---------------------------------------------------------------- users

    @router.get("/users.json", tags=["users"])
    async def list_users(
        params: ListParams = Depends(list_params),
        by_email_address: str | None = None,
        active: bool | None = None,
    ) -> dict[str, Any]:
        clauses: list[Any] = []
        if by_email_address:
            clauses.append(func.lower(PsaUser.email_address) == by_email_address.lower())
        if active is not None:
            clauses.append(PsaUser.active == active)
        with state.session() as s:
            return list_rows(s, PsaUser, params, clauses)

    @router.get("/users/{user_id}.json", tags=["users"])
    async def get_user(
        user_id: int, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        with state.session() as s:
            return envelope(s, PsaUser, [_get(s, PsaUser, user_id, "user")], params=params)

    @router.put("/users/{user_id}.json", tags=["users"])
    async def update_user(
        user_id: int, body: UserBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        changes = body.user.model_dump(exclude_unset=True)
        with state.session() as s:
            user = _get(s, PsaUser, user_id, "user")
            if changes:
                for k, v in changes.items():
                    setattr(user, k, v)
                _touch(user)
                s.add(user)
                s.commit()
                s.refresh(user)
            return envelope(s, PsaUser, [user], params=params)

    # ---------------------------------------------------------------- time entries

    @router.get("/time_entries.json", tags=["time_entries"])
    async def list_time_entries(
        params: ListParams = Depends(list_params),
        workspace_id: str | None = None,
        user_id: str | None = None,
        approved: bool | None = None,
        is_invoiced: bool | None = None,
        updated_after: str | None = None,
        date_performed_between: str | None = None,
    ) -> dict[str, Any]:
        clauses = _entry_filters(
            PsaTimeEntry, workspace_id, user_id, approved, is_invoiced, updated_after
        )
        if date_performed_between:
            start, _, end = date_performed_between.partition(":")
            try:
                clauses.append(col(PsaTimeEntry.date_performed) >= date.fromisoformat(start))
                clauses.append(col(PsaTimeEntry.date_performed) <= date.fromisoformat(end))
            except ValueError:
                raise TwinError(
                    400,
                    "validation",
                    "date_performed_between must be YYYY-MM-DD:YYYY-MM-DD",
                    "date_performed_between",
                ) from None
        with state.session() as s:
            return list_rows(
                s, PsaTimeEntry, params, clauses, ("id", "updated_at", "date_performed")
            )

    @router.get("/time_entries/{entry_id}.json", tags=["time_entries"])
    async def get_time_entry(
        entry_id: int, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        with state.session() as s:
            row = _get(s, PsaTimeEntry, entry_id, "time entry")
            return envelope(s, PsaTimeEntry, [row], params=params)

    @router.post("/time_entries.json", tags=["time_entries"])
    async def create_time_entry(
        body: TimeEntryBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.time_entry
        if f.approved:
            raise _invalid("a new time entry cannot be created approved", "approved")
        if f.date_performed is None:
            raise _invalid("Please enter the date performed", "date_performed")
        _check_minutes(f.time_in_minutes)
        with state.session() as s:
            ws = _workspace_open(s, f.workspace_id, for_time=True)
            user = _resource_can_work(s, f.user_id, f.date_performed)
            _check_story(s, f.story_id, ws.id)
            role = f.role or user.role
            rate = f.rate_in_cents
            if rate is None:
                rate = _rate_for(s, ws.rate_card_id, role, f.date_performed) or 0
            entry = PsaTimeEntry(
                workspace_id=ws.id,
                user_id=user.id,
                story_id=f.story_id,
                role=role,
                date_performed=f.date_performed,
                time_in_minutes=f.time_in_minutes,
                billable=True if f.billable is None else f.billable,
                notes=f.notes or "",
                rate_in_cents=rate,
                cost_rate_in_cents=(
                    f.cost_rate_in_cents
                    if f.cost_rate_in_cents is not None
                    else user.cost_rate_in_cents or 0
                ),
                currency=f.currency or ws.currency,
            )
            s.add(entry)
            s.commit()
            s.refresh(entry)
            return envelope(s, PsaTimeEntry, [entry], params=params)

    @router.put("/time_entries/{entry_id}.json", tags=["time_entries"])
    async def update_time_entry(
        entry_id: int, body: TimeEntryBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.time_entry
        changes = f.model_dump(exclude_unset=True, exclude={"lock_version"})
        event: str | None = None
        with state.session() as s:
            entry = _get(s, PsaTimeEntry, entry_id, "time entry")
            _check_lock(entry, f.lock_version)
            changes = {k: v for k, v in changes.items() if getattr(entry, k) != v}
            if not changes:
                return envelope(s, PsaTimeEntry, [entry], params=params)
            if entry.is_invoiced:
                raise _invalid(
                    f"time entry {entry_id} has been invoiced and cannot be edited", "is_invoiced"
                )
            edits = set(changes) - {"approved"}
            if entry.approved and edits and changes.get("approved") is not False:
                raise _invalid(
                    f"time entry {entry_id} is approved and cannot be edited", "approved"
                )
            if {"workspace_id", "user_id"} & edits:
                raise _invalid(
                    "a time entry cannot move to another project or user", "workspace_id"
                )
            if "time_in_minutes" in changes:
                _check_minutes(changes["time_in_minutes"])
            if "date_performed" in changes:
                if changes["date_performed"] is None:
                    raise _invalid("Please enter the date performed", "date_performed")
                _workspace_open(s, entry.workspace_id, for_time=True)
                _resource_can_work(s, entry.user_id, changes["date_performed"])
            if "story_id" in changes:
                _check_story(s, changes["story_id"], entry.workspace_id)
            for k, v in changes.items():
                setattr(entry, k, v)
            if changes.get("approved") is True:
                entry.approved_at = _now()
                event = "time_entry.approved"
            elif changes.get("approved") is False:
                entry.approved_at = None
                event = "time_entry.unapproved"
            _touch(entry)
            s.add(entry)
            s.commit()
            s.refresh(entry)
            if event:
                emit(
                    event,
                    {
                        "workspace_id": str(entry.workspace_id),
                        "time_entry_id": str(entry.id),
                        "version": entry.lock_version,
                    },
                )
            return envelope(s, PsaTimeEntry, [entry], params=params)

    @router.delete("/time_entries/{entry_id}.json", status_code=204, tags=["time_entries"])
    async def delete_time_entry(entry_id: int) -> None:
        with state.session() as s:
            entry = _get(s, PsaTimeEntry, entry_id, "time entry")
            if entry.is_invoiced or entry.approved:
                raise _invalid(
                    f"time entry {entry_id} is approved or invoiced and cannot be deleted",
                    "approved",
                )
            s.delete(entry)
            s.commit()

    # ---------------------------------------------------------------- expenses

    @router.get("/expenses.json", tags=["expenses"])
    async def list_expenses(
        params: ListParams = Depends(list_params),
        workspace_id: str | None = None,
        user_id: str | None = None,
        approved: bool | None = None,
        is_invoiced: bool | None = None,
        updated_after: str | None = None,
    ) -> dict[str, Any]:
        clauses = _entry_filters(
            PsaExpense, workspace_id, user_id, approved, is_invoiced, updated_after
        )
        with state.session() as s:
            return list_rows(s, PsaExpense, params, clauses, ("id", "updated_at", "date"))

    @router.get("/expenses/{expense_id}.json", tags=["expenses"])
    async def get_expense(
        expense_id: int, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        with state.session() as s:
            return envelope(
                s, PsaExpense, [_get(s, PsaExpense, expense_id, "expense")], params=params
            )

    @router.post("/expenses.json", tags=["expenses"])
    async def create_expense(
        body: ExpenseBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.expense
        if f.approved:
            raise _invalid("a new expense cannot be created approved", "approved")
        if f.date is None:
            raise _invalid("Please enter the date of the expense", "date")
        if f.amount_in_cents is None or f.amount_in_cents <= 0:
            raise _invalid("amount must be greater than zero", "amount_in_cents")
        with state.session() as s:
            ws = _workspace_open(s, f.workspace_id, for_time=True)
            try:
                user = _resource_can_work(s, f.user_id, f.date)
            except TwinError as exc:
                if exc.field == "date_performed":
                    exc.field = "date"
                raise
            expense = PsaExpense(
                workspace_id=ws.id,
                user_id=user.id,
                date=f.date,
                amount_in_cents=f.amount_in_cents,
                currency=f.currency or ws.currency,
                category=f.category or "Other",
                notes=f.notes or "",
                is_billable=True if f.is_billable is None else f.is_billable,
                reimbursable=True if f.reimbursable is None else f.reimbursable,
            )
            s.add(expense)
            s.commit()
            s.refresh(expense)
            return envelope(s, PsaExpense, [expense], params=params)

    @router.put("/expenses/{expense_id}.json", tags=["expenses"])
    async def update_expense(
        expense_id: int, body: ExpenseBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.expense
        changes = f.model_dump(exclude_unset=True, exclude={"lock_version"})
        approved_now = False
        with state.session() as s:
            expense = _get(s, PsaExpense, expense_id, "expense")
            _check_lock(expense, f.lock_version)
            changes = {k: v for k, v in changes.items() if getattr(expense, k) != v}
            if not changes:
                return envelope(s, PsaExpense, [expense], params=params)
            if expense.is_invoiced:
                raise _invalid(
                    f"expense {expense_id} has been invoiced and cannot be edited", "is_invoiced"
                )
            edits = set(changes) - {"approved"}
            if expense.approved and edits and changes.get("approved") is not False:
                raise _invalid(f"expense {expense_id} is approved and cannot be edited", "approved")
            if {"workspace_id", "user_id"} & edits:
                raise _invalid("an expense cannot move to another project or user", "workspace_id")
            if "amount_in_cents" in changes and (changes["amount_in_cents"] or 0) <= 0:
                raise _invalid("amount must be greater than zero", "amount_in_cents")
            for k, v in changes.items():
                setattr(expense, k, v)
            if changes.get("approved") is True:
                expense.approved_at = _now()
                approved_now = True
            elif changes.get("approved") is False:
                expense.approved_at = None
            _touch(expense)
            s.add(expense)
            s.commit()
            s.refresh(expense)
            if approved_now:
                emit(
                    "expense.approved",
                    {
                        "workspace_id": str(expense.workspace_id),
                        "expense_id": str(expense.id),
                        "version": expense.lock_version,
                    },
                )
            return envelope(s, PsaExpense, [expense], params=params)

    # ---------------------------------------------------------------- assignments

    def assignment_event(row: PsaAssignment, action: str, version: int) -> None:
        emit(
            "assignment.changed",
            {
                "workspace_id": str(row.workspace_id),
                "assignment_id": str(row.id),
                "version": version,
                "action": action,
            },
        )

    @router.get("/assignments.json", tags=["assignments"])
    async def list_assignments(
        params: ListParams = Depends(list_params),
        workspace_id: str | None = None,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        clauses: list[Any] = []
        ws_ids = _id_list(workspace_id, "workspace_id")
        if ws_ids is not None:
            clauses.append(col(PsaAssignment.workspace_id).in_(ws_ids))
        user_ids = _id_list(user_id, "user_id")
        if user_ids is not None:
            clauses.append(col(PsaAssignment.user_id).in_(user_ids))
        with state.session() as s:
            return list_rows(s, PsaAssignment, params, clauses)

    @router.get("/assignments/{assignment_id}.json", tags=["assignments"])
    async def get_assignment(
        assignment_id: int, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        with state.session() as s:
            row = _get(s, PsaAssignment, assignment_id, "assignment")
            return envelope(s, PsaAssignment, [row], params=params)

    @router.post("/assignments.json", tags=["assignments"])
    async def create_assignment(
        body: AssignmentBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.assignment
        if not f.role:
            raise _invalid("Please choose a role", "role")
        if f.start_date is None:
            raise _invalid("Please enter a start date", "start_date")
        if f.end_date is None:
            raise _invalid("Please enter an end date", "end_date")
        if f.end_date < f.start_date:
            raise _invalid("end date must be on or after the start date", "end_date")
        with state.session() as s:
            ws = _workspace_open(s, f.workspace_id)
            if f.user_id is not None and s.get(PsaUser, f.user_id) is None:
                raise _invalid(f"user {f.user_id} does not exist", "user_id")
            row = PsaAssignment(
                workspace_id=ws.id,
                user_id=f.user_id,
                role=f.role,
                start_date=f.start_date,
                end_date=f.end_date,
                allocated_minutes=f.allocated_minutes or 0,
            )
            s.add(row)
            s.commit()
            s.refresh(row)
            assignment_event(row, "created", row.lock_version)
            return envelope(s, PsaAssignment, [row], params=params)

    @router.put("/assignments/{assignment_id}.json", tags=["assignments"])
    async def update_assignment(
        assignment_id: int, body: AssignmentBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.assignment
        changes = f.model_dump(exclude_unset=True, exclude={"lock_version"})
        with state.session() as s:
            row = _get(s, PsaAssignment, assignment_id, "assignment")
            _check_lock(row, f.lock_version)
            changes = {k: v for k, v in changes.items() if getattr(row, k) != v}
            if not changes:
                return envelope(s, PsaAssignment, [row], params=params)
            if "workspace_id" in changes:
                raise _invalid("an assignment cannot move to another project", "workspace_id")
            _workspace_open(s, row.workspace_id)
            for name in ("role", "start_date", "end_date"):
                if name in changes and not changes[name]:
                    raise _invalid(f"{name} cannot be blank", name)
            if changes.get("user_id") is not None and s.get(PsaUser, changes["user_id"]) is None:
                raise _invalid(f"user {changes['user_id']} does not exist", "user_id")
            start = changes.get("start_date", row.start_date)
            end = changes.get("end_date", row.end_date)
            if end < start:
                raise _invalid("end date must be on or after the start date", "end_date")
            for k, v in changes.items():
                setattr(row, k, v)
            _touch(row)
            s.add(row)
            s.commit()
            s.refresh(row)
            assignment_event(row, "updated", row.lock_version)
            return envelope(s, PsaAssignment, [row], params=params)

    @router.delete("/assignments/{assignment_id}.json", status_code=204, tags=["assignments"])
    async def delete_assignment(assignment_id: int) -> None:
        with state.session() as s:
            row = _get(s, PsaAssignment, assignment_id, "assignment")
            version = row.lock_version + 1
            s.delete(row)
            s.commit()
            assignment_event(row, "deleted", version)

    # ---------------------------------------------------------------- resource requests

    @router.get("/resource_requests.json", tags=["resource_requests"])
    async def list_resource_requests(
        params: ListParams = Depends(list_params),
        workspace_id: str | None = None,
        status: str | None = None,
        role: str | None = None,
    ) -> dict[str, Any]:
        clauses: list[Any] = []
        ws_ids = _id_list(workspace_id, "workspace_id")
        if ws_ids is not None:
            clauses.append(col(PsaResourceRequest.workspace_id).in_(ws_ids))
        if status:
            clauses.append(PsaResourceRequest.status == status)
        if role:
            clauses.append(PsaResourceRequest.role == role)
        with state.session() as s:
            return list_rows(s, PsaResourceRequest, params, clauses)

    @router.get("/resource_requests/{request_id}.json", tags=["resource_requests"])
    async def get_resource_request(
        request_id: int, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        with state.session() as s:
            row = _get(s, PsaResourceRequest, request_id, "resource request")
            return envelope(s, PsaResourceRequest, [row], params=params)

    @router.post("/resource_requests.json", tags=["resource_requests"])
    async def create_resource_request(
        body: ResourceRequestBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.resource_request
        if not f.role:
            raise _invalid("Please choose a role", "role")
        if f.start_date is None or f.end_date is None:
            raise _invalid("Please enter start and end dates", "start_date")
        if f.end_date < f.start_date:
            raise _invalid("end date must be on or after the start date", "end_date")
        with state.session() as s:
            ws = _workspace_open(s, f.workspace_id)
            row = PsaResourceRequest(
                workspace_id=ws.id,
                role=f.role,
                start_date=f.start_date,
                end_date=f.end_date,
                minutes=f.minutes or 0,
                status=f.status or "open",
                notes=f.notes or "",
            )
            s.add(row)
            s.commit()
            s.refresh(row)
            return envelope(s, PsaResourceRequest, [row], params=params)

    @router.put("/resource_requests/{request_id}.json", tags=["resource_requests"])
    async def update_resource_request(
        request_id: int, body: ResourceRequestBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        changes = body.resource_request.model_dump(exclude_unset=True)
        with state.session() as s:
            row = _get(s, PsaResourceRequest, request_id, "resource request")
            changes = {k: v for k, v in changes.items() if getattr(row, k) != v}
            if not changes:
                return envelope(s, PsaResourceRequest, [row], params=params)
            if "workspace_id" in changes:
                raise _invalid("a resource request cannot move to another project", "workspace_id")
            if row.status == "cancelled" and changes.get("status") != "open":
                raise _invalid(f"resource request {request_id} is cancelled", "status")
            start = changes.get("start_date", row.start_date)
            end = changes.get("end_date", row.end_date)
            if start is None or end is None or end < start:
                raise _invalid("end date must be on or after the start date", "end_date")
            for k, v in changes.items():
                setattr(row, k, v)
            _touch(row)
            s.add(row)
            s.commit()
            s.refresh(row)
            return envelope(s, PsaResourceRequest, [row], params=params)

    # ---------------------------------------------------------------- rate cards

    @router.get("/rate_cards.json", tags=["rate_cards"])
    async def list_rate_cards(params: ListParams = Depends(list_params)) -> dict[str, Any]:
        with state.session() as s:
            return list_rows(s, PsaRateCard, params)

    @router.get("/rate_cards/{rate_card_id}.json", tags=["rate_cards"])
    async def get_rate_card(
        rate_card_id: int, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        with state.session() as s:
            row = _get(s, PsaRateCard, rate_card_id, "rate card")
            return envelope(s, PsaRateCard, [row], params=params)

    # ---------------------------------------------------------------- billing milestones

    @router.get("/billing_milestones.json", tags=["billing_milestones"])
    async def list_milestones(
        params: ListParams = Depends(list_params),
        workspace_id: str | None = None,
        state_: str | None = Query(None, alias="state"),
    ) -> dict[str, Any]:
        clauses: list[Any] = []
        ws_ids = _id_list(workspace_id, "workspace_id")
        if ws_ids is not None:
            clauses.append(col(PsaBillingMilestone.workspace_id).in_(ws_ids))
        if state_:
            clauses.append(PsaBillingMilestone.state == state_)
        with state.session() as s:
            return list_rows(s, PsaBillingMilestone, params, clauses)

    @router.get("/billing_milestones/{milestone_id}.json", tags=["billing_milestones"])
    async def get_milestone(
        milestone_id: int, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        with state.session() as s:
            row = _get(s, PsaBillingMilestone, milestone_id, "billing milestone")
            return envelope(s, PsaBillingMilestone, [row], params=params)

    @router.post("/billing_milestones.json", tags=["billing_milestones"])
    async def create_milestone(
        body: MilestoneBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.billing_milestone
        if not f.title or not f.title.strip():
            raise _invalid("Please give the milestone a title", "title")
        if f.state == "completed":
            raise _invalid("a new milestone starts planned", "state")
        with state.session() as s:
            ws = _workspace_open(s, f.workspace_id)
            row = PsaBillingMilestone(
                workspace_id=ws.id,
                title=f.title,
                description=f.description or "",
                amount_in_cents=f.amount_in_cents or 0,
                currency=f.currency or ws.currency,
                target_date=f.target_date,
            )
            s.add(row)
            s.commit()
            s.refresh(row)
            return envelope(s, PsaBillingMilestone, [row], params=params)

    @router.put("/billing_milestones/{milestone_id}.json", tags=["billing_milestones"])
    async def update_milestone(
        milestone_id: int, body: MilestoneBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.billing_milestone
        changes = f.model_dump(exclude_unset=True, exclude={"lock_version"})
        with state.session() as s:
            row = _get(s, PsaBillingMilestone, milestone_id, "billing milestone")
            _check_lock(row, f.lock_version)
            changes = {k: v for k, v in changes.items() if getattr(row, k) != v}
            if not changes:
                return envelope(s, PsaBillingMilestone, [row], params=params)
            if row.state == "invoiced":
                raise _invalid(f"milestone {milestone_id} has been invoiced", "state")
            if "workspace_id" in changes:
                raise _invalid("a milestone cannot move to another project", "workspace_id")
            completed = changes.get("state") == "completed"
            for k, v in changes.items():
                setattr(row, k, v)
            row.completed_at = _now() if row.state == "completed" else None
            _touch(row)
            s.add(row)
            s.commit()
            s.refresh(row)
            if completed:
                emit(
                    "billing_milestone.completed",
                    {
                        "workspace_id": str(row.workspace_id),
                        "billing_milestone_id": str(row.id),
                        "version": row.lock_version,
                    },
                )
            return envelope(s, PsaBillingMilestone, [row], params=params)

    # ---------------------------------------------------------------- change orders

    @router.get("/change_orders.json", tags=["change_orders"])
    async def list_change_orders(
        params: ListParams = Depends(list_params),
        workspace_id: str | None = None,
        state_: str | None = Query(None, alias="state"),
    ) -> dict[str, Any]:
        clauses: list[Any] = []
        ws_ids = _id_list(workspace_id, "workspace_id")
        if ws_ids is not None:
            clauses.append(col(PsaChangeOrder.workspace_id).in_(ws_ids))
        if state_:
            clauses.append(PsaChangeOrder.state == state_)
        with state.session() as s:
            return list_rows(s, PsaChangeOrder, params, clauses)

    @router.get("/change_orders/{change_order_id}.json", tags=["change_orders"])
    async def get_change_order(
        change_order_id: int, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        with state.session() as s:
            row = _get(s, PsaChangeOrder, change_order_id, "change order")
            return envelope(s, PsaChangeOrder, [row], params=params)

    @router.post("/change_orders.json", tags=["change_orders"])
    async def create_change_order(
        body: ChangeOrderBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.change_order
        if not f.title or not f.title.strip():
            raise _invalid("Please give the change order a title", "title")
        if not f.requested_by:
            raise _invalid("Please say who requested the change", "requested_by")
        if f.state not in (None, "submitted"):
            raise _invalid("a new change order starts submitted", "state")
        with state.session() as s:
            ws = _workspace_open(s, f.workspace_id)
            if not ws.change_orders_enabled:
                raise _invalid(f"change orders are not enabled on project {ws.id}", "workspace_id")
            row = PsaChangeOrder(
                workspace_id=ws.id,
                title=f.title,
                description=f.description or "",
                budget_delta_in_cents=f.budget_delta_in_cents or 0,
                currency=f.currency or ws.currency,
                lines=[line.model_dump(mode="json") for line in f.lines or []],
                requested_by=f.requested_by,
            )
            s.add(row)
            s.commit()
            s.refresh(row)
            emit(
                "change_order.submitted",
                {
                    "workspace_id": str(row.workspace_id),
                    "change_order_id": str(row.id),
                    "version": row.lock_version,
                },
            )
            return envelope(s, PsaChangeOrder, [row], params=params)

    @router.put("/change_orders/{change_order_id}.json", tags=["change_orders"])
    async def update_change_order(
        change_order_id: int, body: ChangeOrderBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.change_order
        changes = f.model_dump(exclude_unset=True, exclude={"lock_version"}, mode="json")
        with state.session() as s:
            row = _get(s, PsaChangeOrder, change_order_id, "change order")
            _check_lock(row, f.lock_version)
            changes = {k: v for k, v in changes.items() if getattr(row, k) != v}
            if not changes:
                return envelope(s, PsaChangeOrder, [row], params=params)
            if "workspace_id" in changes:
                raise _invalid("a change order cannot move to another project", "workspace_id")
            new_state = changes.get("state")
            if new_state is not None and new_state not in CHANGE_ORDER_TRANSITIONS[row.state]:
                raise _invalid(
                    f"change order {change_order_id} cannot go from {row.state} to {new_state}",
                    "state",
                )
            if set(changes) - {"state"} and row.state != "submitted":
                raise _invalid(
                    f"change order {change_order_id} is {row.state} and cannot be edited",
                    "state",
                )
            for k, v in changes.items():
                setattr(row, k, v)
            _touch(row)
            s.add(row)
            s.commit()
            s.refresh(row)
            return envelope(s, PsaChangeOrder, [row], params=params)

    # ---------------------------------------------------------------- invoices

    @router.get("/invoices.json", tags=["invoices"])
    async def list_invoices(
        params: ListParams = Depends(list_params),
        reference_number: str | None = None,
        state_: str | None = Query(None, alias="state"),
    ) -> dict[str, Any]:
        clauses: list[Any] = []
        if reference_number:
            clauses.append(PsaInvoice.reference_number == reference_number)
        if state_:
            clauses.append(PsaInvoice.state == state_)
        with state.session() as s:
            return list_rows(s, PsaInvoice, params, clauses)

    @router.get("/invoices/{invoice_id}.json", tags=["invoices"])
    async def get_invoice(
        invoice_id: int, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        with state.session() as s:
            return envelope(
                s, PsaInvoice, [_get(s, PsaInvoice, invoice_id, "invoice")], params=params
            )

    @router.post("/invoices.json", tags=["invoices"])
    async def create_invoice(
        body: InvoiceBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.invoice
        if not (f.time_entry_ids or f.expense_ids or f.billing_milestone_ids):
            raise _invalid(
                "an invoice needs time entries, expenses or milestones", "time_entry_ids"
            )
        with state.session() as s:
            workspaces: set[int] = set()
            entries = []
            for eid in dict.fromkeys(f.time_entry_ids):
                e = s.get(PsaTimeEntry, eid)
                if e is None:
                    raise _invalid(f"time entry {eid} does not exist", "time_entry_ids")
                if not e.approved:
                    raise _invalid(f"time entry {eid} is not approved", "time_entry_ids")
                if e.is_invoiced:
                    raise _invalid(f"time entry {eid} is already invoiced", "time_entry_ids")
                entries.append(e)
                workspaces.add(e.workspace_id)
            expenses = []
            for xid in dict.fromkeys(f.expense_ids):
                x = s.get(PsaExpense, xid)
                if x is None:
                    raise _invalid(f"expense {xid} does not exist", "expense_ids")
                if not x.approved:
                    raise _invalid(f"expense {xid} is not approved", "expense_ids")
                if x.is_invoiced:
                    raise _invalid(f"expense {xid} is already invoiced", "expense_ids")
                expenses.append(x)
                workspaces.add(x.workspace_id)
            milestones = []
            for mid in dict.fromkeys(f.billing_milestone_ids):
                m = s.get(PsaBillingMilestone, mid)
                if m is None:
                    raise _invalid(f"milestone {mid} does not exist", "billing_milestone_ids")
                if m.state != "completed":
                    raise _invalid(
                        f"milestone {mid} is {m.state}, not completed", "billing_milestone_ids"
                    )
                milestones.append(m)
                workspaces.add(m.workspace_id)
            invoice = PsaInvoice(
                reference_number=f.reference_number,
                invoice_date=f.invoice_date or _now().date(),
                workspace_ids=sorted(workspaces),
                time_entry_ids=[e.id for e in entries],
                expense_ids=[x.id for x in expenses],
                billing_milestone_ids=[m.id for m in milestones],
            )
            s.add(invoice)
            s.flush()
            for item in [*entries, *expenses]:
                item.is_invoiced = True
                item.invoice_id = invoice.id
                _touch(item)
                s.add(item)
            for m in milestones:
                m.state = "invoiced"
                m.invoice_id = invoice.id
                _touch(m)
                s.add(m)
            s.commit()
            s.refresh(invoice)
            return envelope(s, PsaInvoice, [invoice], params=params)

    @router.put("/invoices/{invoice_id}/cancel.json", tags=["invoices"])
    async def cancel_invoice(
        invoice_id: int, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        with state.session() as s:
            invoice = _get(s, PsaInvoice, invoice_id, "invoice")
            if invoice.state != "cancelled":
                for model, ids in (
                    (PsaTimeEntry, invoice.time_entry_ids),
                    (PsaExpense, invoice.expense_ids),
                ):
                    for item_id in ids:
                        item = s.get(model, item_id)
                        if item is not None and item.invoice_id == invoice.id:
                            item.is_invoiced = False  # type: ignore[attr-defined]
                            item.invoice_id = None  # type: ignore[attr-defined]
                            _touch(item)
                            s.add(item)
                for mid in invoice.billing_milestone_ids:
                    m = s.get(PsaBillingMilestone, mid)
                    if m is not None and m.invoice_id == invoice.id:
                        m.state = "completed"
                        m.invoice_id = None
                        _touch(m)
                        s.add(m)
                invoice.state = "cancelled"
                invoice.updated_at = _now()
                s.add(invoice)
                s.commit()
                s.refresh(invoice)
            return envelope(s, PsaInvoice, [invoice], params=params)

    # ---------------------------------------------------------------- external references

    @router.get("/external_references.json", tags=["external_references"])
    async def list_external_references(
        params: ListParams = Depends(list_params),
        subject_type: str | None = None,
        subject_id: str | None = None,
        service_name: str | None = None,
        service_model: str | None = None,
        service_model_ref: str | None = None,
        status: str | None = None,
    ) -> dict[str, Any]:
        if not subject_type:
            raise TwinError(400, "validation", "subject_type is required", "subject_type")
        clauses: list[Any] = [PsaExternalReference.subject_type == subject_type]
        ids = _id_list(subject_id, "subject_id")
        if ids is not None:
            clauses.append(col(PsaExternalReference.subject_id).in_(ids))
        if service_name:
            clauses.append(PsaExternalReference.service_name == service_name)
        if service_model:
            clauses.append(PsaExternalReference.service_model == service_model)
        if service_model_ref:
            clauses.append(PsaExternalReference.service_model_ref == service_model_ref)
        if status:
            clauses.append(PsaExternalReference.status == status)
        with state.session() as s:
            return list_rows(s, PsaExternalReference, params, clauses)

    @router.post("/external_references/create_or_update", tags=["external_references"])
    @router.post("/external_references/create_or_update.json", include_in_schema=False)
    async def create_or_update_external_reference(
        body: ExternalReferenceBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.external_reference
        model = SUBJECT_TYPES.get(f.subject_type)
        if model is None:
            raise _invalid(f"unsupported subject_type {f.subject_type}", "subject_type")
        with state.session() as s:
            if s.get(model, f.subject_id) is None:
                raise _invalid(f"{f.subject_type} {f.subject_id} does not exist", "subject_id")
            # One reference per subject and external model: a repeat updates it in place.
            row = s.exec(
                select(PsaExternalReference).where(
                    PsaExternalReference.subject_type == f.subject_type,
                    PsaExternalReference.subject_id == f.subject_id,
                    PsaExternalReference.service_name == f.service_name,
                    PsaExternalReference.service_model == f.service_model,
                )
            ).first()
            values = f.model_dump(exclude_unset=True)
            if row is None:
                row = PsaExternalReference(**{"status": "pending", **values})
            else:
                for k, v in values.items():
                    setattr(row, k, v)
                row.updated_at = _now()
            s.add(row)
            s.commit()
            s.refresh(row)
            return envelope(s, PsaExternalReference, [row], params=params)

    # ---------------------------------------------------------------- posts (activity feed)

    @router.get("/posts.json", tags=["posts"])
    async def list_posts(
        params: ListParams = Depends(list_params), workspace_id: str | None = None
    ) -> dict[str, Any]:
        clauses: list[Any] = []
        ws_ids = _id_list(workspace_id, "workspace_id")
        if ws_ids is not None:
            clauses.append(col(PsaPost.workspace_id).in_(ws_ids))
        with state.session() as s:
            return list_rows(s, PsaPost, params, clauses)

    @router.post("/posts.json", tags=["posts"])
    async def create_post(
        body: PostBody, params: ListParams = Depends(include_params)
    ) -> dict[str, Any]:
        f = body.post
        if not (f.message or "").strip():
            raise _invalid("Please enter a message", "message")
        with state.session() as s:
            if f.workspace_id is None:
                raise _invalid("Please choose a project", "workspace_id")
            if s.get(PsaWorkspace, f.workspace_id) is None:
                raise _invalid(f"project {f.workspace_id} does not exist", "workspace_id")
            for user_id in f.recipient_ids:
                if s.get(PsaUser, user_id) is None:
                    raise _invalid(f"user {user_id} does not exist", "recipient_ids")
            row = PsaPost(
                workspace_id=f.workspace_id,
                message=f.message or "",
                recipient_ids=list(dict.fromkeys(f.recipient_ids)),
                recipient_roles=list(dict.fromkeys(f.recipient_roles)),
            )
            s.add(row)
            s.commit()
            s.refresh(row)
            return envelope(s, PsaPost, [row], params=params)

    return router


def _entry_filters(
    model: Any,
    workspace_id: str | None,
    user_id: str | None,
    approved: bool | None,
    is_invoiced: bool | None,
    updated_after: str | None,
) -> list[Any]:
    clauses: list[Any] = []
    ws_ids = _id_list(workspace_id, "workspace_id")
    if ws_ids is not None:
        clauses.append(col(model.workspace_id).in_(ws_ids))
    user_ids = _id_list(user_id, "user_id")
    if user_ids is not None:
        clauses.append(col(model.user_id).in_(user_ids))
    if approved is not None:
        clauses.append(model.approved == approved)
    if is_invoiced is not None:
        clauses.append(model.is_invoiced == is_invoiced)
    since = _parse_when(updated_after, "updated_after")
    if since is not None:
        clauses.append(col(model.updated_at) > since)
    return clauses


def _check_minutes(minutes: int | None) -> None:
    if minutes is None:
        raise _invalid("Please enter the time spent", "time_in_minutes")
    if minutes <= 0 or minutes > MAX_MINUTES_PER_DAY:
        raise _invalid(
            f"time must be more than 0 and at most {MAX_MINUTES_PER_DAY} minutes a day",
            "time_in_minutes",
        )


def _check_story(session: Session, story_id: int | None, workspace_id: int) -> None:
    if story_id is None:
        return
    story = session.get(PsaStory, story_id)
    if story is None or story.workspace_id != workspace_id:
        raise _invalid(f"task {story_id} is not in project {workspace_id}", "story_id")


# --------------------------------------------------------------------------- app & seed


def bulk_time_entries(state: TwinState, bulk: BulkTimeEntries) -> list[int]:
    """Insert many time entries in one transaction with `create_time_entry`'s defaults and
    rules (rate from the workspace's rate card, cost rate from the user); all or none. The
    new ids, in input order. An approved entry is at lock_version 2, as if created and then
    approved; with `emit`, each approved entry sends its `time_entry.approved` event."""
    now = _now()
    with state.session() as s:
        # Hold every referenced row here: the session's identity map is weak, and the shared
        # rules below then find them there instead of reading them once per entry.
        held: list[Any] = []
        for model, wanted in (
            (PsaWorkspace, {e.workspace_id for e in bulk.entries}),
            (PsaUser, {e.user_id for e in bulk.entries}),
            (PsaStory, {e.story_id for e in bulk.entries} - {None}),
        ):
            held += s.exec(select(model).where(col(model.id).in_(wanted))).all()  # type: ignore[attr-defined]
        card_roles: dict[tuple[int, str], Sequence[PsaRateCardRole]] = {}
        rows: list[dict[str, Any]] = []
        for i, e in enumerate(bulk.entries):
            try:
                _check_minutes(e.time_in_minutes)
                ws = _workspace_open(s, e.workspace_id, for_time=True)
                user = _resource_can_work(s, e.user_id, e.date_performed)
                _check_story(s, e.story_id, ws.id)
            except TwinError as exc:
                exc.message = f"entries[{i}]: {exc.message}"
                exc.field = f"entries[{i}].{exc.field}" if exc.field else f"entries[{i}]"
                raise
            role = e.role or user.role
            rate = None
            if ws.rate_card_id is not None and role is not None:
                key = (ws.rate_card_id, role)
                if key not in card_roles:
                    card_roles[key] = _card_roles(s, *key)
                rate = _rate_on(card_roles[key], e.date_performed)
            rows.append(
                {
                    "workspace_id": ws.id,
                    "user_id": user.id,
                    "story_id": e.story_id,
                    "role": role,
                    "date_performed": e.date_performed,
                    "time_in_minutes": e.time_in_minutes,
                    "billable": e.billable,
                    "notes": "",
                    "rate_in_cents": rate or 0,
                    "cost_rate_in_cents": user.cost_rate_in_cents or 0,
                    "currency": ws.currency,
                    "approved": bulk.approved,
                    "approved_at": now if bulk.approved else None,
                    "is_invoiced": False,
                    "invoice_id": None,
                    "lock_version": 2 if bulk.approved else 1,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        del held
        # Writes never interleave (handlers touch SQLite synchronously), so the ids SQLite
        # would give are max + 1 onwards; setting them makes the insert one executemany.
        first = (s.exec(select(func.max(PsaTimeEntry.id))).one() or 0) + 1
        ids = list(range(first, first + len(rows)))
        for ident, row in zip(ids, rows, strict=True):
            row["id"] = ident
        if rows:
            s.connection().execute(PsaTimeEntry.__table__.insert(), rows)  # type: ignore[attr-defined]
        s.commit()
    if bulk.emit and bulk.approved and state.webhooks is not None:
        for ident, row in zip(ids, rows, strict=True):
            state.webhooks.emit(
                "time_entry.approved",
                {
                    "workspace_id": str(row["workspace_id"]),
                    "time_entry_id": str(ident),
                    "version": row["lock_version"],
                },
            )
    return ids


def _admin_router(state: TwinState) -> APIRouter:
    router = APIRouter(prefix="/_admin", tags=["admin"])

    @router.post(
        "/time_entries/bulk",
        summary="Insert many time entries at once (benchmarks, tests): {'ids': [...]}",
    )
    async def bulk(body: BulkTimeEntries) -> dict[str, list[str]]:
        return {"ids": [str(i) for i in bulk_time_entries(state, body)]}

    return router


def create_app(
    db_path: Path | None = None,
    *,
    webhook_url: str | None = None,
    webhook_secret: str = DEV_WEBHOOK_SECRET,
) -> FastAPI:
    """The PSA twin; `db_path=None` keeps its data in memory."""
    state = TwinState(system=SYSTEM, engine=make_twin_engine(db_path, TABLES))
    state.webhooks = WebhookSender(webhook_url, webhook_secret)
    return create_twin_app(
        state=state,
        title="PSA twin (Kantata API v1)",
        description=__doc__ or "",
        router=_router(state),
        error_body=error_body,
        extra_routers=[_admin_router(state)],
    )


SERVICE_NAME = "pssync"
"""`service_name` of every external reference pssync writes (its integration's name)."""
WORKER_MODEL = "hcm_worker"
RATE_CARD_MODEL = "rate_card"


def _state_of(app_or_state: FastAPI | TwinState) -> TwinState:
    if isinstance(app_or_state, TwinState):
        return app_or_state
    twin: TwinState = app_or_state.state.twin
    return twin


def add_user(
    app_or_state: FastAPI | TwinState,
    *,
    full_name: str,
    email_address: str | None = None,
    role: str | None = None,
    active: bool = True,
    start_date: date | None = None,
    time_entry_closed_after: date | None = None,
    cost_rate_in_cents: int | None = None,
    currency: str = "USD",
    worker_id: str | None = None,
) -> int:
    """Create a user (Kantata invites users; the twin inserts them) and, with `worker_id`,
    the external reference to the HCM worker. Returns the user's id."""
    state = _state_of(app_or_state)
    with state.session() as s:
        user = PsaUser(
            full_name=full_name,
            email_address=email_address,
            role=role,
            active=active,
            start_date=start_date,
            time_entry_closed_after=time_entry_closed_after,
            cost_rate_in_cents=cost_rate_in_cents,
            currency=currency,
        )
        s.add(user)
        s.flush()
        assert user.id is not None
        if worker_id:
            s.add(
                PsaExternalReference(
                    subject_type="User",
                    subject_id=user.id,
                    service_name=SERVICE_NAME,
                    service_model=WORKER_MODEL,
                    service_model_ref=worker_id,
                    status="successful",
                )
            )
        s.commit()
        return user.id


def add_rate_card(
    app_or_state: FastAPI | TwinState,
    *,
    title: str,
    currency: str,
    roles: Sequence[tuple[str, int, date, date | None]],
    external_id: str | None = None,
) -> int:
    """Create a rate card with `(role, rate_in_cents, effective_from, effective_to)` roles and,
    with `external_id`, an external reference to it. Returns the rate card's id."""
    state = _state_of(app_or_state)
    with state.session() as s:
        card = PsaRateCard(title=title, currency=currency)
        s.add(card)
        s.flush()
        assert card.id is not None
        for role, cents, start, end in roles:
            s.add(
                PsaRateCardRole(
                    rate_card_id=card.id,
                    role=role,
                    rate_in_cents=cents,
                    effective_from=start,
                    effective_to=end,
                )
            )
        if external_id:
            s.add(
                PsaExternalReference(
                    subject_type="RateCard",
                    subject_id=card.id,
                    service_name=SERVICE_NAME,
                    service_model=RATE_CARD_MODEL,
                    service_model_ref=external_id,
                    status="successful",
                )
            )
        s.commit()
        return card.id


def _cents(amount: Decimal, currency: str) -> int:
    """Minor units of a seed amount (Kantata's `*_in_cents`)."""
    digits = _ZERO_DECIMAL.get(currency, 2)
    return int((amount * (10**digits)).to_integral_value(rounding=ROUND_HALF_UP))


_ZERO_DECIMAL = dict.fromkeys(
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split(), 0
)


def load_firm(app_or_state: FastAPI | TwinState, firm: Firm) -> None:
    """Users from `firm.workers` and rate cards from `firm.rate_cards`.

    Users get Kantata's own numeric ids; the HCM employee ID is kept, as the vendor does, in an
    external reference (`hcm_worker`). A start date is the hire date (no time before it). A
    termination already in the past is what the PSA has processed: the user is deactivated and
    closed to time after the last day. A future-dated termination is not known to the PSA yet:
    closing the user is the termination saga's job. Rate cards keep the seed's id in an external
    reference (`rate_card`), so opportunities can name them.
    """
    state = _state_of(app_or_state)
    with state.session() as s:
        # Seeding again (every `pssync up`) must not duplicate what the references show exists.
        known = {
            (ref.service_model, ref.service_model_ref)
            for ref in s.exec(
                select(PsaExternalReference).where(
                    PsaExternalReference.service_name == SERVICE_NAME,
                    col(PsaExternalReference.service_model).in_([WORKER_MODEL, RATE_CARD_MODEL]),
                )
            )
        }
        for fw in firm.workers:
            if (WORKER_MODEL, fw.id) in known:
                continue
            past_termination = fw.status == "terminated"
            user = PsaUser(
                full_name=fw.name,
                email_address=fw.email,
                role=fw.role,
                active=not past_termination,
                start_date=fw.hire_date,
                time_entry_closed_after=(
                    (fw.last_day_worked or fw.termination_date) if past_termination else None
                ),
                cost_rate_in_cents=_cents(fw.cost_rate, fw.currency),
                currency=fw.currency,
            )
            s.add(user)
            s.flush()
            assert user.id is not None
            s.add(
                PsaExternalReference(
                    subject_type="User",
                    subject_id=user.id,
                    service_name=SERVICE_NAME,
                    service_model=WORKER_MODEL,
                    service_model_ref=fw.id,
                    status="successful",
                )
            )
        s.commit()
    for card in firm.rate_cards:
        if (RATE_CARD_MODEL, card.id) in known:
            continue
        add_rate_card(
            state,
            title=card.name,
            currency=card.currency,
            roles=[
                (
                    line.role,
                    _cents(line.bill_rate, card.currency),
                    line.effective_from,
                    line.effective_to,
                )
                for line in card.lines
            ],
            external_id=card.id,
        )


__all__ = [
    "SERVICE_NAME",
    "TABLES",
    "add_rate_card",
    "add_user",
    "bulk_time_entries",
    "create_app",
    "error_body",
    "load_firm",
]
