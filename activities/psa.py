"""PSA activities: project shells, staffing demand, and their compensations."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity

from activities._errors import translate_errors
from connectors.psa import PsaPort
from contracts.errors import NotFoundError
from contracts.v1 import Assignment, Project
from contracts.v1.provisioning import RuleViolation


class CheckRateCard(BaseModel):
    rate_card_id: str


class CreateProjectShell(BaseModel):
    project: Project
    enterprise_id: str


class ArchiveProject(BaseModel):
    enterprise_id: str
    reason: str


class SeedStaffingDemand(BaseModel):
    psa_project_id: str
    demands: list[Assignment]


class CancelStaffingDemand(BaseModel):
    enterprise_id: str


class PsaActivities:
    def __init__(self, psa: PsaPort) -> None:
        self.psa = psa

    @activity.defn(name="psa.check_rate_card")
    @translate_errors
    async def check_rate_card(self, request: CheckRateCard) -> RuleViolation | None:
        try:
            await self.psa.get_rate_card(request.rate_card_id)
        except NotFoundError:
            return RuleViolation(
                code="MISSING_RATE_CARD",
                field="rate_card_id",
                detail=f"rate card {request.rate_card_id} does not exist in the PSA",
            )
        return None

    @activity.defn(name="psa.create_project_shell")
    @translate_errors
    async def create_project_shell(self, request: CreateProjectShell) -> str:
        """Workspace, WBS, billing milestones and the external reference; safe to repeat."""
        return await self.psa.create_project_shell(
            request.project, enterprise_id=request.enterprise_id
        )

    @activity.defn(name="psa.archive_project")
    @translate_errors
    async def archive_project(self, request: ArchiveProject) -> bool:
        """Compensation: archive the shell found by enterprise ID (none found: nothing to do)."""
        psa_id = await self.psa.find_project_by_enterprise_id(request.enterprise_id)
        if psa_id is None:
            return False
        await self.psa.archive_project(psa_id, reason=request.reason)
        return True

    @activity.defn(name="psa.seed_staffing_demand")
    @translate_errors
    async def seed_staffing_demand(self, request: SeedStaffingDemand) -> list[str]:
        return await self.psa.create_resource_requests(request.psa_project_id, request.demands)

    @activity.defn(name="psa.cancel_staffing_demand")
    @translate_errors
    async def cancel_staffing_demand(self, request: CancelStaffingDemand) -> int:
        """Compensation: cancel the resource requests provisioning raised."""
        psa_id = await self.psa.find_project_by_enterprise_id(request.enterprise_id)
        if psa_id is None:
            return 0
        requests = await self.psa.list_resource_requests(psa_id)
        for req in requests:
            await self.psa.cancel_resource_request(req.external_id)
        return len(requests)
