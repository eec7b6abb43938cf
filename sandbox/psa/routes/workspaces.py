"""Kantata workspaces (projects): list, search, read, create, update (archive)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import func, or_
from sqlmodel import col

from sandbox.psa.bodies import WorkspaceBody
from sandbox.psa.responses import _parse_when
from sandbox.psa.routes import _crud as crud
from sandbox.psa.routes._shared import Include, State
from sandbox.psa.rules import _invalid
from sandbox.psa.tables import PsaRateCard, PsaWorkspace

router = APIRouter()


def workspace_filters(
    search: str | None = None, include_archived: bool = False, updated_after: str | None = None
) -> list[Any]:
    clauses: list[Any] = []
    if not include_archived:
        clauses.append(col(PsaWorkspace.archived).is_(False))
    if search:
        like = f"%{search.lower()}%"
        clauses.append(
            or_(
                func.lower(PsaWorkspace.title).like(like),
                func.lower(PsaWorkspace.description).like(like),
            )
        )
    since = _parse_when(updated_after, "updated_after")
    if since is not None:
        clauses.append(col(PsaWorkspace.updated_at) > since)
    return clauses


crud.add_list_route(router, "/workspaces.json", PsaWorkspace, workspace_filters)
crud.add_get_route(router, "/workspaces/{workspace_id}.json", PsaWorkspace, "workspace")


@router.post("/workspaces.json", status_code=200, tags=["workspaces"])
async def create_workspace(body: WorkspaceBody, params: Include, state: State) -> dict[str, Any]:
    f = body.workspace
    if not f.title or not f.title.strip():
        raise _invalid("Please give your project a title", "title")
    if f.start_date and f.due_date and f.due_date < f.start_date:
        raise _invalid("due date must be on or after the start date", "due_date")
    with state.session() as s:
        if f.rate_card_id is not None and s.get(PsaRateCard, f.rate_card_id) is None:
            raise _invalid(f"rate card {f.rate_card_id} does not exist", "rate_card_id")
        values = f.model_dump(exclude_none=True, exclude={"lock_version"})
        ws = PsaWorkspace(**values)
        crud.insert(s, ws)
        return crud.reply(s, ws, params)


@router.put("/workspaces/{workspace_id}.json", tags=["workspaces"])
async def update_workspace(
    workspace_id: int, body: WorkspaceBody, params: Include, state: State
) -> dict[str, Any]:
    with state.session() as s:
        ws, changes = crud.load_changes(s, PsaWorkspace, workspace_id, "workspace", body.workspace)
        if ws.archived and changes.get("archived") is not False:
            if set(changes) - {"archived", "status"}:
                raise _invalid(f"project {workspace_id} is archived", "archived")
        if "title" in changes and not (changes["title"] or "").strip():
            raise _invalid("Please give your project a title", "title")
        if changes.get("rate_card_id") is not None:
            if s.get(PsaRateCard, changes["rate_card_id"]) is None:
                raise _invalid(
                    f"rate card {changes['rate_card_id']} does not exist", "rate_card_id"
                )
        start = changes.get("start_date", ws.start_date)
        due = changes.get("due_date", ws.due_date)
        if start and due and due < start:
            raise _invalid("due date must be on or after the start date", "due_date")
        if changes.get("archived") is True and "status" not in changes:
            changes["status"] = "archived"
        if changes.get("archived") is False and ws.status == "archived":
            changes.setdefault("status", "active")
        if changes:
            crud.save(s, ws, changes)
        return crud.reply(s, ws, params)
