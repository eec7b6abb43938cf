"""sObject Basic Information: `POST /sobjects/{Object}` (create a record)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sandbox.crm.bodies import _check_fields, _fail, _json_object, _sobject_at
from sandbox.crm.context import CrmTwin
from sandbox.crm.records import _with_value, insert_row


def register(router: APIRouter, twin: CrmTwin) -> None:
    """Add the create route to `router`."""

    @router.post("/sobjects/{sobject}", status_code=201, summary="Create a record")
    async def create_record(version: str, sobject: str, request: Request) -> JSONResponse:
        sobj = _sobject_at(version, sobject)
        body = await _json_object(request)
        values = _check_fields(sobj, body, creating=True)
        with twin.state.session() as session:
            for spec in sobj.fields.values():
                key = values.get(spec.name)
                if spec.external_id and key is not None:
                    clash = _with_value(session, sobj, spec.name, key)
                    if clash:
                        raise _fail(
                            "DUPLICATE_VALUE",
                            f"duplicate value found: {spec.name} duplicates value on record "
                            f"with id: {clash[0].Id}",
                            spec.name,
                        )
            rid, became_won = insert_row(session, sobj, values)
        if became_won:
            twin.won(rid)
        return JSONResponse({"id": rid, "success": True, "errors": []}, status_code=201)
