"""sObject Rows by External ID: `PATCH /sobjects/{Object}/{ExtIdField}/{value}` (upsert); a key
several records share answers `300` with the bare list of their URLs, as Salesforce does."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sandbox.crm.bodies import _check_fields, _fail, _json_object, _parse_value, _sobject_at
from sandbox.crm.context import CrmTwin
from sandbox.crm.records import _with_value, insert_row, update_row


def register(router: APIRouter, twin: CrmTwin) -> None:
    """Add the upsert-by-external-ID route to `router`."""

    @router.patch(
        "/sobjects/{sobject}/{id_field}/{external_id}",
        summary="Upsert a record by an external ID field",
    )
    async def upsert_record(
        version: str, sobject: str, id_field: str, external_id: str, request: Request
    ) -> JSONResponse:
        sobj = _sobject_at(version, sobject)
        name = sobj.lookup.get(id_field.lower())
        spec = sobj.fields.get(name or "")
        if spec is None or not spec.external_id:
            raise _fail(
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {id_field}",
                status=404,
            )
        body = await _json_object(request)
        given = next((v for k, v in body.items() if k.lower() == spec.name.lower()), None)
        if given is not None and given != external_id:
            raise _fail(
                "INVALID_FIELD",
                f"{spec.name}: the external ID in the body differs from the one in the URL",
                spec.name,
            )
        key = _parse_value(spec, external_id)
        with twin.state.session() as session:
            matches = _with_value(session, sobj, spec.name, key)
            if len(matches) > 1:  # pragma: no cover - the field is unique
                # Salesforce answers the bare list of the matching records' URLs.
                return JSONResponse(
                    [f"/services/data/{version}/sobjects/{sobj.name}/{m.Id}" for m in matches],
                    status_code=300,
                )
            if matches:
                row: Any = matches[0]
                values = _check_fields(sobj, body, creating=False)
                values.pop(spec.name, None)
                became_won = update_row(session, sobj, row, values)
                rid, created = str(row.Id), False
            else:
                values = _check_fields(sobj, {**body, spec.name: external_id}, creating=True)
                rid, became_won = insert_row(session, sobj, values)
                created = True
        if became_won:
            twin.won(rid)
        return JSONResponse(
            {"id": rid, "success": True, "errors": [], "created": created},
            status_code=201 if created else 200,
        )
