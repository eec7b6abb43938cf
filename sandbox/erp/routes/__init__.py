"""The ERP twin's vendor routes, one module per NetSuite resource, assembled in one router."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.erp.context import ErpContext
from sandbox.erp.routes import (
    async_jobs,
    invoice,
    job_budget,
    labor_forecast,
    records,
    suiteql,
    system,
)

# Registration order is route order: the job and invoice sub-resources come before the generic
# `record/v1/{type}/...` routes whose paths they overlap.
REGISTER_ORDER = (
    job_budget.register,
    labor_forecast.register,
    invoice.register,
    records.register,
    async_jobs.register,
    suiteql.register,
    system.register,
)


def build_router(ctx: ErpContext) -> APIRouter:
    """One router for the twin's vendor paths (`create_twin_app` puts it behind bearer auth)."""
    router = APIRouter()
    for register in REGISTER_ORDER:
        register(router, ctx)
    return router
