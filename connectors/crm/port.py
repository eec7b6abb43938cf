"""The CRM port (`CrmPort`) and the port-level values around it: the provisioning status pssync
keeps on an opportunity, and the new-opportunity request of tests and the demo."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from contracts.v1 import Customer, LineType, Opportunity


class ProvisioningStatus(StrEnum):
    """Values of the Provisioning_Status__c picklist pssync maintains on the opportunity."""

    NOT_STARTED = "Not Started"
    IN_PROGRESS = "In Progress"
    PROVISIONED = "Provisioned"
    FAILED = "Failed"


class NewOpportunityLine(BaseModel):
    """A line to put on a new opportunity (tests and the demo)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    product_code: str
    description: str = ""
    line_type: LineType = LineType.TIME_AND_MATERIALS
    role: str | None = None
    quantity: Decimal = Field(gt=0)
    unit_price: Decimal = Field(ge=0)
    service_date: date | None = None


class NewOpportunity(BaseModel):
    """An opportunity to create (tests and the demo); Amount follows from the lines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=120)
    account_id: str
    close_date: date
    currency: str = "USD"
    stage: str = "Proposal/Price Quote"
    practice: str | None = None
    cost_center: str | None = None
    rate_card_id: str | None = None
    delivery_manager: str | None = None
    lines: list[NewOpportunityLine] = Field(default_factory=list)
    key: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[^/]+$")
    """The deal's business key (its External ID; no `/`, it travels in the URL path):
    creating twice with one key is one deal. Without it each call mints its own key, so a
    lost answer within the call is recovered, but a caller that retries the whole call needs
    to pass one."""


class CrmPort(Protocol):
    """What pssync needs from the CRM."""

    async def get_opportunity(self, opportunity_id: str) -> Opportunity:
        """The opportunity and its line items as they are now (the safe re-read after a thin
        event). NotFoundError when it does not exist."""
        ...

    async def get_account(self, account_id: str) -> Customer: ...

    async def opportunities_in_stage(self, stage: str) -> list[Opportunity]:
        """Every opportunity in `stage`, headers only (`lines` empty) — for reconciliation."""
        ...

    async def write_back_enterprise_id(self, opportunity_id: str, enterprise_id: str) -> None:
        """Record the enterprise project ID on the opportunity (idempotent)."""
        ...

    async def mark_provisioning(
        self, opportunity_id: str, status: ProvisioningStatus, error: str | None = None
    ) -> None:
        """Tell the salespeople how provisioning went; `error` says why it failed."""
        ...
