"""Kantata resource requests (unfilled demand for a role): list, read, create, update."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import Session

from sandbox.psa.bodies import ResourceRequestBody
from sandbox.psa.responses import ids_in
from sandbox.psa.routes import _crud as crud
from sandbox.psa.routes._shared import Include, State
from sandbox.psa.rules import _invalid, _workspace_open
from sandbox.psa.tables import PsaResourceRequest

router = APIRouter()


def resource_request_filters(
    workspace_id: str | None = None, status: str | None = None, role: str | None = None
) -> list[Any]:
    clauses = ids_in(PsaResourceRequest.workspace_id, workspace_id, "workspace_id")
    if status:
        clauses.append(PsaResourceRequest.status == status)
    if role:
        clauses.append(PsaResourceRequest.role == role)
    return clauses


crud.add_list_route(router, "/resource_requests.json", PsaResourceRequest, resource_request_filters)
crud.add_get_route(
    router, "/resource_requests/{request_id}.json", PsaResourceRequest, "resource request"
)


@router.post("/resource_requests.json", tags=["resource_requests"])
async def create_resource_request(
    body: ResourceRequestBody, params: Include, state: State
) -> dict[str, Any]:
    f = body.resource_request
    if not f.role:
        raise _invalid("Please choose a role", "role")
    if f.start_date is None or f.end_date is None:
        raise _invalid("Please enter start and end dates", "start_date")
    if f.end_date < f.start_date:
        raise _invalid("end date must be on or after the start date", "end_date")
    with state.session() as s:
        ws = _workspace_open(s, f.workspace_id)
        row = PsaResourceRequest(
            workspace_id=ws.id,
            role=f.role,
            start_date=f.start_date,
            end_date=f.end_date,
            minutes=f.minutes or 0,
            status=f.status or "open",
            notes=f.notes or "",
        )
        crud.insert(s, row)
        return crud.reply(s, row, params)


def resource_request_update_rules(
    s: Session, row: PsaResourceRequest, changes: dict[str, Any]
) -> None:
    if "workspace_id" in changes:
        raise _invalid("a resource request cannot move to another project", "workspace_id")
    if row.status == "cancelled" and changes.get("status") != "open":
        raise _invalid(f"resource request {row.id} is cancelled", "status")
    start = changes.get("start_date", row.start_date)
    end = changes.get("end_date", row.end_date)
    if start is None or end is None or end < start:
        raise _invalid("end date must be on or after the start date", "end_date")


crud.add_update_route(
    router,
    "/resource_requests/{request_id}.json",
    PsaResourceRequest,
    "resource request",
    ResourceRequestBody,
    resource_request_update_rules,
)
