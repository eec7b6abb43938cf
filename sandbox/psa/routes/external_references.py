"""Kantata external references, the vendor's own ID map: list, create-or-update."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import select

from sandbox._twin import TwinError
from sandbox.psa.bodies import ExternalReferenceBody
from sandbox.psa.responses import ids_in
from sandbox.psa.routes import _crud as crud
from sandbox.psa.routes._shared import Include, State
from sandbox.psa.rules import _invalid
from sandbox.psa.tables import SUBJECT_TYPES, PsaExternalReference, _now

router = APIRouter()


def reference_filters(
    subject_type: str | None = None,
    subject_id: str | None = None,
    service_name: str | None = None,
    service_model: str | None = None,
    service_model_ref: str | None = None,
    status: str | None = None,
) -> list[Any]:
    if not subject_type:
        raise TwinError(400, "validation", "subject_type is required", "subject_type")
    ref = PsaExternalReference
    clauses = [ref.subject_type == subject_type, *ids_in(ref.subject_id, subject_id, "subject_id")]
    for column, value in (
        (ref.service_name, service_name),
        (ref.service_model, service_model),
        (ref.service_model_ref, service_model_ref),
        (ref.status, status),
    ):
        if value:
            clauses.append(column == value)
    return clauses


crud.add_list_route(router, "/external_references.json", PsaExternalReference, reference_filters)


@router.post("/external_references/create_or_update", tags=["external_references"])
@router.post("/external_references/create_or_update.json", include_in_schema=False)
async def create_or_update_external_reference(
    body: ExternalReferenceBody, params: Include, state: State
) -> dict[str, Any]:
    f = body.external_reference
    model = SUBJECT_TYPES.get(f.subject_type)
    if model is None:
        raise _invalid(f"unsupported subject_type {f.subject_type}", "subject_type")
    with state.session() as s:
        if s.get(model, f.subject_id) is None:
            raise _invalid(f"{f.subject_type} {f.subject_id} does not exist", "subject_id")
        # One reference per subject and external model: a repeat updates it in place.
        row = s.exec(
            select(PsaExternalReference).where(
                PsaExternalReference.subject_type == f.subject_type,
                PsaExternalReference.subject_id == f.subject_id,
                PsaExternalReference.service_name == f.service_name,
                PsaExternalReference.service_model == f.service_model,
            )
        ).first()
        values = f.model_dump(exclude_unset=True)
        if row is None:
            row = PsaExternalReference(**{"status": "pending", **values})
        else:
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at = _now()
        crud.insert(s, row)
        return crud.reply(s, row, params)
