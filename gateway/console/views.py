"""What the console's pages show of an exception item: the cause in business words, the business
keys, the evidence with secrets redacted, and the actions a given person may take on it.

Pure functions over the store's rows and the actor; no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from contracts.settings import Actor
from contracts.v1.processes import RESOLVER_ROLES, ResolutionAction
from contracts.v1.provisioning import CORRECTABLE_FIELDS
from contracts.v1.time_to_invoice import CORRECTABLE, TimeExceptionCause
from store import ExceptionItemRow, ExceptionStatus

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"token|secret|passw(or)?d|authori[sz]ation|api[_-]?key|cookie|credential|private[_-]?key"
    r"|session|signature|bearer|assertion",
    re.IGNORECASE,
)
_BEARER_VALUE = re.compile(r"^\s*(bearer|basic)\s+\S|^eyJ[\w-]{4,}\.[\w-]{4,}\.", re.IGNORECASE)
_MAX_DEPTH = 32

PROCESS_NAMES = {
    "opportunity_to_project": "Opportunity to project",
    "change_order": "Change order",
    "time_to_invoice": "Time to invoice",
    "worker_termination": "Worker termination",
    "assignment_sync": "Assignment sync",
    "reconciliation": "Reconciliation",
}

CAUSES: dict[str, str] = {
    TimeExceptionCause.MISSING_RATE_CARD.value: "The project's rate card has no bill rate for "
    "this role on the entry's date.",
    TimeExceptionCause.INVALID_COST_CENTER.value: "The cost center is unknown to the ERP or "
    "inactive there.",
    TimeExceptionCause.INACTIVE_WORKER.value: "HCM says the worker was not employed (or had "
    "stopped working) on the entry's date.",
    TimeExceptionCause.PROJECT_CLOSED.value: "The project is closed for time in the PSA or the "
    "ERP, or has no ERP project.",
    TimeExceptionCause.DUPLICATE.value: "Another entry of the same worker, project, day, task "
    "and duration is already posted.",
    TimeExceptionCause.POSTING_REFUSED.value: "The ERP refused the posting for a business "
    "reason (for example a closed period).",
    TimeExceptionCause.BILLING_FAILED.value: "The PSA refused to mark an invoice's entries "
    "invoiced; the ERP invoice was voided.",
    TimeExceptionCause.CURRENCY_MISMATCH.value: "The worker's labor cost and the project's bill "
    "rate are in different currencies.",
    TimeExceptionCause.BILLING_STALLED.value: "The PSA did not answer while marking an "
    "invoice's entries invoiced; the ERP invoice stands.",
    "NOT_CONTRACTED": "The deal is not at its contracted stage in the CRM.",
    "NO_LINES": "The deal has no lines to build the project from.",
    "AMOUNT_MISMATCH": "The deal's amount differs from the sum of its lines.",
    "LINE_WITHOUT_ROLE": "A line of the deal names no role, so it cannot be staffed or priced.",
    "MISSING_FIELD": "The deal lacks a field the project needs.",
    "UNMAPPABLE_RECORD": "A system answered with a record pssync cannot read.",
    # master data and refusals of the ERP, PSA and CRM (provisioning, termination, postings)
    "COST_CENTER_INVALID": "The cost center is unknown to the ERP or inactive there.",
    "RATE_CARD_MISSING": "The rate card is not in the PSA.",
    "RATE_CARD_NOT_FOUND": "The rate card is not in the PSA.",
    "RATE_CARD_INACTIVE": "The rate card is inactive in the PSA.",
    "CUSTOMER_CREDIT_HOLD": "The ERP holds the customer on credit hold, so it refuses new "
    "projects for it until finance releases the hold.",
    "PERIOD_CLOSED": "The accounting period of the date is closed in the ERP; finance must "
    "reopen it, or the entry must move to an open period.",
    "PROJECT_NOT_LINKED": "The PSA project has no ERP project linked to it.",
    "NO_COST_RATE": "The ERP holds no labor cost rate for the worker.",
    "REVERSAL_REFUSED": "The ERP refused to reverse an earlier posting.",
    "ALREADY_REVERSED": "The ERP had already reversed that posting.",
    "INVALID_KEY_OR_REF": "The system does not know a record the request referred to (a "
    "customer, project, department or worker).",
    "INVALID_FIELD": "The system refused a field of the request.",
    "INVALID_CONTENT": "The system refused a value of the request.",
    "NONEXISTENT_ID": "The system has no record with that id.",
    "RCRD_DSNT_EXIST": "The system has no record with that id.",
    "RCRD_HAS_BEEN_CHANGED": "Someone changed the record in the system meanwhile.",
    "DUP_RCRD": "The system already holds a record with that key.",
    "DUPLICATE_VALUE": "The system already holds a record with that value.",
    "USER_ERROR": "The system refused the request as entered.",
    "INVALID_TRANSACTION_STATE": "The record is in a state that does not allow this change.",
    "REQUIRED_FIELD_MISSING": "The system needs a field the request did not carry.",
    "STRING_TOO_LONG": "A value is longer than the system accepts.",
    "FIELD_CUSTOM_VALIDATION_EXCEPTION": "A validation rule of the CRM refused the change.",
    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST": "A value is not among those the CRM allows "
    "for the field.",
    "INVALID_CROSS_REFERENCE_KEY": "The CRM does not know a record the request referred to.",
    "ENTITY_IS_DELETED": "The record was deleted in the CRM.",
    "MALFORMED_ID": "An id in the request is not an id the system accepts.",
    "VALIDATION": "The system refused the request's values.",
    "INVALID_REQUEST": "The system refused the request.",
    "NOT_FOUND": "The system has no such record.",
    "NO_TERMINATION": "HCM holds no termination for the worker.",
    "XREF_CONFLICT": "Another record is already linked to this one across the systems.",
    "FIELD_NOT_OWNED": "A system tried to change a field another system owns.",
    "BUSINESS_RULE": "A system refused the request for a business reason.",
    "ASSIGNMENTS_AFTER_LAST_DAY": "The leaving worker is still assigned to work after the "
    "last day worked.",
    "UNAPPROVED_TIME": "The leaving worker has time entries not yet approved.",
    "APPROVER_LEAVING": "The leaving worker must still approve change orders.",
    "PAYROLL_CUTOFF_UNPOSTED_TIME": "Approved time of the leaving worker is not in the ERP at "
    "the payroll cutoff.",
    "PAYROLL_CUTOFF_UNAPPROVED": "Time of the leaving worker is still unapproved at the "
    "payroll cutoff.",
}
"""Known cause codes in business words; any other code is shown as words from its name."""

ACTION_LABELS = {
    ResolutionAction.RETRY: "Retry as it is",
    ResolutionAction.RETRY_WITH_DATA: "Correct and retry",
    ResolutionAction.REJECT: "Reject back to the source system",
    ResolutionAction.SKIP: "Skip this item",
    ResolutionAction.ABANDON: "Abandon (undo what was done)",
}
ACTION_HELP = {
    ResolutionAction.RETRY: "The master data was fixed at the source: try the step again.",
    ResolutionAction.RETRY_WITH_DATA: "Try again with the corrected values below.",
    ResolutionAction.REJECT: "Send the record back to be fixed there; it comes again once it is.",
    ResolutionAction.SKIP: "Go on without this item.",
    ResolutionAction.ABANDON: "Give up: the run compensates what it already did.",
}

AGES: dict[str, tuple[str, timedelta | None]] = {
    "": ("any age", None),
    "1h": ("older than an hour", timedelta(hours=1)),
    "1d": ("older than a day", timedelta(days=1)),
    "7d": ("older than a week", timedelta(days=7)),
    "30d": ("older than 30 days", timedelta(days=30)),
}

_KEY_NAMES = (
    ("enterprise_id", "Enterprise project"),
    ("enterprise_project_id", "Enterprise project"),
    ("psa_project_id", "PSA project"),
    ("erp_project_id", "ERP project"),
    ("project_id", "Project"),
    ("opportunity_id", "CRM opportunity"),
    ("change_order_id", "Change order"),
    ("worker_id", "Worker"),
    ("entry_key", "Time or expense entry"),
    ("entry_version", "Entry version"),
    ("practice", "Practice"),
    ("step", "Step"),
)
_NOT_EVIDENCE = frozenset({"allowed_actions", "actions", "correctable", "evidence"})
SYSTEM_NAMES = {"ERP": "the ERP", "PSA": "the PSA", "CRM": "the CRM", "HCM": "HCM"}


def words(code: str) -> str:
    """`MissingRateCard` / `missing_rate_card` / `MISSING_RATE_CARD` -> `Missing rate card`."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", code).replace("_", " ").replace("-", " ")
    text = " ".join(spaced.split()).lower()
    return text[:1].upper() + text[1:]


