"""The PSA twin's SQLite tables (SQLModel), with their Kantata collection keys and the
subject types external references may point at."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from sandbox.psa.rate_card_tables import PsaRateCardVersion

Day = date
"""Alias for annotations in classes that have a field named `date` (Kantata's name)."""


def _now() -> datetime:
    return datetime.now(UTC)


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
    # Mirrors of the workspace's custom field values (`published.CUSTOM_FIELD_NAMES`), set only
    # by `POST /custom_field_values` and kept for readers of the twin's tables (benchmarks).
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
    story_id: int | None = None
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
    rate_card_version_id: int | None = Field(default=None, index=True)
    """The rate card version (revision) that set this rate; None for the card's first rates."""


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


class PsaCustomFieldSet(SQLModel, table=True):
    """A custom field set: the custom fields of one subject type (Workspace, Story, User,
    WorkspaceGroup)."""

    __tablename__ = "psa_custom_field_set"

    id: int | None = Field(default=None, primary_key=True)
    name: str
    subject_type: str
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class PsaCustomField(SQLModel, table=True):
    """A custom field of an account (Kantata: `value_type` string, date, number, currency,
    single or multi; the twin's are all string)."""

    __tablename__ = "psa_custom_field"

    id: int | None = Field(default=None, primary_key=True)
    custom_field_set_id: int = Field(index=True)
    name: str
    value_type: str = "string"
    default_text: str | None = None
    unique_constraint: bool = False
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class PsaCustomFieldValue(SQLModel, table=True):
    """One subject's value of one custom field; a new value of the same field replaces it
    (under a new id), as Kantata's create does."""

    __tablename__ = "psa_custom_field_value"
    __table_args__ = {"sqlite_autoincrement": True}  # a replaced value's id is never reused

    id: int | None = Field(default=None, primary_key=True)
    custom_field_id: int = Field(index=True)
    subject_type: str
    subject_id: int = Field(index=True)
    value: str
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
        PsaRateCardVersion,
        PsaBillingMilestone,
        PsaChangeOrder,
        PsaInvoice,
        PsaExternalReference,
        PsaPost,
        PsaCustomFieldSet,
        PsaCustomField,
        PsaCustomFieldValue,
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
    PsaRateCardVersion: "rate_card_versions",
    PsaBillingMilestone: "billing_milestones",
    PsaChangeOrder: "change_orders",
    PsaInvoice: "invoices",
    PsaExternalReference: "external_references",
    PsaPost: "posts",
    PsaCustomFieldSet: "custom_field_sets",
    PsaCustomField: "custom_fields",
    PsaCustomFieldValue: "custom_field_values",
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
