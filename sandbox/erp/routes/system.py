"""`GET /services/rest/system/v1/governanceLimits`: the account's concurrency allowance."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.erp.context import ErpContext


def register(router: APIRouter, ctx: ErpContext) -> None:
    """The system (governance) route."""

    @router.get("/services/rest/system/v1/governanceLimits", summary="Concurrency allowance")
    async def governance_limits() -> dict[str, Any]:
        limit = ctx.state.faults.quota_concurrency or 15
        return {"accountConcurrencyLimit": limit, "integrationConcurrencyLimit": limit}
