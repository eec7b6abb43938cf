"""`POST /services/rest/query/v1/suiteql`: the SuiteQL subset."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sandbox._twin import TwinError
from sandbox.erp.bodies import SuiteQLBody
from sandbox.erp.context import ErpContext
from sandbox.erp.query import suiteql
from sandbox.erp.web import _Ids, _paged, _paging, _read_body


def register(router: APIRouter, ctx: ErpContext) -> None:
    """The SuiteQL route."""

    @router.post(
        "/services/rest/query/v1/suiteql", summary="SuiteQL (a small SELECT subset, one JOIN)"
    )
    async def run_suiteql(
        request: Request, limit: int | None = None, offset: int | None = None
    ) -> JSONResponse:
        limit, offset = _paging(limit, offset)
        if offset % limit:
            # SuiteQL pages are whole pages: NetSuite refuses an offset between them.
            raise TwinError(
                400, "INVALID_PARAMETER", "offset must be a multiple of limit", "offset"
            )
        body = await _read_body(request, SuiteQLBody)
        with ctx.state.session() as s:
            rows = suiteql(s, body.q, _Ids(request), date_format=ctx.date_format)
        page = [{"links": []} | r for r in rows[offset : offset + limit]]
        return JSONResponse(_paged(request, page, len(rows), limit, offset))
