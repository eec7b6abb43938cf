"""Drift injected the way real life makes it (docs/sandbox.md "Tampering"), recorded exactly:
which kind, how it was made, its business keys, and what a pass must do with it.

Labor actuals, `per_kind` of each (victims: distinct posted entries of the current month,
spread over the projects; never one entry twice):

- `missing_in_erp`, repaired: `webhook_dropped` (PSA `drop-webhooks`, then entries approved
  with their events), `erp_deleted` (ERP `timebill/{id}/delete`); escalated: `closed_period`
  (approved last month with the event dropped, then the ERP period closed);
- `posted_not_approved`, repaired: `unapproved` (PSA `time_entries/{id}/unapprove`),
  `deleted_in_psa` (PSA `time_entries/{id}/delete`);
- `stale_version`, repaired: `edited_in_psa` (PSA `time_entries/{id}/edit`, minutes + 5);
- `duplicate_posting`, escalated: `posted_twice` (the same posting sent again to the ERP's
  API under the key of the entry's earlier version);
- `amount_mismatch`, escalated: `edited_in_erp` (ERP `timebill/{id}/edit`, 1 h -> 1.5 h);
- `period_total_mismatch`, escalated: `posted_outside_pssync` (a copy of a posting under a
  key that is not pssync's; one project each).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

import httpx

from bench._harness import Twins, log
from bench._time_to_invoice.world import Bench, Entry, EntryFactory, Project
from connectors.erp import ErpPort
from contracts.v1 import CostPosting

APPROVED = "time_entry.approved"
REPAIRED, ESCALATED = "repaired", "escalated"


@dataclass(frozen=True)
class Injected:
    kind: str
    how: str
    project: str
    expect: str
    entry: str | None = None
    """`time:<id>` for an entry's drift."""
    period: str | None = None
    """`YYYY-MM` for a period's drift."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (
            self.kind,
            self.project,
            self.entry if self.entry is not None else f"{self.period}/time",
        )


def drift_key(d: dict[str, Any]) -> tuple[str, str, str]:
    """The same key for a drift the API reports."""
    keys = d["keys"]
    where = keys.get("entry") or f"{keys.get('period')}/{keys.get('entry_kind')}"
    return (d["kind"], keys["psa_project_id"], where)


@dataclass
class Posted:
    """The entries posted in the set-up: each one's project and day, and its ERP timebill."""

    entries: list[Entry]
    day: dict[str, date]
    timebill: dict[str, dict[str, Any]]
    """entry id -> {"id", "externalid"} of its live timebill."""


