"""`RecordType`, how one NetSuite record type maps to its table, body and rules, and the
rendering helpers the record types share."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session

from sandbox._twin import TwinError
from sandbox.erp.bodies import Ref, _Body
from sandbox.erp.common import RECORD, Url, _stamp

Fields = tuple[tuple[str, str], ...]
"""(body field, column) pairs."""


def _ref(value: Any, name: str | None = None) -> dict[str, Any] | None:
    if value is None:
        return None
    ref: dict[str, Any] = {"id": str(value)}
    if name:
        ref["refName"] = name
    return ref


def _currency(ref: Ref | None, path: str) -> str | None:
    if ref is None:
        return None
    code = (ref.id or ref.refName or "").upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise TwinError(400, "INVALID_KEY_OR_REF", f"Invalid currency reference {ref.id}", path)
    return code


def _currency_given(body: Any, given: set[str]) -> dict[str, Any]:
    """`{"currency": code}` when the body sets a currency (an ISO code, else refused)."""
    if "currency" in given and body.currency is not None:
        return {"currency": _currency(body.currency, "currency")}
    return {}


class RecordType:
    """How one NetSuite record type maps to its table, body and business rules."""

    name: str
    table: Any
    body: type[_Body]
    required: tuple[str, ...] = ()
    filters: dict[str, str] = {}
    """q-filter field -> column."""
    copied: Fields = ()
    """Fields stored as the body sets them (a null too)."""
    copied_unless_null: Fields = ()
    """Fields stored when the body sets a value (a null is ignored)."""
    sublists: tuple[str, ...] = ()
    """Body fields that are sublists: `{"links": [...]}` in a GET unless it asks with
    `expandSubResources=true`, as NetSuite answers."""

    def values(self, s: Session, body: _Body) -> dict[str, Any]:
        """Column values for the fields the body set (references resolved)."""
        given = body.model_fields_set
        out = {column: getattr(body, field) for field, column in self.copied if field in given}
        for field, column in self.copied_unless_null:
            if field in given and getattr(body, field) is not None:
                out[column] = getattr(body, field)
        return out | self.resolved(s, body, given)

    def resolved(self, s: Session, body: _Body, given: set[str]) -> dict[str, Any]:
        """Column values for the set fields that are not stored as given: references looked up
        (an unknown one refused), amounts as decimal text."""
        return {}

    def check(self, s: Session, row: Any, changed: set[str] | None) -> None:
        """Business rules on the record as it would be after the write (`changed` is None
        when creating, else the columns the write changes)."""

    def after_write(self, s: Session, row: Any, creating: bool) -> None:
        """Side effects of a write that need the written row (none of the twin's types has one now;
        a type that does is written at once, not deferred to a batch's end)."""

    def final(self, row: Any) -> str | None:
        """Why the record can no longer change (e.g. a voided invoice), or None."""
        return None

    def render(self, s: Session, row: Any, url: Url, *, expand: bool = False) -> dict[str, Any]:
        """The record as the REST record service answers it: its links and ids, its fields
        (nulls left out) and its last-modified date. Sublists are a link each unless
        `expand`, then `{"links", "items", ...}` like a collection."""
        fields = _drop_none(self.fields_json(s, row))
        for name in self.sublists:
            if name in fields:
                href = url(f"{RECORD}/{self.name}/{row.id}/{name}")
                fields[name] = _sublist(fields[name], href) if expand else _link_only(href)
        return _base(row, self.name, url) | fields | {"lastModifiedDate": _stamp(row.last_modified)}

    def sublist(self, s: Session, row: Any, url: Url, name: str) -> dict[str, Any] | None:
        """One sublist of the record, expanded (`GET .../{type}/{id}/{sublist}`), or None."""
        if name not in self.sublists:
            return None
        value = self.fields_json(s, row).get(name)
        href = url(f"{RECORD}/{self.name}/{row.id}/{name}")
        return _sublist(value or {"items": []}, href)

    def fields_json(self, s: Session, row: Any) -> dict[str, Any]:
        """The record's own fields, as JSON."""
        raise NotImplementedError


def _base(row: Any, type_name: str, url: Url) -> dict[str, Any]:
    out: dict[str, Any] = {
        "links": [{"rel": "self", "href": url(f"{RECORD}/{type_name}/{row.id}")}],
        "id": str(row.id),
    }
    if row.external_id is not None:
        out["externalId"] = row.external_id
    return out


def _link_only(href: str) -> dict[str, Any]:
    return {"links": [{"rel": "self", "href": href}]}


def _sublist(value: dict[str, Any], href: str) -> dict[str, Any]:
    items = value.get("items", [])
    return {
        "links": [{"rel": "self", "href": href}],
        "items": [
            {"links": [{"rel": "self", "href": f"{href}/{item['line']}"}] if "line" in item else []}
            | item
            for item in items
        ],
        "count": len(items),
        "hasMore": False,
        "offset": 0,
        "totalResults": len(items),
    }


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}
