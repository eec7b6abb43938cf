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
    r"|session|signature|bearer",
    re.IGNORECASE,
)
_BEARER_VALUE = re.compile(r"^\s*(bearer|basic)\s+\S", re.IGNORECASE)
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
_NOT_EVIDENCE = frozenset({"allowed_actions", "actions", "correctable"})


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


def evidence(row: ExceptionItemRow) -> str:
    """The stored context (what the run saw), redacted, as indented JSON."""
    context = {k: v for k, v in (row.context or {}).items() if k not in _NOT_EVIDENCE}
    return json.dumps(redact(context), indent=2, sort_keys=True, default=str, ensure_ascii=False)


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
