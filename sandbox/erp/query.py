"""Queries: the record service's `q` filter and the SuiteQL subset."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

from sqlmodel import Session, select

from sandbox._twin import TwinError
from sandbox.erp.common import ISO_DATES, Url, _int_id, account_date
from sandbox.erp.records import RECORD_TYPES, RecordType
from sandbox.erp.transactions import COLUMNS as TRANSACTION_TABLES
from sandbox.erp.transactions import transaction_rows

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
    r"^\s*select\s+(?P<distinct>distinct\s+)?(?P<cols>.+?)\s+from\s+(?P<table>\w+)"
    r"(?:\s+(?:as\s+)?(?P<alias>(?!(?:inner|join|where|order)\b)\w+))?"
    r"(?:\s+(?:inner\s+)?join\s+(?P<table2>\w+)(?:\s+(?:as\s+)?(?P<alias2>(?!on\b)\w+))?"
    r"\s+on\s+(?P<left>[\w.]+)\s*=\s*(?P<right>[\w.]+))?"
    r"(?:\s+where\s+(?P<where>.+?))?"
    r"(?:\s+order\s+by\s+(?P<order>.+?))?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_CONDITION = re.compile(
    r"^\s*([\w.]+)\s*(?:(=|!=|<>)\s*('(?:[^']|'')*'|[-\w.]+)|in\s*\((.*)\))\s*$",
    re.IGNORECASE | re.DOTALL,
)
_COLUMN = re.compile(r"^\s*([\w.]+)(?:\s+as\s+(\w+))?\s*$", re.IGNORECASE)
_ORDER = re.compile(r"^\s*([\w.]+)(?:\s+(asc|desc))?\s*$", re.IGNORECASE)
_TABLES = {name.lower(): kind for name, kind in RECORD_TYPES.items() if name != "invoice"}
"""SuiteQL's tables among the record types (an invoice is a row of `transaction`)."""


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


def _invalid(message: str) -> TwinError:
    return TwinError(400, "INVALID_PARAMETER", f"Invalid search query: {message}", "q")


def _table_rows(s: Session, table: str, url: Url, date_format: str) -> list[dict[str, str]]:
    if table in TRANSACTION_TABLES:
        return transaction_rows(s, table, lambda r: _flatten(r, date_format))
    kind = _TABLES.get(table)
    if kind is None:
        raise _invalid(f"Record '{table}' was not found.")
    return [_flatten(kind.render(s, r, url), date_format) for r in s.exec(select(kind.table)).all()]


def _sort_key(value: str | None) -> tuple[int, int, str]:
    text = value or ""
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def _by(ref: tuple[str, str]) -> Callable[[dict[str, dict[str, str]]], tuple[int, int, str]]:
    alias, column = ref
    return lambda row: _sort_key(row[alias].get(column))


def suiteql(s: Session, q: str, url: Url, *, date_format: str = ISO_DATES) -> list[dict[str, str]]:
    """Run a SuiteQL query: `SELECT [DISTINCT] cols FROM table [alias] [JOIN table [alias] ON
    a.x = b.y] [WHERE ...] [ORDER BY ...]`, conditions `=`, `!=`/`<>`, `IN (...)` joined by
    AND; dates come back in the account's `date_format`."""
    match = _SUITEQL.match(q)
    if match is None:
        raise _invalid("unsupported SuiteQL")
    first = match.group("table").lower()
    aliases = {(match.group("alias") or first).lower(): first}
    if match.group("table2"):
        aliases[(match.group("alias2") or match.group("table2")).lower()] = match.group(
            "table2"
        ).lower()
        if len(aliases) < 2:
            raise _invalid("a table alias is used twice")
    main = next(iter(aliases))

    def resolve(ref: str) -> tuple[str, str]:
        alias, _, column = ref.lower().rpartition(".")
        alias = alias or main
        if alias not in aliases:
            raise _invalid(f"unknown table alias {alias!r}")
        known = TRANSACTION_TABLES.get(aliases[alias])
        if known is not None and column not in known:
            raise _invalid(f"Field '{column}' for record '{aliases[alias]}' was not found.")
        return alias, column

    conditions: list[tuple[tuple[str, str], str, list[str]]] = []
    for clause in re.split(r"\s+and\s+", match.group("where") or "", flags=re.IGNORECASE):
        if not clause.strip():
            continue
        cond = _CONDITION.match(clause)
        if cond is None:
            raise TwinError(400, "INVALID_PARAMETER", f"Unsupported condition {clause!r}", "q")
        if cond.group(4) is not None:
            values = [_sql_value(v) for v in cond.group(4).split(",")]
            conditions.append((resolve(cond.group(1)), "in", values))
        else:
            conditions.append((resolve(cond.group(1)), cond.group(2), [_sql_value(cond.group(3))]))
    columns: list[tuple[tuple[str, str], str]] | None = None
    if match.group("cols").strip() != "*":
        columns = []
        for spec in match.group("cols").split(","):
            col = _COLUMN.match(spec)
            if col is None:
                raise _invalid(f"unsupported column {spec.strip()!r}")
            ref = resolve(col.group(1))
            columns.append((ref, (col.group(2) or ref[1]).lower()))

    rows = [{main: r} for r in _table_rows(s, first, url, date_format)]
    if match.group("table2"):
        other = next(a for a in aliases if a != main)
        ends = resolve(match.group("left")), resolve(match.group("right"))
        mine, theirs = ends if ends[1][0] == other else ends[::-1]
        if theirs[0] != other or mine[0] == other:
            raise _invalid("the join condition must compare the two tables")
        by_value: dict[str, list[dict[str, str]]] = {}
        for r in _table_rows(s, aliases[other], url, date_format):
            if theirs[1] in r:
                by_value.setdefault(r[theirs[1]], []).append(r)
        rows = [
            row | {other: r} for row in rows for r in by_value.get(row[main].get(mine[1], "\0"), [])
        ]

    def keep(row: dict[str, dict[str, str]]) -> bool:
        for (alias, column), op, values in conditions:
            value = row[alias].get(column)
            if op in ("=", "in") and value not in values:
                return False
            if op in ("!=", "<>") and value in values:
                return False
        return True

    rows = [r for r in rows if keep(r)]
    named = {name: ref for ref, name in columns or []}
    for spec in reversed((match.group("order") or "").split(",") if match.group("order") else []):
        order = _ORDER.match(spec)
        if order is None:
            raise _invalid(f"unsupported ORDER BY {spec.strip()!r}")
        ref = named.get(order.group(1).lower()) or resolve(order.group(1))
        rows.sort(key=_by(ref), reverse=(order.group(2) or "").lower() == "desc")
    if columns is None:
        out = [r[main] for r in rows]
    else:
        out = [
            {name: r[alias][column] for (alias, column), name in columns if column in r[alias]}
            for r in rows
        ]
    if match.group("distinct"):
        out = list({tuple(sorted(r.items())): r for r in out}.values())
    return out
