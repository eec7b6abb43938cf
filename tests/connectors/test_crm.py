"""The CRM connector against the Salesforce twin over loopback HTTP, and the fake beside it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.crm import (
    CrmPort,
    FakeCrm,
    NewOpportunity,
    NewOpportunityLine,
    ProvisioningStatus,
    SalesforceCrm,
)
from contracts.errors import (
    AuthError,
    BusinessRuleViolation,
    NotFoundError,
    OwnershipViolation,
    TransientError,
)
from contracts.money import Money
from contracts.ownership import check_write
from contracts.systems import System
from contracts.v1 import Customer, LineType
from sandbox import crm as crm_twin
from sandbox._ids import salesforce_id
from sandbox._twin import FaultConfig
from sandbox.seed import build_firm
from tests._servers import serve
from tests._twins import ConnectedTwin, until

TODAY = date(2025, 6, 15)
ENTERPRISE_ID = "01JZ0K3M9QW8R5T2V7X4Y6B1CD"
UNKNOWN_OPP = salesforce_id("006", 31337, pod="zz")


@dataclass
class Twin(ConnectedTwin):
    async def raw(self, opportunity_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient(
            base_url=self.base_url, headers={"Authorization": "Bearer dev-static-token"}
        ) as client:
            response = await client.get(
                f"/services/data/v61.0/sobjects/Opportunity/{opportunity_id}"
            )
            body: dict[str, Any] = response.json()
            return body


@pytest.fixture(scope="module")
async def twin() -> AsyncIterator[Twin]:
    firm = build_firm(21, workers=30, today=TODAY)
    app = crm_twin.create_app(None, tenant="acme")
    crm_twin.load_firm(app, firm)
    async with serve(app) as base:
        yield Twin(app, base, firm)


@pytest.fixture(autouse=True)
def _calm(twin: Twin) -> None:
    twin.calm()


@pytest.fixture
async def salesforce(twin: Twin) -> AsyncIterator[SalesforceCrm]:
    async with SalesforceCrm(twin.settings(), backoff_base_s=0.01, query_batch_size=2) as crm:
        yield crm


# --------------------------------------------------------------------------- reads


async def test_get_opportunity_is_canonical(salesforce: SalesforceCrm, twin: Twin) -> None:
    seeded = max(twin.firm.opportunities, key=lambda o: len(o.lines))
    assert len(seeded.lines) >= 3  # more than one query page at batchSize=2
    opp = await salesforce.get_opportunity(seeded.id)
    assert opp.source_system is System.CRM
    assert opp.external_id == seeded.id and opp.account_id == seeded.account_id
    assert opp.amount == Money(seeded.amount, seeded.currency)
    assert opp.amount == sum((line.total_price for line in opp.lines), Money.zero(seeded.currency))
    assert opp.close_date == seeded.close_date and opp.stage == seeded.stage
    assert (opp.practice, opp.cost_center, opp.rate_card_id, opp.delivery_manager) == (
        seeded.practice,
        seeded.cost_center,
        seeded.rate_card_id,
        seeded.delivery_manager,
    )
    assert opp.source_version and opp.source_version.endswith("+0000")
    assert [line.line_id for line in opp.lines] == [line.id for line in seeded.lines]
    for line, source in zip(opp.lines, seeded.lines, strict=True):
        assert line.line_type == LineType(source.line_type)
        assert line.quantity == source.quantity and line.role == source.role
        assert line.unit_price == Money(source.unit_price, seeded.currency)
        assert line.total_price == Money(source.total_price, seeded.currency)
        assert line.service_date == source.service_date
        assert isinstance(line.total_price.amount, Decimal)


async def test_get_account(salesforce: SalesforceCrm, twin: Twin) -> None:
    held = next(c for c in twin.firm.customers if c.credit_hold)
    customer = await salesforce.get_account(held.id)
    assert (customer.external_id, customer.name, customer.currency) == (
        held.id,
        held.name,
        held.currency,
    )
    assert customer.credit_hold is True and customer.billing_country == held.billing_country


async def test_opportunities_in_stage(salesforce: SalesforceCrm, twin: Twin) -> None:
    stage = twin.firm.opportunities[0].stage
    found = await salesforce.opportunities_in_stage(stage)
    assert {o.external_id for o in found} == {
        o.id for o in twin.firm.opportunities if o.stage == stage
    }
    assert all(o.lines == [] and o.stage == stage for o in found)


async def test_line_change_between_reads_is_seen(salesforce: SalesforceCrm, twin: Twin) -> None:
    seeded = twin.firm.opportunities[1]
    before = await salesforce.get_opportunity(seeded.id)
    async with httpx.AsyncClient(
        base_url=twin.base_url, headers={"Authorization": "Bearer dev-static-token"}
    ) as client:
        response = await client.patch(
            f"/services/data/v61.0/sobjects/OpportunityLineItem/{seeded.lines[0].id}",
            json={"Quantity": str(seeded.lines[0].quantity + 1)},
        )
        assert response.status_code == 204
    after = await salesforce.get_opportunity(seeded.id)
    assert after.source_version != before.source_version
    assert after.amount == before.amount + Money(seeded.lines[0].unit_price, seeded.currency)


async def test_unknown_opportunity_is_not_found(salesforce: SalesforceCrm) -> None:
    with pytest.raises(NotFoundError):
        await salesforce.get_opportunity(UNKNOWN_OPP)
    with pytest.raises(NotFoundError):
        await salesforce.get_account(salesforce_id("001", 31337, pod="zz"))


# --------------------------------------------------------------------------- writes


async def test_write_back_and_provisioning_status(salesforce: SalesforceCrm, twin: Twin) -> None:
    seeded = twin.firm.opportunities[2]
    await salesforce.write_back_enterprise_id(seeded.id, ENTERPRISE_ID)
    await salesforce.write_back_enterprise_id(seeded.id, ENTERPRISE_ID)  # idempotent
    assert (await salesforce.get_opportunity(seeded.id)).enterprise_id == ENTERPRISE_ID
    await salesforce.mark_provisioning(seeded.id, ProvisioningStatus.FAILED, "ERP: " + "x" * 400)
    raw = await twin.raw(seeded.id)
    assert raw["Provisioning_Status__c"] == "Failed"
    assert (
        raw["Provisioning_Error__c"].startswith("ERP: ")
        and len(raw["Provisioning_Error__c"]) == 255
    )
    await salesforce.mark_provisioning(seeded.id, ProvisioningStatus.PROVISIONED)
    raw = await twin.raw(seeded.id)
    assert raw["Provisioning_Status__c"] == "Provisioned" and raw["Provisioning_Error__c"] is None


def test_only_pssync_writes_the_enterprise_id() -> None:
    check_write(System.PSSYNC, "Opportunity", ["enterprise_id"])
    with pytest.raises(OwnershipViolation):
        check_write(System.PSSYNC, "Opportunity", ["amount"])


async def test_won_deal_event_from_connector_actions(salesforce: SalesforceCrm, twin: Twin) -> None:
    assert twin.state.webhooks is not None
    twin.state.webhooks.deliveries.clear()
    opp_id = await salesforce.create_opportunity(_new_deal(twin.firm.customers[3].id))
    await salesforce.set_stage(opp_id, "Negotiation/Review")
    assert not twin.state.webhooks.deliveries
    await salesforce.set_stage(opp_id, "Closed Won")
    (delivery,) = twin.state.webhooks.deliveries.values()
    assert delivery.event_type == "opportunity.won"


# --------------------------------------------------------------------------- failures


async def test_retry_after_is_honoured(twin: Twin) -> None:
    twin.state.set_faults(FaultConfig(rate_limit_rate=0.5, retry_after_s=0.15, seed=1))
    settings = twin.settings(auth="bearer", token=SecretStr("dev-static-token"))
    async with SalesforceCrm(settings, backoff_base_s=0.001) as crm:
        started = time.monotonic()
        opp = await crm.get_opportunity(twin.firm.opportunities[3].id)
        elapsed = time.monotonic() - started
    throttled = twin.state.stats().throttled_429
    assert opp.external_id == twin.firm.opportunities[3].id
    assert throttled >= 1 and crm.http.retries == throttled
    # Jittered backoff at 1 ms would be far quicker: the waits were the vendor's.
    assert elapsed >= 0.15 * throttled


async def test_5xx_burst_is_ridden_out(twin: Twin) -> None:
    twin.state.set_faults(FaultConfig(error_rate=0.5, error_statuses=[500, 502, 503, 504], seed=3))
    async with SalesforceCrm(twin.settings(), backoff_base_s=0.001) as crm:
        customer = await crm.get_account(twin.firm.customers[0].id)
        opp = await crm.get_opportunity(twin.firm.opportunities[4].id)
    assert customer.name == twin.firm.customers[0].name and opp.lines
    assert twin.state.stats().errors_5xx >= 1
    assert crm.http.retries == twin.state.stats().errors_5xx


async def test_outage_then_recovery(twin: Twin) -> None:
    twin.state.set_faults(FaultConfig(outage=True))
    async with SalesforceCrm(twin.settings(), backoff_base_s=0.005) as crm:
        call = asyncio.create_task(crm.get_account(twin.firm.customers[1].id))
        await until(lambda: twin.state.stats().errors_5xx >= 3)
        assert not call.done()
        twin.state.set_faults(FaultConfig())
        customer = await asyncio.wait_for(call, 10)
    assert customer.external_id == twin.firm.customers[1].id


async def test_outage_past_the_budget_is_transient(twin: Twin) -> None:
    twin.state.set_faults(FaultConfig(outage=True))
    async with SalesforceCrm(twin.settings(retry_budget_s=0.2), backoff_base_s=0.01) as crm:
        with pytest.raises(TransientError):
            await crm.get_account(twin.firm.customers[1].id)


async def test_wrong_credentials_are_auth_errors(twin: Twin) -> None:
    async with SalesforceCrm(twin.settings(client_secret=SecretStr("nope"))) as crm:
        with pytest.raises(AuthError):
            await crm.get_account(twin.firm.customers[0].id)


async def test_revoked_token_is_refreshed(salesforce: SalesforceCrm, twin: Twin) -> None:
    await salesforce.get_account(twin.firm.customers[0].id)
    async with httpx.AsyncClient(base_url=twin.base_url) as admin:
        assert (await admin.post("/_admin/tokens/revoke")).status_code == 200
    customer = await salesforce.get_account(twin.firm.customers[0].id)
    assert customer.external_id == twin.firm.customers[0].id


# --------------------------------------------------------------------------- the port, both ways


def _new_deal(account_id: str, **overrides: Any) -> NewOpportunity:
    values: dict[str, Any] = {
        "name": "Cloud migration wave 2",
        "account_id": account_id,
        "close_date": date(2025, 7, 31),
        "currency": "USD",
        "practice": "Cloud",
        "cost_center": "CC-130",
        "rate_card_id": "RC-STD-USD",
        "delivery_manager": "21003",
        "lines": [
            NewOpportunityLine(
                product_code="PS-TM-SC",
                description="Senior Consultant time and materials",
                role="Senior Consultant",
                quantity=Decimal(160),
                unit_price=Decimal("236.25"),
            ),
            NewOpportunityLine(
                product_code="PS-MS",
                description="Milestone: Cut-over",
                line_type=LineType.MILESTONE,
                quantity=Decimal(1),
                unit_price=Decimal("45000"),
                service_date=date(2025, 9, 30),
            ),
        ],
        **overrides,
    }
    return NewOpportunity(**values)


@dataclass
class Port:
    crm: CrmPort
    salesperson: SalesforceCrm | FakeCrm
    account_id: str
    provisioning: Callable[[str], Any]
    won_events: Callable[[], int]


@pytest.fixture(params=["twin", "fake"])
async def port(request: pytest.FixtureRequest, twin: Twin) -> AsyncIterator[Port]:
    customer = twin.firm.customers[4]
    if request.param == "fake":
        fake = FakeCrm()
        fake.add_account(
            Customer(
                source_system=System.CRM,
                external_id=customer.id,
                name=customer.name,
                currency=customer.currency,
            )
        )

        async def fake_status(opp_id: str) -> tuple[str, str | None]:
            status, error = fake.provisioning[opp_id]
            return status.value, error

        yield Port(fake, fake, customer.id, fake_status, lambda: len(fake.won))
        return
    assert twin.state.webhooks is not None
    webhooks = twin.state.webhooks
    webhooks.deliveries.clear()
    async with SalesforceCrm(twin.settings(), backoff_base_s=0.01) as crm:

        async def twin_status(opp_id: str) -> tuple[str, str | None]:
            raw = await twin.raw(opp_id)
            return raw["Provisioning_Status__c"], raw["Provisioning_Error__c"]

        def twin_won() -> int:
            return sum(d.event_type == "opportunity.won" for d in webhooks.deliveries.values())

        yield Port(crm, crm, customer.id, twin_status, twin_won)


async def test_port_round_trip(port: Port) -> None:
    opp_id = await port.salesperson.create_opportunity(_new_deal(port.account_id))
    opp = await port.crm.get_opportunity(opp_id)
    assert opp.amount == Money("82800.00", "USD")  # 160 x 236.25 + 45000
    assert [line.line_type for line in opp.lines] == [
        LineType.TIME_AND_MATERIALS,
        LineType.MILESTONE,
    ]
    assert opp.lines[1].service_date == date(2025, 9, 30)
    assert not opp.is_won and opp.enterprise_id is None

    await port.crm.write_back_enterprise_id(opp_id, ENTERPRISE_ID)
    again = await port.crm.get_opportunity(opp_id)
    assert again.enterprise_id == ENTERPRISE_ID and again.source_version != opp.source_version

    await port.crm.mark_provisioning(opp_id, ProvisioningStatus.FAILED, "y" * 300)
    status, error = await port.provisioning(opp_id)
    assert status == "Failed" and error == "y" * 255

    await port.salesperson.set_stage(opp_id, "Closed Won")
    won = await port.crm.get_opportunity(opp_id)
    assert won.is_won and won.is_closed and won.stage == "Closed Won"
    assert opp_id in {o.external_id for o in await port.crm.opportunities_in_stage("Closed Won")}
    assert port.won_events() == 1
    await port.salesperson.set_stage(opp_id, "Closed Won")
    assert port.won_events() == 1


async def test_port_refusals(port: Port) -> None:
    with pytest.raises(NotFoundError):
        await port.crm.get_opportunity(UNKNOWN_OPP)
    with pytest.raises(NotFoundError):
        await port.crm.write_back_enterprise_id(UNKNOWN_OPP, ENTERPRISE_ID)
    with pytest.raises(BusinessRuleViolation) as bad_id:
        await port.crm.write_back_enterprise_id(UNKNOWN_OPP, "PRJ-42")
    assert bad_id.value.code == "INVALID_ENTERPRISE_ID"
    with pytest.raises(BusinessRuleViolation) as bad_stage:
        await port.salesperson.set_stage(UNKNOWN_OPP, "Won, probably")
    assert (bad_stage.value.code, bad_stage.value.field) == (
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "StageName",
    )
    with pytest.raises(BusinessRuleViolation) as no_account:
        await port.salesperson.create_opportunity(_new_deal(salesforce_id("001", 31337, pod="zz")))
    assert (no_account.value.code, no_account.value.field) == (
        "INVALID_CROSS_REFERENCE_KEY",
        "AccountId",
    )
    assert no_account.value.system == System.CRM