def cause_words(code: str) -> str:
    return CAUSES.get(code) or f"{words(code)}."


def process_name(process: str) -> str:
    return PROCESS_NAMES.get(process) or words(process)


def redact(value: Any, depth: int = 0) -> Any:
    """`value` with the values of credential-named keys (token, secret, password,
    authorization, api_key, cookie, ...) replaced at any depth, and bearer strings too."""
    if depth > _MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if _SECRET_KEY.search(str(k)) else redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, depth + 1) for v in value]
    if isinstance(value, str) and _BEARER_VALUE.match(value):
        return REDACTED
    return value


def business_keys(row: ExceptionItemRow) -> list[tuple[str, str]]:
    """(label, value) of the business identifiers the item names, its run's id last."""
    context = row.context or {}
    found: list[tuple[str, str]] = []
    for name, label in _KEY_NAMES:
        value = context.get(name)
        if isinstance(value, str | int) and str(value).strip() and not _SECRET_KEY.search(name):
            found.append((label, str(value)))
    found.append(("Run (workflow id)", row.workflow_id))
    return found


def _json(value: Any) -> str:
    return json.dumps(redact(value), indent=2, sort_keys=True, default=str, ensure_ascii=False)


def _block(value: Any) -> str:
    """A body as the page shows it: JSON indented, text as it is (both redacted)."""
    if value is None or value == "":
        return ""
    return redact(value) if isinstance(value, str) else _json(value)


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    body: str


