"""The User custom fields every twin account has for pssync's resource facts (location,
practice, manager, FTE, first bookable day, leave calendar: Kantata has no user field for
them), created as an account administrator sets them up, and the one the twin mirrors into a
user column: `Available From` is the user's `start_date` (no time before it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from fastapi import FastAPI
from sqlmodel import Session, select

from sandbox._twin import TwinState
from sandbox.psa.tables import PsaCustomField, PsaCustomFieldSet, PsaUser

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
    state = app_or_state if isinstance(app_or_state, TwinState) else app_or_state.state.twin
    with state.session() as s:
        field_set = s.exec(
            select(PsaCustomFieldSet).where(
                PsaCustomFieldSet.subject_type == "User",
                PsaCustomFieldSet.name == USER_FIELD_SET,
            )
        ).first()
        if field_set is None:
            field_set = PsaCustomFieldSet(name=USER_FIELD_SET, subject_type="User")
            s.add(field_set)
            s.flush()
        assert field_set.id is not None
        ids: dict[str, int] = {}
        for name in names:
            field = s.exec(
                select(PsaCustomField).where(
                    PsaCustomField.custom_field_set_id == field_set.id, PsaCustomField.name == name
                )
            ).first()
            if field is None:
                field = PsaCustomField(custom_field_set_id=field_set.id, name=name)
                s.add(field)
                s.flush()
            assert field.id is not None
            ids[name] = field.id
        s.commit()
        return ids


def mirror_user_value(session: Session, user_id: int, field_name: str, value: str) -> None:
    """`Available From` sets the user's first day for time entries (empty: no limit)."""
    if field_name != AVAILABLE_FROM:
        return
    user = session.get(PsaUser, user_id)
    if user is None:
        return
    user.start_date = date.fromisoformat(value) if value else None
    session.add(user)
