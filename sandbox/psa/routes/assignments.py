"""Kantata assignments (staffing): list, read, create, update, delete; each change emits
`assignment.changed`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import Session

from sandbox._twin import TwinState
from sandbox.psa.bodies import AssignmentBody
from sandbox.psa.responses import ids_in
from sandbox.psa.routes import _crud as crud
from sandbox.psa.routes._shared import Include, State, emit_event
from sandbox.psa.rules import _get, _invalid, _workspace_open
from sandbox.psa.tables import PsaAssignment, PsaStory, PsaUser

router = APIRouter()


def assignment_filters(
    workspace_id: str | None = None, user_id: str | None = None, assignee_id: str | None = None
) -> list[Any]:
    """`assignee_id` is Kantata's filter; `user_id` the twin's own name for it."""
    return [
        *ids_in(PsaAssignment.workspace_id, workspace_id, "workspace_id"),
        *ids_in(PsaAssignment.user_id, user_id, "user_id"),
        *ids_in(PsaAssignment.user_id, assignee_id, "assignee_id"),
    ]


crud.add_list_route(router, "/assignments.json", PsaAssignment, assignment_filters)
crud.add_get_route(router, "/assignments/{assignment_id}.json", PsaAssignment, "assignment")


@router.post("/assignments.json", tags=["assignments"])
async def create_assignment(body: AssignmentBody, params: Include, state: State) -> dict[str, Any]:
    f = body.assignment
    if not f.role:
        raise _invalid("Please choose a role", "role")
    if f.start_date is None:
        raise _invalid("Please enter a start date", "start_date")
    if f.end_date is None:
        raise _invalid("Please enter an end date", "end_date")
    if f.end_date < f.start_date:
        raise _invalid("end date must be on or after the start date", "end_date")
    with state.session() as s:
        story = _story_of(s, f.story_id, f.workspace_id)
        ws = _workspace_open(s, f.workspace_id if story is None else story.workspace_id)
        if f.user_id is not None and s.get(PsaUser, f.user_id) is None:
            raise _invalid(f"user {f.user_id} does not exist", "user_id")
        row = PsaAssignment(
            workspace_id=ws.id,
            user_id=f.user_id,
            story_id=f.story_id,
            role=f.role,
            start_date=f.start_date,
            end_date=f.end_date,
            allocated_minutes=f.allocated_minutes or 0,
        )
        crud.insert(s, row)
        emit_event(state, "assignment.changed", row, action="created")
        return crud.reply(s, row, params)


def _story_of(s: Session, story_id: int | None, workspace_id: int | None) -> PsaStory | None:
    """The task an assignment is on (Kantata assigns people to tasks), in its workspace."""
    if story_id is None:
        return None
    story = s.get(PsaStory, story_id)
    if story is None or (workspace_id is not None and story.workspace_id != workspace_id):
        raise _invalid(f"task {story_id} is not in project {workspace_id}", "story_id")
    return story


def assignment_update_rules(s: Session, row: PsaAssignment, changes: dict[str, Any]) -> None:
    if "workspace_id" in changes:
        raise _invalid("an assignment cannot move to another project", "workspace_id")
    _workspace_open(s, row.workspace_id)
    if changes.get("story_id") is not None:
        _story_of(s, changes["story_id"], row.workspace_id)
    for name in ("role", "start_date", "end_date"):
        if name in changes and not changes[name]:
            raise _invalid(f"{name} cannot be blank", name)
    if changes.get("user_id") is not None and s.get(PsaUser, changes["user_id"]) is None:
        raise _invalid(f"user {changes['user_id']} does not exist", "user_id")
    start = changes.get("start_date", row.start_date)
    end = changes.get("end_date", row.end_date)
    if end < start:
        raise _invalid("end date must be on or after the start date", "end_date")


def assignment_saved(state: TwinState, row: PsaAssignment, changes: dict[str, Any]) -> None:
    emit_event(state, "assignment.changed", row, action="updated")


crud.add_update_route(
    router,
    "/assignments/{assignment_id}.json",
    PsaAssignment,
    "assignment",
    AssignmentBody,
    assignment_update_rules,
    on_saved=assignment_saved,
)


@router.delete("/assignments/{assignment_id}.json", status_code=204, tags=["assignments"])
async def delete_assignment(assignment_id: int, state: State) -> None:
    with state.session() as s:
        row = _get(s, PsaAssignment, assignment_id, "assignment")
        version = row.lock_version + 1
        s.delete(row)
        s.commit()
        emit_event(state, "assignment.changed", row, version=version, action="deleted")
