"""Vendor error codes -> pssync's error taxonomy, and malformed vendor records -> typed errors.

A vendor says what went wrong in its error *code* more reliably than in the HTTP status:
Salesforce answers an exhausted API allocation with `403 REQUEST_LIMIT_EXCEEDED` (a quota, not
refused credentials), NetSuite a concurrency limit with `400`/`429` and
`SSS_REQUEST_LIMIT_EXCEEDED` / `CONCURRENCY_LIMIT_EXCEEDED` (a wait, not a business rule).
Each connector package keeps an `ERROR_CODES` table (`connectors/<system>/errors.py`) that
`classify` consults first, on every code the error body carries; a code the table does not
know falls back to the status, and an unknown 4xx stays a business-rule violation (a person
looks at it) rather than being retried blindly.

`unmappable` turns a bare `KeyError`, `ValueError`, `TypeError`, ... raised while mapping a
vendor payload into `UnmappableRecord`, naming the record and, where it can tell, the field.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import InvalidOperation
from typing import Any, ParamSpec, TypeVar

from pydantic import ValidationError

from contracts.errors import ErrorKind, UnmappableRecord

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class CodeRule:
    """What a vendor error code means for pssync.

    `kind`: the taxonomy kind to raise; `retry_after_s`: the wait to honour when the vendor
    sends no Retry-After with this code (a quota that refills per second, a lock held briefly).
    """

    kind: ErrorKind
    retry_after_s: float | None = None
    meaning: str = ""


ErrorTable = Mapping[str, CodeRule]

MAPPING_ERRORS: tuple[type[Exception], ...] = (
    KeyError,
    IndexError,
    ValueError,
    TypeError,
    AttributeError,
    InvalidOperation,
    ValidationError,
)
"""What a mapping function raises on a payload of an unexpected shape."""


def unmappable_from(
    exc: Exception, *, system: str, record: str, raw: Any = None
) -> UnmappableRecord:
    """The typed error for `exc`, raised while mapping `raw` (a vendor record) to `record`."""
    record_id = None
    if isinstance(raw, Mapping):
        found = raw.get("id", raw.get("Id"))
        record_id = None if found is None else str(found)
    field = None
    if isinstance(exc, KeyError) and exc.args:
        field = str(exc.args[0])
        detail = f"field {field!r} is missing"
    elif isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first.get("loc", ())) or None
        detail = f"{first.get('msg', 'invalid')}" + (f" at {field}" if field else "")
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return UnmappableRecord(record, detail, record_id=record_id, field=field, system=system)


def unmappable(system: str, record: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a vendor -> canonical mapping function (its first argument the vendor record)
    so a malformed record raises `UnmappableRecord` instead of a bare exception."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def mapped(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except UnmappableRecord:
                raise
            except MAPPING_ERRORS as exc:
                raw = args[0] if args else None
                raise unmappable_from(exc, system=system, record=record, raw=raw) from exc

        return mapped

    return decorate