@dataclass(frozen=True)
class Answered:
    status: str
    body: str
    request_id: str


@dataclass(frozen=True)
class Evidence:
    """An item's evidence for its page: what pssync sent and what the system answered (when a
    system refused a request), and the rest of what the run recorded, all redacted. As text it
    is that rest, as indented JSON."""

    rest: str
    system: str | None = None
    sent: Sent | None = None
    answered: Answered | None = None
    other: str = ""
    """What else the vendor evidence holds, as JSON (empty when nothing)."""

    @property
    def system_name(self) -> str:
        return SYSTEM_NAMES.get(self.system or "", self.system or "the system")

    def __str__(self) -> str:
        return self.rest


def evidence(row: ExceptionItemRow) -> Evidence:
    """The stored context (what the run saw), redacted; a vendor's request and answer
    (`context["evidence"]`) apart, as readable blocks."""
    stored = row.context or {}
    context = {k: v for k, v in stored.items() if k not in _NOT_EVIDENCE}
    vendor = stored.get("evidence")
    if not isinstance(vendor, Mapping):
        return Evidence(rest=_json(context))
    request = vendor.get("request")
    response = vendor.get("response")
    sent = answered = None
    if isinstance(request, Mapping) and request:
        sent = Sent(
            method=str(request.get("method") or ""),
            path=str(redact(str(request.get("path") or ""))),
            body=_block(request.get("body")),
        )
    if isinstance(response, Mapping) and response:
        answered = Answered(
            status=str(response.get("status") or ""),
            body=_block(response.get("body")),
            request_id=str(redact(str(response.get("request_id") or ""))),
        )
    other = {k: v for k, v in vendor.items() if k not in ("system", "request", "response")}
    system = vendor.get("system")
    return Evidence(
        rest=_json(context),
        system=str(system) if isinstance(system, str) and system else None,
        sent=sent,
        answered=answered,
        other=_json(other) if other else "",
    )


