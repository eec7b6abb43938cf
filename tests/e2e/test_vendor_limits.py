"""A saga meets the vendors' own quota errors and waits them out (issue 13).

Salesforce reports an exhausted API allocation as `403 REQUEST_LIMIT_EXCEEDED` and a NetSuite
RESTlet its request limit as `400 SSS_REQUEST_LIMIT_EXCEEDED`. Read by status alone they were
a permanent auth error and a business-rule refusal: the saga gave up (or opened an exception
item) at the first one. Classified by the vendor's code they are rate limits: the connector
backs off and the deal still becomes exactly one project in each system.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from connectors.crm import SalesforceCrm
from contracts.naming import TASK_QUEUE, opportunity_workflow_id
from contracts.settings import load_settings
from contracts.v1.processes import ProvisionProjectInput, ProvisionProjectResult
from demo import deal_from_template, provisionable_templates
from sandbox._twin import FaultConfig
from sandbox.seed import build_firm
from stack import Stack, running_stack

pytestmark = pytest.mark.e2e

FIRM = build_firm(7)
LIMIT_ERRORS = 3


def count(stack: Stack, system: str, table: str) -> int:
    with stack.sandbox.state(system).engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


async def test_a_saga_waits_out_the_crm_and_erp_request_limits(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / ".pssync")
    async with running_stack(settings, ephemeral_ports=True) as stack:
        stack.sandbox.state("crm").webhooks.configure(None)  # the saga is started below
        crm = SalesforceCrm(stack.settings.crm)
        try:
            new = deal_from_template(FIRM, provisionable_templates(FIRM)[0])
            opp_id = await crm.create_opportunity(new)
            await crm.set_stage(opp_id, "Closed Won")
        finally:
            await crm.aclose()

        # From now on the next requests to each system meet that vendor's own limit error.
        crm_twin, erp_twin = stack.sandbox.state("crm"), stack.sandbox.state("erp")
        crm_twin.set_faults(
            FaultConfig(
                limit_errors=LIMIT_ERRORS, limit_status=403, limit_code="REQUEST_LIMIT_EXCEEDED"
            )
        )
        erp_twin.set_faults(
            FaultConfig(
                limit_errors=LIMIT_ERRORS,
                limit_status=400,
                limit_code="SSS_REQUEST_LIMIT_EXCEEDED",
            )
        )
        crm_403, erp_400 = crm_twin.statuses[403], erp_twin.statuses[400]
        handle = await stack.client.start_workflow(
            "OpportunityToProject",
            ProvisionProjectInput(crm_tenant="default", opportunity_id=opp_id),
            id=opportunity_workflow_id("default", opp_id),
            task_queue=TASK_QUEUE,
            result_type=ProvisionProjectResult,
        )
        result: ProvisionProjectResult = await asyncio.wait_for(handle.result(), 120)

        # every limit error was served to the saga, and it carried on
        assert crm_twin.limit_errors_left == 0 and erp_twin.limit_errors_left == 0
        assert crm_twin.statuses[403] - crm_403 == LIMIT_ERRORS
        assert erp_twin.statuses[400] - erp_400 == LIMIT_ERRORS
        # ...to exactly one project in each system, linked, with nothing left for a person
        assert count(stack, "psa", "psa_workspace") == 1
        assert count(stack, "erp", "erp_job") == 1
        assert result.enterprise_id
        assert stack.store.list_exceptions("open") == []
        crm = SalesforceCrm(stack.settings.crm)
        try:
            opportunity = await crm.get_opportunity(opp_id)
        finally:
            await crm.aclose()
        assert opportunity.enterprise_id == result.enterprise_id
