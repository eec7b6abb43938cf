"""Kantata users: list (by e-mail, active), read (with `include=custom_field_values`), update
(deactivate, close to time, role), and joining the account by invitation
(`POST /account_invitations`: Kantata "Adds a user to your account"; the twin's user exists at
once, and an e-mail already in the account is refused, as a second invitation would be)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func
from sqlmodel import select

from sandbox.psa.bodies import UserBody
from sandbox.psa.routes import _crud as crud
from sandbox.psa.routes._shared import Include, State
from sandbox.psa.rules import _get, _invalid
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


class AccountInvitationFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_name: str
    email_address: str


class AccountInvitationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_invitation: AccountInvitationFields


@router.post("/account_invitations.json", tags=["users"])
@router.post("/account_invitations", include_in_schema=False)
async def create_account_invitation(body: AccountInvitationBody, state: State) -> dict[str, Any]:
    invited = body.account_invitation
    with state.session() as s:
        taken = s.exec(
            select(PsaUser).where(
                func.lower(PsaUser.email_address) == invited.email_address.lower()
            )
        ).first()
        if taken is not None:
            raise _invalid(
                f"{invited.email_address} is already a member of this account", "email_address"
            )
        user = PsaUser(full_name=invited.full_name, email_address=invited.email_address)
        crud.insert(s, user)
        ident = str(user.id)
        return {
            "count": 1,
            "results": [{"key": "account_invitations", "id": ident}],
            "account_invitations": {
                ident: {
                    "id": ident,
                    "full_name": user.full_name,
                    "email_address": user.email_address,
                    "user_id": ident,
                }
            },
        }
