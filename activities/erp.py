"""ERP activities. They run on the ERP task queue, rate-limited to the ERP's quota."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity

from activities._errors import translate_errors
from connectors.erp import CostCenterStatus, ErpPort
from contracts.money import Money
from contracts.v1 import Customer, Project
from contracts.v1.provisioning import RuleViolation


class CheckCostCenter(BaseModel):
    cost_center: str


class UpsertCustomer(BaseModel):
    customer: Customer
    enterprise_id: str


class UpsertProject(BaseModel):
    project: Project
    enterprise_id: str
    customer_erp_id: str
    budget: Money


class CloseProject(BaseModel):
    enterprise_id: str
    reason: str


class ErpActivities:
    def __init__(self, erp: ErpPort) -> None:
        self.erp = erp

    @activity.defn(name="erp.check_cost_center")
    @translate_errors
    async def check_cost_center(self, request: CheckCostCenter) -> RuleViolation | None:
        status = await self.erp.cost_center_status(request.cost_center)
        if status is CostCenterStatus.ACTIVE:
            return None
        return RuleViolation(
            code="INVALID_COST_CENTER",
            field="cost_center",
            detail=f"cost center {request.cost_center} is {status.value} in the ERP",
        )

    @activity.defn(name="erp.upsert_customer")
    @translate_errors
    async def upsert_customer(self, request: UpsertCustomer) -> str:
        return await self.erp.upsert_customer(request.customer, enterprise_id=request.enterprise_id)

    @activity.defn(name="erp.upsert_project")
    @translate_errors
    async def upsert_project(self, request: UpsertProject) -> str:
        """The financial project with its budget, upserted by enterprise ID (`eid:`)."""
        return await self.erp.upsert_project(
            request.project,
            enterprise_id=request.enterprise_id,
            customer_erp_id=request.customer_erp_id,
            budget=request.budget,
        )

    @activity.defn(name="erp.close_project")
    @translate_errors
    async def close_project(self, request: CloseProject) -> None:
        """Compensation: close the financial project (idempotent; none is fine)."""
        await self.erp.close_project(f"eid:{request.enterprise_id}", reason=request.reason)
