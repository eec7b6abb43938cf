"""Query: `GET /query?q=SELECT ...` and `GET /query/{locator}-{offset}` (the SOQL subset, paged)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sandbox.crm.bodies import _fail, _version_ok, render
from sandbox.crm.context import CrmTwin
from sandbox.crm.records import _next_id
from sandbox.crm.soql import _batch_size, _Cursor, _run_query, parse_soql


def register(router: APIRouter, twin: CrmTwin) -> None:
    """Add the query and query-more routes to `router`; cursors live on `twin`."""
    state = twin.state
    cursors = twin.cursors

    def page(version: str, locator: str, cursor: _Cursor, offset: int) -> dict[str, Any]:
        ids = cursor.ids[offset : offset + cursor.batch]
        sobj = cursor.soql.sobject
        with state.session() as session:
            records = []
            for rid in ids:
                row = session.get(sobj.table, rid)
                if row is not None:
                    records.append(render(sobj, row, cursor.soql.fields))
        end = offset + len(ids)
        done = end >= len(cursor.ids)
        body: dict[str, Any] = {"totalSize": len(cursor.ids), "done": done, "records": records}
        if not done:
            body["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}-{end}"
        else:
            cursors.pop(locator, None)
        return body

    @router.get("/query", summary="SOQL query (a small subset)")
    async def query(version: str, request: Request, q: str | None = None) -> dict[str, Any]:
        _version_ok(version)
        if not q:
            raise _fail("MALFORMED_QUERY", "query parameter q is required", "q")
        soql = parse_soql(q)
        with state.session() as session:
            ids = _run_query(session, soql)
            locator = _next_id(session, "01g")
            session.commit()
        cursor = _Cursor(soql, ids, _batch_size(request))
        cursors[locator] = cursor
        return page(version, locator, cursor, 0)

    @router.get("/query/{locator_offset}", summary="Next page of a query")
    async def query_more(version: str, locator_offset: str) -> dict[str, Any]:
        _version_ok(version)
        locator, _, offset = locator_offset.rpartition("-")
        cursor = cursors.get(locator)
        if cursor is None or not offset.isdigit():
            raise _fail("INVALID_QUERY_LOCATOR", "invalid query locator")
        return page(version, locator, cursor, int(offset))
