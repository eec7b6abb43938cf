"""The CRM twin's bodies: Salesforce error shape, record rendering and request body checks."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from fastapi import Request
from sqlmodel import SQLModel

from sandbox._ids import is_salesforce_id, salesforce_id_18
from sandbox._twin import TwinError
from sandbox.crm.describe import MAX_API_VERSION, MIN_API_VERSION, SOBJECTS, FieldSpec, SObject

_CENT = Decimal("0.01")


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def sf_datetime(value: datetime) -> str:
    """Salesforce's datetime format: `2025-01-15T10:22:31.000+0000`."""
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


# --------------------------------------------------------------------------- errors


def error_body(status: int, code: str, message: str, field: str | None = None) -> Any:
    """Salesforce's error shape: a list of `{message, errorCode, fields}`."""
    if status == 401:
        code, message = "INVALID_SESSION_ID", "Session expired or invalid"
    elif code == "HTTP_ERROR":
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(status, "UNKNOWN_EXCEPTION")
        if status == 404:
            message = "The requested resource does not exist"
    return [{"message": message, "errorCode": code, "fields": [field] if field else []}]


def _fail(code: str, message: str, field: str | None = None, status: int = 400) -> TwinError:
    return TwinError(status, code, message, field)


def _not_found() -> TwinError:
    return _fail("NOT_FOUND", "The requested resource does not exist", status=404)


# --------------------------------------------------------------------------- values


def _money(value: Decimal) -> str:
    return str(value.quantize(_CENT, rounding=ROUND_HALF_UP))


def _render(spec: FieldSpec, value: Any) -> Any:
    if value is None:
        return None
    if spec.kind in ("currency", "double", "percent"):
        # Salesforce sends numbers; the decimal string keeps the twin's own arithmetic exact.
        return float(Decimal(value))
    if spec.kind == "date":
        return value.isoformat()
    if spec.kind == "datetime":
        return sf_datetime(value)
    return value


def render(sobject: SObject, row: SQLModel, fields: list[str] | None = None) -> dict[str, Any]:
    """A record as Salesforce sends it: `attributes` first, then the fields."""
    rid = getattr(row, "Id")  # noqa: B009
    out: dict[str, Any] = {
        "attributes": {
            "type": sobject.name,
            "url": f"/services/data/v61.0/sobjects/{sobject.name}/{rid}",
        }
    }
    for name in fields or list(sobject.fields):
        out[name] = _render(sobject.fields[name], getattr(row, name))
    return out


def _parse_value(spec: FieldSpec, value: Any) -> Any:
    """A JSON value for `spec`, converted for storage; raises the vendor's error."""
    name = spec.name

    def parser_error(kind: str) -> TwinError:
        return _fail(
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {kind} from {type(value).__name__} value "
            f"{value!r} or request may be missing a required field",
            name,
        )

    if value is None:
        if spec.required:
            raise _fail("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", name)
        return None
    if spec.kind in ("string", "textarea", "reference"):
        if not isinstance(value, str):
            raise parser_error("string")
        if spec.length is not None and len(value) > spec.length:
            raise _fail(
                "STRING_TOO_LONG",
                f"{name}: data value too large: {value[:40]} (max length={spec.length})",
                name,
            )
        if spec.kind == "reference":
            if not is_salesforce_id(value):
                raise _fail("MALFORMED_ID", f"{name}: id value of incorrect type: {value}", name)
            return salesforce_id_18(value)
        return value
    if spec.kind == "picklist":
        if not isinstance(value, str):
            raise parser_error("string")
        if value not in spec.values:
            raise _fail(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{name}: bad value for restricted picklist field: {value}",
                name,
            )
        return value
    if spec.kind in ("currency", "double", "percent", "int"):
        if isinstance(value, bool) or not isinstance(value, int | Decimal | float | str):
            raise parser_error("double")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise parser_error("double") from None
        if not number.is_finite():
            raise parser_error("double")
        if spec.kind == "int":
            if number != number.to_integral_value():
                raise parser_error("int")
            return int(number)
        if spec.kind == "percent" and not 0 <= number <= 100:
            raise _fail("NUMBER_OUTSIDE_VALID_RANGE", f"{name}: value outside of valid range", name)
        if spec.kind == "currency":
            return _money(number)
        return str(number)
    if spec.kind == "date":
        if not isinstance(value, str):
            raise parser_error("date")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise parser_error("date") from None
    if spec.kind == "boolean":
        if not isinstance(value, bool):
            raise parser_error("boolean")
        return value
    raise parser_error(spec.kind)  # pragma: no cover


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"null", parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        raise _fail("JSON_PARSER_ERROR", "Unexpected character in request body") from None
    if not isinstance(body, dict):
        raise _fail("JSON_PARSER_ERROR", "Cannot deserialize request body: expected an object")
    return body


def _check_fields(sobject: SObject, body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Refuse unknown and read-only fields; return {API name: stored value}."""
    values: dict[str, Any] = {}
    for key, value in body.items():
        if key == "attributes":
            continue
        name = sobject.lookup.get(key.lower())
        if name is None:
            raise _fail(
                "INVALID_FIELD", f"No such column '{key}' on sobject of type {sobject.name}", key
            )
        spec = sobject.fields[name]
        if not (spec.create if creating else spec.update):
            raise _fail(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {name}. Please check the security settings "
                "of this field and verify that it is read/write for your profile or "
                "permission set.",
                name,
            )
        values[name] = _parse_value(spec, value)
    if creating:
        missing = [n for n, s in sobject.fields.items() if s.required and values.get(n) is None]
        if missing:
            raise _fail(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing[0],
            )
    return values


def _version_ok(version: str) -> None:
    match = re.fullmatch(r"v(\d{2}\.\d)", version)
    if not match or not MIN_API_VERSION <= float(match.group(1)) <= MAX_API_VERSION:
        raise _not_found()


def _sobject_or_404(name: str) -> SObject:
    for key, sobject in SOBJECTS.items():
        if key.lower() == name.lower():
            return sobject
    raise _not_found()


def _sobject_at(version: str, name: str) -> SObject:
    """The sObject a `/services/data/{version}/sobjects/{name}` path names (404 otherwise)."""
    _version_ok(version)
    return _sobject_or_404(name)
