"""Time to invoice: bill a project now, and read its pipeline."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from contracts.ids import PsaId
from contracts.v1.time_to_invoice import BillingRequest, BillingTrigger
from gateway.errors import GatewayError
from gateway.routes._deps import ActorDep, ProcessesDep

router = APIRouter(tags=["time to invoice"])

BILLING_ROLES = frozenset({"ops", "finance_controller"})


class BillingBody(BaseModel):
    """A request to bill a project now (the actor comes from the bearer token)."""

    model_config = ConfigDict(extra="forbid")

    period: str | None = Field(default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    milestone_id: PsaId | None = None


@router.post("/api/projects/{psa_project_id}/billing")
async def request_billing(
    psa_project_id: str, body: BillingBody, actor: ActorDep, processes: ProcessesDep
) -> JSONResponse:
    """Bill a project now: close a T&M period (`period`) or bill a milestone."""
    if not BILLING_ROLES.intersection(actor.roles):
        raise GatewayError(
            403,
            "forbidden",
            f"{actor.name} may not request billing (needs one of: "
            f"{', '.join(sorted(BILLING_ROLES))})",
        )
    if (body.period is None) == (body.milestone_id is None):
        raise GatewayError(422, "invalid_payload", "give exactly one of period and milestone_id")
    request = BillingRequest(
        trigger=BillingTrigger.PERIOD_CLOSE if body.period else BillingTrigger.MILESTONE,
        period=body.period,
        milestone_id=body.milestone_id,
        requested_by=actor.name,
    )
    outcome = await processes.request_billing(psa_project_id, request)
    return JSONResponse(
        {"status": "accepted", "workflow_id": outcome.workflow_id, "billing": request.key},
        status_code=202,
    )


@router.get("/api/projects/{psa_project_id}/time-to-invoice")
async def time_pipeline_status(psa_project_id: str, processes: ProcessesDep) -> dict[str, Any]:
    """The project's pipeline: pending entries, outcomes, open items, invoices."""
    view = await processes.time_pipeline_status(psa_project_id)
    if view is None:
        raise GatewayError(
            404,
            "project_not_found",
            f"PSA project {psa_project_id!r} has no time-to-invoice run",
        )
    return view
