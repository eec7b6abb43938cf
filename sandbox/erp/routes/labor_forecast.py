"""`GET|PUT /services/rest/record/v1/job/{id}/laborForecast/{YYYY-MM}`: labor forecasts per
period (approved or locked ones are never overwritten)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel import Session, select

from sandbox._twin import TwinError
from sandbox.erp.bodies import ForecastBody
from sandbox.erp.common import RECORD, Url, _dec, _now, _num, _stamp
from sandbox.erp.context import ErpContext
from sandbox.erp.records import RECORD_TYPES, _find
from sandbox.erp.records.base import _currency, _ref
from sandbox.erp.tables import ErpJob, ErpLaborForecast
from sandbox.erp.web import _Ids, _read_body, located


def register(router: APIRouter, ctx: ErpContext) -> None:
    """The job's labor-forecast routes (before the generic record routes)."""

    @router.get(f"{RECORD}/job/{{ident}}/laborForecast/{{period}}", summary="Labor forecast")
    async def get_forecast(ident: str, period: str, request: Request) -> JSONResponse:
        with ctx.state.session() as s:
            job = _find(s, RECORD_TYPES["job"], ident)
            forecast = _forecast(s, job.id, period)
            if forecast is None:
                raise TwinError(
                    404, "NONEXISTENT_ID", f"No labor forecast for job {job.id}, {period}.", "id"
                )
            return JSONResponse(_forecast_json(job, forecast, _Ids(request)))

    @router.put(
        f"{RECORD}/job/{{ident}}/laborForecast/{{period}}",
        summary="Create or replace a draft labor forecast",
    )
    async def put_forecast(ident: str, period: str, request: Request) -> Response:
        body = await _read_body(request, ForecastBody)
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", period):
            raise TwinError(400, "INVALID_CONTENT", "period must be YYYY-MM", "period")
        with ctx.state.session() as s:
            job = _find(s, RECORD_TYPES["job"], ident)
            forecast = _forecast(s, job.id, period)
            if forecast is None:
                forecast = ErpLaborForecast(job_id=job.id, period_name=period)
            elif forecast.status != "draft":
                raise TwinError(
                    400,
                    f"FORECAST_{forecast.status.upper()}",
                    f"The labor forecast for {period} is {forecast.status}; "
                    "only finance can change it.",
                    "status",
                )
            elif body.version < forecast.version:
                raise TwinError(
                    412,
                    "RCRD_HAS_BEEN_CHANGED",
                    f"Record has been changed: version {forecast.version} is newer than "
                    f"{body.version}.",
                    "version",
                )
            forecast.hours = _dec(body.hours) or "0"
            forecast.labor_cost = _dec(body.laborCost) or "0"
            forecast.currency = _currency(body.currency, "currency") or job.currency
            forecast.status = body.status
            forecast.version = body.version
            forecast.last_modified = _now()
            s.add(forecast)
            s.commit()
            return located(request, f"{RECORD}/job/{job.id}/laborForecast/{period}")


def _forecast(s: Session, job_id: int | None, period: str) -> ErpLaborForecast | None:
    return s.exec(
        select(ErpLaborForecast)
        .where(ErpLaborForecast.job_id == job_id)
        .where(ErpLaborForecast.period_name == period)
    ).first()


def _forecast_json(job: ErpJob, row: ErpLaborForecast, url: Url) -> dict[str, Any]:
    return {
        "links": [
            {"rel": "self", "href": url(f"{RECORD}/job/{job.id}/laborForecast/{row.period_name}")}
        ],
        "job": _ref(job.id, job.company_name),
        "period": row.period_name,
        "hours": _num(row.hours),
        "laborCost": _num(row.labor_cost),
        "currency": _ref(row.currency, row.currency),
        "status": row.status,
        "version": row.version,
        "lastModifiedDate": _stamp(row.last_modified),
    }