def project_of(row: ExceptionItemRow) -> str | None:
    context = row.context or {}
    for name in ("enterprise_id", "enterprise_project_id", "psa_project_id", "project_id"):
        value = context.get(name)
        if isinstance(value, str | int) and str(value).strip():
            return str(value)
    return None


def item_actions(row: ExceptionItemRow) -> list[ResolutionAction]:
    """The actions the item's run offers (recorded with the item), else every action."""
    context = row.context or {}
    listed = context.get("allowed_actions") or context.get("actions")
    if isinstance(listed, list):
        known = {a.value: a for a in ResolutionAction}
        offered = [known[a] for a in listed if isinstance(a, str) and a in known]
        if offered:
            return offered
    return list(ResolutionAction)


def may_resolve(actor: Actor, process: str) -> bool:
    return bool(RESOLVER_ROLES.get(process, frozenset()).intersection(actor.roles))


def actions_for(actor: Actor, row: ExceptionItemRow) -> list[ResolutionAction]:
    """What this person may do with the item: nothing once resolved or without a resolver
    role for its process; otherwise the item's offered actions."""
    if row.status == ExceptionStatus.RESOLVED.value or not may_resolve(actor, row.process):
        return []
    return item_actions(row)


def correctable_fields(row: ExceptionItemRow) -> list[str]:
    """Fields an edit-and-retry may correct: recorded with the item, else the process's own."""
    listed = (row.context or {}).get("correctable")
    if isinstance(listed, list) and all(isinstance(f, str) for f in listed):
        return [f for f in listed if not _SECRET_KEY.search(f)]
    if row.process == "opportunity_to_project":
        fields = set(CORRECTABLE_FIELDS)
    elif row.process == "time_to_invoice" and row.cause_code in CORRECTABLE:
        fields = set(CORRECTABLE[TimeExceptionCause(row.cause_code)])
    else:
        fields = {row.field} if row.field else set()
    first = [row.field] if row.field in fields else []
    return first + sorted(fields - set(first))


def age_text(opened: datetime, now: datetime) -> str:
    seconds = max(0, int((now - opened).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


@dataclass(frozen=True)
class InboxQuery:
    """The inbox's filters and page, as the query string gives them (bounded, never trusted)."""

    process: str = ""
    cause: str = ""
    owner: str = ""
    project: str = ""
    age: str = ""
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> InboxQuery:
        def text(name: str) -> str:
            return str(params.get(name, "")).strip()[:200]

        try:
            page = max(1, min(int(params.get("page", "1")), 100_000))
        except ValueError:
            page = 1
        age = text("age")
        return cls(
            process=text("process"),
            cause=text("cause"),
            owner=text("owner"),
            project=text("project"),
            age=age if age in AGES else "",
            page=page,
        )

    def params(self, **changes: Any) -> dict[str, str]:
        """The query string of this view (with `changes`), without empty values."""
        values = {
            "process": self.process,
            "cause": self.cause,
            "owner": self.owner,
            "project": self.project,
            "age": self.age,
            "page": str(self.page),
        }
        values.update({k: str(v) for k, v in changes.items()})
        if values.get("page") == "1":
            values.pop("page")
        return {k: v for k, v in values.items() if v}
