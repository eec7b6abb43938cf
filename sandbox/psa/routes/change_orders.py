"""Kantata change orders: list, read, create (emits `change_order.submitted`), update by
transition."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from sqlmodel import Session

from sandbox.psa.bodies import ChangeOrderBody
from sandbox.psa.responses import ids_in
from sandbox.psa.routes import _crud as crud
from sandbox.psa.routes._shared import Include, State, emit_event
from sandbox.psa.rules import _invalid, _workspace_open
from sandbox.psa.tables import PsaChangeOrder

# Change-order transitions; a repeat of the current state is accepted as a no-op.
CHANGE_ORDER_TRANSITIONS: dict[str, set[str]] = {
    "submitted": {"approved", "rejected", "expired"},
    "approved": {"applied", "rejected"},
    "applied": {"approved"},
    "rejected": set(),
    "expired": set(),
}

router = APIRouter()


def change_order_filters(
    workspace_id: str | None = None, state_: str | None = Query(None, alias="state")
) -> list[Any]:
    clauses = ids_in(PsaChangeOrder.workspace_id, workspace_id, "workspace_id")
    if state_:
        clauses.append(PsaChangeOrder.state == state_)
    return clauses


crud.add_list_route(router, "/change_orders.json", PsaChangeOrder, change_order_filters)
crud.add_get_route(router, "/change_orders/{change_order_id}.json", PsaChangeOrder, "change order")


@router.post("/change_orders.json", tags=["change_orders"])
async def create_change_order(
    body: ChangeOrderBody, params: Include, state: State
) -> dict[str, Any]:
    f = body.change_order
    if not f.title or not f.title.strip():
        raise _invalid("Please give the change order a title", "title")
    if not f.requested_by:
        raise _invalid("Please say who requested the change", "requested_by")
    if f.state not in (None, "submitted"):
        raise _invalid("a new change order starts submitted", "state")
    with state.session() as s:
        ws = _workspace_open(s, f.workspace_id)
        if not ws.change_orders_enabled:
            raise _invalid(f"change orders are not enabled on project {ws.id}", "workspace_id")
        row = PsaChangeOrder(
            workspace_id=ws.id,
            title=f.title,
            description=f.description or "",
            budget_delta_in_cents=f.budget_delta_in_cents or 0,
            currency=f.currency or ws.currency,
            lines=[line.model_dump(mode="json") for line in f.lines or []],
            requested_by=f.requested_by,
        )
        crud.insert(s, row)
        emit_event(state, "change_order.submitted", row)
        return crud.reply(s, row, params)


def change_order_update_rules(s: Session, row: PsaChangeOrder, changes: dict[str, Any]) -> None:
    if "workspace_id" in changes:
        raise _invalid("a change order cannot move to another project", "workspace_id")
    new_state = changes.get("state")
    if new_state is not None and new_state not in CHANGE_ORDER_TRANSITIONS[row.state]:
        raise _invalid(f"change order {row.id} cannot go from {row.state} to {new_state}", "state")
    if set(changes) - {"state"} and row.state != "submitted":
        raise _invalid(f"change order {row.id} is {row.state} and cannot be edited", "state")


crud.add_update_route(
    router,
    "/change_orders/{change_order_id}.json",
    PsaChangeOrder,
    "change order",
    ChangeOrderBody,
    change_order_update_rules,
    mode="json",
)
