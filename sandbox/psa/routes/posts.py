"""Kantata posts, the workspace's activity feed: list, create."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.psa.bodies import PostBody
from sandbox.psa.responses import ids_in
from sandbox.psa.routes import _crud as crud
from sandbox.psa.routes._shared import Include, State
from sandbox.psa.rules import _invalid
from sandbox.psa.tables import PsaPost, PsaUser, PsaWorkspace

router = APIRouter()


def post_filters(workspace_id: str | None = None) -> list[Any]:
    return ids_in(PsaPost.workspace_id, workspace_id, "workspace_id")


crud.add_list_route(router, "/posts.json", PsaPost, post_filters)


@router.post("/posts.json", tags=["posts"])
async def create_post(body: PostBody, params: Include, state: State) -> dict[str, Any]:
    f = body.post
    if not (f.message or "").strip():
        raise _invalid("Please enter a message", "message")
    with state.session() as s:
        if f.workspace_id is None:
            raise _invalid("Please choose a project", "workspace_id")
        if s.get(PsaWorkspace, f.workspace_id) is None:
            raise _invalid(f"project {f.workspace_id} does not exist", "workspace_id")
        for user_id in f.recipient_ids:
            if s.get(PsaUser, user_id) is None:
                raise _invalid(f"user {user_id} does not exist", "recipient_ids")
        row = PsaPost(
            workspace_id=f.workspace_id,
            message=f.message or "",
            recipient_ids=list(dict.fromkeys(f.recipient_ids)),
            recipient_roles=list(dict.fromkeys(f.recipient_roles)),
        )
        crud.insert(s, row)
        return crud.reply(s, row, params)
