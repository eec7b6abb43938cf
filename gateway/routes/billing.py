"""Time to invoice: bill a project now, and read its pipeline."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts import scopes
from contracts.ids import PsaId
from contracts.settings import Actor
from contracts.v1.time_to_invoice import BillingRequest, BillingTrigger
from gateway.audit import BILLING, audited
from gateway.auth import READ_ROLES, require_roles
from gateway.errors import GatewayError
from gateway.processes import project_not_found
from gateway.routes._deps import ActorDep, ProcessesDep, ScoperDep
from gateway.scoping import Scoper, require_scope

router = APIRouter(tags=["time to invoice"])

BILLING_ROLES = frozenset({"ops", "finance_controller"})


class BillingBody(BaseModel):
    """A request to bill a project now (the actor comes from the bearer token)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["period"]}, {"required": ["milestone_id"]}]},
    )

    # Exactly one of the two, and neither may be null (typed without None: an explicit null
    # is refused as the schema says; the default only stands for "absent").
    period: str = Field(default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$")  # type: ignore[assignment]
    milestone_id: PsaId = Field(default=None)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _exactly_one(self) -> BillingBody:
        if (self.period is None) == (self.milestone_id is None):
            raise ValueError("give exactly one of period and milestone_id")
        return self


@router.post("/api/projects/{psa_project_id}/billing", status_code=202)
@audited(BILLING)
async def request_billing(
    psa_project_id: str,
    body: BillingBody,
    actor: ActorDep,
    processes: ProcessesDep,
    scoper: ScoperDep,
) -> JSONResponse:
    """Bill a project now: close a T&M period (`period`) or bill a milestone."""
    await _project_in_scope(scoper, actor, psa_project_id)
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
async def time_pipeline_status(
    psa_project_id: str, actor: ActorDep, processes: ProcessesDep, scoper: ScoperDep
) -> dict[str, Any]:
    """The project's pipeline: pending entries, outcomes, open items, invoices."""
    require_roles(actor, READ_ROLES, "read a project's pipeline")
    await _project_in_scope(scoper, actor, psa_project_id)
    view = await processes.time_pipeline_status(psa_project_id)
    if view is None:
        raise GatewayError(
            404,
            "project_not_found",
            f"PSA project {psa_project_id!r} has no time-to-invoice run",
        )
    return view


async def _project_in_scope(scoper: Scoper, actor: Actor, psa_project_id: str) -> None:
    """Out of the actor's scopes, a project answers as a project pssync does not know."""
    if scopes.EVERYTHING in actor.scopes:
        return
    keys = await scoper.project_keys(psa_project_id)
    keys.add(scopes.key("tenant", scoper.psa_tenant))
    require_scope(actor, keys, project_not_found(psa_project_id))
