"""Domain events: the business facts pssync publishes for downstream systems (CloudEvents 1.0).

Every status change is recorded in the store's outbox in the same transaction as the fact
(or, for facts only an activity knows, right after it is final), keyed by the fact's business
identity so recording twice records once. The relay publishes each outbox row as one CloudEvent
in structured JSON mode:

- ``id``: stable per outbox row (a UUID derived from the event type and key), so a consumer
  dedupes redeliveries by id;
- ``source``: ``/pssync``; ``type``: ``com.pssync.<noun>.<verb>``;
- ``subject``: the enterprise id the fact is about (a project, a worker);
- ``time``: when the fact was recorded; ``sequence``: the outbox row id (order per subject);
- ``data``: the event's data model below (canonical contracts v1 values).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SOURCE = "/pssync"
TYPE_PREFIX = "com.pssync."
EVENT_ID_NAMESPACE = uuid.UUID("6f0b6a52-4d0e-5a55-9a7e-2f0c1d7e9a11")


class EventData(BaseModel):
    """Common base of events' data: unknown fields are kept (a newer writer may add some)."""

    model_config = ConfigDict(extra="allow")


class ProjectProvisioned(EventData):
    """The opportunity-to-project saga finished: every system holds the project, linked."""

    enterprise_id: str
    opportunity_id: str | None = None
    crm_tenant: str | None = None
    psa_project_id: str | None = None
    erp_project_id: str | None = None
    provisioned_at: datetime | None = None


class ChangeOrderDecided(EventData):
    """A change order was approved (and applied) or rejected."""

    enterprise_id: str | None = None
    change_order_id: str
    psa_project_id: str | None = None
    decision: Literal["approved", "rejected"]
    budget_delta: Decimal | None = None
    hours_delta: Decimal | None = None
    currency: str | None = None
    decided_by: list[str] = Field(default_factory=list)
    """The approvers (known for an approval; a rejection's activity does not see them)."""
    decided_at: datetime | None = None
    title: str | None = None


class BudgetRevised(EventData):
    """The ERP project budget was revised (by an approved change order)."""

    enterprise_id: str | None = None
    change_order_id: str
    erp_project_id: str | None = None
    budget_delta: Decimal | None = None
    currency: str | None = None


class TimePosted(EventData):
    """A PSA time entry or expense was posted to (or its posting reversed in) the ERP."""

    entry_key: str
    kind: str
    entry_id: str
    psa_project_id: str
    erp_project: str | None = None
    worker_id: str | None = None
    work_date: date | None = None
    period: str | None = None
    hours: Decimal
    cost_amount: Decimal | None = None
    bill_amount: Decimal | None = None
    currency: str | None = None
    erp_id: str | None = None
    entry_version: str


class InvoiceChanged(EventData):
    """An ERP invoice was created (draft) or voided for a project."""

    enterprise_id: str | None = None
    psa_project_id: str
    invoice_ref: str
    erp_invoice_id: str | None = None
    total: Decimal | None = None
    currency: str | None = None
    entries: int | None = None
    trigger: str | None = None
    """`period_close` or `milestone`."""
    period: str | None = None
    milestone_code: str | None = None
    milestone_completed_at: datetime | None = None
    reason: str | None = None
    """Why it was voided."""


class WorkerTermination(EventData):
    """A worker's termination was entered (terminated) or withdrawn (rescinded)."""

    worker_id: str
    termination_date: date | None = None
    workflow_id: str | None = None
    message: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    """What the process did (ended assignments, backfill requests, posted entries) or undid."""


class ExceptionOpened(EventData):
    """An exception item was opened: a person must decide."""

    item_id: str
    process: str
    cause_code: str
    field: str | None = None
    owner: str
    workflow_id: str
    opened_at: datetime


class ExceptionResolved(EventData):
    """An exception item was resolved by an authorised actor."""

    item_id: str
    process: str
    cause_code: str
    action: str | None = None
    actor: str | None = None
    resolved_at: datetime | None = None


