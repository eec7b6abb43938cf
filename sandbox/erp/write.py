"""`write_record`: create, update or upsert one record from a raw JSON body, every business
rule checked (on a draft) before anything is written."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from pydantic_core import PydanticUndefined
from sqlmodel import Session

from sandbox._twin import TwinError
from sandbox.erp.bodies import _validate
from sandbox.erp.common import _now
from sandbox.erp.lookups import _batch, _by_eid, _next_id, _remember, _write_inserts
from sandbox.erp.records import RecordType

_Defaults = list[tuple[str, Any, Callable[[], Any] | None]]
_COLUMN_DEFAULTS: dict[type, _Defaults] = {}
_IMMUTABLE = (str, int, float, bool, Decimal, date, datetime, type(None))


def _draft(table: Any, values: dict[str, Any]) -> SimpleNamespace:
    """A record as it would be written: `values` over the table's column defaults. The rules
    (`RecordType.check`) run on a draft, and only a draft that passes them is written, so a
    refusal leaves no trace; a draft also costs none of an ORM instance's bookkeeping (about
    0.1 ms a row with SQLModel, most of a 200-record batch's time)."""
    defaults = _COLUMN_DEFAULTS.get(table)
    if defaults is None:
        defaults = _COLUMN_DEFAULTS[table] = [
            (name, field.default, field.default_factory)
            for name, field in table.model_fields.items()
        ]
    data: dict[str, Any] = {}
    for name, default, factory in defaults:
        if name in values:
            data[name] = values[name]
        elif factory is not None:
            data[name] = factory()
        elif default is PydanticUndefined:
            data[name] = None  # a required column left unset: the database refuses it
        else:
            data[name] = default if isinstance(default, _IMMUTABLE) else copy.deepcopy(default)
    return SimpleNamespace(**data)


def write_record(
    s: Session,
    kind: RecordType,
    raw: Any,
    *,
    row: Any = None,
    external_id: str | None = None,
    upsert: bool = False,
) -> tuple[Any, bool]:
    """Create (row None) or update a record from a raw JSON body; (row, created).

    Every business rule runs before anything is written, so a refusal leaves no trace. An
    update that changes nothing is a no-op and skips the rules: an idempotent retry of a
    posting succeeds even if its project has been closed since.
    """
    body = _validate(kind.body, raw)
    if external_id is not None:
        if body.externalId is not None and body.externalId != external_id:
            raise TwinError(
                400, "INVALID_CONTENT", "externalId in the body differs from the URL", "externalId"
            )
        body.externalId = external_id
        if upsert and row is None:
            row = _by_eid(s, kind.table, external_id)
    # In a batch, new records are written at its end and updates flushed once (see `_Batch`);
    # a record type whose side effects need the new id (`after_write`) is written at once.
    batch = _batch(s)
    if batch is not None and row is not None and id(row) in batch.inserts:
        # The batch names this record twice: write the first, then update it like any other.
        _write_inserts(s)
        row = _by_eid(s, kind.table, row.external_id)
    if type(kind).after_write is not RecordType.after_write:
        batch = None
    creating = row is None
    if creating:
        missing = [f for f in kind.required if getattr(body, f, None) is None]
        if missing:
            raise TwinError(
                400, "USER_ERROR", f"Please enter value(s) for: {', '.join(missing)}", missing[0]
            )
    values = kind.values(s, body)
    if "externalId" in body.model_fields_set or external_id is not None:
        values["external_id"] = body.externalId
    if creating:
        if values.get("external_id") is not None and _by_eid(s, kind.table, values["external_id"]):
            raise TwinError(
                400,
                "DUP_RCRD",
                f"A {kind.name} record with externalId {values['external_id']} already exists.",
                "externalId",
            )
        draft = _draft(kind.table, values)
        kind.check(s, draft, None)
        if batch is not None:
            draft.id = _next_id(s, batch, kind.table)
            batch.inserts[id(draft)] = (kind.table, draft)
            _remember(s, kind.table, draft)
            return draft, True
        created = kind.table(**vars(draft))
        s.add(created)
        s.flush()
        kind.after_write(s, created, True)
        _remember(s, kind.table, created)
        return created, True
    changes = {k: v for k, v in values.items() if getattr(row, k) != v}
    if not changes:
        return row, False
    final = kind.final(row)
    if final is not None:
        if upsert:  # an upsert by external ID finds the record as it stands
            return row, False
        raise TwinError(400, "INVALID_TRANSACTION_STATE", f"{final} It cannot be edited.")
    if "external_id" in changes and changes["external_id"] is not None:
        clash = _by_eid(s, kind.table, changes["external_id"])
        if clash is not None and clash.id != row.id:
            raise TwinError(400, "DUP_RCRD", "externalId is taken", "externalId")
    current = {c.name: getattr(row, c.name) for c in kind.table.__table__.columns}
    draft = SimpleNamespace(**(current | changes))
    kind.check(s, draft, set(changes))
    old_external_id = row.external_id
    for column in kind.table.__table__.columns:
        setattr(row, column.name, getattr(draft, column.name))
    row.last_modified = _now()
    if row.external_id != old_external_id:
        _remember(s, kind.table, row, old_external_id)
    s.add(row)
    if batch is None:
        s.flush()
        kind.after_write(s, row, False)
    return row, False
