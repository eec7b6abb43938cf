"""The User custom fields every twin account has for pssync's resource facts (location,
practice, manager, FTE, first bookable day, leave calendar: Kantata has no user field for
them), created as an account administrator sets them up, and the one the twin mirrors into a
user column: `Available From` is the user's `start_date` (no time before it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from fastapi import FastAPI
from sqlmodel import Session

from sandbox._twin import TwinState
from sandbox.psa.load import ensure_custom_fields
from sandbox.psa.tables import PsaUser

USER_FIELD_SET = "Resource Details"
USER_CUSTOM_FIELD_NAMES = (
    "Location",
    "Practice",
    "Manager",
    "FTE",
    "Available From",
    "Leave Calendar",
)
AVAILABLE_FROM = "Available From"


def add_user_custom_fields(
    app_or_state: FastAPI | TwinState, names: Sequence[str] = USER_CUSTOM_FIELD_NAMES
) -> dict[str, int]:
    """The account's User custom fields `names` (text fields of the User set
    `USER_FIELD_SET`), created where missing; their ids by name. Idempotent."""
    return ensure_custom_fields(app_or_state, "User", USER_FIELD_SET, names)


def mirror_user_value(session: Session, user_id: int, field_name: str, value: str) -> None:
    """`Available From` sets the user's first day for time entries (empty: no limit)."""
    if field_name != AVAILABLE_FROM:
        return
    user = session.get(PsaUser, user_id)
    if user is None:
        return
    user.start_date = date.fromisoformat(value) if value else None
    session.add(user)
