"""The gateway's change-order and termination routes on the whole stack: a change order
submitted in the PSA twin is approved through the API and reaches the ERP budget; a
termination from the HCM twin is rescinded through the API and the PSA is restored."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from contracts.settings import load_settings
from contracts.v1.processes import ProvisionProjectResult
from demo import (
    DealOutcome,
    change_order_scene,
    deal_from_template,
    provisionable_templates,
    termination_scene,
    wait_for_workflow,
    win_deal,
)
from sandbox.seed import build_firm
from stack import Stack, running_stack

pytestmark = pytest.mark.e2e

FIRM = build_firm(7)


async def provisioned(stack: Stack, index: int) -> DealOutcome:
    template = provisionable_templates(FIRM)[index]
    deal = await win_deal(stack, deal_from_template(FIRM, template))
    handle = await wait_for_workflow(
        stack.client, deal.workflow_id, result_type=ProvisionProjectResult
    )
    result = await asyncio.wait_for(handle.result(), 60)
    deal.enterprise_id = result.enterprise_id
    deal.psa_project_id = result.psa_project_id
    deal.erp_project_id = result.erp_project_id
    return deal


async def test_change_order_and_termination_through_the_gateway(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / ".pssync")
    async with running_stack(settings, ephemeral_ports=True) as stack:
        deal = await provisioned(stack, 0)
        async with httpx.AsyncClient(timeout=30) as http:
            unauthenticated = await http.post(
                f"{stack.urls['gateway']}/api/change-orders/1/decision", json={"approve": True}
            )
        assert unauthenticated.status_code == 401

        checks = await change_order_scene(stack, deal, say=lambda _m: None)
        assert all(c.held for c in checks), [c for c in checks if not c.held]

        left = await termination_scene(stack, deal, say=lambda _m: None)
        assert all(c.held for c in left.checks), [c for c in left.checks if not c.held]
        worker_id = left.worker_id
        today = date.today().isoformat()
        async with httpx.AsyncClient(timeout=60) as http:
            refused = await http.post(
                f"{stack.urls['gateway']}/api/terminations/{worker_id}/{today}/rescind",
                headers={"Authorization": "Bearer dev-finance-token"},
                json={"reason": "finance cannot rescind"},
            )
            rescinded = await http.post(
                f"{stack.urls['gateway']}/api/terminations/{worker_id}/{today}/rescind",
                headers={"Authorization": "Bearer dev-ops-token"},
                json={"reason": "HR entered the wrong worker"},
            )
        assert refused.status_code == 403, refused.text
        assert rescinded.status_code == 200, rescinded.text
        handle = stack.client.get_workflow_handle(left.workflow_id)
        outcome = await asyncio.wait_for(handle.result(), 60)
        assert outcome["outcome"] == "rescinded"
        with stack.sandbox.state("psa").engine.connect() as conn:
            restored = conn.execute(
                text("SELECT end_date FROM psa_assignment WHERE id = :id"),
                {"id": int(left.assignment_id)},
            ).scalar_one()
        # the scene staffed the leaver until 60 days from now; the rescind puts that back
        assert str(restored) == (date.today() + timedelta(days=60)).isoformat()
