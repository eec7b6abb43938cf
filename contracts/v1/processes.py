"""Inputs, outputs and messages of the business processes (workflows, updates, queries).

One model per input and output so fields with defaults can be added without breaking running
workflows. The gateway, the CLI and the workflows all speak these. No I/O here.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contracts.v1.models import Opportunity

# Workflow type names and message names, shared by the gateway, the CLI and the worker.
OPPORTUNITY_TO_PROJECT = "OpportunityToProject"
RESOLVE_EXCEPTION_UPDATE = "resolve_exception"
STATUS_QUERY = "status"

PROCESS_OPPORTUNITY_TO_PROJECT = "opportunity_to_project"

RESOLVER_ROLES: dict[str, frozenset[str]] = {
    PROCESS_OPPORTUNITY_TO_PROJECT: frozenset({"ops", "delivery_manager"}),
    "worker_termination": frozenset({"ops", "resource_manager", "payroll"}),
    "time_to_invoice": frozenset({"ops", "delivery_manager", "finance_controller"}),
    "assignment_sync": frozenset({"ops", "finance_controller"}),
    "reconciliation": frozenset({"ops", "finance_controller"}),
    "rate_card_sync": frozenset({"ops", "finance_controller"}),  # contracts.v1.rate_cards
    "worker_lifecycle": frozenset({"ops", "resource_manager", "hr"}),  # contracts.v1.workforce
}
"""Roles that may resolve a process's exception items."""


class Message(BaseModel):
    """A workflow input, signal, update, query answer or carried state.

    Unknown fields are ignored, not refused: during a rolling deploy an older worker must
    still accept a message that a newer gateway or workflow sent with a field it added."""

    model_config = ConfigDict(extra="ignore")


class ProvisionProjectInput(Message):
    """Start of the opportunity-to-project saga (from the CRM's thin won-deal webhook)."""

    crm_tenant: str
    opportunity_id: str
    event_id: str | None = None
    escalation_after_s: int = Field(default=4 * 3600, ge=1)
    """An open exception item escalates after this long."""
    activity_timeout_s: int = Field(default=60, ge=1, le=3600)
    """Start-to-close timeout of each step: how long a lost worker holds a step before
    another worker retries it."""


class ProvisioningStep(StrEnum):
    READING_CRM = "reading_crm"
    VALIDATING = "validating"
    CHECKING_MASTER_DATA = "checking_master_data"
    MINTING_ID = "minting_id"
    ERP_CUSTOMER = "erp_customer"
    PSA_PROJECT = "psa_project"
    ERP_PROJECT = "erp_project"
    LINKING = "linking"
    STAFFING_DEMAND = "staffing_demand"
    PUBLISHING = "publishing"
    WAITING_FOR_RESOLUTION = "waiting_for_resolution"
    COMPENSATING = "compensating"
    DONE = "done"
    FAILED = "failed"


class ProvisionProjectResult(Message):
    enterprise_id: str
    opportunity_id: str
    customer_enterprise_id: str
    erp_customer_id: str
    psa_project_id: str
    erp_project_id: str
    resource_request_ids: list[str] = Field(default_factory=list)


class ResolutionAction(StrEnum):
    RETRY = "retry"
    """The master data was fixed at the source: try the step again as it was."""
    RETRY_WITH_DATA = "retry_with_data"
    """Try again with `corrections` applied (e.g. {"cost_center": "CC-200"})."""
    SKIP = "skip"
    """Go on without this item (only where the process allows it)."""
    ABANDON = "abandon"
    """Give up: compensate what was done."""
    REJECT = "reject"
    """Send the record back to its source system (e.g. unapprove a time entry in the PSA with
    the reason) to be fixed there; it comes again once it is."""


class ExceptionResolution(Message):
    """A person's decision on an exception item, sent as a workflow update."""

    item_id: str
    action: ResolutionAction
    actor: str
    actor_roles: list[str] = Field(default_factory=list)
    actor_scopes: list[str] = Field(default_factory=lambda: ["*"])
    corrections: dict[str, str] = Field(default_factory=dict)
    note: str = ""


class ResolutionAccepted(Message):
    item_id: str
    action: ResolutionAction
    accepted_at: datetime


class OpenException(Message):
    item_id: str
    cause_code: str
    field: str | None = None
    detail: str
    opened_at: datetime
    escalated: bool = False
    allowed_actions: list[ResolutionAction] = Field(default_factory=list)
    correctable: list[str] = Field(default_factory=list)
    """Fields a `retry_with_data` may correct (empty: none)."""
    owner: str | None = None
    """The role the item is with (after escalation: the escalation role)."""


class ClosedException(Message):
    """An item a run no longer holds open: who closed it and how (for typed refusals)."""

    item_id: str
    action: str
    actor: str


class DeskState(Message):
    """What a run's exception desk hands to its continuation (continue-as-new)."""

    opened: int = 0
    """Items opened so far (part of the deterministic item id)."""
    open: dict[str, OpenException] = Field(default_factory=dict)
    closed: list[ClosedException] = Field(default_factory=list)
    """The most recent closed items, so a late second resolution gets `AlreadyResolved`."""


class ProvisioningStatus(Message):
    """What the `status` query answers (and the gateway shows)."""

    step: ProvisioningStep
    enterprise_id: str | None = None
    opportunity: Opportunity | None = None
    open_exception: OpenException | None = None
    completed: list[str] = Field(default_factory=list)
    ids: dict[str, Any] = Field(default_factory=dict)
