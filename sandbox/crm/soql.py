"""The CRM twin's SOQL subset: tokenizer, parser, filter/sort, and query cursors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from fastapi import Request
from sqlmodel import Session, select

from sandbox._ids import is_salesforce_id, salesforce_id_18
from sandbox._twin import TwinError
from sandbox.crm.bodies import _fail
from sandbox.crm.describe import SOBJECTS, FieldSpec, SObject

# --------------------------------------------------------------------------- SOQL subset


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')"
    r"|(?P<dt>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))?)"
    r"|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


@dataclass
class Soql:
    sobject: SObject
    fields: list[str]
    where: list[tuple[str, str, Any]]
    order: list[tuple[str, bool]]
    limit: int | None


def _tokens(q: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    q = q.rstrip()
    while pos < len(q):
        m = _TOKEN.match(q, pos)
        if not m or m.end() == pos:
            raise _fail("MALFORMED_QUERY", f"unexpected token at position {pos}: {q[pos:][:20]}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _literal(spec: FieldSpec, kind: str, text: str) -> Any:
    def wrong(expected: str) -> TwinError:
        return _fail(
            "MALFORMED_QUERY",
            f"value of filter criterion for field '{spec.name}' must be of type {expected}",
            spec.name,
        )

    if kind == "word" and text.lower() == "null":
        return None
    if spec.kind in ("string", "textarea", "reference", "picklist", "id"):
        if kind != "str":
            raise wrong("string and should be enclosed in quotes")
        value = text[1:-1].replace("\\'", "'")
        if spec.kind in ("id", "reference") and is_salesforce_id(value):
            value = salesforce_id_18(value)
        return value
    if spec.kind == "boolean":
        if kind != "word" or text.lower() not in ("true", "false"):
            raise wrong("boolean and should not be enclosed in quotes")
        return text.lower() == "true"
    if spec.kind in ("currency", "double", "percent", "int"):
        if kind != "num":
            raise wrong("double and should not be enclosed in quotes")
        return Decimal(text)
    if spec.kind == "date":
        if kind != "dt" or "T" in text:
            raise wrong("date and should not be enclosed in quotes")
        return date.fromisoformat(text)
    if spec.kind == "datetime":
        if kind != "dt" or "T" not in text:
            raise wrong("dateTime and should not be enclosed in quotes")
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    raise wrong(spec.kind)  # pragma: no cover


class _SoqlParser:
    """A cursor over the tokens of one query; one method per clause."""

    def __init__(self, q: str) -> None:
        self.toks = _tokens(q)
        self.i = 0

    def peek(self, word: str) -> bool:
        toks, i = self.toks, self.i
        return i < len(toks) and toks[i][0] == "word" and toks[i][1].upper() == word

    def at(self, text: str) -> bool:
        """The next token is `text` (a bracket or comma)."""
        return self.i < len(self.toks) and self.toks[self.i][1] == text

    def expect_word(self, word: str) -> None:
        if not self.peek(word):
            raise _fail("MALFORMED_QUERY", f"expecting '{word}'")
        self.i += 1

    def next_tok(self) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise _fail("MALFORMED_QUERY", "unexpected end of query")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def select_list(self) -> list[str]:
        self.expect_word("SELECT")
        raw_fields: list[str] = []
        while True:
            kind, text = self.next_tok()
            if kind != "word" or text.upper() == "FROM":
                raise _fail("MALFORMED_QUERY", f"unexpected token: {text}")
            if self.at("("):
                raise _fail(
                    "MALFORMED_QUERY", f"aggregate and function fields are not supported: {text}"
                )
            raw_fields.append(text)
            if self.at(","):
                self.i += 1
                continue
            break
        return raw_fields

    def from_object(self) -> SObject:
        self.expect_word("FROM")
        kind, obj_name = self.next_tok()
        sobject = next((s for k, s in SOBJECTS.items() if k.lower() == obj_name.lower()), None)
        if kind != "word" or sobject is None:
            raise _fail("INVALID_TYPE", f"sObject type '{obj_name}' is not supported.")
        return sobject

    def where(self, sobject: SObject) -> list[tuple[str, str, Any]]:
        where: list[tuple[str, str, Any]] = []
        if not self.peek("WHERE"):
            return where
        self.i += 1
        while True:
            where.append(self.condition(sobject))
            if self.peek("AND"):
                self.i += 1
                continue
            if self.peek("OR"):
                raise _fail("MALFORMED_QUERY", "OR is not supported by this twin")
            break
        return where

    def condition(self, sobject: SObject) -> tuple[str, str, Any]:
        kind, text = self.next_tok()
        if kind != "word":
            raise _fail("MALFORMED_QUERY", f"unexpected token: {text}")
        name = _field_name(sobject, text)
        spec = sobject.fields[name]
        kind, op = self.next_tok()
        if kind == "word" and op.upper() == "IN":
            kind, paren = self.next_tok()
            if paren != "(":
                raise _fail("MALFORMED_QUERY", "expecting '(' after IN")
            values = []
            while True:
                vkind, vtext = self.next_tok()
                values.append(_literal(spec, vkind, vtext))
                _, sep = self.next_tok()
                if sep == ")":
                    break
                if sep != ",":
                    raise _fail("MALFORMED_QUERY", "expecting ',' or ')'")
            return (name, "IN", values)
        if kind == "op" and op in ("=", "!=", "<>", "<", "<=", ">", ">="):
            vkind, vtext = self.next_tok()
            return (name, "!=" if op == "<>" else op, _literal(spec, vkind, vtext))
        raise _fail("MALFORMED_QUERY", f"unexpected operator: {op}")

    def order_by(self, sobject: SObject) -> list[tuple[str, bool]]:
        order: list[tuple[str, bool]] = []
        if not self.peek("ORDER"):
            return order
        self.i += 1
        self.expect_word("BY")
        while True:
            _, text = self.next_tok()
            name = _field_name(sobject, text)
            desc = False
            if self.peek("ASC") or self.peek("DESC"):
                desc = self.toks[self.i][1].upper() == "DESC"
                self.i += 1
            order.append((name, desc))
            if self.at(","):
                self.i += 1
                continue
            break
        return order

    def limit(self) -> int | None:
        if not self.peek("LIMIT"):
            return None
        self.i += 1
        kind, text = self.next_tok()
        if kind != "num" or not text.isdigit():
            raise _fail("MALFORMED_QUERY", "LIMIT must be a non-negative integer")
        return int(text)


def _field_name(sobject: SObject, text: str) -> str:
    if "." in text:
        raise _fail(
            "INVALID_FIELD",
            f"Didn't understand relationship '{text.split('.')[0]}' in field path.",
            text,
        )
    name = sobject.lookup.get(text.lower())
    if name is None:
        raise _fail("INVALID_FIELD", f"No such column '{text}' on entity '{sobject.name}'.", text)
    return name


def parse_soql(q: str) -> Soql:
    p = _SoqlParser(q)
    raw_fields = p.select_list()
    sobject = p.from_object()
    fields = [_field_name(sobject, f) for f in raw_fields]
    where = p.where(sobject)
    order = p.order_by(sobject)
    limit = p.limit()
    if p.i != len(p.toks):
        raise _fail("MALFORMED_QUERY", f"unexpected token: {p.toks[p.i][1]}")
    return Soql(sobject, fields, where, order, limit)


def _comparable(spec: FieldSpec, value: Any) -> Any:
    if value is None:
        return None
    if spec.kind in ("currency", "double", "percent", "int"):
        return Decimal(str(value))
    if spec.kind == "datetime" and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _matches(row: Any, soql: Soql) -> bool:
    for name, op, literal in soql.where:
        spec = soql.sobject.fields[name]
        value = _comparable(spec, getattr(row, name))
        if op == "IN":
            if value not in literal:
                return False
            continue
        if op == "=":
            ok = value == literal
        elif op == "!=":
            ok = value != literal
        elif value is None or literal is None:
            ok = False
        else:
            ok = {
                "<": value < literal,
                "<=": value <= literal,
                ">": value > literal,
                ">=": value >= literal,
            }[op]
        if not ok:
            return False
    return True


def _run_query(session: Session, soql: Soql) -> list[str]:
    rows: list[Any] = [
        r for r in session.exec(select(soql.sobject.table)).all() if _matches(r, soql)
    ]
    # Stable default order (Salesforce's is unspecified; the Id is a fine stand-in).
    rows.sort(key=lambda r: str(r.Id))
    for name, desc in reversed(soql.order):
        spec = soql.sobject.fields[name]

        def key(row: Any, name: str = name, spec: FieldSpec = spec) -> Any:
            return _comparable(spec, getattr(row, name))

        present = sorted((r for r in rows if getattr(r, name) is not None), key=key, reverse=desc)
        nulls = [r for r in rows if getattr(r, name) is None]
        # NULLS FIRST ascending, NULLS LAST descending: SOQL's defaults.
        rows = nulls + present if not desc else present + nulls
    if soql.limit is not None:
        rows = rows[: soql.limit]
    return [str(r.Id) for r in rows]


@dataclass
class _Cursor:
    soql: Soql
    ids: list[str]
    batch: int


def _batch_size(request: Request) -> int:
    options = request.headers.get("sforce-query-options", "")
    match = re.search(r"batchSize\s*=\s*(\d+)", options)
    if not match:
        return 2000
    return max(1, min(2000, int(match.group(1))))
