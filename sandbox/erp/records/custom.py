"""The custom record types of pssync's tenant setup (docs/vendors/netsuite.md): a project's
budget (`customrecord_pssync_budget`) and its monthly labor forecast
(`customrecord_pssync_labor_forecast`).

The record service serves a custom record type under its script ID like any record type (read
by internal id or `eid:`, create, update, upsert by `PUT .../eid:X`); its fields are the
`custrecord_*` fields the tenant defined, a List/Record field being a reference. NetSuite
applies no business rule of pssync's to them: only the field types, the mandatory fields
(the Name, and the Project as the setup asks) and valid references. Versions, approved or
locked forecasts and closed projects are the connector's to check."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from sandbox.erp.bodies import BudgetRecordBody, LaborForecastRecordBody, Ref, _Body
from sandbox.erp.common import _dec, _num
from sandbox.erp.lookups import _get_row, _lookup
from sandbox.erp.records.base import RecordType, _currency, _ref
from sandbox.erp.tables import ErpJob, ErpJobBudget, ErpLaborForecast

BUDGET_PROJECT = "custrecord_pssync_budget_project"
FORECAST_PROJECT = "custrecord_pssync_lf_project"


def _job_ref(s: Session, ref: Ref | None, path: str) -> int | None:
    """A List/Record (Project) field: the job's id; an unknown job is `INVALID_KEY_OR_REF`."""
    return None if ref is None else int(_lookup(s, ErpJob, ref, path).id)


def _job_json(s: Session, job_id: int | None) -> dict[str, Any] | None:
    job = _get_row(s, ErpJob, job_id)
    return _ref(job_id, job.company_name if job is not None else None)


def _currency_or_none(ref: Ref | None, path: str) -> str | None:
    return None if ref is None else _currency(ref, path)


class BudgetRecordType(RecordType):
    name = "customrecord_pssync_budget"
    table = ErpJobBudget
    body = BudgetRecordBody
    required = ("name", BUDGET_PROJECT)
    filters = {"externalId": "external_id", "name": "name", BUDGET_PROJECT: "job_id"}
    copied = (("name", "name"), ("custrecord_pssync_budget_version", "budget_version"))

    def resolved(self, s: Session, body: _Body, given: set[str]) -> dict[str, Any]:
        assert isinstance(body, BudgetRecordBody)
        out: dict[str, Any] = {}
        if BUDGET_PROJECT in given:
            out["job_id"] = _job_ref(s, body.custrecord_pssync_budget_project, BUDGET_PROJECT)
        if "custrecord_pssync_budget_amount" in given:
            out["amount"] = _dec(body.custrecord_pssync_budget_amount)
        if "custrecord_pssync_budget_currency" in given:
            out["currency"] = _currency_or_none(
                body.custrecord_pssync_budget_currency, "custrecord_pssync_budget_currency"
            )
        return out

    def fields_json(self, s: Session, row: ErpJobBudget) -> dict[str, Any]:
        return {
            "name": row.name,
            BUDGET_PROJECT: _job_json(s, row.job_id),
            "custrecord_pssync_budget_amount": _num(row.amount),
            "custrecord_pssync_budget_currency": _ref(row.currency, row.currency),
            "custrecord_pssync_budget_version": row.budget_version,
        }


class LaborForecastRecordType(RecordType):
    name = "customrecord_pssync_labor_forecast"
    table = ErpLaborForecast
    body = LaborForecastRecordBody
    required = ("name", FORECAST_PROJECT)
    filters = {
        "externalId": "external_id",
        "name": "name",
        FORECAST_PROJECT: "job_id",
        "custrecord_pssync_lf_period": "period_name",
    }
    copied = (
        ("name", "name"),
        ("custrecord_pssync_lf_period", "period_name"),
        ("custrecord_pssync_lf_status", "status"),
        ("custrecord_pssync_lf_version", "version"),
    )

    def resolved(self, s: Session, body: _Body, given: set[str]) -> dict[str, Any]:
        assert isinstance(body, LaborForecastRecordBody)
        out: dict[str, Any] = {}
        if FORECAST_PROJECT in given:
            out["job_id"] = _job_ref(s, body.custrecord_pssync_lf_project, FORECAST_PROJECT)
        if "custrecord_pssync_lf_hours" in given:
            out["hours"] = _dec(body.custrecord_pssync_lf_hours)
        if "custrecord_pssync_lf_labor_cost" in given:
            out["labor_cost"] = _dec(body.custrecord_pssync_lf_labor_cost)
        if "custrecord_pssync_lf_currency" in given:
            out["currency"] = _currency_or_none(
                body.custrecord_pssync_lf_currency, "custrecord_pssync_lf_currency"
            )
        return out

    def fields_json(self, s: Session, row: ErpLaborForecast) -> dict[str, Any]:
        return {
            "name": row.name,
            FORECAST_PROJECT: _job_json(s, row.job_id),
            "custrecord_pssync_lf_period": row.period_name,
            "custrecord_pssync_lf_hours": _num(row.hours),
            "custrecord_pssync_lf_labor_cost": _num(row.labor_cost),
            "custrecord_pssync_lf_currency": _ref(row.currency, row.currency),
            "custrecord_pssync_lf_status": row.status,
            "custrecord_pssync_lf_version": row.version,
        }
