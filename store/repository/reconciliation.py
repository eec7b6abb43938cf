"""Reconciliation: its runs (``reconciliation_run``) and the drifts they find (``drift``), plus
the reads a run needs from pssync's own state (its scope of projects, a project's ledger).

A drift is one row per fingerprint: ``record_drifts`` upserts what a run found (the first
sighting's ``first_seen`` / ``first_run`` stay), ``close_gone_drifts`` closes those in a run's
scope it did not find again, ``set_drift_state`` records a person's decision."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Table, and_, func, or_, update
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from contracts.v1.events import DriftFound
from store.errors import NotFound
from store.models import (
    DriftGauges,
    DriftRow,
    ReconciliationRunRow,
    TimePostingRow,
    XrefRow,
)
from store.repository._base import StoreBase, _chunks
from store.repository.records import queue_events

_DRIFT: Table = DriftRow.__table__  # type: ignore[attr-defined]
_RUN: Table = ReconciliationRunRow.__table__  # type: ignore[attr-defined]
_DRIFT_COLUMNS = frozenset(c.name for c in _DRIFT.columns)
_KEPT_ON_UPDATE = frozenset({"fingerprint", "first_seen", "first_run"})
_STANDING = ("open", "repaired", "escalated")
"""Drift states that still stand between the systems."""
_CLOSABLE = (*_STANDING, "acknowledged")
_RUN_TOTALS = frozenset(
    {
        "by_kind", "found", "new", "repaired", "escalated", "reported", "kept", "gone",
        "unrepaired", "records", "projects", "vendor_calls", "seconds",
    }
)  # fmt: skip
RUNS_PAGE_MAX = 200
DRIFTS_PAGE_MAX = 1000
PSA_PROJECT_OBJECT = "workspace"


def _drift(values: Mapping[str, Any]) -> DriftFound:
    """The ``drift.found`` data of a drift row's values."""
    return DriftFound(
        fingerprint=str(values["fingerprint"]),
        domain=str(values.get("domain", "")),
        kind=str(values.get("kind", "")),
        tenant=str(values.get("tenant", "")),
        project=values.get("project"),
        period=values.get("period"),
        owner=str(values.get("owner", "")),
        disposition=str(values.get("disposition", "")),
        run_id=str(values.get("last_run") or values.get("first_run") or ""),
    )


