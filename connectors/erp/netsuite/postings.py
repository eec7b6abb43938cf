"""NetSuite cost postings (`timebill` records in async batches, read back over SuiteQL) and
the reference data they are checked against: departments, accounting periods, cost rates."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import Any

from connectors.erp.mapping import (
    _PERIOD,
    batch_idempotency_key,
    cost_center_from_department,
    cost_rate_from_employee,
    department_codes,
    period_is_open,
    period_names,
    posting_from_timebill,
    timebill_body,
    timebill_keys,
)
from connectors.erp.netsuite._base import _NetSuiteBase
from connectors.erp.port import CostCenterStatus, ErpPostingsPort, PostingResult
from connectors.erp.values import ref_id
from contracts.errors import BusinessRuleViolation, NotFoundError
from contracts.money import Money
from contracts.v1.models import CostPosting

_IN_LIST = 100
"""Values per SuiteQL `IN (...)` list."""
_PLAIN_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
"""External ids that go into a query as they are (anything else is read by a GET)."""


class _PostingsMixin(_NetSuiteBase, ErpPostingsPort):
    # -- cost postings --------------------------------------------------------------------

    async def _timebill(self, posting: CostPosting) -> dict[str, Any]:
        customer = await self._reference("job", posting.project_id, field="customer")
        department = await self._department_ref(posting.cost_center)
        reverses = None
        if posting.reverses is not None:
            reverses = await self._reference(
                "timebill", posting.reverses, field="reverses", external=True
            )
        return timebill_body(posting, customer=customer, department=department, reverses=reverses)

    async def _post_batch(self, batch: list[CostPosting]) -> dict[str, PostingResult]:
        results: dict[str, PostingResult] = {}
        bodies = []
        for posting in batch:
            try:
                bodies.append(await self._timebill(posting))
            except BusinessRuleViolation as exc:
                results[posting.idempotency_key] = PostingResult(
                    idempotency_key=posting.idempotency_key, error=exc.info()
                )
        if bodies:
            key = batch_idempotency_key(str(b["externalId"]) for b in bodies)
            for ext, outcome in (await self._async_upsert("timebill", bodies, key)).items():
                results[ext] = PostingResult(
                    idempotency_key=ext, erp_id=outcome.erp_id, error=outcome.error
                )
        return results

    async def post_time(self, postings: Sequence[CostPosting]) -> list[PostingResult]:
        unique: dict[str, CostPosting] = {}
        for posting in postings:
            unique.setdefault(posting.idempotency_key, posting)
        todo = list(unique.values())
        batches = [todo[i : i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        results: dict[str, PostingResult] = {}
        for done in await asyncio.gather(*(self._post_batch(b) for b in batches)):
            results |= done
        return [results[p.idempotency_key] for p in postings]

    async def list_postings(self, project: str) -> list[CostPosting]:
        job_id = await self._internal_id("job", project)
        rows = await self._suiteql(f"SELECT * FROM timebill WHERE customer = {int(job_id)}")
        return await self._postings(rows, lambda _row: job_id)

    async def list_postings_of(self, projects: Sequence[str]) -> dict[str, list[CostPosting]]:
        """Many projects' postings in a few SuiteQL queries: their internal ids (one query per
        100 external ids not yet known), their timebills (`customer IN (...)`, pages of 1,000),
        the departments and the reversed postings' keys once."""
        wanted = list(dict.fromkeys(projects))
        job_ids = await self._job_ids(wanted)
        found: dict[str, list[CostPosting]] = {p: [] for p in wanted}
        ids = sorted({int(j) for j in job_ids.values()})
        rows: list[dict[str, Any]] = []
        for i in range(0, len(ids), _IN_LIST):
            chunk = ", ".join(str(j) for j in ids[i : i + _IN_LIST])
            rows += await self._suiteql(f"SELECT * FROM timebill WHERE customer IN ({chunk})")
        if not rows:
            return found
        postings = await self._postings(rows, lambda row: str(ref_id(row.get("customer")) or ""))
        by_job: dict[str, list[CostPosting]] = {}
        for posting in postings:
            by_job.setdefault(posting.project_id, []).append(posting)
        for project, job_id in job_ids.items():
            found[project] = by_job.get(job_id, [])
        return found

    async def _job_ids(self, projects: Sequence[str]) -> dict[str, str]:
        """Project (internal id, `eid:` + external id, or external id) -> its internal id,
        for those the ERP holds; external ids not yet cached are asked for in one SuiteQL
        query per 100."""
        found: dict[str, str] = {}
        unknown: dict[str, str] = {}
        for project in projects:
            external = project[4:] if project.startswith("eid:") else project
            if project.isdigit():
                found[project] = project
            elif ("job", external) in self._ids:
                found[project] = self._ids[("job", external)]
            elif _PLAIN_ID.match(external):
                unknown[external] = project
            else:
                try:
                    found[project] = await self._internal_id("job", project)
                except NotFoundError:
                    pass
        names = sorted(unknown)
        for i in range(0, len(names), _IN_LIST):
            quoted = ", ".join(f"'{n}'" for n in names[i : i + _IN_LIST])
            for row in await self._suiteql(
                f"SELECT id, externalid FROM job WHERE externalid IN ({quoted})"
            ):
                external = str(row.get("externalid") or "")
                if external in unknown:
                    self._ids[("job", external)] = str(row["id"])
                    found[unknown[external]] = str(row["id"])
        return found

    async def _postings(
        self, rows: list[dict[str, Any]], job_of: Callable[[dict[str, Any]], str]
    ) -> list[CostPosting]:
        """SuiteQL timebill rows as canonical postings (the reversed postings' keys and the
        departments read once)."""
        departments = department_codes(await self._suiteql("SELECT id, externalid FROM department"))
        keys = timebill_keys(rows)
        missing = {str(r["reverses"]) for r in rows if r.get("reverses")} - set(keys)
        # Only ids go into the query: a malformed one is a record pssync cannot read.
        wanted = sorted(i for i in missing if i.isdigit())
        if wanted:
            ids = ", ".join(wanted)
            keys |= timebill_keys(
                await self._suiteql(f"SELECT id, externalid FROM timebill WHERE id IN ({ids})")
            )
        currencies = await self._currencies(*(row.get("currency") for row in rows))
        return [
            posting_from_timebill(
                row,
                job_id=job_of(row),
                keys=keys,
                departments=departments,
                date_format=self.date_format,
                currencies=currencies,
            )
            for row in rows
        ]

    async def cost_center_status(self, code: str) -> CostCenterStatus:
        try:
            body = await self._get(self._path("department", code, external=True))
        except NotFoundError:
            return CostCenterStatus.UNKNOWN
        return cost_center_from_department(body)

    async def period_open(self, period: str) -> bool:
        if not _PERIOD.match(period):
            return False
        names = ", ".join(f"'{name}'" for name in period_names(period))
        rows = await self._suiteql(
            "SELECT id, periodname, closed, alllocked FROM accountingperiod "
            f"WHERE periodname IN ({names})"
        )
        return period_is_open(rows)

    async def get_cost_rate(self, worker_id: str) -> Money | None:
        try:
            body = await self._get(self._path("employee", worker_id, external=True))
        except NotFoundError:
            return None
        currencies = await self._currencies(body.get("currency"))
        return cost_rate_from_employee(body, currencies=currencies)
