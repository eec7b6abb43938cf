"""Kantata custom fields and their values: list the account's custom fields, create (or
override) custom field values.

`POST /custom_field_values` takes one value (`{"custom_field_value": {...}}`) or up to 100
(`{"custom_field_values": [...]}`), each `{subject_type, subject_id, custom_field_id, value}`.
A value replaces the subject's earlier value of the same field under a new id, as Kantata's
create does ("Creating a new Custom Field Value"). All or none: a value naming an unknown
custom field or subject, a subject of another type than the field's set, or a value the
field's type does not take is a 422 `validation` error and nothing is written. A workspace's
values of the fields in `CUSTOM_FIELD_NAMES` are mirrored into its legacy columns.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import Session, col, select

from sandbox.psa.bodies import CustomFieldValueFields, CustomFieldValuesBody
from sandbox.psa.published import CUSTOM_FIELD_NAMES
from sandbox.psa.resource_fields import mirror_user_value
from sandbox.psa.responses import envelope
from sandbox.psa.routes import _crud as crud
from sandbox.psa.routes._shared import Include, State
from sandbox.psa.rules import _invalid
from sandbox.psa.tables import (
    SUBJECT_TYPES,
    PsaCustomField,
    PsaCustomFieldSet,
    PsaCustomFieldValue,
    PsaWorkspace,
)

router = APIRouter()

MAX_VALUES_PER_REQUEST = 100
"""Kantata's bulk create or update takes up to 100 objects."""
_COLUMNS = {name: column for column, name in CUSTOM_FIELD_NAMES.items()}


crud.add_list_route(router, "/custom_fields.json", PsaCustomField)


def _checked(session: Session, n: int, f: CustomFieldValueFields) -> PsaCustomField:
    """The custom field value `f` (the `n`th of the body) writes, refused with Kantata's
    validation error when its field, subject or value is not one the account has."""
    where = f"custom_field_values[{n}]"
    field = session.get(PsaCustomField, f.custom_field_id)
    if field is None:
        raise _invalid(
            f"{where}: custom field {f.custom_field_id} does not exist", "custom_field_id"
        )
    field_set = session.get(PsaCustomFieldSet, field.custom_field_set_id)
    if field_set is None or field_set.subject_type != f.subject_type:
        raise _invalid(
            f"{where}: custom field {field.name!r} is not a {f.subject_type} field",
            "subject_type",
        )
    model = SUBJECT_TYPES.get(f.subject_type)
    if model is None or session.get(model, f.subject_id) is None:
        raise _invalid(f"{where}: {f.subject_type} {f.subject_id} does not exist", "subject_id")
    if field.value_type == "string" and not isinstance(f.value, str):
        raise _invalid(f"{where}: {field.name!r} takes a string value", "value")
    return field


def _write(session: Session, f: CustomFieldValueFields, field: PsaCustomField) -> Any:
    """Replace the subject's value of `field` with `f`'s (a new row, so a new id)."""
    earlier = session.exec(
        select(PsaCustomFieldValue).where(
            PsaCustomFieldValue.subject_type == f.subject_type,
            PsaCustomFieldValue.subject_id == f.subject_id,
            PsaCustomFieldValue.custom_field_id == field.id,
        )
    ).all()
    for row in earlier:
        session.delete(row)
    row = PsaCustomFieldValue(
        custom_field_id=f.custom_field_id,
        subject_type=f.subject_type,
        subject_id=f.subject_id,
        value=f.value,
    )
    session.add(row)
    column = _COLUMNS.get(field.name)
    if f.subject_type == "Workspace" and column is not None:
        workspace = session.get(PsaWorkspace, f.subject_id)
        setattr(workspace, column, f.value)
        session.add(workspace)
    if f.subject_type == "User":
        mirror_user_value(session, f.subject_id, field.name, f.value)
    return row


@router.post("/custom_field_values.json", tags=["custom_field_values"])
@router.post("/custom_field_values", include_in_schema=False)
async def create_custom_field_values(
    body: CustomFieldValuesBody, params: Include, state: State
) -> dict[str, Any]:
    given = body.given()
    if not given:
        raise _invalid("custom_field_values can't be blank", "custom_field_values")
    if len(given) > MAX_VALUES_PER_REQUEST:
        raise _invalid(
            f"at most {MAX_VALUES_PER_REQUEST} custom field values in one request",
            "custom_field_values",
        )
    with state.session() as s:
        fields = [_checked(s, n, f) for n, f in enumerate(given)]
        rows = [_write(s, f, field) for f, field in zip(given, fields, strict=True)]
        s.flush()
        ids = [row.id for row in rows]
        s.commit()
        # A value given twice in one body: the later one stands, as a later request's would.
        created = s.exec(
            select(PsaCustomFieldValue)
            .where(col(PsaCustomFieldValue.id).in_(ids))
            .order_by(col(PsaCustomFieldValue.id))
        ).all()
        return envelope(s, PsaCustomFieldValue, created, params=params)
