"""NetSuite's value shapes as pssync reads them: dates (ISO from the record service, the
account's date format from SuiteQL), references (`{"id", "refName", "links"}` or a bare
internal id), currencies (an ISO code, or an internal id known by its ISO code), flags and
invoice statuses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from contracts.v1.models import InvoiceStatus

ISO = "ISO"
"""`SystemSettings.date_format` for ISO 8601 dates (`YYYY-MM-DD`)."""

_ISO_DATE = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})(?:[T ].*)?\s*$")
_TOKENS = re.compile(r"YYYY|MONTH|MON|MM|M|DD|D|[^A-Z]+")
_TOKEN_PATTERNS = {
    "YYYY": r"(?P<year>\d{4})",
    "MONTH": r"(?P<month_name>[A-Za-z]+\.?)",
    "MON": r"(?P<month_name>[A-Za-z]+\.?)",
    "MM": r"(?P<month>\d{1,2})",
    "M": r"(?P<month>\d{1,2})",
    "DD": r"(?P<day>\d{1,2})",
    "D": r"(?P<day>\d{1,2})",
}
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}


class DateFormat:
    """A NetSuite account's date format preference (Set Preferences > Date Format), e.g.
    `M/D/YYYY`, `D/M/YYYY`, `DD.MM.YYYY`, `D-Mon-YYYY`, `YYYY-MM-DD`, or `ISO`.

    SuiteQL answers dates in this format (`"1/15/2024"`); the record service answers ISO
    (`"2024-01-15"`). `parse` reads both: an ISO date first, then the account's format (with
    or without leading zeros, a trailing time ignored). English month names only."""

    def __init__(self, spec: str = ISO) -> None:
        self.spec = spec
        upper = spec.strip().upper()
        self._pattern: re.Pattern[str] | None = None
        if upper in (ISO, "YYYY-MM-DD"):
            return
        tokens = _TOKENS.findall(upper)
        parts = [_TOKEN_PATTERNS.get(t) or r"\s*" + re.escape(t.strip()) + r"\s*" for t in tokens]
        fields = [t for t in tokens if t in _TOKEN_PATTERNS]
        kinds = sorted("M" if t.startswith("M") else t[0] for t in fields)
        if "".join(tokens) != upper or kinds != ["D", "M", "Y"]:
            raise ValueError(
                f"unknown date format {spec!r}: use ISO or a NetSuite date format such as "
                "M/D/YYYY, D/M/YYYY, DD.MM.YYYY, D-Mon-YYYY or YYYY/MM/DD"
            )
        self._pattern = re.compile(r"^\s*" + "".join(parts) + r"(?:[T ,].*)?\s*$")

    def __repr__(self) -> str:
        return f"DateFormat({self.spec!r})"

    def parse(self, value: Any) -> date:
        """The date `value` names; a ValueError if it is neither ISO nor the account's."""
        if isinstance(value, date):
            return value
        if not isinstance(value, str):
            raise TypeError(f"a date must be text, not {type(value).__name__}")
        iso = _ISO_DATE.match(value)
        if iso is not None:
            return date(int(iso[1]), int(iso[2]), int(iso[3]))
        found = self._pattern.match(value) if self._pattern is not None else None
        if found is None:
            raise ValueError(
                f"{value!r} is not a date in the account's format {self.spec!r} "
                "(SystemSettings.date_format) nor ISO 8601"
            )
        parts = found.groupdict()
        if parts.get("month_name") is not None:
            month = _MONTHS.get(parts["month_name"].rstrip(".")[:3].lower())
            if month is None:
                raise ValueError(f"{value!r}: unknown month {parts['month_name']!r}")
        else:
            month = int(parts["month"])
        try:
            return date(int(parts["year"]), month, int(parts["day"]))
        except ValueError as exc:
            raise ValueError(f"{value!r} read as {self.spec}: {exc}") from None


# --------------------------------------------------------------------------- references


def ref_id(value: Any) -> str | None:
    """The internal id of a reference: `{"id": "14", "refName": ..., "links": [...]}` from the
    record service, or the bare id SuiteQL answers (`"14"`)."""
    if isinstance(value, Mapping):
        ident = value.get("id")
        return str(ident) if ident is not None else None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    return None


