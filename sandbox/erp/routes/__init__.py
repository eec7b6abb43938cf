"""The ERP twin's vendor routes, one module per NetSuite resource, assembled in one router."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.erp.context import ErpContext
from sandbox.erp.routes import (
    async_jobs,
    invoice,
    records,
    suiteql,
    system,
)

# Registration order is route order: the invoice's void transform comes before the generic
# `record/v1/{type}/...` routes whose paths it overlaps.
REGISTER_ORDER = (
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
