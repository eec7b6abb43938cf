"""NetSuite budgets and labor forecasts of a financial project, kept in two custom record types
(`customrecord_pssync_budget`, `customrecord_pssync_labor_forecast`) that the record service
serves like any record: read by external ID, upserted by `PUT .../eid:X`.

NetSuite's REST record service has no conditional write (no `If-Match`), so the port's
optimistic versioning is read-compare-write on the record's version field: read the record,
refuse a stale `expected_version` (budget) or an older version or a finance-held status
(forecast), then upsert. Writes of one record are serialised within this process; two
processes (or a person editing the record in NetSuite) that read the same version between
another's read and write can still both write, and the later write wins. NetSuite's own
custom-record optimistic locking answers a save that collides inside NetSuite with
`RCRD_HAS_BEEN_CHANGED`, which is reported as `StaleVersionError` here.

Many projects' forecasts (reconciliation) are read over SuiteQL instead: the custom record
type is a SuiteQL table of the same name, its fields columns (a reference its bare id)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from connectors.erp.mapping import (
    BUDGET_CURRENCY,
    BUDGET_RECORD,
    FORECAST_CURRENCY,
    FORECAST_HOURS,
    FORECAST_LABOR_COST,
    FORECAST_PERIOD,
    FORECAST_PROJECT,
    FORECAST_RECORD,
    FORECAST_STATUS,
    FORECAST_VERSION,
    budget_body,
    budget_external_id,
    budget_from_netsuite,
    forecast_body,
    forecast_external_id,
    forecast_from_netsuite,
    job_is_closed,
    no_budget,
)
from connectors.erp.netsuite._base import _NetSuiteBase
from connectors.erp.port import SYSTEM
from connectors.erp.values import ref_id
from contracts.errors import (
    BusinessRuleViolation,
    ConflictError,
    NotFoundError,
    StaleVersionError,
    TransientError,
)
from contracts.money import Money
from contracts.v1.change_orders import ErpBudget
from contracts.v1.models import Forecast

_IN_LIST = 100
"""Values per SuiteQL `IN (...)` list."""
_MONTH = re.compile(r"^\d{4}-\d{2}$")
_FORECASTS_OF = (
    f"SELECT id, {FORECAST_PROJECT}, {FORECAST_PERIOD}, {FORECAST_HOURS},"
    f" {FORECAST_LABOR_COST}, {FORECAST_CURRENCY}, {FORECAST_STATUS}, {FORECAST_VERSION}"
    f" FROM {FORECAST_RECORD} WHERE {FORECAST_PROJECT} IN ({{jobs}}){{periods}} ORDER BY id"
)
"""The labor forecasts of some projects (optionally of some months), in a stable order for
paging."""


class _BudgetsMixin(_NetSuiteBase):
    # -- the project and its records ---------------------------------------------------------

    async def _job_id(self, project: str) -> str:
        """The internal id of a project named by internal id, external ID or `eid:`."""
        job_id = await self._internal_id("job", project)
        if job_id != project:  # found by its external ID: it exists
            self._ids[("job-known", job_id)] = job_id
        return job_id

    async def _job(self, job_id: str) -> Any:
        body = await self._get(self._path("job", job_id, external=False))
        self._ids[("job-known", job_id)] = job_id
        return body

    async def _known_job(self, job_id: str) -> None:
        """NotFoundError unless the project exists (checked once per connector)."""
        if ("job-known", job_id) not in self._ids:
            await self._job(job_id)

    def _write_lock(self, record_type: str, external_id: str) -> asyncio.Lock:
        """Serialises this process's read-compare-writes of one custom record."""
        return self._locks.setdefault((record_type, f"write:{external_id}"), asyncio.Lock())

    async def _custom_record(self, record_type: str, external_id: str) -> Any | None:
        try:
            return await self._get(self._path(record_type, external_id, external=True))
        except NotFoundError:
            return None

    # -- budget ------------------------------------------------------------------------------

    async def _budget(self, job_id: str, job: Any = None) -> ErpBudget:
        """The project's budget record; a project without one has no budget yet (version 0,
        in the job's currency). An unknown project is NotFoundError."""
        body = await self._custom_record(BUDGET_RECORD, budget_external_id(job_id))
        if body is None:
            job = job if job is not None else await self._job(job_id)
            return no_budget(job, job_id, currencies=await self._currencies(job.get("currency")))
        currencies = await self._currencies(body.get(BUDGET_CURRENCY))
        return budget_from_netsuite(body, job_id, currencies=currencies)

    async def get_budget(self, project: str) -> ErpBudget:
        return await self._budget(await self._job_id(project))

    async def revise_budget(
        self, project: str, *, amount: Money, expected_version: int
    ) -> ErpBudget:
        job_id = await self._job_id(project)
        external_id = budget_external_id(job_id)
        async with self._write_lock(BUDGET_RECORD, external_id):
            job = await self._job(job_id)
            current = await self._budget(job_id, job)
            if current.version != expected_version:
                # A retried revision whose first attempt went through looks stale: it is not.
                if current.version == expected_version + 1 and current.amount == amount:
                    return current
                raise StaleVersionError(
                    f"{SYSTEM} budget of {project} is at version {current.version}, "
                    f"not {expected_version}",
                    system=SYSTEM,
                )
            if job_is_closed(job):
                raise BusinessRuleViolation(
                    "PROJECT_CLOSED", f"project {job_id} is closed", field="job", system=SYSTEM
                )
            body = budget_body(job_id, amount, version=expected_version + 1)
            try:
                await self._send("PUT", self._path(BUDGET_RECORD, external_id, external=True), body)
            except ConflictError as exc:
                raise StaleVersionError(
                    f"{SYSTEM} budget of {project} changed while it was written: {exc}",
                    system=SYSTEM,
                ) from exc
            return await self._budget(job_id, job)

    # -- labor forecast ----------------------------------------------------------------------

    async def _forecast(self, project: str, job_id: str, period: str) -> Forecast | None:
        body = await self._custom_record(FORECAST_RECORD, forecast_external_id(job_id, period))
        if body is None:
            await self._known_job(job_id)
            return None
        currencies = await self._currencies(body.get(FORECAST_CURRENCY))
        return forecast_from_netsuite(body, project, currencies=currencies)

    async def get_forecast(self, project: str, period: str) -> Forecast | None:
        return await self._forecast(project, await self._job_id(project), period)

    if TYPE_CHECKING:  # `_PostingsMixin`'s, beside this one in `NetSuiteErp`

        async def _job_ids(self, projects: Sequence[str]) -> dict[str, str]: ...

    async def _held_jobs(self, job_ids: Sequence[str]) -> set[str]:
        """The internal ids among `job_ids` that name a project the ERP holds: those not
        known yet asked for in one SuiteQL query per 100."""
        unknown = sorted({j for j in job_ids if ("job-known", j) not in self._ids}, key=int)
        for i in range(0, len(unknown), _IN_LIST):
            chunk = ", ".join(unknown[i : i + _IN_LIST])
            for row in await self._suiteql(f"SELECT id FROM job WHERE id IN ({chunk})"):
                self._ids[("job-known", str(row["id"]))] = str(row["id"])
        return {j for j in job_ids if ("job-known", j) in self._ids}

    async def list_forecasts_of(
        self, projects: Sequence[str], periods: Sequence[str] | None = None
    ) -> dict[str, dict[str, Forecast]]:
        """Many projects' labor forecasts in a few SuiteQL queries: the projects' internal ids
        (one query per 100 external ids not yet known, one per 100 internal ids not yet seen
        to exist), then their `customrecord_pssync_labor_forecast` rows (100 projects a
        query, the months asked for, pages of 1,000) with the fields the forecast maps."""
        wanted = list(dict.fromkeys(projects))
        job_ids = await self._job_ids(wanted)
        for project, job_id in job_ids.items():
            if not project.isdigit():  # found by its external ID: it exists
                self._ids[("job-known", job_id)] = job_id
        held = await self._held_jobs(sorted(set(job_ids.values())))
        job_ids = {p: j for p, j in job_ids.items() if j in held}
        months = None if periods is None else sorted({m for m in periods if _MONTH.match(m)})
        if months == [] or not job_ids:
            return {p: {} for p in job_ids}
        period_filter = ""
        if months is not None and len(months) <= _IN_LIST:
            quoted = ", ".join(f"'{m}'" for m in months)
            period_filter = f" AND {FORECAST_PERIOD} IN ({quoted})"
        ids = sorted({int(j) for j in job_ids.values()})
        rows: list[dict[str, Any]] = []
        for i in range(0, len(ids), _IN_LIST):
            chunk = ", ".join(str(j) for j in ids[i : i + _IN_LIST])
            rows += await self._suiteql(_FORECASTS_OF.format(jobs=chunk, periods=period_filter))
        currencies = await self._currencies(*(row.get(FORECAST_CURRENCY) for row in rows))
        by_job: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            if months is None or row.get(FORECAST_PERIOD) in months:
                by_job.setdefault(str(ref_id(row.get(FORECAST_PROJECT)) or ""), []).append(row)
        found: dict[str, dict[str, Forecast]] = {}
        for project, job_id in job_ids.items():
            mapped = (
                forecast_from_netsuite(row, project, currencies=currencies)
                for row in by_job.get(job_id, [])
            )
            found[project] = {f.period: f for f in mapped}
        return found

    async def put_forecast(self, forecast: Forecast, *, project: str | None = None) -> Forecast:
        project = project or forecast.project_id
        job_id = await self._job_id(project)
        period = forecast.period
        external_id = forecast_external_id(job_id, period)
        async with self._write_lock(FORECAST_RECORD, external_id):
            current = await self._forecast(project, job_id, period)
            if current is not None and not current.writable:
                status = current.status.value
                raise BusinessRuleViolation(
                    f"FORECAST_{status.upper()}",
                    f"The labor forecast for {period} is {status}; only finance can change it.",
                    field="status",
                    system=SYSTEM,
                )
            if current is not None and forecast.version < current.version:
                raise StaleVersionError(
                    f"{SYSTEM} forecast {project}/{period} is at version {current.version}, "
                    f"newer than {forecast.version}",
                    system=SYSTEM,
                )
            url = self._path(FORECAST_RECORD, external_id, external=True)
            try:
                await self._send("PUT", url, forecast_body(forecast, job_id=job_id))
            except ConflictError as exc:
                raise StaleVersionError(
                    f"{SYSTEM} forecast {project}/{period} changed while it was written: {exc}",
                    system=SYSTEM,
                ) from exc
            written = await self._forecast(project, job_id, period)
        if written is None:
            raise TransientError(
                f"{SYSTEM} forecast {project}/{period} was written but cannot be read back",
                system=SYSTEM,
            )
        return written
