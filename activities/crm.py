"""CRM activities: re-read deals, write the enterprise ID and provisioning status back."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity

from activities._errors import translate_errors
from connectors.crm import CrmPort, ProvisioningStatus
from contracts.v1 import Customer, Opportunity


class ReadOpportunity(BaseModel):
    opportunity_id: str


class OpportunitySnapshot(BaseModel):
    opportunity: Opportunity
    customer: Customer


class WriteBackEnterpriseId(BaseModel):
    opportunity_id: str
    enterprise_id: str


class MarkProvisioning(BaseModel):
    opportunity_id: str
    status: str
    error: str | None = None


class CrmActivities:
    def __init__(self, crm: CrmPort) -> None:
        self.crm = crm

    @activity.defn(name="crm.read_opportunity")
    @translate_errors
    async def read_opportunity(self, request: ReadOpportunity) -> OpportunitySnapshot:
        """Re-read the opportunity, its lines and its account: webhooks are thin."""
        opportunity = await self.crm.get_opportunity(request.opportunity_id)
        customer = await self.crm.get_account(opportunity.account_id)
        return OpportunitySnapshot(opportunity=opportunity, customer=customer)

    @activity.defn(name="crm.write_back_enterprise_id")
    @translate_errors
    async def write_back_enterprise_id(self, request: WriteBackEnterpriseId) -> None:
        await self.crm.write_back_enterprise_id(request.opportunity_id, request.enterprise_id)

    @activity.defn(name="crm.mark_provisioning")
    @translate_errors
    async def mark_provisioning(self, request: MarkProvisioning) -> None:
        await self.crm.mark_provisioning(
            request.opportunity_id, ProvisioningStatus(request.status), request.error
        )