class DriftFound(EventData):
    """A reconciliation run found a new difference between systems."""

    fingerprint: str
    domain: str
    kind: str
    tenant: str
    project: str | None = None
    period: str | None = None
    owner: str
    disposition: str
    run_id: str


class AlertRaised(EventData):
    """An SLA breach or an escalation: someone must act, with the business context to act on."""

    alert: str
    severity: Literal["info", "warning", "critical"] = "warning"
    process: str | None = None
    summary: str
    owner: str | None = None
    item_id: str | None = None
    workflow_id: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)


class Notification(EventData):
    """A message for people by role (change-order and termination notifications)."""

    kind: str | None = None


EVENT_TYPES: dict[str, type[EventData]] = {
    "project.provisioned": ProjectProvisioned,
    "change_order.approved": ChangeOrderDecided,
    "change_order.rejected": ChangeOrderDecided,
    "budget.revised": BudgetRevised,
    "time.posted": TimePosted,
    "time.reversed": TimePosted,
    "invoice.created": InvoiceChanged,
    "invoice.voided": InvoiceChanged,
    "worker.terminated": WorkerTermination,
    "worker.rescinded": WorkerTermination,
    "exception.opened": ExceptionOpened,
    "exception.resolved": ExceptionResolved,
    "drift.found": DriftFound,
    "alert.raised": AlertRaised,
    "notification": Notification,
    "forecast.adjustment": EventData,
}
"""Outbox event type -> its data model (the CloudEvent type is `com.pssync.<event type>`)."""


class CloudEvent(BaseModel):
    """One published event, CloudEvents 1.0 structured JSON mode."""

    model_config = ConfigDict(extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str = SOURCE
    type: str
    subject: str
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    sequence: str
    """The outbox row id, as a string (CloudEvents `sequence` extension): order per subject."""
    data: dict[str, Any]


def cloud_type(event_type: str) -> str:
    """`time.posted` -> `com.pssync.time.posted`; a verb-less type gets `.recorded`."""
    return TYPE_PREFIX + (event_type if "." in event_type else f"{event_type}.recorded")


def event_id(event_type: str, key: str) -> str:
    """The stable event id of an outbox row: the same fact always has the same id."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{event_type}\n{key}"))


def outbox_payload(subject: str, data: EventData | dict[str, Any]) -> dict[str, Any]:
    """What an outbox row holds for an event: its subject and its data (JSON-ready)."""
    body = data.model_dump(mode="json") if isinstance(data, EventData) else dict(data)
    return {"subject": subject, "data": body}


_SUBJECT_KEYS = ("enterprise_id", "enterprise_project_id", "worker_id", "psa_project_id")


def to_cloud_event(
    row_id: int, event_type: str, key: str, payload: dict[str, Any], created_at: datetime
) -> CloudEvent:
    """The CloudEvent of one outbox row. Rows written before events had a subject (their
    payload is the data itself) take the first of enterprise id, worker id, project id."""
    if "subject" in payload and isinstance(payload.get("data"), dict):
        subject, data = str(payload["subject"]), dict(payload["data"])
    else:
        data = dict(payload)
        subject = next((str(data[k]) for k in _SUBJECT_KEYS if data.get(k)), key)
    return CloudEvent(
        id=event_id(event_type, key),
        type=cloud_type(event_type),
        subject=subject,
        time=created_at,
        sequence=str(row_id),
        data=data,
    )


EVENT_MODELS: dict[str, type[BaseModel]] = {
    "CloudEvent": CloudEvent,
    **{
        model.__name__: model
        for model in (
            ProjectProvisioned,
            ChangeOrderDecided,
            BudgetRevised,
            TimePosted,
            InvoiceChanged,
            WorkerTermination,
            ExceptionOpened,
            ExceptionResolved,
            DriftFound,
            AlertRaised,
        )
    },
}
"""The events' JSON Schemas `pssync contracts export` writes."""
