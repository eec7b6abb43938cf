"""HTTP helpers the routes share: paging, JSON bodies, the Prefer and idempotency headers,
absolute URLs and the 204 + Location answers."""

from __future__ import annotations

import json
import uuid
from typing import Any, TypeVar

from fastapi import Request, Response
from pydantic import BaseModel

from sandbox._twin import TwinError
from sandbox.erp.bodies import _validate
from sandbox.erp.common import IDEMPOTENCY_HEADER, MAX_LIMIT, RECORD
from sandbox.erp.records import RecordType


def _paged(
    request: Request, items: list[Any], total: int, limit: int, offset: int
) -> dict[str, Any]:
    def link(rel: str, at: int) -> dict[str, str]:
        return {"rel": rel, "href": str(request.url.include_query_params(offset=at, limit=limit))}

    last = max(0, ((total - 1) // limit) * limit) if total else 0
    links = [link("first", 0)]
    if offset > 0:
        links.append(link("prev", max(0, offset - limit)))
    has_more = offset + len(items) < total
    if has_more:
        links.append(link("next", offset + limit))
    links += [link("last", last), {"rel": "self", "href": str(request.url)}]
    return {
        "links": links,
        "count": len(items),
        "hasMore": has_more,
        "items": items,
        "offset": offset,
        "totalResults": total,
    }


def _paging(limit: int | None, offset: int | None) -> tuple[int, int]:
    limit = MAX_LIMIT if limit is None else limit
    offset = 0 if offset is None else offset
    if not 1 <= limit <= MAX_LIMIT:
        raise TwinError(400, "INVALID_PARAMETER", f"limit must be 1..{MAX_LIMIT}", "limit")
    if offset < 0:
        raise TwinError(400, "INVALID_PARAMETER", "offset must not be negative", "offset")
    return limit, offset


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise TwinError(400, "INVALID_CONTENT", "The request body is empty.")
    try:
        return json.loads(raw)
    except ValueError:
        raise TwinError(400, "INVALID_CONTENT", "The request body is not valid JSON.") from None


_M = TypeVar("_M", bound=BaseModel)


async def _read_body(request: Request, model: type[_M]) -> _M:
    """The request's JSON body validated as `model` (vendor-shaped 400s otherwise)."""
    return _validate(model, await _json_body(request))


def _wants_async(request: Request) -> bool:
    prefer = request.headers.get("prefer", "")
    return "respond-async" in [p.strip().lower() for p in prefer.split(",")]


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    try:
        return str(uuid.UUID(key.strip()))
    except ValueError:
        raise TwinError(
            400,
            "INVALID_HEADER",
            f"{IDEMPOTENCY_HEADER} must be a UUID, got {key!r}.",
            IDEMPOTENCY_HEADER,
        ) from None


class _Ids:
    """Absolute URLs from the request's base (which includes any mount prefix)."""

    def __init__(self, request: Request) -> None:
        # root_path carries any mount prefix (`/erp` in the sandbox); base_url may not.
        url = request.url
        self.base = f"{url.scheme}://{url.netloc}{request.scope.get('root_path', '')}"

    def __call__(self, path: str) -> str:
        return f"{self.base}{path}"


def located(request: Request, path: str, headers: dict[str, str] | None = None) -> Response:
    """204 No Content with the absolute `Location` of `path` (after any other `headers`)."""
    return Response(status_code=204, headers={**(headers or {}), "Location": _Ids(request)(path)})


def created(request: Request, kind: RecordType, row: Any) -> Response:
    """204 with the `Location` of the record written."""
    return located(request, f"{RECORD}/{kind.name}/{row.id}")
