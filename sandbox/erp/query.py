"""Queries: the record service's `q` filter and the SuiteQL subset."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from sqlmodel import Session, select

from sandbox._twin import TwinError
from sandbox.erp.common import ISO_DATES, Url, _int_id, account_date
from sandbox.erp.records import RECORD_TYPES, RecordType

_CLAUSE = re.compile(r"^\s*(\w+)\s+(IS|ANY_OF|EQUAL|IS_NOT)\s+(.+?)\s*$", re.IGNORECASE)


def _q_conditions(kind: RecordType, q: str) -> list[Any]:
    conditions = []
    for clause in re.split(r"\s+AND\s+", q.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.match(clause)
        if match is None or match.group(1) not in kind.filters:
            raise TwinError(
                400,
                "INVALID_PARAMETER",
                f"Invalid query: {clause!r} (fields: {', '.join(sorted(kind.filters))})",
                "q",
            )
        field, op, raw = match.group(1), match.group(2).upper(), match.group(3)
        column = getattr(kind.table, kind.filters[field])
        values = [v.strip().strip('"').strip("'") for v in raw.split(",")]
        try:
            python_type = column.type.python_type
        except NotImplementedError:
            python_type = str
        try:
            if python_type is bool:
                typed: list[Any] = [v.lower() in ("true", "t", "1") for v in values]
            elif python_type is int:
                typed = [_int_id(v) for v in values]
                if None in typed:
                    raise ValueError(clause)
            elif python_type is date:
                typed = [date.fromisoformat(v) for v in values]
            else:
                typed = values
        except ValueError:
            raise TwinError(400, "INVALID_PARAMETER", f"Invalid value in {clause!r}", "q") from None
        if op == "ANY_OF":
            conditions.append(column.in_(typed))
        elif op == "IS_NOT":
            conditions.append(column != typed[0])
        else:
            conditions.append(column == typed[0])
    return conditions


_SUITEQL = re.compile(
    r"^\s*select\s+(?P<cols>.+?)\s+from\s+(?P<table>\w+)"
    r"(?:\s+where\s+(?P<where>.+?))?"
    r"(?:\s+order\s+by\s+(?P<order>\w+)(?:\s+(?P<dir>asc|desc))?)?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_CONDITION = re.compile(
    r"^\s*(\w+)\s*(?:(=|!=|<>)\s*('(?:[^']|'')*'|[-\w.]+)|in\s*\((.*)\))\s*$",
    re.IGNORECASE | re.DOTALL,
)


def _sql_value(text: str) -> str:
    text = text.strip()
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    return text


_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _flatten(record: dict[str, Any], date_format: str = ISO_DATES) -> dict[str, str]:
    """A rendered record as a SuiteQL row: lower-case columns, text values, T/F booleans,
    references as their id, dates in the account's `date_format`, sublists and nulls left
    out."""
    row: dict[str, str] = {}
    for key, value in record.items():
        if isinstance(value, str) and _ISO_DAY.match(value):
            value = account_date(date.fromisoformat(value), date_format)
        if key == "links" or value is None or isinstance(value, list):
            continue
        if isinstance(value, dict):
            if "items" in value:
                continue
            value = value.get("id") or value.get("externalId")
            if value is None:
                continue
        if isinstance(value, bool):
            value = "T" if value else "F"
        row[key.lower()] = str(value)
    return row


def suiteql(s: Session, q: str, url: Url, *, date_format: str = ISO_DATES) -> list[dict[str, str]]:
    """Run a SuiteQL query; dates come back in the account's `date_format`."""
    match = _SUITEQL.match(q)
    if match is None:
        raise TwinError(400, "INVALID_PARAMETER", "Invalid search query: unsupported SuiteQL", "q")
    by_table = {name.lower(): kind for name, kind in RECORD_TYPES.items()}
    kind = by_table.get(match.group("table").lower())
    if kind is None:
        raise TwinError(400, "INVALID_PARAMETER", f"Unknown table {match.group('table')}", "q")
    conditions: list[tuple[str, str, list[str]]] = []
    if match.group("where"):
        for clause in re.split(r"\s+and\s+", match.group("where"), flags=re.IGNORECASE):
            cond = _CONDITION.match(clause)
            if cond is None:
                raise TwinError(400, "INVALID_PARAMETER", f"Unsupported condition {clause!r}", "q")
            column = cond.group(1).lower()
            if cond.group(4) is not None:
                values = [_sql_value(v) for v in cond.group(4).split(",")]
                conditions.append((column, "in", values))
            else:
                conditions.append((column, cond.group(2), [_sql_value(cond.group(3))]))
    rows = [_flatten(kind.render(s, r, url), date_format) for r in s.exec(select(kind.table)).all()]

    def keep(row: dict[str, str]) -> bool:
        for column, op, values in conditions:
            value = row.get(column)
            if op in ("=", "in") and value not in values:
                return False
            if op in ("!=", "<>") and value in values:
                return False
        return True

    rows = [r for r in rows if keep(r)]
    if match.group("order"):
        column = match.group("order").lower()
        rows.sort(
            key=lambda r: int(r[column]) if r.get(column, "").isdigit() else r.get(column, ""),
            reverse=(match.group("dir") or "").lower() == "desc",
        )
    cols = match.group("cols").strip()
    if cols != "*":
        wanted = [c.strip().lower() for c in cols.split(",")]
        rows = [{c: r[c] for c in wanted if c in r} for r in rows]
    return rows
