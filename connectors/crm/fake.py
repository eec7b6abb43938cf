"""`FakeCrm`: the `CrmPort` (and a salesperson's actions) in memory, with the twin's rules
(unit and workflow tests)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP

from connectors.crm.mapping import (
    _CENT,
    CONTRACTED_STAGE,
    _check_enterprise_id,
    _check_stage,
    _error_text,
    _money,
)
from connectors.crm.port import CrmPort, NewOpportunity, ProvisioningStatus
from contracts.errors import BusinessRuleViolation, NotFoundError
from contracts.money import Money
from contracts.systems import System
from contracts.v1 import Customer, Opportunity, OpportunityLine

# --------------------------------------------------------------------------- the fake


class FakeCrm:
    """`CrmPort` in memory, with the twin's rules: unknown IDs are NotFoundError, Amount is
    the sum of the lines, stages come from the picklist, enterprise IDs must be ULIDs.
    `won` lists the opportunity IDs that reached `Closed Won` (what the CRM would announce)."""

    def __init__(self, tenant: str = "default") -> None:
        self.tenant = tenant
        self.accounts: dict[str, Customer] = {}
        self.opportunities: dict[str, Opportunity] = {}
        self.provisioning: dict[str, tuple[ProvisioningStatus, str | None]] = {}
        self.won: list[str] = []
        self.keys: dict[str, str] = {}
        """`NewOpportunity.key` -> opportunity Id (the External ID upsert)."""
        self._seq = 0
        self._clock = 0

    def _next_version(self) -> tuple[str, datetime]:
        self._clock += 1
        return f"v{self._clock}", datetime.now(UTC)

    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}FAKE{self._seq:011d}"

    def add_account(self, customer: Customer) -> Customer:
        self.accounts[customer.external_id] = customer
        return customer

    def add_opportunity(self, opportunity: Opportunity) -> Opportunity:
        """Put a canonical opportunity in as it is (tests)."""
        self.opportunities[opportunity.external_id] = opportunity.model_copy(deep=True)
        return opportunity

    def _opp(self, opportunity_id: str) -> Opportunity:
        opp = self.opportunities.get(opportunity_id)
        if opp is None:
            raise NotFoundError(
                f"CRM 404 NOT_FOUND: Opportunity {opportunity_id}", system=System.CRM
            )
        return opp

    def _touch(self, opp: Opportunity) -> None:
        opp.source_version, opp.updated_at = self._next_version()

    async def get_opportunity(self, opportunity_id: str) -> Opportunity:
        return self._opp(opportunity_id).model_copy(deep=True)

    async def get_account(self, account_id: str) -> Customer:
        account = self.accounts.get(account_id)
        if account is None:
            raise NotFoundError(f"CRM 404 NOT_FOUND: Account {account_id}", system=System.CRM)
        return account.model_copy(deep=True)

    async def opportunities_in_stage(self, stage: str) -> list[Opportunity]:
        _check_stage(stage)
        found = [o for o in self.opportunities.values() if o.stage == stage]
        return [o.model_copy(update={"lines": []}, deep=True) for o in found]

    async def write_back_enterprise_id(self, opportunity_id: str, enterprise_id: str) -> None:
        _check_enterprise_id(enterprise_id)
        opp = self._opp(opportunity_id)
        opp.enterprise_id = enterprise_id
        self._touch(opp)

    async def mark_provisioning(
        self, opportunity_id: str, status: ProvisioningStatus, error: str | None = None
    ) -> None:
        opp = self._opp(opportunity_id)
        self.provisioning[opportunity_id] = (ProvisioningStatus(status), _error_text(error))
        self._touch(opp)

    async def create_opportunity(self, new: NewOpportunity) -> str:
        _check_stage(new.stage)
        if new.key is not None and new.key in self.keys:
            return self.keys[new.key]
        if new.account_id not in self.accounts:
            raise BusinessRuleViolation(
                "INVALID_CROSS_REFERENCE_KEY",
                f"invalid cross reference id: AccountId {new.account_id}",
                field="AccountId",
                system=System.CRM,
            )
        opp_id = self._next_id("006")
        lines = []
        for line in new.lines:
            unit = Money(line.unit_price.quantize(_CENT, rounding=ROUND_HALF_UP), new.currency)
            lines.append(
                OpportunityLine(
                    line_id=self._next_id("00k"),
                    product_code=line.product_code,
                    description=line.description,
                    line_type=line.line_type,
                    role=line.role,
                    quantity=line.quantity,
                    unit_price=unit,
                    total_price=_money(line.quantity * line.unit_price, new.currency),
                    service_date=line.service_date,
                )
            )
        amount = sum((li.total_price for li in lines), Money.zero(new.currency))
        version, moment = self._next_version()
        self.opportunities[opp_id] = Opportunity(
            source_system=System.CRM,
            source_version=version,
            updated_at=moment,
            external_id=opp_id,
            name=new.name,
            account_id=new.account_id,
            amount=amount,
            close_date=new.close_date,
            stage=new.stage,
            is_won=new.stage == CONTRACTED_STAGE,
            is_closed=new.stage in ("Closed Won", "Closed Lost"),
            cost_center=new.cost_center,
            practice=new.practice,
            rate_card_id=new.rate_card_id,
            delivery_manager=new.delivery_manager,
            lines=lines,
        )
        if new.stage == CONTRACTED_STAGE:
            self.won.append(opp_id)
        if new.key is not None:
            self.keys[new.key] = opp_id
        return opp_id

    async def set_stage(self, opportunity_id: str, stage: str) -> None:
        _check_stage(stage)
        opp = self._opp(opportunity_id)
        was_won = opp.is_won
        opp.stage = stage
        opp.is_won = stage == CONTRACTED_STAGE
        opp.is_closed = stage in ("Closed Won", "Closed Lost")
        self._touch(opp)
        if opp.is_won and not was_won:
            self.won.append(opportunity_id)


def _check_port() -> CrmPort:  # pragma: no cover - a static check for mypy
    return FakeCrm()
