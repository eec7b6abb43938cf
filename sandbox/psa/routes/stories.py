"""Kantata stories (tasks of a workspace): list, read, create."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.psa.bodies import StoryBody
from sandbox.psa.responses import ids_in
from sandbox.psa.routes import _crud as crud
from sandbox.psa.routes._shared import Include, State
from sandbox.psa.rules import _invalid, _workspace_open
from sandbox.psa.tables import PsaStory

router = APIRouter()


def story_filters(workspace_id: str | None = None, parent_id: int | None = None) -> list[Any]:
    clauses = ids_in(PsaStory.workspace_id, workspace_id, "workspace_id")
    if parent_id is not None:
        clauses.append(PsaStory.parent_id == parent_id)
    return clauses


crud.add_list_route(
    router, "/stories.json", PsaStory, story_filters, orderable=("id", "position", "updated_at")
)
crud.add_get_route(router, "/stories/{story_id}.json", PsaStory, "story")


@router.post("/stories.json", tags=["stories"])
async def create_story(body: StoryBody, params: Include, state: State) -> dict[str, Any]:
    f = body.story
    if not f.title or not f.title.strip():
        raise _invalid("Please give the task a title", "title")
    with state.session() as s:
        _workspace_open(s, f.workspace_id)
        root_id = None
        if f.parent_id is not None:
            parent = s.get(PsaStory, f.parent_id)
            if parent is None or parent.workspace_id != f.workspace_id:
                raise _invalid(
                    f"parent task {f.parent_id} is not in project {f.workspace_id}",
                    "parent_id",
                )
            root_id = parent.root_id or parent.id
        story = PsaStory(**f.model_dump(), root_id=root_id)
        crud.insert(s, story)
        return crud.reply(s, story, params)
