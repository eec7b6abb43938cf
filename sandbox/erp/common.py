"""Constants, NetSuite's REST error shape and the value helpers every ERP twin module shares."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

SYSTEM = "erp"
RECORD = "/services/rest/record/v1"
ASYNC = "/services/rest/async/v1"
MAX_LIMIT = 1000
MAX_BATCH = 200
IDEMPOTENCY_HEADER = "X-NetSuite-Idempotency-Key"

# Invoice statuses (the twin's subset of NetSuite's).
INVOICE_OPEN = "Open"
INVOICE_PAID = "Paid In Full"
INVOICE_VOIDED = "Voided"

# NetSuite's default project (job) statuses: entityStatus internal id -> name.
JOB_STATUS_CLOSED = "1"
JOB_STATUS_IN_PROGRESS = "2"
JOB_STATUSES = {
    "1": "Closed",
    "2": "In Progress",
    "3": "Not Awarded",
    "4": "Pending",
    "5": "Awarded",
}

_RFC9110 = {
    400: "15.5.1",
    401: "15.5.2",
    403: "15.5.4",
    404: "15.5.5",
    405: "15.5.6",
    408: "15.5.9",
    409: "15.5.10",
    412: "15.5.13",
    415: "15.5.16",
    500: "15.6.1",
    502: "15.6.3",
    503: "15.6.4",
    504: "15.6.5",
}
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    412: "Precondition Failed",
    415: "Unsupported Media Type",
    428: "Precondition Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def error_body(status: int, code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """NetSuite's REST error shape (`o:errorDetails[]`; a concurrency limit also carries a
    top-level `o:errorCode`)."""
    if status in _RFC9110:
        kind = f"https://www.rfc-editor.org/rfc/rfc9110.html#section-{_RFC9110[status]}"
    else:
        kind = "https://www.rfc-editor.org/rfc/rfc6585.html"
    detail: dict[str, Any] = {"detail": message, "o:errorCode": code}
    if field:
        detail["o:errorPath"] = field
    body: dict[str, Any] = {"type": kind, "title": _TITLES.get(status, "Error"), "status": status}
    if code == "CONCURRENCY_LIMIT_EXCEEDED":
        # As NetSuite answers it: titled "Bad Request", a `USER_ERROR` around the detail.
        body |= {"title": _TITLES[400], "o:errorCode": "USER_ERROR"}
    return body | {"o:errorDetails": [detail]}


def _now() -> datetime:
    return datetime.now(UTC)


def _dec(value: Decimal | None) -> str | None:
    """Decimals are stored as normalised text: exact, and equal values compare equal."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _num(text: str | None) -> float | int | None:
    """A stored decimal as a JSON number (what NetSuite sends)."""
    if text is None:
        return None
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else float(value)


def _int_id(text: str) -> int | None:
    """An internal id, or None for anything that cannot be one (SQLite's ints are 64-bit)."""
    return int(text) if text.isdigit() and len(text) <= 18 else None


def _stamp(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


ISO_DATES = "YYYY-MM-DD"
"""The account date format the twin answers SuiteQL in unless told otherwise."""
_DATE_TOKENS = re.compile(r"YYYY|MONTH|MON|MM|M|DD|D|[^A-Z]+")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def account_date(day: date, date_format: str) -> str:
    """`day` as the account's date format preference writes it (`M/D/YYYY` -> `1/5/2024`,
    `DD.MM.YYYY` -> `05.01.2024`, `D-Mon-YYYY` -> `5-Jan-2024`); SuiteQL answers dates so."""
    spec = date_format.strip().upper()
    if spec in ("ISO", ISO_DATES):
        return day.isoformat()
    values = {
        "YYYY": f"{day.year:04d}",
        "MONTH": _MONTHS[day.month - 1],
        "MON": _MONTHS[day.month - 1][:3],
        "MM": f"{day.month:02d}",
        "M": str(day.month),
        "DD": f"{day.day:02d}",
        "D": str(day.day),
    }
    tokens = _DATE_TOKENS.findall(spec)
    if "".join(tokens) != spec:
        raise ValueError(f"unknown date format {date_format!r}")
    return "".join(values.get(token, token) for token in tokens)


# A function from a path to its absolute URL (see `web._Ids`).
Url = Callable[[str], str]
Row = Any
