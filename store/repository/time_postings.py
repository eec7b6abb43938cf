"""The time-posting ledger: keys posting/posted, billed marks, totals."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Table,
    bindparam,
    func,
    insert,
    update,
)
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from contracts.systems import System
from contracts.v1.events import TimePosted
from store.errors import NotFound
from store.models import (
    TimePostingRow,
    TimePostingState,
    TimeTotal,
    XrefRow,
)
from store.repository._base import (
    _LINEAGE,
    _TIME_POSTING,
    _TIME_POSTING_COLUMNS,
    _TIME_POSTING_DECIMALS,
    _TIME_POSTING_KINDS,
    _TIME_POSTING_REQUIRED,
    StoreBase,
    _chunks,
)
from store.repository.records import _lineage_values, queue_events

_XREF: Table = XrefRow.__table__  # type: ignore[attr-defined]
_EVENT_STATES = {
    TimePostingState.POSTED.value: "time.posted",
    TimePostingState.REVERSED.value: "time.reversed",
}
_EVENT_FIELDS = tuple(name for name in TimePosted.model_fields if name in _TIME_POSTING.c)
"""The ledger columns a ``time.posted`` / ``time.reversed`` event carries."""
_EVENT_COLUMNS = tuple(
    dict.fromkeys(
        (
            *_EVENT_FIELDS,
            "entry_key",
            "entry_version",
            "posting_key",
            "erp_id",
            "state",
            "psa_project_id",
        )
    )
)

PERIOD_GROUPS_MAX = 2000
"""Groups ``postings_by_period`` returns at most (the latest periods first)."""
INVOICES_MAX = 200


def _group_sums(t: Any) -> tuple[Any, ...]:
    """What a group of ledger rows sums: hours, bill amounts, cost amounts and the rows."""
    return func.sum(t.hours), func.sum(t.bill_amount), func.sum(t.cost_amount), func.count()


def _sums_or_zero(hours: Any, bill: Any, cost: Any, entries: int) -> dict[str, Any]:
    """A group's sums as its fields, zero where no row had a value."""
    return {
        "hours": hours if hours is not None else Decimal("0.000000"),
        "bill_amount": bill if bill is not None else Decimal("0.00"),
        "cost_amount": cost if cost is not None else Decimal("0.00"),
        "entries": entries,
    }


@dataclass(frozen=True, slots=True)
class PeriodPostings:
    """The ledger rows of one project, period, state, kind and currency, summed."""

    period: str | None
    state: str
    kind: str
    currency: str | None
    hours: Decimal
    bill_amount: Decimal
    """Sum of the bill amounts (0 when none has one)."""
    cost_amount: Decimal
    """Sum of the cost amounts (0 when none has one)."""
    entries: int


@dataclass(frozen=True, slots=True)
class InvoiceTotal:
    """The entries of one project billed on one invoice (one currency)."""

    invoice_ref: str
    currency: str | None
    hours: Decimal
    bill_amount: Decimal
    entries: int
    first_period: str | None
    last_period: str | None


def _time_events(conn: Any, keys: Sequence[str]) -> list[tuple[str, str, str, TimePosted]]:
    """The ``time.posted`` / ``time.reversed`` events of ledger rows ``keys`` as they now
    stand, each about its project's enterprise id (the PSA project id if it has none yet).
    Keyed by entry, version and ERP posting: the same posting recorded again is one event."""
    t, x = _TIME_POSTING.c, _XREF.c
    rows: list[dict[str, Any]] = []
    columns = [t[name] for name in _EVENT_COLUMNS]
    for chunk in _chunks(keys):
        found_rows = conn.execute(core_select(*columns).where(t.entry_key.in_(chunk)))
        rows.extend(dict(zip(_EVENT_COLUMNS, r, strict=True)) for r in found_rows)
    projects = sorted({r["psa_project_id"] for r in rows})
    enterprise: dict[str, str] = {}
    for chunk in _chunks(projects):
        found = conn.execute(
            core_select(x.external_id, x.enterprise_id).where(
                x.system == System.PSA.value,
                x.entity_type == "project",
                x.external_id.in_(chunk),
            )
        ).all()
        enterprise.update((ext, eid) for ext, eid in found)
    events = []
    for r in rows:
        event_type = _EVENT_STATES.get(r["state"])
        if event_type is None:
            continue
        data = TimePosted.model_validate({name: r[name] for name in _EVENT_FIELDS})
        key = f"{r['entry_key']}@{r['entry_version']}:{r['posting_key'] or r['erp_id'] or ''}"
        subject = enterprise.get(r["psa_project_id"], r["psa_project_id"])
        events.append((event_type, key, subject, data))
    return events


