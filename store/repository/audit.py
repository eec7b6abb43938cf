"""The audit trail: people's decisions through the gateway, each written ``attempted`` before it
is sent on and completed with its outcome; read newest first, one bounded page at a time.

What is stored is bounded and scrubbed here, whatever the caller passes: text columns are cut to
``AUDIT_TEXT_MAX`` characters, the request and result JSON to ``AUDIT_JSON_MAX`` characters
(a larger value is kept as a marked preview), and any key that names a credential (token,
secret, password, authorization, cookie, api key) has its value replaced by ``[redacted]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from store.errors import NotFound
from store.models import AuditOutcome, AuditPage, AuditRow, NewAuditEntry
from store.repository._base import StoreBase

AUDIT_PAGE_MAX = 500
"""The most rows one read returns."""
AUDIT_JSON_MAX = 16_384
"""Characters of JSON kept for a request or a result; a larger one is kept as a preview."""
AUDIT_TEXT_MAX = 500
"""Characters kept of the actor, action, subject, tenant and request id."""
REDACTED = "[redacted]"
_SECRET_WORDS = ("token", "secret", "password", "authorization", "cookie", "api_key", "apikey")
_MAX_DEPTH = 32


class AuditOps(StoreBase):
    def audit_begin(self, entry: NewAuditEntry) -> AuditRow:
        """Record a decision as ``attempted``, before it is sent on; returns the row (with its
        id, for ``audit_complete``). A row left ``attempted`` is the trace of a decision whose
        answer was never recorded (the gateway stopped, or the store failed after it)."""
        row = AuditRow(**_entry_values(entry), at=self._clock())
        with self._write() as session:
            session.add(row)
            session.flush()  # assigns row.id
            return row

    def audit_complete(
        self,
        audit_id: int,
        outcome: AuditOutcome | str,
        status_code: int,
        result: Mapping[str, Any] | None = None,
    ) -> AuditRow:
        """Complete an ``attempted`` row with the decision's outcome, once: a row already
        completed (a retried call whose first commit went through) is returned unchanged.
        Raises ``NotFound`` for an unknown id, ``ValueError`` for ``attempted`` as an outcome."""
        outcome = AuditOutcome(outcome)
        if outcome is AuditOutcome.ATTEMPTED:
            raise ValueError("an audit row is completed with its outcome, not 'attempted'")
        with self._write() as session:
            session.exec(
                update(AuditRow)
                .where(
                    col(AuditRow.id) == audit_id,
                    col(AuditRow.outcome) == AuditOutcome.ATTEMPTED.value,
                )
                .values(
                    outcome=outcome.value,
                    status_code=status_code,
                    result=None if result is None else bounded_json(result),
                    completed_at=self._clock(),
                )
                .execution_options(synchronize_session=False)
            )
            row = session.get(AuditRow, audit_id, populate_existing=True)
            if row is None:
                raise NotFound("audit", str(audit_id))
            return row

    def record_audit(
        self,
        entry: NewAuditEntry,
        outcome: AuditOutcome | str,
        status_code: int,
        result: Mapping[str, Any] | None = None,
    ) -> AuditRow:
        """Record a decision whose outcome is already known, in one write."""
        outcome = AuditOutcome(outcome)
        now = self._clock()
        row = AuditRow(
            **_entry_values(entry),
            at=now,
            outcome=outcome.value,
            status_code=status_code,
            result=None if result is None else bounded_json(result),
            completed_at=None if outcome is AuditOutcome.ATTEMPTED else now,
        )
        with self._write() as session:
            session.add(row)
            session.flush()
            return row

    def get_audit(self, audit_id: int) -> AuditRow | None:
        with self._read() as session:
            return session.get(AuditRow, audit_id)

    def list_audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        subject_kind: str | None = None,
        subject_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: int | None = None,
        limit: int = 100,
    ) -> AuditPage:
        """Rows matching every given filter, newest first (by id: a stable order that paging
        cannot skip or repeat), at most ``limit`` (1..``AUDIT_PAGE_MAX``). ``since`` is
        inclusive and ``until`` exclusive (on ``at``); ``cursor`` is the ``next_cursor`` of the
        page before. Raises ``ValueError`` for a limit out of range or a naive datetime."""
        if not 1 <= limit <= AUDIT_PAGE_MAX:
            raise ValueError(f"limit must be 1..{AUDIT_PAGE_MAX}, not {limit}")
        for moment in (since, until):
            if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
                raise ValueError(f"naive datetime {moment!r}: give an aware datetime")
        query = select(AuditRow)
        for column, value in (
            (AuditRow.actor, actor),
            (AuditRow.action, action),
            (AuditRow.subject_kind, subject_kind),
            (AuditRow.subject_id, subject_id),
        ):
            if value is not None:
                query = query.where(col(column) == value)
        if since is not None:
            query = query.where(col(AuditRow.at) >= since)
        if until is not None:
            query = query.where(col(AuditRow.at) < until)
        if cursor is not None:
            query = query.where(col(AuditRow.id) < cursor)
        query = query.order_by(col(AuditRow.id).desc()).limit(limit + 1)
        with self._read() as session:
            rows = list(session.exec(query).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return AuditPage(rows=rows, next_cursor=rows[-1].id if more and rows else None)


def _entry_values(entry: NewAuditEntry) -> dict[str, Any]:
    return {
        "actor": _clip(entry.actor),
        "actor_roles": [_clip(role) for role in entry.actor_roles[:50]],
        "action": _clip(entry.action),
        "subject_kind": _clip(entry.subject_kind),
        "subject_id": _clip(entry.subject_id),
        "tenant": None if entry.tenant is None else _clip(entry.tenant),
        "request": bounded_json(entry.request),
        "request_id": None if entry.request_id is None else _clip(entry.request_id),
    }


def _clip(text: str, limit: int = AUDIT_TEXT_MAX) -> str:
    """At most ``limit`` characters, without NUL (PostgreSQL's text cannot hold it)."""
    text = text.replace("\x00", "\ufffd")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bounded_json(value: Mapping[str, Any]) -> dict[str, Any]:
    """``value`` as plain JSON with credentials redacted, or, when that is longer than
    ``AUDIT_JSON_MAX`` characters, ``{"truncated": true, "size": n, "preview": "..."}``."""
    scrubbed = _scrub(dict(value), 0)
    text = json.dumps(scrubbed, default=str, ensure_ascii=False, sort_keys=True)
    if len(text) <= AUDIT_JSON_MAX:
        loaded: dict[str, Any] = json.loads(text)
        return loaded
    return {"truncated": True, "size": len(text), "preview": text[: AUDIT_JSON_MAX // 2]}


def _scrub(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, Mapping):
        return {
            str(key): REDACTED if _names_a_secret(str(key)) else _scrub(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(item, depth + 1) for item in value]
    return value


def _names_a_secret(key: str) -> bool:
    folded = key.casefold().replace("-", "_")
    return any(word in folded for word in _SECRET_WORDS)
