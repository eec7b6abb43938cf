"""Deals for the demo: new opportunities shaped like the seeded firm's, won in the CRM twin,
one webhook redelivered at once, and what each system holds for a provisioned deal."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from demo.checks import Check
from stack import Stack


@dataclass
class DealOutcome:
    opportunity_id: str
    name: str
    workflow_id: str
    enterprise_id: str | None = None
    psa_project_id: str | None = None
    erp_project_id: str | None = None
    status: str = "pending"


def deal_from_template(firm: Any, index: int, **overrides: Any) -> Any:
    """A new opportunity shaped like the seeded firm's `index`-th open deal (fresh IDs each
    time, so the demo can run again and again against the same twins)."""
    from connectors.crm import NewOpportunity, NewOpportunityLine
    from contracts.v1 import LineType

    template = firm.opportunities[index % len(firm.opportunities)]
    data: dict[str, Any] = {
        "name": f"{template.name} (demo {index})",
        "account_id": template.account_id,
        "close_date": firm.today,
        "currency": template.currency,
        "practice": template.practice,
        "cost_center": template.cost_center,
        "rate_card_id": template.rate_card_id,
        "delivery_manager": template.delivery_manager,
        "lines": [
            NewOpportunityLine(
                product_code=line.product_code,
                description=line.description,
                line_type=LineType(line.line_type),
                role=line.role,
                quantity=line.quantity,
                unit_price=line.unit_price,
                service_date=line.service_date,
            )
            for line in template.lines
        ],
    }
    data.update(overrides)
    return NewOpportunity(**data)


def provisionable_templates(firm: Any) -> list[int]:
    """Indexes of seeded deals whose customer is not on credit hold."""
    held = {c.id for c in firm.customers if c.credit_hold}
    return [i for i, o in enumerate(firm.opportunities) if o.account_id not in held]


async def win_deal(stack: Stack, new: Any) -> DealOutcome:
    """Create the deal in the CRM twin and move it to Closed Won: the twin's signed webhook
    reaches the gateway, which starts the saga."""
    from connectors.crm import SalesforceCrm
    from contracts.naming import opportunity_workflow_id

    crm = SalesforceCrm(stack.settings.crm)
    try:
        opp_id = await crm.create_opportunity(new)
        await crm.set_stage(opp_id, "Closed Won")
    finally:
        await crm.aclose()
    return DealOutcome(
        opportunity_id=opp_id,
        name=new.name,
        workflow_id=opportunity_workflow_id(stack.settings.crm.tenant, opp_id),
    )


async def redeliver_webhook(stack: Stack, opportunity_id: str, copies: int) -> list[int]:
    """Send one signed won-deal event `copies` times at once (what an at-least-once sender
    under retries looks like); returns the gateway's status codes."""
    import httpx

    sender = stack.sandbox.state("crm").webhooks
    event = {
        "type": "opportunity.won",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {
            "tenant": stack.settings.crm.tenant,
            "object": "Opportunity",
            "id": opportunity_id,
            "stage": "Closed Won",
        },
    }
    body, headers = sender.signed_request(f"evt_demo_{opportunity_id}", event)
    async with httpx.AsyncClient(timeout=30) as http:
        responses = await asyncio.gather(
            *[
                http.post(f"{stack.urls['gateway']}/webhooks/crm", content=body, headers=headers)
                for _ in range(copies)
            ]
        )
    return [r.status_code for r in responses]


async def systems_hold(stack: Stack, outcome: DealOutcome) -> list[Check]:
    """What each system holds for one provisioned deal, checked against the others."""
    from connectors.crm import SalesforceCrm
    from connectors.erp import NetSuiteErp
    from connectors.psa import KantataPsa

    eid = outcome.enterprise_id or ""
    checks: list[Check] = []
    psa, erp, crm = (
        KantataPsa(stack.settings.psa),
        NetSuiteErp(stack.settings.erp),
        SalesforceCrm(stack.settings.crm),
    )
    try:
        psa_id = await psa.find_project_by_enterprise_id(eid)
        checks.append(
            Check(f"{outcome.name}: one PSA project", psa_id == outcome.psa_project_id, str(psa_id))
        )
        job = await erp.get_project(f"eid:{eid}")
        checks.append(
            Check(
                f"{outcome.name}: one ERP project",
                job.erp_id == outcome.erp_project_id and job.enterprise_id == eid,
                f"job {job.erp_id}, budget {job.budget}",
            )
        )
        opp = await crm.get_opportunity(outcome.opportunity_id)
        checks.append(Check(f"{outcome.name}: enterprise ID in CRM", opp.enterprise_id == eid, eid))
        links = await asyncio.to_thread(stack.store.xrefs_for, eid)
        systems = sorted(f"{x.system}:{x.object_type}" for x in links)
        checks.append(
            Check(
                f"{outcome.name}: IDs linked in xref",
                systems == ["CRM:Opportunity", "ERP:job", "PSA:workspace"],
                ", ".join(systems),
            )
        )
    finally:
        for connector in (psa, erp, crm):
            await connector.aclose()
    return checks