def _period(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


class Injector:
    """Makes the drift and records it (`self.injected`)."""

    def __init__(
        self,
        bench: Bench,
        erp: ErpPort,
        posted: Posted,
        projects: Sequence[Project],
        *,
        factory: EntryFactory,
        job_of: dict[str, str],
    ) -> None:
        self.bench = bench
        self.factory = factory
        self.job_of = job_of
        """PSA project -> its ERP project as the connector takes it (`eid:<enterprise id>`)."""
        self.twins: Twins = bench.twins
        self.http: httpx.AsyncClient = bench.twins.http
        self.base = bench.twins.base
        self.erp = erp
        self.posted = posted
        self.projects = list(projects)
        self.injected: list[Injected] = []
        this_month = date.today().replace(day=1)
        by_project: dict[str, list[Entry]] = defaultdict(list)
        for e in posted.entries:
            if posted.day[e.entry_id] >= this_month and e.entry_id in posted.timebill:
                by_project[e.project].append(e)
        rng = random.Random(15)
        for entries in by_project.values():
            rng.shuffle(entries)
        # Round-robin over the projects: victims spread as widely as the projects allow.
        order = sorted(by_project)
        self._pool: list[Entry] = []
        while any(by_project.values()):
            for p in order:
                if by_project[p]:
                    self._pool.append(by_project[p].pop())

    def victim(self) -> Entry:
        if not self._pool:
            raise RuntimeError("not enough posted entries in the current month for the drift")
        return self._pool.pop(0)

    def note(self, kind: str, how: str, e: Entry, expect: str) -> None:
        self.injected.append(Injected(kind, how, e.project, expect, entry=f"time:{e.entry_id}"))

    async def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = await self.http.post(f"{self.base}{path}", json=body or {})
        if r.status_code >= 400:
            raise RuntimeError(f"tamper {path}: {r.status_code} {r.text[:300]}")
        return dict(r.json()) if r.content else {}

    # -- labor actuals --------------------------------------------------------------------------

    async def labor(self, per_kind: int) -> None:
        """Every labor kind, `per_kind` of each (see the module's list). The ERP period of last
        month is closed last, after every other tamper (a closed period refuses edits)."""
        await self._dropped(per_kind)
        for _ in range(per_kind):
            e = self.victim()
            await self._post(
                f"/erp/_admin/tamper/timebill/{self.posted.timebill[e.entry_id]['id']}/delete"
            )
            self.note("missing_in_erp", "erp_deleted", e, REPAIRED)
        for _ in range(per_kind):
            e = self.victim()
            await self._post(f"/psa/_admin/tamper/time_entries/{e.entry_id}/unapprove")
            self.note("posted_not_approved", "unapproved", e, REPAIRED)
        for _ in range(per_kind):
            e = self.victim()
            await self._post(f"/psa/_admin/tamper/time_entries/{e.entry_id}/delete")
            self.note("posted_not_approved", "deleted_in_psa", e, REPAIRED)
        for _ in range(per_kind):
            e = self.victim()
            minutes = await self._minutes(e.entry_id)
            await self._post(
                f"/psa/_admin/tamper/time_entries/{e.entry_id}/edit",
                {"time_in_minutes": minutes + 5},
            )
            self.note("stale_version", "edited_in_psa", e, REPAIRED)
        for _ in range(per_kind):
            e = self.victim()
            bill = self.posted.timebill[e.entry_id]
            # Every set-up entry is 60 minutes: its posting 1 hour, now 1.5.
            await self._post(f"/erp/_admin/tamper/timebill/{bill['id']}/edit", {"hours": "1.5"})
            self.note("amount_mismatch", "edited_in_erp", e, ESCALATED)
        await self._outside_pssync(per_kind)
        await self._closed_period(per_kind)

    async def _dropped(self, count: int) -> None:
        """`count` entries approved in the current month whose `time_entry.approved` events
        the PSA never sends."""
        await self._post("/psa/_admin/tamper/drop-webhooks", {"type": APPROVED, "count": count})
        made = await self._approve_new(count, date.today() - timedelta(days=1), emit=True)
        for e in made:
            self.note("missing_in_erp", "webhook_dropped", e, REPAIRED)
        await self._check_dropped(count)

    async def _closed_period(self, count: int) -> None:
        """`count` entries approved last month with their events dropped, then last month's
        ERP period closed: the missing postings cannot be made, a person must decide."""
        last_month = date.today().replace(day=1) - timedelta(days=1)
        await self._post("/psa/_admin/tamper/drop-webhooks", {"type": APPROVED, "count": count})
        made = await self._approve_new(count, last_month.replace(day=1), emit=True)
        await self._check_dropped(count)
        await self._post(f"/erp/_admin/tamper/accountingPeriod/{_period(last_month)}/close")
        for e in made:
            self.note("missing_in_erp", "closed_period", e, ESCALATED)

    async def _check_dropped(self, more: int) -> None:
        r = await self.http.get(f"{self.base}/psa/_admin/tamper/drop-webhooks")
        r.raise_for_status()
        report = r.json()
        if any(rule["remaining"] for rule in report["rules"]):
            raise RuntimeError(f"drop rules not used up: {report['rules']}")
        log(f"  PSA dropped {report['dropped_by_type'].get(APPROVED, 0)} approval events so far")

    async def _approve_new(self, count: int, day: date, *, emit: bool) -> list[Entry]:
        """`count` new approved entries on `day`, one project each (round-robin from the
        first), made by the PSA twin's bulk endpoint (`emit`: with their events)."""
        specs = []
        for i in range(count):
            project = self.projects[(len(self.injected) + i) % len(self.projects)]
            spec = self.factory.next_entry(project)
            spec["date_performed"] = day.isoformat()
            spec["time_in_minutes"] = 1440 - 5 * (project.made % 100)  # never a set-up entry's
            specs.append(spec)
        ids = await self.twins.bulk(specs, approved=True, emit=emit)
        return [Entry(str(s["workspace_id"]), i) for s, i in zip(specs, ids, strict=True)]

    async def _outside_pssync(self, count: int) -> None:
        """One posting made outside pssync in `count` projects: a copy of a posting of the
        project under a key that is not pssync's (`manual-...`), and in as many other
        projects one entry's posting sent twice (under its earlier version's key)."""
        twice = [self.victim() for _ in range(count)]
        stray: list[Entry] = []
        for e in list(self._pool):  # one project each
            if len(stray) < count and e.project not in {s.project for s in stray}:
                stray.append(e)
                self._pool.remove(e)
        if len(stray) < count:
            raise RuntimeError(f"{count} projects needed for stray postings, {len(stray)} left")
        postings = await self._postings([*twice, *stray])
        copies: list[CostPosting] = []
        for e in twice:
            p = postings[e.entry_id]
            version = int(p.idempotency_key.rsplit("-v", 1)[1])
            copies.append(
                p.model_copy(update={"idempotency_key": f"psa-time-{e.entry_id}-v{version - 1}"})
            )
            self.note("duplicate_posting", "posted_twice", e, ESCALATED)
        for n, e in enumerate(stray):
            p = postings[e.entry_id]
            copies.append(p.model_copy(update={"idempotency_key": f"manual-rb-{n}"}))
            period = _period(p.posting_date)
            self.injected.append(
                Injected("period_total_mismatch", "posted_outside_pssync", e.project, ESCALATED,
                         period=period)
            )  # fmt: skip
        results = await self.erp.post_time(copies)
        refused = [r for r in results if not r.ok]
        if refused:
            raise RuntimeError(f"the ERP refused {len(refused)} injected postings: {refused[:2]}")

    async def _postings(self, entries: list[Entry]) -> dict[str, CostPosting]:
        """The live ERP posting of each entry (read through the connector)."""
        jobs = sorted({self.job_of[e.project] for e in entries})
        found = await self.erp.list_postings_of(jobs)
        wanted = {self.posted.timebill[e.entry_id]["externalid"]: e.entry_id for e in entries}
        return {
            wanted[p.idempotency_key]: p
            for ps in found.values()
            for p in ps
            if p.idempotency_key in wanted
        }

    async def _minutes(self, entry_id: str) -> int:
        r = await self.http.get(f"{self.base}/psa/api/v1/time_entries/{entry_id}.json")
        r.raise_for_status()
        return int(next(iter(r.json()["time_entries"].values()))["time_in_minutes"])

    def summary(self) -> dict[str, Any]:
        by: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for d in self.injected:
            by[d.kind][d.how] += 1
        return {
            "total": len(self.injected),
            "to_repair": sum(1 for d in self.injected if d.expect == REPAIRED),
            "to_escalate": sum(1 for d in self.injected if d.expect == ESCALATED),
            "by_kind": {k: dict(v) for k, v in sorted(by.items())},
            "list": [asdict(d) for d in self.injected],
        }
