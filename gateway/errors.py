"""The gateway's typed error body and the handlers that put every failure into it.

    raise GatewayError(404, "exception_not_found", f"no exception item {item_id!r}")
    # -> 404 {"error": {"code": "exception_not_found", "message": "no exception item ..."}}

Every error the gateway answers has the shape ``{"error": {"code", "message", "field"?}}``:
bad input is a 4xx with a stable ``code`` (and the offending ``field`` when there is one), never
a 500. Must never: import workflows, activities or connectors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("pssync.gateway")

RETRY_AFTER_S = 5
"""What a 503 tells the caller to wait before trying again."""


class GatewayError(Exception):
    """An answer other than success, with the HTTP status and a stable machine-readable code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    @classmethod
    def unavailable(cls, code: str, message: str) -> GatewayError:
        """503 with Retry-After: a dependency is down, the same request will work later."""
        return cls(503, code, message, headers={"Retry-After": str(RETRY_AFTER_S)})


class RequestRefused(StarletteHTTPException):
    """A `GatewayError` raised from inside ASGI `receive` (`gateway.limits`: a body that grew
    past its limit, or nested too deep, while it streamed in).

    It is a Starlette `HTTPException` because FastAPI re-raises those from its body parsing
    (anything else there becomes a 400 "error parsing the body"); the handlers below answer it
    as the `GatewayError` it carries."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.status, detail=error.message, headers=error.headers or None)
        self.error = error


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def error_response(exc: GatewayError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.code, exc.message, exc.field), status_code=exc.status, headers=exc.headers
    )


def field_path(loc: Sequence[int | str], prefix: str | None = None) -> str | None:
    """A pydantic error location as a dotted field path (``data.id``); None for the root."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    if prefix:
        parts.insert(0, prefix)
    return ".".join(parts) or None


def validation_error(
    errors: Sequence[Mapping[str, Any]],
    *,
    code: str = "invalid_request",
    prefix: str | None = None,
    status: int = 422,
) -> GatewayError:
    """The first of pydantic's errors as a GatewayError naming its field."""
    if not errors:
        return GatewayError(status, code, "invalid request")
    first = errors[0]
    field = field_path(first.get("loc", ()), prefix)
    message = str(first.get("msg", "invalid value"))
    if field:
        message = f"{field}: {message}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return GatewayError(status, code, message, field=field)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in the gateway's shape (also FastAPI's own 404/405/422)."""

    async def on_gateway_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, GatewayError)
        return error_response(exc)

    async def on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(validation_error(list(exc.errors())))

    async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc, RequestRefused):
            return error_response(exc.error)
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in the gateway", exc_info=exc)
        return JSONResponse(
            error_body("internal_error", "internal error; see the gateway's log"),
            status_code=500,
        )

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