class ReconciliationOps(StoreBase):
    # -- runs -------------------------------------------------------------------------------

    def start_reconciliation_run(
        self,
        run_id: str,
        *,
        domain: str,
        tenant: str,
        started_at: datetime,
        project: str | None = None,
        since: date | None = None,
        dry_run: bool = False,
        requested_by: str = "schedule",
    ) -> ReconciliationRunRow:
        """Record a run as running; a repeat (a retried activity) returns the row as it is."""
        with self._write() as session:
            self._insert_if_absent(
                session,
                ReconciliationRunRow,
                {
                    "id": run_id,
                    "domain": domain,
                    "tenant": tenant,
                    "project": project,
                    "since": since,
                    "dry_run": dry_run,
                    "requested_by": requested_by,
                    "state": "running",
                    "started_at": started_at,
                    "by_kind": {},
                    **{n: 0 for n in _RUN_TOTALS if n not in ("by_kind", "seconds")},
                },
            )
            row = session.get(ReconciliationRunRow, run_id)
            assert row is not None
            return row

    def finish_reconciliation_run(
        self, run_id: str, *, finished_at: datetime, **totals: Any
    ) -> ReconciliationRunRow:
        """Record a run's totals and mark it finished (idempotent: the same totals again)."""
        unknown = set(totals) - _RUN_TOTALS
        if unknown:
            raise ValueError(f"unknown reconciliation_run columns: {sorted(unknown)}")
        with self._write() as session:
            row = session.get(ReconciliationRunRow, run_id)
            if row is None:
                raise NotFound("reconciliation_run", run_id)
            for name, value in totals.items():
                setattr(row, name, value)
            row.state = "finished"
            row.finished_at = finished_at
            session.add(row)
            return row

    def get_reconciliation_run(self, run_id: str) -> ReconciliationRunRow | None:
        with self._read() as session:
            return session.get(ReconciliationRunRow, run_id)

    def list_reconciliation_runs(
        self,
        *,
        domain: str | None = None,
        tenant: str | None = None,
        project: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ReconciliationRunRow]:
        """Runs, newest first."""
        query = select(ReconciliationRunRow)
        if domain is not None:
            query = query.where(col(ReconciliationRunRow.domain) == domain)
        if tenant is not None:
            query = query.where(col(ReconciliationRunRow.tenant) == tenant)
        if project is not None:
            query = query.where(col(ReconciliationRunRow.project) == project)
        query = query.order_by(
            col(ReconciliationRunRow.started_at).desc(), col(ReconciliationRunRow.id).desc()
        )
        limit = max(1, min(limit, RUNS_PAGE_MAX))
        with self._read() as session:
            return list(session.exec(query.offset(max(0, offset)).limit(limit)).all())

    # -- drifts -----------------------------------------------------------------------------

    def drift_priors(self, fingerprints: Iterable[str]) -> dict[str, DriftRow]:
        """The drifts of ``fingerprints`` that earlier runs recorded, by fingerprint."""
        keys = list(dict.fromkeys(fingerprints))
        found: dict[str, DriftRow] = {}
        with self._read() as session:
            for chunk in _chunks(keys):
                rows = session.exec(select(DriftRow).where(col(DriftRow.fingerprint).in_(chunk)))
                found.update((row.fingerprint, row) for row in rows)
        return found

    def record_drifts(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Upsert drifts by fingerprint in one transaction; returns the rows written.

        A new drift takes every column given (all but the optional ones are required); a known
        one gets the given columns except ``first_seen`` and ``first_run``, which stay those of
        its first sighting."""
        if not rows:
            return 0
        merged: dict[str, dict[str, Any]] = {}
        for row in rows:
            unknown = set(row) - _DRIFT_COLUMNS
            if unknown:
                raise ValueError(f"unknown drift columns: {sorted(unknown)}")
            if not row.get("fingerprint"):
                raise ValueError(f"a drift row needs a fingerprint: {dict(row)!r}")
            merged[str(row["fingerprint"])] = dict(row)
        insert_ = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        grouped: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for _, values in sorted(merged.items()):
            grouped.setdefault(tuple(sorted(values)), []).append(values)
        with self._write_conn() as conn:
            known: set[str] = set()
            for chunk in _chunks(sorted(merged)):
                known.update(
                    conn.execute(
                        core_select(_DRIFT.c.fingerprint).where(_DRIFT.c.fingerprint.in_(chunk))
                    ).scalars()
                )
            found = [
                ("drift.found", fp, str(v.get("project") or v.get("tenant") or fp), _drift(v))
                for fp, v in sorted(merged.items())
                if fp not in known
            ]
            queue_events(conn, self._dialect, self._clock(), found)
            for columns, params in grouped.items():
                ins = insert_(_DRIFT)
                stmt = ins.on_conflict_do_update(
                    index_elements=[_DRIFT.c.fingerprint],
                    set_={c: ins.excluded[c] for c in columns if c not in _KEPT_ON_UPDATE},
                )
                conn.execute(stmt, params)
        return len(merged)

    def close_gone_drifts(
        self,
        run_id: str,
        *,
        domain: str,
        tenant: str,
        at: datetime,
        project: str | None = None,
        since_period: str | None = None,
    ) -> list[DriftRow]:
        """Close (``gone``) the drifts in a run's scope that it did not find: standing or
        acknowledged, of ``domain`` and ``tenant`` (and ``project``; and of a period from
        ``since_period`` on), last seen by another run. Returns them as they were before."""
        t = _DRIFT.c
        scope = [
            t.domain == domain,
            t.tenant == tenant,
            t.state.in_(_CLOSABLE),
            t.last_run != run_id,
        ]
        if project is not None:
            scope.append(t.project == project)
        if since_period is not None:
            scope.append(or_(t.period.is_(None), t.period >= since_period))
        with self._write_conn() as conn:
            rows = conn.execute(core_select(_DRIFT).where(and_(*scope))).mappings().all()
            closing = [DriftRow.model_validate(dict(r)) for r in rows]
            for chunk in _chunks([r.fingerprint for r in closing]):
                conn.execute(
                    update(_DRIFT)
                    .where(t.fingerprint.in_(chunk), t.state.in_(_CLOSABLE))
                    .values(state="gone", closed_run=run_id, closed_at=at)
                )
        return closing

    def set_drift_state(
        self,
        fingerprint: str,
        state: str,
        *,
        actor: str | None = None,
        item_id: str | None = None,
        only_from: Sequence[str] | None = None,
    ) -> DriftRow | None:
        """Set a drift's state (a person's decision, an item opened); with ``only_from``, only
        when it is in one of those states. The row afterwards, or None if there is none."""
        t = _DRIFT.c
        values: dict[str, Any] = {"state": state}
        if actor is not None:
            values["resolved_by"] = actor
        if item_id is not None:
            values["item_id"] = item_id
        where = [t.fingerprint == fingerprint]
        if only_from is not None:
            where.append(t.state.in_(list(only_from)))
        with self._write() as session:
            session.execute(update(_DRIFT).where(*where).values(values))
            return session.get(DriftRow, fingerprint)

    def run_drifts(
        self,
        run_id: str,
        *,
        offset: int = 0,
        limit: int = 100,
        state: str | None = None,
        kind: str | None = None,
    ) -> tuple[list[DriftRow], int]:
        """The drifts a run found (and has not been found by a later run since) or found gone,
        ordered by kind and fingerprint; and how many there are in all."""
        where = [
            or_(col(DriftRow.last_run) == run_id, col(DriftRow.closed_run) == run_id),
        ]
        if state is not None:
            where.append(col(DriftRow.state) == state)
        if kind is not None:
            where.append(col(DriftRow.kind) == kind)
        limit = max(1, min(limit, DRIFTS_PAGE_MAX))
        with self._read() as session:
            total = session.exec(select(func.count()).select_from(DriftRow).where(*where)).one()
            rows = session.exec(
                select(DriftRow)
                .where(*where)
                .order_by(col(DriftRow.kind), col(DriftRow.fingerprint))
                .offset(max(0, offset))
                .limit(limit)
            ).all()
        return list(rows), int(total)

    def project_drifts(self, projects: Iterable[str], *, limit: int = 20) -> list[DriftRow]:
        """The drifts recorded about any of ``projects`` (PSA project ids), the most recently
        seen first (then by fingerprint), whatever their state: at most ``limit``
        (1..``DRIFTS_PAGE_MAX``)."""
        keys = list(dict.fromkeys(projects))[:100]
        if not keys:
            return []
        limit = max(1, min(limit, DRIFTS_PAGE_MAX))
        with self._read() as session:
            return list(
                session.exec(
                    select(DriftRow)
                    .where(col(DriftRow.project).in_(keys))
                    .order_by(col(DriftRow.last_seen).desc(), col(DriftRow.fingerprint))
                    .limit(limit)
                ).all()
            )

    def count_standing_drifts(
        self,
        *,
        domain: str,
        tenant: str,
        project: str | None = None,
        since_period: str | None = None,
        states: Sequence[str] = _STANDING,
    ) -> int:
        """Drifts of a scope in ``states`` (by default: still standing between the systems,
        i.e. open, repaired and not yet verified, or escalated)."""
        t = _DRIFT.c
        where = [t.domain == domain, t.tenant == tenant, t.state.in_(list(states))]
        if project is not None:
            where.append(t.project == project)
        if since_period is not None:
            where.append(or_(t.period.is_(None), t.period >= since_period))
        with self._reader.connect() as conn:
            return int(
                conn.execute(
                    core_select(func.count()).select_from(_DRIFT).where(*where)
                ).scalar_one()
            )

    def drift_gauges(self) -> DriftGauges:
        """Standing drifts by domain, kind and state; the oldest per domain; each domain's
        last finished run."""
        t = _DRIFT.c
        r = _RUN.c
        with self._reader.connect() as conn:
            counts = conn.execute(
                core_select(t.domain, t.kind, t.state, func.count())
                .where(t.state.in_(_STANDING))
                .group_by(t.domain, t.kind, t.state)
            ).all()
            oldest = conn.execute(
                core_select(t.domain, func.min(t.first_seen))
                .where(t.state.in_(_STANDING))
                .group_by(t.domain)
            ).all()
            last = conn.execute(
                core_select(r.domain, func.max(r.finished_at))
                .where(r.state == "finished")
                .group_by(r.domain)
            ).all()
        return DriftGauges(
            open={(d, k, s): int(n) for d, k, s, n in counts},
            oldest={d: _aware(v) for d, v in oldest if v is not None},
            last_success={d: _aware(v) for d, v in last if v is not None},
        )

    # -- what a run reads from pssync's own state ---------------------------------------------

    def reconciliation_projects(
        self, tenant: str, *, after: str | None = None, limit: int = 25
    ) -> list[tuple[str, str | None]]:
        """The PSA projects pssync knows, in id order after ``after``: linked in the xref for
        ``tenant`` (the ERP project as ``eid:<enterprise id>``) or in the time-posting ledger
        (its ERP project as the ledger recorded it). ``(psa_project_id, erp_project)``."""
        limit = max(1, min(limit, 1000))
        x = XrefRow.__table__.c  # type: ignore[attr-defined]
        ledger = TimePostingRow.__table__.c  # type: ignore[attr-defined]
        linked = core_select(x.external_id, x.enterprise_id).where(
            x.system == "PSA", x.object_type == PSA_PROJECT_OBJECT, x.tenant == tenant
        )
        posted = core_select(ledger.psa_project_id, func.max(ledger.erp_project)).group_by(
            ledger.psa_project_id
        )
        if after is not None:
            linked = linked.where(x.external_id > after)
            posted = posted.having(ledger.psa_project_id > after)
        found: dict[str, str | None] = {}
        with self._reader.connect() as conn:
            for pid, eid in conn.execute(linked.order_by(x.external_id).limit(limit)).all():
                found[str(pid)] = f"eid:{eid}"
            for pid, erp in conn.execute(posted.order_by(ledger.psa_project_id).limit(limit)).all():
                found.setdefault(str(pid), erp)
        return sorted(found.items())[:limit]

    def ledger_rows(self, psa_project_id: str) -> list[TimePostingRow]:
        """Every time-posting ledger row of a PSA project, by entry key."""
        with self._read() as session:
            return list(
                session.exec(
                    select(TimePostingRow)
                    .where(col(TimePostingRow.psa_project_id) == psa_project_id)
                    .order_by(col(TimePostingRow.entry_key))
                ).all()
            )


def _aware(value: datetime) -> datetime:
    """An aggregate's timestamp, aware and in UTC on every backend."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
