"""What a time-to-invoice item records for the person who resolves it: the entry as pssync saw
it, what was checked and what was found (the rate card's roles, the cost center's state, the
project's status, the period), and for an ERP refusal the posting and the ERP's answer.

Pure functions over what the batch already read; no I/O.
"""

from __future__ import annotations

from typing import Any

from activities.time_to_invoice.caches import _Entry
from connectors.erp import PostingResult
from contracts.v1 import CostPosting, ExpenseEntry, RateCard, TimeEntry
from contracts.v1.time_to_invoice import EntryFacts, TimeExceptionCause, period_of

MAX_RATE_CARD_LINES = 50
"""Lines of a rate card listed on an item (a card with more says how many it left off)."""


def entry(e: _Entry) -> dict[str, Any]:
    """The entry: its date, hours or amount, role, worker and period."""
    cur = e.current
    facts: dict[str, Any] = {"kind": e.kind.value, "entry_id": e.item.ref.entry_id}
    if isinstance(cur, TimeEntry):
        facts |= {
            "date": cur.date_performed.isoformat(),
            "period": period_of(cur.date_performed),
            "hours": str(cur.hours),
            "role": cur.role,
            "task_id": cur.task_id,
        }
    elif isinstance(cur, ExpenseEntry):
        facts |= {
            "date": cur.date_incurred.isoformat(),
            "period": period_of(cur.date_incurred),
            "amount": cur.amount.model_dump(mode="json"),
            "category": cur.category,
        }
    if cur is not None:
        facts |= {"worker_id": cur.worker_id, "billable": cur.billable}
    return facts


def checked(
    e: _Entry,
    facts: EntryFacts,
    cause: TimeExceptionCause,
    *,
    rate_card_id: str | None = None,
    card: RateCard | None = None,
) -> dict[str, Any]:
    """What the validation checked for `cause` and what it found."""
    found: dict[str, Any] = {"entry": entry(e) | {"role": facts.role}}
    on = facts.work_date.isoformat()
    if cause is TimeExceptionCause.PROJECT_CLOSED:
        found["checked"] = {
            "psa_project_status": facts.psa_project_status.value,
            "erp_project_status": (
                facts.erp_project_status.value if facts.erp_project_status else None
            ),
        }
    elif cause is TimeExceptionCause.INACTIVE_WORKER:
        found["checked"] = {
            "worker_id": facts.worker_id,
            "on": on,
            "known_to_hcm": facts.worker_known,
            "working_that_day": facts.worker_active,
        }
    elif cause is TimeExceptionCause.INVALID_COST_CENTER:
        found["checked"] = {
            "cost_center": facts.cost_center,
            "state_in_erp": facts.cost_center_state.value,
        }
    elif cause is TimeExceptionCause.MISSING_RATE_CARD:
        found["checked"] = {
            "rate_card_id": rate_card_id,
            "role": facts.role,
            "on": on,
        } | rate_card_roles(card)
    elif cause is TimeExceptionCause.CURRENCY_MISMATCH:
        found["checked"] = {
            "cost_currency": facts.cost_currency,
            "bill_currency": facts.bill_rate.currency if facts.bill_rate else None,
        }
    elif cause is TimeExceptionCause.DUPLICATE:
        found["checked"] = {"duplicate_of": facts.duplicate_of}
    return found


def rate_card_roles(card: RateCard | None) -> dict[str, Any]:
    """The roles a rate card has, with the dates each rate covers."""
    if card is None:
        return {"rate_card_found": False}
    lines = [
        {
            "role": line.role,
            "bill_rate": line.bill_rate.model_dump(mode="json"),
            "from": line.effective_from.isoformat(),
            "to": line.effective_to.isoformat() if line.effective_to else None,
        }
        for line in card.lines[:MAX_RATE_CARD_LINES]
    ]
    found: dict[str, Any] = {
        "rate_card_found": True,
        "roles_on_card": sorted({line.role for line in card.lines}),
        "rate_card_lines": lines,
    }
    if len(card.lines) > MAX_RATE_CARD_LINES:
        found["rate_card_lines_left_off"] = len(card.lines) - MAX_RATE_CARD_LINES
    return found


def refused(e: _Entry, posting: CostPosting | None, res: PostingResult) -> dict[str, Any]:
    """An ERP refusal of a posting or a reversal: the entry, the posting (its period among
    it), the ERP's code and, when the connector kept it, its request and answer."""
    found: dict[str, Any] = {"entry": entry(e)}
    if posting is not None:
        found["posting"] = {
            "idempotency_key": posting.idempotency_key,
            "kind": posting.kind.value,
            "erp_project": posting.project_id,
            "period": posting.period,
            "posting_date": posting.posting_date.isoformat(),
            "hours": str(posting.hours),
            "cost_center": posting.cost_center,
            "reverses": posting.reverses,
        }
    error = res.error
    if error is not None:
        found["refusal"] = {"system": error.system, "code": error.code, "field": error.field}
        if error.evidence is not None:
            found["evidence"] = error.evidence
    return found
