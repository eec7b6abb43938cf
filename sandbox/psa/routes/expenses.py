"""Kantata expenses: list, read, create, update (approve, with its event)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import Session

from sandbox._twin import TwinError, TwinState
from sandbox.psa.bodies import ExpenseBody
from sandbox.psa.routes import _crud as crud
from sandbox.psa.routes._shared import Include, State, emit_event
from sandbox.psa.rules import (
    _check_entry_edit,
    _entry_filters,
    _invalid,
    _resource_can_work,
    _stamp_approval,
    _workspace_open,
)
from sandbox.psa.tables import PsaExpense

router = APIRouter()


def expense_filters(
    workspace_id: str | None = None,
    user_id: str | None = None,
    approved: bool | None = None,
    is_invoiced: bool | None = None,
    updated_after: str | None = None,
) -> list[Any]:
    return _entry_filters(PsaExpense, workspace_id, user_id, approved, is_invoiced, updated_after)


crud.add_list_route(
    router, "/expenses.json", PsaExpense, expense_filters, orderable=("id", "updated_at", "date")
)
crud.add_get_route(router, "/expenses/{expense_id}.json", PsaExpense, "expense")


@router.post("/expenses.json", tags=["expenses"])
async def create_expense(body: ExpenseBody, params: Include, state: State) -> dict[str, Any]:
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
        crud.insert(s, expense)
        return crud.reply(s, expense, params)


def expense_update_rules(s: Session, expense: PsaExpense, changes: dict[str, Any]) -> None:
    _check_entry_edit(expense, changes, "expense")
    if "amount_in_cents" in changes and (changes["amount_in_cents"] or 0) <= 0:
        raise _invalid("amount must be greater than zero", "amount_in_cents")
    _stamp_approval(expense, changes.get("approved"))


def expense_saved(state: TwinState, expense: PsaExpense, changes: dict[str, Any]) -> None:
    if changes.get("approved") is True:
        emit_event(state, "expense.approved", expense)


crud.add_update_route(
    router,
    "/expenses/{expense_id}.json",
    PsaExpense,
    "expense",
    ExpenseBody,
    expense_update_rules,
    on_saved=expense_saved,
)
