"""Kantata invoices: list, read, create from approved items, cancel (which unlocks them)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Query
from sqlmodel import Session, SQLModel

from sandbox.psa.bodies import InvoiceBody
from sandbox.psa.routes import _crud as crud
from sandbox.psa.routes._shared import Include, State
from sandbox.psa.rules import _get, _invalid, _touch
from sandbox.psa.tables import PsaBillingMilestone, PsaExpense, PsaInvoice, PsaTimeEntry, _now

router = APIRouter()


def invoice_filters(
    reference_number: str | None = None, state_: str | None = Query(None, alias="state")
) -> list[Any]:
    clauses: list[Any] = []
    if reference_number:
        clauses.append(PsaInvoice.reference_number == reference_number)
    if state_:
        clauses.append(PsaInvoice.state == state_)
    return clauses


crud.add_list_route(router, "/invoices.json", PsaInvoice, invoice_filters)
crud.add_get_route(router, "/invoices/{invoice_id}.json", PsaInvoice, "invoice")


def _approved_items(
    s: Session, model: type[SQLModel], ids: list[int], what: str, field: str
) -> list[Any]:
    """The approved, not yet invoiced time entries or expenses an invoice names (once each)."""
    items = []
    for ident in dict.fromkeys(ids):
        item: Any = s.get(model, ident)
        if item is None:
            raise _invalid(f"{what} {ident} does not exist", field)
        if not item.approved:
            raise _invalid(f"{what} {ident} is not approved", field)
        if item.is_invoiced:
            raise _invalid(f"{what} {ident} is already invoiced", field)
        items.append(item)
    return items


def _held_items(s: Session, model: type[SQLModel], ids: list[int], invoice_id: int) -> list[Any]:
    """The items of an invoice that it still holds."""
    items = (s.get(model, ident) for ident in ids)
    return [i for i in items if i is not None and i.invoice_id == invoice_id]  # type: ignore[attr-defined]


def _mark(s: Session, items: Iterable[Any], **values: Any) -> None:
    """Set `values` on invoice items, touching each (in the session, not yet committed)."""
    for item in items:
        for k, v in values.items():
            setattr(item, k, v)
        _touch(item)
        s.add(item)


@router.post("/invoices.json", tags=["invoices"])
async def create_invoice(body: InvoiceBody, params: Include, state: State) -> dict[str, Any]:
    f = body.invoice
    if not (f.time_entry_ids or f.expense_ids or f.billing_milestone_ids):
        raise _invalid("an invoice needs time entries, expenses or milestones", "time_entry_ids")
    with state.session() as s:
        entries = _approved_items(s, PsaTimeEntry, f.time_entry_ids, "time entry", "time_entry_ids")
        expenses = _approved_items(s, PsaExpense, f.expense_ids, "expense", "expense_ids")
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
        invoice = PsaInvoice(
            reference_number=f.reference_number,
            invoice_date=f.invoice_date or _now().date(),
            workspace_ids=sorted({i.workspace_id for i in [*entries, *expenses, *milestones]}),
            time_entry_ids=[e.id for e in entries],
            expense_ids=[x.id for x in expenses],
            billing_milestone_ids=[m.id for m in milestones],
        )
        s.add(invoice)
        s.flush()
        _mark(s, [*entries, *expenses], is_invoiced=True, invoice_id=invoice.id)
        _mark(s, milestones, state="invoiced", invoice_id=invoice.id)
        s.commit()
        s.refresh(invoice)
        return crud.reply(s, invoice, params)


@router.put("/invoices/{invoice_id}/cancel.json", tags=["invoices"])
async def cancel_invoice(invoice_id: int, params: Include, state: State) -> dict[str, Any]:
    with state.session() as s:
        invoice = _get(s, PsaInvoice, invoice_id, "invoice")
        if invoice.state != "cancelled":
            items = [
                *_held_items(s, PsaTimeEntry, invoice.time_entry_ids, invoice.id),
                *_held_items(s, PsaExpense, invoice.expense_ids, invoice.id),
            ]
            _mark(s, items, is_invoiced=False, invoice_id=None)
            milestones = _held_items(
                s, PsaBillingMilestone, invoice.billing_milestone_ids, invoice.id
            )
            _mark(s, milestones, state="completed", invoice_id=None)
            invoice.state = "cancelled"
            invoice.updated_at = _now()
            s.add(invoice)
            s.commit()
            s.refresh(invoice)
        return crud.reply(s, invoice, params)
