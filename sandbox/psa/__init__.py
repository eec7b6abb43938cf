"""Twin of the PSA: a Kantata (Mavenlink) API v1 subset at `/api/v1/...json`.

Only what pssync's processes use, shaped the vendor's way:

- responses are `{"count", "meta": {count, page_count, page_number, page_size}, "results":
  [{"key", "id"}], "<key>": {"<id>": {...}}}` with side-loaded collections (`include=`),
  numeric-string IDs, `page` / `per_page` paging (default 20, max 200), `only=` and `order=`;
- records carry the fields Kantata publishes beside the twin's own (`currency_symbol`,
  formatted `price`, `user_can_edit`, ...; see `published`), an assignment's `assignee_id` and
  `story_id` come with `include=assignee,story` (`assignee_id` is also accepted in bodies and
  as a filter), and `include=custom_field_values` on workspaces answers the values stored
  with `POST /api/v1/custom_field_values`;
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

Custom fields: every twin account has the workspace custom fields pssync's tenant setup asks
for (`Customer ID`, `Opportunity ID`, `Billing Rule`, `Cost Center`, `Practice`, `Delivery
Manager`: text fields of the Workspace set "Project Details"), listed by `GET
/api/v1/custom_fields.json` (`include=custom_field_set`). `POST /api/v1/custom_field_values`
(`{"custom_field_values": [{"subject_type", "subject_id", "custom_field_id", "value"}]}`, up
to 100) creates or overrides values, all or none; an unknown custom field or subject is a 422
`validation` error. A workspace's values of those six are mirrored into its legacy columns
(cost_center, practice, billing_rule, delivery_manager, client_ref, opportunity_ref), which
workspace bodies no longer take. A user's `role` is still a plain column.

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

# The package: `tables` (SQLite tables), `bodies` (request bodies), `responses` (Kantata's
# response and error shapes), `published` (the published fields the tables lack), `rules`
# (shared business rules), `routes/` (one router per vendor resource, plus the admin route),
# `load` (seeding the firm). The docstring above is also the twin's OpenAPI description.

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from contracts.settings import DEV_WEBHOOK_SECRET
from sandbox._tamper import DroppingWebhookSender
from sandbox._twin import TwinState, create_twin_app, make_twin_engine
from sandbox.psa.bodies import (
    AssignmentBody,
    AssignmentFields,
    BulkTimeEntries,
    BulkTimeEntry,
    ChangeOrderBody,
    ChangeOrderFields,
    ChangeOrderLineFields,
    CustomFieldValueFields,
    CustomFieldValuesBody,
    ExpenseBody,
    ExpenseFields,
    ExternalReferenceBody,
    ExternalReferenceFields,
    InvoiceBody,
    InvoiceFields,
    MilestoneBody,
    MilestoneFields,
    PostBody,
    PostFields,
    ResourceRequestBody,
    ResourceRequestFields,
    StoryBody,
    StoryFields,
    TimeEntryBody,
    TimeEntryFields,
    UserBody,
    UserFields,
    WorkspaceBody,
    WorkspaceFields,
)
from sandbox.psa.load import (
    RATE_CARD_MODEL,
    SERVICE_NAME,
    WORKER_MODEL,
    add_rate_card,
    add_user,
    add_workspace_custom_fields,
    load_firm,
)
from sandbox.psa.resource_fields import add_user_custom_fields
from sandbox.psa.responses import (
    DEFAULT_PER_PAGE,
    INCLUDES,
    MAX_PER_PAGE,
    BelongsTo,
    CustomFieldValues,
    HasMany,
    ListParams,
    envelope,
    error_body,
    include_params,
    list_params,
    list_rows,
    render,
)
from sandbox.psa.routes import API, admin, tamper, vendor_router
from sandbox.psa.routes.admin import bulk_time_entries
from sandbox.psa.routes.change_orders import CHANGE_ORDER_TRANSITIONS
from sandbox.psa.rules import MAX_MINUTES_PER_DAY
from sandbox.psa.tables import (
    KEYS,
    SUBJECT_TYPES,
    TABLES,
    Day,
    PsaAssignment,
    PsaBillingMilestone,
    PsaChangeOrder,
    PsaCustomField,
    PsaCustomFieldSet,
    PsaCustomFieldValue,
    PsaExpense,
    PsaExternalReference,
    PsaInvoice,
    PsaPost,
    PsaRateCard,
    PsaRateCardRole,
    PsaResourceRequest,
    PsaStory,
    PsaTimeEntry,
    PsaUser,
    PsaWorkspace,
)

SYSTEM = "psa"


def create_app(
    db_path: Path | None = None,
    *,
    webhook_url: str | None = None,
    webhook_secret: str = DEV_WEBHOOK_SECRET,
) -> FastAPI:
    """The PSA twin; `db_path=None` keeps its data in memory."""
    state = TwinState(system=SYSTEM, engine=make_twin_engine(db_path, TABLES))
    state.webhooks = DroppingWebhookSender(webhook_url, webhook_secret)
    add_workspace_custom_fields(state)
    add_user_custom_fields(state)
    return create_twin_app(
        state=state,
        title="PSA twin (Kantata API v1)",
        description=__doc__ or "",
        router=vendor_router(),
        error_body=error_body,
        extra_routers=[admin.router, tamper.router],
    )


__all__ = [
    "API",
    "CHANGE_ORDER_TRANSITIONS",
    "DEFAULT_PER_PAGE",
    "INCLUDES",
    "KEYS",
    "MAX_MINUTES_PER_DAY",
    "MAX_PER_PAGE",
    "RATE_CARD_MODEL",
    "SERVICE_NAME",
    "SUBJECT_TYPES",
    "SYSTEM",
    "TABLES",
    "WORKER_MODEL",
    "AssignmentBody",
    "AssignmentFields",
    "BelongsTo",
    "BulkTimeEntries",
    "BulkTimeEntry",
    "ChangeOrderBody",
    "ChangeOrderFields",
    "ChangeOrderLineFields",
    "CustomFieldValueFields",
    "CustomFieldValues",
    "CustomFieldValuesBody",
    "Day",
    "ExpenseBody",
    "ExpenseFields",
    "ExternalReferenceBody",
    "ExternalReferenceFields",
    "HasMany",
    "InvoiceBody",
    "InvoiceFields",
    "ListParams",
    "MilestoneBody",
    "MilestoneFields",
    "PostBody",
    "PostFields",
    "PsaAssignment",
    "PsaBillingMilestone",
    "PsaChangeOrder",
    "PsaCustomField",
    "PsaCustomFieldSet",
    "PsaCustomFieldValue",
    "PsaExpense",
    "PsaExternalReference",
    "PsaInvoice",
    "PsaPost",
    "PsaRateCard",
    "PsaRateCardRole",
    "PsaResourceRequest",
    "PsaStory",
    "PsaTimeEntry",
    "PsaUser",
    "PsaWorkspace",
    "ResourceRequestBody",
    "ResourceRequestFields",
    "StoryBody",
    "StoryFields",
    "TimeEntryBody",
    "TimeEntryFields",
    "UserBody",
    "UserFields",
    "WorkspaceBody",
    "WorkspaceFields",
    "add_rate_card",
    "add_user",
    "add_workspace_custom_fields",
    "bulk_time_entries",
    "create_app",
    "envelope",
    "error_body",
    "include_params",
    "list_params",
    "list_rows",
    "load_firm",
    "render",
]
