"""sObject Rows: `GET` and `PATCH /sobjects/{Object}/{Id}` (one record by its 15/18-char ID)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from sandbox.crm.bodies import _check_fields, _fail, _json_object, _sobject_at, render
from sandbox.crm.context import CrmTwin
from sandbox.crm.records import _get, update_row


def register(router: APIRouter, twin: CrmTwin) -> None:
    """Add the get and update routes to `router`."""

    @router.get("/sobjects/{sobject}/{record_id}", summary="Get a record")
    async def get_record(
        version: str, sobject: str, record_id: str, fields: str | None = None
    ) -> dict[str, Any]:
        sobj = _sobject_at(version, sobject)
        wanted = None
        if fields:
            wanted = []
            for raw in fields.split(","):
                name = sobj.lookup.get(raw.strip().lower())
                if name is None:
                    raise _fail(
                        "INVALID_FIELD",
                        f"No such column '{raw.strip()}' on entity '{sobj.name}'.",
                        raw.strip(),
                    )
                wanted.append(name)
        with twin.state.session() as session:
            return render(sobj, _get(session, sobj, record_id), wanted)

    @router.patch("/sobjects/{sobject}/{record_id}", status_code=204, summary="Update a record")
    async def patch_record(
        version: str, sobject: str, record_id: str, request: Request
    ) -> Response:
        sobj = _sobject_at(version, sobject)
        body = await _json_object(request)
        values = _check_fields(sobj, body, creating=False)
        with twin.state.session() as session:
            row = _get(session, sobj, record_id)
            became_won = update_row(session, sobj, row, values)
            rid = row.Id
        if became_won:
            twin.won(rid)
        return Response(status_code=204)
