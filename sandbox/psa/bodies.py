"""The PSA twin's request bodies: create/update bodies wrap the object
(`{"workspace": {...}}`) and refuse unknown fields."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic import Field as PydField

from sandbox.psa.tables import Day


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkspaceFields(_Body):
    """A workspace's own fields. What Kantata has no field for (cost center, practice, ...)
    is written as custom field values (`CustomFieldValuesBody`), not here."""

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
    """Kantata names the person `assignee_id`; the twin also takes its own `user_id`."""

    workspace_id: int | None = None
    user_id: int | None = None
    story_id: int | None = None
    role: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    allocated_minutes: int | None = PydField(default=None, ge=0)
    lock_version: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _assignee_is_the_user(cls, data: Any) -> Any:
        if isinstance(data, dict) and "assignee_id" in data:
            data = dict(data)
            assignee = data.pop("assignee_id")
            data.setdefault("user_id", assignee)
        return data


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


class CustomFieldValueFields(_Body):
    subject_type: str
    subject_id: int
    custom_field_id: int
    value: Any = None
    """As the field's `value_type` says: a string for `string` (the twin's fields)."""


class CustomFieldValuesBody(_Body):
    """`POST /custom_field_values`: one value (`custom_field_value`) or up to 100
    (`custom_field_values`, Kantata's bulk create or update)."""

    custom_field_value: CustomFieldValueFields | None = None
    custom_field_values: list[CustomFieldValueFields] | None = None

    @model_validator(mode="after")
    def _one_or_the_other(self) -> CustomFieldValuesBody:
        if (self.custom_field_value is None) == (self.custom_field_values is None):
            raise ValueError("give custom_field_value or custom_field_values")
        return self

    def given(self) -> list[CustomFieldValueFields]:
        """The values the body gives, in order."""
        if self.custom_field_value is not None:
            return [self.custom_field_value]
        return list(self.custom_field_values or [])
