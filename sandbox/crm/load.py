"""Seeding the CRM twin from a generated firm (Accounts, open Opportunities, line items)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from sandbox._twin import TwinState, seed_session
from sandbox.crm.bodies import _money, _now
from sandbox.crm.records import _apply_stage, _audit
from sandbox.crm.tables import CrmAccount, CrmOpportunity, CrmOpportunityLineItem

if TYPE_CHECKING:
    from sandbox.seed import Firm

_BILLING_TYPE = {
    "time_and_materials": "Time and Materials",
    "fixed_fee": "Fixed Fee",
    "milestone": "Milestone",
}


def load_firm(app_or_state: FastAPI | TwinState, firm: Firm) -> None:
    """Write the firm's customers (Accounts) and open deals (Opportunities + line items).

    Idempotent: records already there (by Id) are left as they are, so restarting the stack
    never reopens a deal that was won or loses a written-back enterprise ID."""
    audit = _audit(_now())
    with seed_session(app_or_state) as session:
        for c in firm.customers:
            if session.get(CrmAccount, c.id) is not None:
                continue
            session.merge(
                CrmAccount(
                    Id=c.id,
                    Name=c.name,
                    CurrencyIsoCode=c.currency,
                    BillingCountry=c.billing_country,
                    Industry=c.industry,
                    Type="Customer - Public Sector" if c.public_sector else "Customer",
                    Credit_Hold__c=c.credit_hold,
                    **audit,
                )
            )
        for o in firm.opportunities:
            if session.get(CrmOpportunity, o.id) is not None:
                continue
            opp = CrmOpportunity(
                Id=o.id,
                Name=o.name,
                AccountId=o.account_id,
                Amount=_money(o.amount),
                CloseDate=o.close_date,
                StageName=o.stage,
                CurrencyIsoCode=o.currency,
                HasOpportunityLineItem=bool(o.lines),
                Practice__c=o.practice,
                Cost_Center__c=o.cost_center,
                Rate_Card__c=o.rate_card_id,
                Delivery_Manager__c=o.delivery_manager,
                **audit,
            )
            _apply_stage(opp, o.stage, probability_given=True)
            opp.Probability = str(o.probability)
            session.merge(opp)
            for n, line in enumerate(o.lines, start=1):
                session.merge(
                    CrmOpportunityLineItem(
                        Id=line.id,
                        OpportunityId=o.id,
                        ProductCode=line.product_code,
                        Name=line.description,
                        Description=line.description,
                        Quantity=str(line.quantity),
                        UnitPrice=_money(line.unit_price),
                        TotalPrice=_money(line.total_price),
                        ServiceDate=line.service_date,
                        SortOrder=n,
                        CurrencyIsoCode=o.currency,
                        Billing_Type__c=_BILLING_TYPE[line.line_type],
                        Role__c=line.role,
                        **audit,
                    )
                )
