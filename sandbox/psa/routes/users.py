"""Kantata users: list (by e-mail, active), read, update (deactivate, close to time)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import func

from sandbox.psa.bodies import UserBody
from sandbox.psa.routes import _crud as crud
from sandbox.psa.routes._shared import Include, State
from sandbox.psa.rules import _get
from sandbox.psa.tables import PsaUser

router = APIRouter()


def user_filters(by_email_address: str | None = None, active: bool | None = None) -> list[Any]:
    clauses: list[Any] = []
    if by_email_address:
        clauses.append(func.lower(PsaUser.email_address) == by_email_address.lower())
    if active is not None:
        clauses.append(PsaUser.active == active)
    return clauses


crud.add_list_route(router, "/users.json", PsaUser, user_filters)
crud.add_get_route(router, "/users/{user_id}.json", PsaUser, "user")


@router.put("/users/{user_id}.json", tags=["users"])
async def update_user(
    user_id: int, body: UserBody, params: Include, state: State
) -> dict[str, Any]:
    changes = body.user.model_dump(exclude_unset=True)
    with state.session() as s:
        user = _get(s, PsaUser, user_id, "user")
        if changes:
            crud.save(s, user, changes)
        return crud.reply(s, user, params)
