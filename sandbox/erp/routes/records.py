"""`GET|POST /services/rest/record/v1/{type}` and `GET|PATCH|PUT .../{type}/{id}`: list,
create, read, update and upsert (sync or `Prefer: respond-async`) of every record type."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel import select

from sandbox._twin import TwinError
from sandbox.erp.async_jobs import _record_task, _run_batch
from sandbox.erp.common import MAX_BATCH, RECORD
from sandbox.erp.context import ErpContext
from sandbox.erp.query import _q_conditions
from sandbox.erp.records import _find, _record_type
from sandbox.erp.web import _Ids, _json_body, _paged, _paging, _wants_async, created
from sandbox.erp.write import write_record


def register(router: APIRouter, ctx: ErpContext) -> None:
    """The generic record routes (after the job and invoice sub-resources they overlap)."""

    @router.get(f"{RECORD}/{{record_type}}", summary="List records (limit, offset, q)")
    async def list_records(
        record_type: str,
        request: Request,
        limit: int | None = None,
        offset: int | None = None,
        q: str | None = None,
    ) -> JSONResponse:
        kind = _record_type(record_type)
        limit, offset = _paging(limit, offset)
        url = _Ids(request)
        with ctx.state.session() as s:
            stmt = select(kind.table.id)
            for condition in _q_conditions(kind, q) if q else []:
                stmt = stmt.where(condition)
            ids = list(s.exec(stmt.order_by(kind.table.id)).all())
        page = ids[offset : offset + limit]
        items = [
            {"links": [{"rel": "self", "href": url(f"{RECORD}/{kind.name}/{i}")}], "id": str(i)}
            for i in page
        ]
        return JSONResponse(_paged(request, items, len(ids), limit, offset))

    @router.post(
        f"{RECORD}/{{record_type}}",
        summary="Create a record (204 + Location); async batch upsert with {'items': [...]}",
    )
    async def create_record(record_type: str, request: Request) -> Response:
        kind = _record_type(record_type)
        raw = await _json_body(request)
        batch = isinstance(raw, dict) and set(raw) == {"items"} and isinstance(raw["items"], list)
        with ctx.state.session() as s:
            if _wants_async(request):
                url = _Ids(request)
                if batch:
                    items = raw["items"]
                    if len(items) > MAX_BATCH:
                        raise TwinError(
                            400,
                            "INVALID_CONTENT",
                            f"A batch holds at most {MAX_BATCH} records, got {len(items)}.",
                            "items",
                        )

                    def run_batch() -> list[dict[str, Any]]:
                        return _run_batch(s, kind, items, url)

                    return ctx.submit_async(request, s, run_batch)
                return ctx.submit_async(
                    request,
                    s,
                    lambda: [_record_task(s, kind, url, lambda: write_record(s, kind, raw))],
                )
            if batch:
                raise TwinError(
                    400, "INVALID_CONTENT", "A batch needs Prefer: respond-async.", "items"
                )
            row, _ = write_record(s, kind, raw)
            s.commit()
            return created(request, kind, row)

    @router.get(f"{RECORD}/{{record_type}}/{{ident}}", summary="Get a record (id or eid:VALUE)")
    async def get_record(
        record_type: str, ident: str, request: Request, expandSubResources: bool = False
    ) -> JSONResponse:
        kind = _record_type(record_type)
        with ctx.state.session() as s:
            row = _find(s, kind, ident)
            return JSONResponse(kind.render(s, row, _Ids(request), expand=expandSubResources))

    @router.get(
        f"{RECORD}/{{record_type}}/{{ident}}/{{sublist}}",
        summary="Get a record's sublist, expanded (e.g. invoice/{id}/item)",
    )
    async def get_sublist(
        record_type: str, ident: str, sublist: str, request: Request
    ) -> JSONResponse:
        kind = _record_type(record_type)
        with ctx.state.session() as s:
            row = _find(s, kind, ident)
            body = kind.sublist(s, row, _Ids(request), sublist)
        if body is None:
            raise TwinError(
                404, "INVALID_SUBRESOURCE", f"{kind.name} has no sublist {sublist!r}.", "sublist"
            )
        return JSONResponse(body)

    @router.patch(f"{RECORD}/{{record_type}}/{{ident}}", summary="Update a record")
    async def patch_record(record_type: str, ident: str, request: Request) -> Response:
        kind = _record_type(record_type)
        raw = await _json_body(request)
        with ctx.state.session() as s:
            row = _find(s, kind, ident)
            row, _ = write_record(s, kind, raw, row=row)
            s.commit()
            return created(request, kind, row)

    @router.put(
        f"{RECORD}/{{record_type}}/{{ident}}",
        summary="Upsert by external ID (PUT .../eid:VALUE)",
    )
    async def put_record(record_type: str, ident: str, request: Request) -> Response:
        kind = _record_type(record_type)
        if not ident.startswith("eid:") or len(ident) <= 4:
            raise TwinError(
                400, "INVALID_REQUEST", "PUT (upsert) needs an external ID: .../eid:VALUE", "id"
            )
        raw = await _json_body(request)
        with ctx.state.session() as s:
            if _wants_async(request):
                url = _Ids(request)

                def run() -> tuple[Any, bool]:
                    return write_record(s, kind, raw, external_id=ident[4:], upsert=True)

                return ctx.submit_async(request, s, lambda: [_record_task(s, kind, url, run)])
            row, _ = write_record(s, kind, raw, external_id=ident[4:], upsert=True)
            s.commit()
            return created(request, kind, row)