class TimePostingOps(StoreBase):
    def time_postings(self, entry_keys: Iterable[str]) -> dict[str, TimePostingRow]:
        """The ledger rows of ``entry_keys`` that exist, by entry key (missing keys are absent)."""
        keys = list(dict.fromkeys(entry_keys))
        found: dict[str, TimePostingRow] = {}
        with self._read() as session:
            for chunk in _chunks(keys):
                rows = session.exec(
                    select(TimePostingRow).where(col(TimePostingRow.entry_key).in_(chunk))
                )
                found.update((row.entry_key, row) for row in rows)
        return found

    def record_time_postings(
        self, rows: Sequence[Mapping[str, Any]], *, lineage: Sequence[Mapping[str, Any]] = ()
    ) -> int:
        """Upsert ledger rows by ``entry_key`` in one transaction; returns the rows written.
        ``lineage`` rows (as ``record_lineage_many`` takes them) are appended in the same
        transaction, so what was posted and where it came from are recorded together.

        Each mapping holds ``entry_key`` and any other columns of ``TimePostingRow`` but
        ``updated_at`` (set to the store's clock). An existing row gets exactly the given columns
        and keeps the others, so ``{"entry_key": k, "state": "posted", "erp_id": "9"}`` is a
        valid update. A new row takes the given columns and the model's defaults for the others,
        but ``kind``, ``entry_id``, ``psa_project_id``, ``entry_version``, ``state``, ``hours``
        and ``billable`` have none: a row without all of them must already exist (else
        ``NotFound``, and nothing is written). Rows may give different columns; one key given
        twice acts as two upserts in order (and counts once).

        Hours are rounded half-up to 6 places; amounts must have at most 2 (round them first).
        Raises ``ValueError`` (unknown column, state or kind; an amount with more decimals or a
        number too large for its column) or ``TypeError`` (a float) before writing anything.
        """
        now = self._clock()
        merged: dict[str, dict[str, Any]] = {}
        lineage_params = [_lineage_values(row, now) for row in lineage]
        for row in rows:
            values = _time_posting_values(row)
            key = values["entry_key"]
            merged[key] = {**merged.get(key, {}), **values}
        if not merged:
            if lineage_params:
                with self._write_conn() as conn:
                    conn.execute(insert(_LINEAGE), lineage_params)
            return 0
        upserts: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        # Rows in key order, so concurrent batches over the same entries lock them in the same
        # order (PostgreSQL) instead of deadlocking.
        for _, values in sorted(merged.items()):
            values["updated_at"] = now
            columns = tuple(sorted(values))
            target = upserts if _TIME_POSTING_REQUIRED.issubset(values) else updates
            target.setdefault(columns, []).append(values)
        insert_ = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        table = _TIME_POSTING
        with self._write_conn() as conn:
            # Partial rows can only update: an INSERT ... ON CONFLICT still checks NOT NULL on
            # the row it proposes, on both backends. Check they all exist before writing.
            partial = [v["entry_key"] for params in updates.values() for v in params]
            existing: set[str] = set()
            for chunk in _chunks(partial):
                existing.update(
                    conn.execute(
                        core_select(table.c.entry_key).where(table.c.entry_key.in_(chunk))
                    ).scalars()
                )
            for key in partial:
                if key not in existing:
                    raise NotFound("time_posting", key)
            for columns, params in updates.items():
                stmt = (
                    update(table)
                    .where(table.c.entry_key == bindparam("b_entry_key"))
                    .values({c: bindparam(c) for c in columns if c != "entry_key"})
                )
                conn.execute(stmt, [{**p, "b_entry_key": p["entry_key"]} for p in params])
            for columns, params in upserts.items():
                ins = insert_(table)
                stmt_ins = ins.on_conflict_do_update(
                    index_elements=[table.c.entry_key],
                    set_={c: ins.excluded[c] for c in columns if c != "entry_key"},
                )
                conn.execute(stmt_ins, params)  # executemany: one statement, many rows
            # Posted and reversed entries are domain events, recorded in this transaction.
            settled = [k for k, v in sorted(merged.items()) if v.get("state") in _EVENT_STATES]
            queue_events(conn, self._dialect, now, _time_events(conn, settled))
            if lineage_params:
                conn.execute(insert(_LINEAGE), lineage_params)
        return len(merged)

    def posted_fingerprints(
        self, fingerprints: Iterable[str], exclude: Iterable[str] = ()
    ) -> dict[str, str]:
        """Which of ``fingerprints`` a live entry (state posted or posting) already carries:
        fingerprint -> that entry's key (the smallest, if several do). Entries whose keys are in
        ``exclude`` (typically the ones being checked) do not count."""
        prints = list(dict.fromkeys(fingerprints))
        excluded = set(exclude)
        live = (TimePostingState.POSTED.value, TimePostingState.POSTING.value)
        t = _TIME_POSTING.c
        found: dict[str, str] = {}
        with self._reader.connect() as conn:
            for chunk in _chunks(prints):
                rows = conn.execute(
                    core_select(t.fingerprint, t.entry_key).where(
                        t.fingerprint.in_(chunk), t.state.in_(live)
                    )
                ).all()
                for fingerprint, key in rows:
                    if key not in excluded and (
                        fingerprint not in found or key < found[fingerprint]
                    ):
                        found[fingerprint] = key
        return found

    def unbilled_time(self, psa_project_id: str, period: str | None = None) -> list[TimePostingRow]:
        """Posted, billable entries of a project with a bill amount and no invoice yet (of
        ``period`` if given), ordered by entry key."""
        query = select(TimePostingRow).where(
            col(TimePostingRow.psa_project_id) == psa_project_id,
            col(TimePostingRow.state) == TimePostingState.POSTED.value,
            col(TimePostingRow.billable).is_(True),
            col(TimePostingRow.invoice_ref).is_(None),
            col(TimePostingRow.bill_amount).is_not(None),
        )
        if period is not None:
            query = query.where(col(TimePostingRow.period) == period)
        with self._read() as session:
            return list(session.exec(query.order_by(col(TimePostingRow.entry_key))).all())

    def unbilled_periods(self, before: str) -> list[tuple[str, str]]:
        """``(psa_project_id, period)`` of every period earlier than ``before`` (``"YYYY-MM"``,
        i.e. closed when ``before`` is the current month) that still has unbilled time or
        expense, as ``unbilled_time`` defines it; ordered by project then period."""
        t = _TIME_POSTING.c
        query = (
            core_select(t.psa_project_id, t.period)
            .where(
                t.state == TimePostingState.POSTED.value,
                t.billable.is_(True),
                t.invoice_ref.is_(None),
                t.bill_amount.is_not(None),
                t.period.is_not(None),
                t.period < before,
            )
            .distinct()
            .order_by(t.psa_project_id, t.period)
        )
        with self._reader.connect() as conn:
            return [(project, period) for project, period in conn.execute(query).all()]

    def mark_time_billed(self, entry_keys: Sequence[str], invoice_ref: str) -> int:
        """Put ``invoice_ref`` on those of ``entry_keys`` that carry no invoice yet; idempotent.

        Rows already billed on another invoice keep it. Returns how many of ``entry_keys`` carry
        ``invoice_ref`` afterwards (marked now or before), so a repeat returns the same count.
        """
        keys = list(dict.fromkeys(entry_keys))
        if not keys:
            return 0
        now = self._clock()
        carrying = 0
        with self._write_conn() as conn:
            for chunk in _chunks(keys):
                in_chunk = _TIME_POSTING.c.entry_key.in_(chunk)
                conn.execute(
                    update(_TIME_POSTING)
                    .where(in_chunk, _TIME_POSTING.c.invoice_ref.is_(None))
                    .values(invoice_ref=invoice_ref, updated_at=now)
                )
                carrying += conn.execute(
                    core_select(func.count())
                    .select_from(_TIME_POSTING)
                    .where(in_chunk, _TIME_POSTING.c.invoice_ref == invoice_ref)
                ).scalar_one()
        return carrying

    def unmark_time_billed(self, invoice_ref: str) -> int:
        """Take ``invoice_ref`` off every row carrying it (the invoice was voided); returns how
        many rows carried it."""
        with self._write_conn() as conn:
            result = conn.execute(
                update(_TIME_POSTING)
                .where(_TIME_POSTING.c.invoice_ref == invoice_ref)
                .values(invoice_ref=None, updated_at=self._clock())
            )
            return result.rowcount

    def time_totals(self, psa_project_id: str | None = None) -> list[TimeTotal]:
        """Posted hours, bill and cost amounts and entry counts per project, period, kind and
        currency (amounts of different currencies are never added up), ordered by those."""
        t = _TIME_POSTING.c
        query = (
            core_select(
                t.psa_project_id,
                t.period,
                t.kind,
                t.currency,
                *_group_sums(t),
            )
            .where(t.state == TimePostingState.POSTED.value)
            .group_by(t.psa_project_id, t.period, t.kind, t.currency)
        )
        if psa_project_id is not None:
            query = query.where(t.psa_project_id == psa_project_id)
        with self._reader.connect() as conn:
            result = conn.execute(query).all()
        totals = [
            TimeTotal(
                psa_project_id=project,
                period=period,
                kind=kind,
                currency=currency,
                **_sums_or_zero(hours, bill, cost, entries),
            )
            for project, period, kind, currency, hours, bill, cost, entries in result
        ]
        # NULLs sort differently on each backend: order in Python, None first.
        return sorted(
            totals,
            key=lambda x: (
                x.psa_project_id, x.period or "", x.period is not None, x.kind,
                x.currency or "", x.currency is not None,
            ),
        )  # fmt: skip

    def time_posting_counts(self, psa_project_id: str | None = None) -> dict[str, int]:
        """Ledger rows per state (every ``TimePostingState`` is present, zero if none)."""
        t = _TIME_POSTING.c
        query = core_select(t.state, func.count()).group_by(t.state)
        if psa_project_id is not None:
            query = query.where(t.psa_project_id == psa_project_id)
        counts = {state.value: 0 for state in TimePostingState}
        with self._reader.connect() as conn:
            counts.update((state, count) for state, count in conn.execute(query).all())
        return counts

    def postings_by_period(
        self, psa_project_id: str, *, limit: int = PERIOD_GROUPS_MAX
    ) -> list[PeriodPostings]:
        """A project's ledger rows summed per period, state, kind and currency (amounts of
        different currencies are never added up): the latest periods first (no period last),
        then by state, kind and currency; at most ``limit`` (1..``PERIOD_GROUPS_MAX``) groups."""
        limit = max(1, min(limit, PERIOD_GROUPS_MAX))
        t = _TIME_POSTING.c
        query = (
            core_select(
                t.period,
                t.state,
                t.kind,
                t.currency,
                *_group_sums(t),
            )
            .where(t.psa_project_id == psa_project_id)
            .group_by(t.period, t.state, t.kind, t.currency)
            .order_by(t.period.is_(None), t.period.desc(), t.state, t.kind, t.currency)
            .limit(limit)
        )
        with self._reader.connect() as conn:
            result = conn.execute(query).all()
        return [
            PeriodPostings(
                period=period,
                state=state,
                kind=kind,
                currency=currency,
                **_sums_or_zero(hours, bill, cost, entries),
            )
            for period, state, kind, currency, hours, bill, cost, entries in result
        ]

    def invoices_of(self, psa_project_id: str, *, limit: int = 50) -> list[InvoiceTotal]:
        """The invoices a project's entries were billed on (``invoice_ref``), per currency, with
        their entries, hours and bill amount: the latest billed periods first, at most
        ``limit`` (1..``INVOICES_MAX``)."""
        limit = max(1, min(limit, INVOICES_MAX))
        t = _TIME_POSTING.c
        last = func.max(t.period)
        query = (
            core_select(
                t.invoice_ref,
                t.currency,
                func.sum(t.hours),
                func.sum(t.bill_amount),
                func.count(),
                func.min(t.period),
                last,
            )
            .where(t.psa_project_id == psa_project_id, t.invoice_ref.is_not(None))
            .group_by(t.invoice_ref, t.currency)
            .order_by(last.desc(), t.invoice_ref)
            .limit(limit)
        )
        with self._reader.connect() as conn:
            result = conn.execute(query).all()
        return [
            InvoiceTotal(
                invoice_ref=ref,
                currency=currency,
                hours=hours if hours is not None else Decimal("0.000000"),
                bill_amount=bill if bill is not None else Decimal("0.00"),
                entries=entries,
                first_period=first,
                last_period=latest,
            )
            for ref, currency, hours, bill, entries, first, latest in result
        ]


def _time_posting_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ledger row's column values, checked; enum members become their plain values."""
    unknown = set(row) - _TIME_POSTING_COLUMNS
    if unknown:
        raise ValueError(f"unknown time_posting columns: {sorted(unknown)}")
    values = dict(row)
    if not isinstance(values.get("entry_key"), str) or not values["entry_key"]:
        raise ValueError(f"a time_posting row needs an entry_key: {dict(row)!r}")
    if "state" in values:
        try:
            values["state"] = TimePostingState(values["state"]).value
        except ValueError:
            raise ValueError(f"{values['entry_key']}: unknown state {values['state']!r}") from None
    if "kind" in values:
        kind = str(getattr(values["kind"], "value", values["kind"]))
        if kind not in _TIME_POSTING_KINDS:
            raise ValueError(f"{values['entry_key']}: unknown kind {values['kind']!r}")
        values["kind"] = kind
    for name, type_ in _TIME_POSTING_DECIMALS.items():
        if name in values:
            try:
                values[name] = type_.coerce(values[name])
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{values['entry_key']}: {name}: {exc}") from None
    return values
