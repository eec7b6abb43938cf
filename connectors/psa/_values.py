"""Reading Kantata's values: dates and times, money (`*_in_cents` or a formatted amount), ids
that come under more than one name, markers in free text, and the typed error for a field a
record lacks."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.psa._constants import SYSTEM
from contracts.errors import UnmappableRecord
from contracts.money import Money

_AMOUNT = re.compile(r"-?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?")
"""A formatted amount once the currency symbol is gone: `21,375`, `25.00`, `-1,200.5`."""


def _when(raw: str | None) -> datetime:
    if not raw:
        return datetime.now(UTC)
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _day(raw: str | None) -> date | None:
    """A date, from `2013-08-14` or from a date-time Kantata sends for a date field (the
    published schemas type stories' and workspaces' `start_date`/`due_date` as date-time);
    empty (`"effective_due_date": ""`) is no date."""
    if not raw:
        return None
    if len(raw) > 10 and raw[10] in "T ":
        raw = raw[:10]
    return date.fromisoformat(raw)


def _marker_code(text: str | None, marker: str) -> str | None:
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith(marker):
            return line[len(marker) :]
    return None


def _version(obj: Mapping[str, Any]) -> str:
    return str(obj.get("lock_version", ""))


def _record_id(obj: Mapping[str, Any]) -> str | None:
    found = obj.get("id")
    return None if found is None else str(found)


def missing(record: str, obj: Mapping[str, Any], field: str, detail: str = "") -> UnmappableRecord:
    """The error for a `record` that lacks `field` (or has it in a shape pssync cannot read)."""
    return UnmappableRecord(
        record,
        detail or f"field {field!r} is missing",
        record_id=_record_id(obj),
        field=field,
        system=SYSTEM,
    )


def ref(obj: Mapping[str, Any], *names: str) -> str | None:
    """The first of `names` the record carries, as a string (Kantata ids are numeric strings,
    some published as integers), or None."""
    for name in names:
        value = obj.get(name)
        if value is not None and value != "":
            return str(value)
    return None


def required_ref(obj: Mapping[str, Any], record: str, *names: str) -> str:
    """`ref`, or `UnmappableRecord` naming the first name when the record has none of them."""
    found = ref(obj, *names)
    if found is None:
        raise missing(record, obj, names[0])
    return found


def assignee_of(obj: Mapping[str, Any]) -> str | None:
    """The Kantata user an assignment is for: `assignee_id` (Kantata, with `include=assignee`)
    or `user_id` (the twin's own column)."""
    return ref(obj, "assignee_id", "user_id")


def _formatted_cents(obj: Mapping[str, Any], text: str) -> int | None:
    """Minor units of a formatted amount (`"$21,375"`, `"25.00"`), or None when the text is
    not one (`"TBD"`)."""
    symbol = str(obj.get("currency_symbol") or "")
    cleaned = text.strip()
    if symbol:
        cleaned = cleaned.replace(symbol, "", 1).strip()
    if not _AMOUNT.fullmatch(cleaned):
        return None
    base = int(obj.get("currency_base_unit") or 100)
    try:
        return int(Decimal(cleaned.replace(",", "")) * base)
    except InvalidOperation:
        return None


def cents(obj: Mapping[str, Any], field: str) -> int | None:
    """Minor units of the money field `field` (`price_in_cents`): the value when Kantata sends
    one, else the formatted twin (`price`: `"$20,000"`) when it reads as an amount; None when
    neither says (Kantata sends `"price_in_cents": null` beside `"price": "TBD"`)."""
    raw = obj.get(field)
    if raw is not None:
        return int(raw)
    text = obj.get(field.removesuffix("_in_cents"))
    return _formatted_cents(obj, text) if isinstance(text, str) else None


def _money(obj: Mapping[str, Any], cents_field: str) -> Money:
    """Money of a record's `cents_field` in its `currency` (USD when it names none); zero when
    the record states no amount."""
    return Money.from_minor(cents(obj, cents_field) or 0, str(obj.get("currency") or "USD"))


def _date_or_raise(obj: Mapping[str, Any], name: str, record: str = "PSA record") -> date:
    value = _day(obj.get(name))
    if value is None:
        raise missing(record, obj, name, f"{record} has no {name}")
    return value


_CLOSED_MESSAGES = {"completed", "complete", "cancelled", "canceled", "closed"}
_FINISHED_COLOR = "blue"
"""Kantata's project status colours: gray not started, light green close to starting, green in
progress, yellow pending action, red blocked or ended, blue finished (Kantata Knowledge Base,
"Project Status List"). The numeric `key` of each status is not published, so it is not read."""


def status_closed(ws: Mapping[str, Any]) -> bool:
    """Whether a workspace's status says the project is over: the twin's string (`closed`,
    `completed`) or Kantata's object `{"color", "key", "message"}` (a finished colour or a
    closing message)."""
    status = ws.get("status")
    if status is None:
        return False
    if isinstance(status, str):
        return status in ("closed", "completed")
    if isinstance(status, Mapping):
        message = str(status.get("message") or "").strip().lower()
        color = str(status.get("color") or "").strip().lower()
        return message in _CLOSED_MESSAGES or color == _FINISHED_COLOR
    raise missing(
        "workspace",
        ws,
        "status",
        f"status is a {type(status).__name__}, not a string or {{color, key, message}}",
    )
