"""Lineage (append-only), the outbox (with the domain events derived from the workflows' own
rows), the invoices pssync created, and named sync state."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    insert,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from contracts.v1.events import (
    BudgetRevised,
    ChangeOrderDecided,
    EventData,
    InvoiceChanged,
    WorkerTermination,
    outbox_payload,
)
from store.models import (
    InboxRow,
    InvoiceRow,
    LineageRow,
    OutboxRow,
    SyncStateRow,
)
from store.repository._base import (
    _LINEAGE,
    _LINEAGE_OPTIONAL,
    _LINEAGE_REQUIRED,
    StoreBase,
)

_OUTBOX: Table = OutboxRow.__table__  # type: ignore[attr-defined]

DomainEvent = tuple[str, str, str, EventData]
"""``(event_type, key, subject, data)`` of one domain event."""


def queue_events(
    conn: Connection | Session,
    dialect: str,
    now: datetime,
    events: Sequence[tuple[str, str, str, EventData]],
) -> None:
    """Record domain events ``(event_type, key, subject, data)`` in the outbox inside the
    caller's transaction (the one recording the fact); a key already there is left as it is,
    so recording a fact twice publishes it once."""
    if not events:
        return
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    params = [
        {
            "event_type": event_type,
            "key": key,
            "payload": outbox_payload(subject, data),
            "created_at": now,
        }
        for event_type, key, subject, data in events
    ]
    target = conn.connection() if isinstance(conn, Session) else conn
    target.execute(insert_(_OUTBOX).on_conflict_do_nothing(), params)


def derived_events(event_type: str, key: str, payload: Mapping[str, Any]) -> list[DomainEvent]:
    """The domain events a workflow's own outbox row stands for, recorded with it.

    Two processes record their final step as an outbox row through `store.add_outbox`, and no
    other activity runs at that point: the change order's forecast adjustment (written once
    the ERP and PSA budgets are revised and demand raised — nothing is undone after it) means
    the change order was approved and applied and the ERP budget revised; the termination's
    `termination.effective` / `termination.rescinded` notifications mean the worker's
    termination took effect / was withdrawn. Keys are business keys (the change order, the
    worker and termination date), so a repeated row records nothing more."""
    if event_type == "forecast.adjustment" and payload.get("change_order_id"):
        return _change_order_applied(key, payload)
    if event_type == "notification" and payload.get("worker_id"):
        kind = payload.get("kind")
        verb = {"termination.effective": "terminated", "termination.rescinded": "rescinded"}
        if kind in verb:
            worker_id = str(payload["worker_id"])
            day = payload.get("termination_date")
            data = WorkerTermination(
                worker_id=worker_id,
                termination_date=day,
                workflow_id=key.rsplit("/", 1)[0] if "/" in key else None,
                message=payload.get("message"),
                details=payload.get("details") or {},
            )
            return [(f"worker.{verb[str(kind)]}", f"{worker_id}:{day}", worker_id, data)]
    return []


def _change_order_applied(key: str, payload: Mapping[str, Any]) -> list[DomainEvent]:
    impact = payload.get("impact") or {}
    budget = impact.get("budget_delta") or {}
    amount = budget.get("amount") if isinstance(budget, dict) else None
    currency = (budget.get("currency") if isinstance(budget, dict) else None) or impact.get(
        "currency"
    )
    eid = str(payload.get("enterprise_id") or "")
    co_id = str(payload["change_order_id"])
    subject = eid or str(payload.get("psa_project_id") or key)
    business_key = f"{eid}:{co_id}" if eid else key
    decided = ChangeOrderDecided(
        enterprise_id=eid or None,
        change_order_id=co_id,
        psa_project_id=payload.get("psa_project_id"),
        decision="approved",
        budget_delta=Decimal(str(amount)) if amount is not None else None,
        hours_delta=impact.get("hours_delta"),
        currency=currency,
        decided_by=list(payload.get("approved_by") or []),
        decided_at=payload.get("applied_at"),
    )
    revised = BudgetRevised(
        enterprise_id=eid or None,
        change_order_id=co_id,
        erp_project_id=f"eid:{eid}" if eid else None,
        budget_delta=decided.budget_delta,
        currency=currency,
    )
    return [
        ("change_order.approved", business_key, subject, decided),
        ("budget.revised", business_key, subject, revised),
    ]


class RecordOps(StoreBase):
    def record_lineage(
        self,
        entity_type: str,
        entity_key: str,
        fields: Sequence[str],
        source_system: str,
        source_version: str | None,
        workflow_id: str,
        run_id: str | None,
        activity: str,
    ) -> LineageRow:
        """Append who wrote ``fields`` of an entity, from which source version (append-only)."""
        row = LineageRow(
            entity_type=entity_type,
            entity_key=entity_key,
            fields=list(fields),
            source_system=source_system,
            source_version=source_version,
            workflow_id=workflow_id,
            run_id=run_id,
            activity=activity,
            recorded_at=self._clock(),
        )
        with self._write() as session:
            session.add(row)
            session.flush()  # assigns row.id
            return row

    def record_lineage_many(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Append many lineage rows in one transaction and one statement; returns how many.

        Each mapping has ``record_lineage``'s parameters as keys: ``entity_type``,
        ``entity_key``, ``fields``, ``source_system``, ``workflow_id``, ``activity`` and,
        optionally (None if absent), ``source_version`` and ``run_id``. ``recorded_at`` is the
        store's clock. Raises ``ValueError`` for a missing or unknown key, writing nothing.
        """
        now = self._clock()
        params = [_lineage_values(row, now) for row in rows]
        if not params:
            return 0
        with self._write_conn() as conn:
            conn.execute(insert(_LINEAGE), params)
        return len(params)

    def lineage_for(self, entity_type: str, entity_key: str) -> list[LineageRow]:
        """The lineage of one entity, in the order it was recorded."""
        with self._read() as session:
            return list(
                session.exec(
                    select(LineageRow)
                    .where(
                        col(LineageRow.entity_type) == entity_type,
                        col(LineageRow.entity_key) == entity_key,
                    )
                    .order_by(col(LineageRow.id))
                ).all()
            )

    # -- outbox -------------------------------------------------------------------------------

    def add_outbox(self, event_type: str, key: str, payload: Mapping[str, Any]) -> bool:
        """Queue an event; True if recorded now, False if (event_type, key) was already there.
        The domain events the row stands for (`derived_events`) are queued with it."""
        now = self._clock()
        with self._write() as session:
            added = self._insert_if_absent(
                session,
                OutboxRow,
                {"event_type": event_type, "key": key, "payload": dict(payload), "created_at": now},
            )
            queue_events(session, self._dialect, now, derived_events(event_type, key, payload))
            return added

    def queue_domain_events(self, events: Sequence[DomainEvent]) -> None:
        """Record domain events of a fact an activity made final (a rejected change order);
        a (type, key) already there is left as it is."""
        with self._write() as session:
            queue_events(session, self._dialect, self._clock(), events)

    def pending_outbox(self, limit: int = 100) -> list[OutboxRow]:
        """Unpublished events, oldest first."""
        with self._read() as session:
            return list(
                session.exec(
                    select(OutboxRow)
                    .where(col(OutboxRow.published_at).is_(None))
                    .order_by(col(OutboxRow.id))
                    .limit(limit)
                ).all()
            )

    def mark_published(self, ids: Iterable[int]) -> int:
        """Mark events published; returns how many were still pending."""
        id_list = list(ids)
        if not id_list:
            return 0
        with self._write() as session:
            result = session.exec(
                update(OutboxRow)
                .where(col(OutboxRow.id).in_(id_list), col(OutboxRow.published_at).is_(None))
                .values(published_at=self._clock())
                .execution_options(synchronize_session=False)
            )
            return result.rowcount

    # -- invoices ---------------------------------------------------------------------------

    def record_invoice(
        self, invoice: Mapping[str, Any], *, subject: str, data: InvoiceChanged
    ) -> bool:
        """Record an ERP invoice just created (``InvoiceRow`` fields; ``created_at`` is now
        unless given) and its `invoice.created` event, in one transaction; idempotent by
        ``invoice_ref``. True if recorded now."""
        values = {"created_at": self._clock(), **invoice}
        with self._write() as session:
            added = self._insert_if_absent(session, InvoiceRow, values)
            event = ("invoice.created", str(values["invoice_ref"]), subject, data)
            queue_events(session, self._dialect, values["created_at"], [event])
            return added

    def record_invoice_voided(
        self, invoice_ref: str, *, subject: str, data: InvoiceChanged
    ) -> None:
        """The ERP invoice was voided: stamp it (the first time) and queue `invoice.voided`."""
        now = self._clock()
        with self._write() as session:
            session.exec(
                update(InvoiceRow)
                .where(
                    col(InvoiceRow.invoice_ref) == invoice_ref, col(InvoiceRow.voided_at).is_(None)
                )
                .values(voided_at=now)
            )
            queue_events(
                session, self._dialect, now, [("invoice.voided", invoice_ref, subject, data)]
            )

    def invoice(self, invoice_ref: str) -> InvoiceRow | None:
        with self._read() as session:
            return session.get(InvoiceRow, invoice_ref)

    def milestone_completed_at(
        self, psa_project_id: str, milestone_id: str, *, source: str = "psa"
    ) -> datetime | None:
        """When the PSA said a billing milestone completed: the envelope ``timestamp`` of its
        `billing_milestone.completed` webhook in the inbox (else when it was received), or
        None when no such webhook came (a person asked to bill it)."""
        with self._read() as session:
            rows = session.exec(
                select(InboxRow).where(
                    col(InboxRow.source) == source,
                    col(InboxRow.event_type) == "billing_milestone.completed",
                    col(InboxRow.body).contains(milestone_id, autoescape=True),
                )
            ).all()
        found: list[datetime] = []
        for row in rows:
            try:
                envelope = json.loads(row.body or "")
                data = envelope.get("data") or {}
            except (ValueError, AttributeError):
                continue
            if str(data.get("billing_milestone_id")) != milestone_id:
                continue
            if data.get("workspace_id") is not None and str(data["workspace_id"]) != psa_project_id:
                continue
            found.append(_timestamp(envelope.get("timestamp")) or row.received_at)
        return min(found) if found else None

    # -- sync state ---------------------------------------------------------------------------

    def get_state(self, name: str) -> str | None:
        """The value kept under ``name`` (a poll cursor, a run pointer), or None."""
        with self._read() as session:
            row = session.get(SyncStateRow, name)
            return None if row is None else row.value

    def put_state(self, name: str, value: str) -> None:
        """Keep ``value`` under ``name`` (insert or overwrite; the last writer wins)."""
        now = self._clock()
        with self._write() as session:
            if not self._insert_if_absent(
                session, SyncStateRow, {"name": name, "value": value, "updated_at": now}
            ):
                session.exec(
                    update(SyncStateRow)
                    .where(col(SyncStateRow.name) == name)
                    .values(value=value, updated_at=now)
                )


def _lineage_values(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    unknown = set(row) - {*_LINEAGE_REQUIRED, *_LINEAGE_OPTIONAL}
    missing = [name for name in _LINEAGE_REQUIRED if name not in row]
    if unknown or missing:
        raise ValueError(
            f"lineage row with unknown keys {sorted(unknown)} / missing keys {missing}"
        )
    if isinstance(row["fields"], str):
        raise ValueError(f"lineage fields must be a list of names, not {row['fields']!r}")
    values = {name: row.get(name) for name in (*_LINEAGE_REQUIRED, *_LINEAGE_OPTIONAL)}
    values["fields"] = list(row["fields"])
    values["recorded_at"] = now
    return values


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