def ref_name(value: Any) -> str | None:
    """The display name (`refName`) of a reference, when it carries one."""
    if isinstance(value, Mapping):
        name = value.get("refName")
        return str(name) if name is not None else None
    return None


def record_id(body: Mapping[str, Any]) -> str:
    """A record's internal id: its `id`, else the tail of its `self` link (a GET with
    `?fields=` answers the fields asked for and the links, not the id)."""
    if body.get("id") is not None:
        return str(body["id"])
    for link in body.get("links") or []:
        if isinstance(link, Mapping) and link.get("rel") == "self":
            tail = str(link.get("href", "")).split("?", 1)[0].rstrip("/ ").rsplit("/", 1)[-1]
            if tail.isdigit():
                return tail
    raise KeyError("id")


_ISO_CODE = re.compile(r"^[A-Za-z]{3}$")


def currency_code(value: Any, currencies: Mapping[str, str] | None = None) -> str | None:
    """The ISO code of a currency field: the code itself (`{"id": "USD"}`, the twin's
    simplification), an internal id (`{"id": "1", "refName": "USA"}`, `"1"`) found in
    `currencies` (internal id -> ISO code, read from the currency records' `symbol`), or a
    refName that is a code. None when the field is empty; a ValueError when it names a
    currency whose code is not known."""
    ident, name = ref_id(value), ref_name(value)
    if not ident and not name:
        return None
    if ident and _ISO_CODE.match(ident):
        return ident.upper()
    if ident and currencies and ident in currencies:
        return currencies[ident].upper()
    if name and _ISO_CODE.match(name):
        return name.upper()
    raise ValueError(f"currency {ident or name!r}: an internal id with no known ISO code")


def currency_ids(*values: Any) -> set[str]:
    """The internal ids among currency fields that are not ISO codes themselves (to look up
    once each, by their currency record's `symbol`)."""
    return {i for i in map(ref_id, values) if i and not _ISO_CODE.match(i)}


def flag(value: Any) -> bool:
    """A checkbox: JSON `true`/`false` (record service) or `"T"`/`"F"` (SuiteQL)."""
    if isinstance(value, bool):
        return value
    return str(value).strip().upper() in ("T", "TRUE", "Y", "YES", "1")


def number(value: Any) -> Decimal:
    """A number from a JSON number (read as a Decimal) or SuiteQL's text; a duration shown
    as `H:MM` (`"7:30"`) is read as hours (7.5, to 4 places)."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"not a number: {value!r}")
    text = str(value).strip()
    if ":" not in text:
        return Decimal(text)
    hours, minutes = text.split(":", 1)
    sign = -1 if hours.strip().startswith("-") else 1
    total = Decimal(abs(int(hours)) * 60 + int(minutes)) / 60
    return sign * total.quantize(Decimal("0.0001")).normalize()


# --------------------------------------------------------------------------- statuses

_INVOICE_STATUS_NAMES = {
    "open": InvoiceStatus.OPEN,
    "paid in full": InvoiceStatus.PAID,
    "voided": InvoiceStatus.VOID,
}
_INVOICE_STATUS_IDS = {"A": InvoiceStatus.OPEN, "B": InvoiceStatus.PAID, "V": InvoiceStatus.VOID}
"""SuiteQL's and the enum ids of an invoice's status (`CustInvc:A` Open, `:B` Paid In Full,
`:V` Voided)."""


def invoice_status(value: Any) -> InvoiceStatus:
    """An invoice's status from its name (`"Open"`, `"Invoice : Paid In Full"`), its id
    (`"A"`, `"CustInvc:B"`) or a reference carrying either; anything else is a draft."""
    names = [ref_name(value), value if isinstance(value, str) else None, ref_id(value)]
    for name in names:
        if not name:
            continue
        label = name.rsplit(":", 1)[-1].strip()
        found = _INVOICE_STATUS_NAMES.get(label.lower()) or _INVOICE_STATUS_IDS.get(label)
        if found is not None:
            return found
    return InvoiceStatus.DRAFT
