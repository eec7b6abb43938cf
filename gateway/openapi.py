"""An honest OpenAPI document: every answer a route can give, the error model, the bearer
scheme, the webhooks' signature headers, and path parameters as the gateway validates them.

`declare(app)` runs once in `create_app`, after the routers are included. Schemathesis checks
the document against the running gateway in the test suite (`tests/gateway/test_fuzz.py`).
Must never: import workflows, activities or connectors.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from contracts.ids import RECORD_ID_MAX_LENGTH


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable: `unauthorized`, `invalid_id`, ...")
    message: str = Field(description="For people; may change between versions.")
    field: str | None = Field(default=None, description="The offending field, when one is.")


class ErrorBody(BaseModel):
    """Every error the gateway answers."""

    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Malformed request: not JSON, nested too deep, or missing a signature header.",
    401: "No bearer token, or one that is invalid (unknown, expired, wrongly signed, wrong "
    "audience); for webhooks, a missing or bad signature.",
    403: "A valid token without the role this needs.",
    404: "Not found — also what a resource outside the caller's scopes answers.",
    409: "Conflict: already resolved, not running, or refused by the run's state.",
    413: "Body over the limit (refused while streaming).",
    414: "Path too long.",
    422: "Invalid input; `field` names it.",
    429: "Over the rate limit; wait `Retry-After` seconds.",
    502: "Temporal answered with an unexpected error.",
    503: "A dependency (store, Temporal, identity provider) is unavailable; retry after "
    "`Retry-After` seconds.",
    504: "The run did not finish handling the request in time; it may still apply it.",
}

_COMMON = {400, 413, 414, 422, 429, 503}
_AUTHENTICATED = {401, 403}
_PER_ROUTE: dict[tuple[str, str], set[int]] = {
    ("GET", "/api/exceptions/{item_id}"): {404},
    ("POST", "/api/exceptions/{item_id}/resolution"): {404, 409, 502, 504},
    ("POST", "/api/change-orders/{change_order_id}/decision"): {404, 409, 502, 504},
    ("POST", "/api/terminations/{worker_id}/{termination_date}/rescind"): {404, 409, 502, 504},
    ("POST", "/api/projects/{psa_project_id}/billing"): {404, 502},
    ("GET", "/api/projects/{psa_project_id}/time-to-invoice"): {404, 409, 502},
    ("GET", "/api/projects/{enterprise_id}"): {404},
    ("POST", "/api/reconciliations"): {502},
    ("GET", "/api/reconciliations/{run_id}"): {404},
    ("POST", "/webhooks/crm"): {401},
    ("POST", "/webhooks/psa"): {401},
}
_PUBLIC = {"/healthz", "/webhooks/crm", "/webhooks/psa"}

_RECORD_ID = {
    "type": "string",
    "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$",
    "minLength": 1,
    "maxLength": RECORD_ID_MAX_LENGTH,
}
_OPAQUE_ID = {
    "type": "string",
    "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$",  # no control characters
    "minLength": 1,
    "maxLength": 200,  # LimitSettings.max_path_param_chars' default
}
_PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "psa_project_id": _RECORD_ID,
    "change_order_id": _RECORD_ID,
    "worker_id": _RECORD_ID,
    "termination_date": {"type": "string", "format": "date"},
    "item_id": _OPAQUE_ID,
    "enterprise_id": _OPAQUE_ID,
    "run_id": _OPAQUE_ID,
}

_WEBHOOK_HEADERS = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "description": "Standard Webhooks message id (the dedupe key).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 256},
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "description": "Unix seconds; refused outside the tolerance.",
        "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "description": "`v1,<base64 HMAC-SHA256>` over `id.timestamp.body` (Standard Webhooks).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 4096},
    },
]
_WEBHOOK_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["type", "data"],
                "properties": {
                    "type": {"type": "string", "examples": ["opportunity.won"]},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "data": {"type": "object"},
                },
            }
        }
    },
}
_WEBHOOK_RESULT = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"type": "string"},
                    "workflow_id": {"type": "string"},
                    "run_id": {"type": "string"},
                },
            }
        }
    }
}


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": _DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def declare(app: FastAPI) -> None:
    """Make `app.openapi()` add every route's error answers, security and parameter schemas
    (done on the generated document: FastAPI includes routers lazily)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                _declare_operation(path, method.upper(), operation)
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(error_schema.pop("$defs", {}))
        schemas["ErrorBody"] = error_schema
        components.setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A JWT from the firm's OIDC provider (production), or a dev-profile "
            "static token. Roles and scopes: docs/security.md.",
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _declare_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses = set(_COMMON) | _PER_ROUTE.get((method, path), set())
    if path not in _PUBLIC:
        statuses |= _AUTHENTICATED
        operation["security"] = [{"bearer": []}]
    if path == "/healthz":
        statuses = {429}
        responses["503"] = {"description": "A check failed (per-check details)."}
    for status in sorted(statuses):
        # FastAPI's own 422 (HTTPValidationError) is not what the gateway answers: replace it
        if str(status) not in responses or status == 422:
            responses[str(status)] = _error_response(status)
    for parameter in operation.get("parameters", []):
        override = _PATH_PARAMETERS.get(parameter.get("name", ""))
        if parameter.get("in") == "path" and override:
            parameter["schema"] = {**override, "title": parameter["name"]}
    if path.startswith("/webhooks/"):
        responses["200"] = {"description": "A duplicate delivery.", **_WEBHOOK_RESULT}
        responses["202"] = {"description": "Accepted or queued.", **_WEBHOOK_RESULT}
        operation["parameters"] = _WEBHOOK_HEADERS
        operation["requestBody"] = _WEBHOOK_BODY
