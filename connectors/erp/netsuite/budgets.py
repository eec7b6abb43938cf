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
`RCRD_HAS_BEEN_CHANGED`, which is reported as `StaleVersionError` here."""

from __future__ import annotations

import asyncio
from typing import Any

from connectors.erp.mapping import (
    BUDGET_CURRENCY,
    BUDGET_RECORD,
    FORECAST_CURRENCY,
    FORECAST_RECORD,
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
