"""Activities of the assignment sync: re-read thin assignment changes from the PSA, find the
project's ERP reference in the store, and write the labor-cost forecast to the ERP (on the ERP
task queue) without ever overwriting a finance-approved or locked period.

No business rules here beyond the port calls: the forecast itself is the pure
`contracts.v1.assignment_sync.labor_forecast`.
"""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel, Field
from temporalio import activity

from activities._errors import translate_errors
from connectors.erp import ErpPort
from connectors.psa import PsaStaffingPort
from contracts.errors import BusinessRuleViolation, NotFoundError, StaleVersionError
from contracts.money import Money
from contracts.systems import System
from contracts.v1.assignment_sync import (
    AssignmentFacts,
    ForecastRefusal,
    PeriodForecast,
    SyncSettings,
    labor_forecast,
)
from contracts.v1.models import Assignment, Forecast
from store import Store

FORECAST_WRITE_ATTEMPTS = 3
COST_RATE_TTL_S = 300.0
"""Workers' cost rates are cached this long per worker process (one ERP read per worker per
five minutes, not per forecast)."""


class ReadAssignments(BaseModel):
    assignment_ids: list[str]


class ReadAssignmentsResult(BaseModel):
    found: dict[str, AssignmentFacts] = Field(default_factory=dict)
    missing: list[str] = Field(default_factory=list)


class ResolveErpProject(BaseModel):
    psa_tenant: str
    psa_project_id: str


class SyncForecast(BaseModel):
    erp_project: str
    assignments: list[AssignmentFacts]
    periods: list[str] = Field(default_factory=list)
    settings: SyncSettings


class ForecastSyncResult(BaseModel):
    forecast: list[PeriodForecast]
    written: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    refused: list[ForecastRefusal] = Field(default_factory=list)
    unpriced: list[str] = Field(default_factory=list)


def facts_of(assignment: Assignment) -> AssignmentFacts:
    return AssignmentFacts(
        assignment_id=assignment.external_id,
        version=int(assignment.source_version or 0),
        role=assignment.role,
        worker_id=assignment.worker_id,
        start_date=assignment.start_date,
        end_date=assignment.end_date,
        allocated_minutes=assignment.allocated_minutes,
    )


class AssignmentSyncActivities:
    def __init__(self, psa: PsaStaffingPort, store: Store) -> None:
        self.psa = psa
        self.store = store

    @activity.defn(name="assignment_sync.read_assignments")
    @translate_errors
    async def read_assignments(self, request: ReadAssignments) -> ReadAssignmentsResult:
        result = ReadAssignmentsResult()
        for aid in request.assignment_ids:
            try:
                result.found[aid] = facts_of(await self.psa.get_assignment(aid))
            except NotFoundError:
                result.missing.append(aid)
        return result

    @activity.defn(name="assignment_sync.resolve_erp_project")
    @translate_errors
    async def resolve_erp_project(self, request: ResolveErpProject) -> str | None:
        """`eid:<enterprise id>` of the PSA workspace, from the store's xref (None: unlinked)."""
        eid = await asyncio.to_thread(
            self.store.find_enterprise_id,
            "PSA",
            request.psa_tenant,
            "workspace",
            request.psa_project_id,
        )
        return f"eid:{eid}" if eid else None


class AssignmentForecastActivities:
    def __init__(self, erp: ErpPort, *, cost_rate_ttl_s: float = COST_RATE_TTL_S) -> None:
        self.erp = erp
        self.ttl = cost_rate_ttl_s
        self._rates: dict[str, tuple[float, Money | None]] = {}

    async def _cost_rate(self, worker_id: str) -> Money | None:
        now = time.monotonic()
        cached = self._rates.get(worker_id)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        rate = await self.erp.get_cost_rate(worker_id)
        self._rates[worker_id] = (now, rate)
        return rate

    @activity.defn(name="assignment_sync.sync_forecast")
    @translate_errors
    async def sync_forecast(self, request: SyncForecast) -> ForecastSyncResult:
        """Write each period's labor forecast when it differs from the ERP's; a period finance
        approved or locked is reported as refused, never overwritten."""
        workers = sorted({a.worker_id for a in request.assignments if a.worker_id})
        rates = {w: await self._cost_rate(w) for w in workers}
        forecast, unpriced = labor_forecast(
            request.assignments, rates, request.settings, periods=request.periods
        )
        result = ForecastSyncResult(forecast=forecast, unpriced=unpriced)
        for period in forecast:
            refusal = await self._write(request.erp_project, period)
            if refusal is None:
                result.written.append(period.period)
            elif refusal.code == "UNCHANGED":
                result.unchanged.append(period.period)
            else:
                result.refused.append(refusal)
        return result

    async def _write(self, project: str, wanted: PeriodForecast) -> ForecastRefusal | None:
        for _ in range(FORECAST_WRITE_ATTEMPTS):
            current = await self.erp.get_forecast(project, wanted.period)
            if current is not None and not current.writable:
                return _refusal(wanted, f"FORECAST_{current.status.value.upper()}", "")
            if (
                current is not None
                and current.hours == wanted.hours
                and current.labor_cost == wanted.labor_cost
            ):
                return _refusal(wanted, "UNCHANGED", "")
            try:
                await self.erp.put_forecast(
                    Forecast(
                        project_id=project,
                        period=wanted.period,
                        hours=wanted.hours,
                        labor_cost=wanted.labor_cost,
                        version=(current.version + 1) if current is not None else 1,
                        source_system=System.PSSYNC,
                    ),
                    project=project,
                )
                return None
            except BusinessRuleViolation as err:
                return _refusal(wanted, err.code, err.detail)
            except StaleVersionError:
                continue  # written meanwhile: re-read and compare again
        raise StaleVersionError(
            f"ERP forecast {project}/{wanted.period} kept moving", system=str(System.ERP)
        )


def _refusal(wanted: PeriodForecast, code: str, detail: str) -> ForecastRefusal:
    return ForecastRefusal(
        period=wanted.period,
        code=code,
        detail=detail or f"the ERP forecast for {wanted.period} is {code.lower()}",
        wanted_hours=wanted.hours,
        wanted_cost=wanted.labor_cost,
    )
