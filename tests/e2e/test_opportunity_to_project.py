"""Opportunity to project end to end on the real dev server: CRM twin -> signed webhook ->
gateway -> saga -> PSA and ERP twins, with the worker in process or as a separate process that
gets SIGKILLed in the middle of each step."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from connectors.crm import SalesforceCrm
from contracts.naming import TASK_QUEUE
from contracts.settings import load_settings
from contracts.v1.processes import ProvisionProjectInput, ProvisionProjectResult
from demo import (
    DealOutcome,
    deal_from_template,
    provisionable_templates,
    redeliver_webhook,
    systems_hold,
    wait_for_workflow,
    win_deal,
)
from sandbox.seed import build_firm
from stack import Stack, running_stack
from tests._servers import start_worker_process, stop_process

pytestmark = pytest.mark.e2e

FIRM = build_firm(7)
TEMPLATES = provisionable_templates(FIRM)


def count(stack: Stack, system: str, table: str, where: str = "1=1") -> int:
    with stack.sandbox.state(system).engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar_one())


@contextlib.asynccontextmanager
async def stack_for(tmp_path: Path, **kwargs: object) -> AsyncIterator[Stack]:
    settings = load_settings(home=tmp_path / ".pssync")
    async with running_stack(settings, ephemeral_ports=True, **kwargs) as stack:  # type: ignore[arg-type]
        yield stack


async def test_won_deal_ends_in_one_psa_and_one_erp_project_linked_everywhere(
    tmp_path: Path,
) -> None:
    async with stack_for(tmp_path) as stack:
        deal = await win_deal(stack, deal_from_template(FIRM, TEMPLATES[0]))
        handle = await wait_for_workflow(
            stack.client, deal.workflow_id, result_type=ProvisionProjectResult
        )
        result: ProvisionProjectResult = await asyncio.wait_for(handle.result(), 60)
        eid = result.enterprise_id
        assert count(stack, "psa", "psa_workspace") == 1
        assert count(stack, "erp", "erp_job") == 1
        assert count(stack, "erp", "erp_job", f"external_id = '{eid}'") == 1
        links = {(x.system, x.object_type): x.external_id for x in stack.store.xrefs_for(eid)}
        assert links == {
            ("CRM", "Opportunity"): deal.opportunity_id,
            ("PSA", "workspace"): result.psa_project_id,
            ("ERP", "job"): result.erp_project_id,
        }
        customer = {
            (x.system, x.object_type): x.external_id
            for x in stack.store.xrefs_for(result.customer_enterprise_id)
        }
        assert customer[("ERP", "customer")] == result.erp_customer_id
        # the enterprise ID is written back to the CRM, and carried by the PSA and ERP records
        crm = SalesforceCrm(stack.settings.crm)
        try:
            assert (await crm.get_opportunity(deal.opportunity_id)).enterprise_id == eid
        finally:
            await crm.aclose()
        # the demo's cross-system checks agree
        checks = await systems_hold(
            stack,
            DealOutcome(
                opportunity_id=deal.opportunity_id,
                name="deal",
                workflow_id=deal.workflow_id,
                enterprise_id=eid,
                psa_project_id=result.psa_project_id,
                erp_project_id=result.erp_project_id,
            ),
        )
        assert all(c.held for c in checks), [c for c in checks if not c.held]


async def test_fifty_concurrent_copies_of_a_webhook_make_one_run_and_one_project_each(
    tmp_path: Path,
) -> None:
    async with stack_for(tmp_path) as stack:
        # stop the CRM twin's own delivery so every copy below races from the same start
        stack.sandbox.state("crm").webhooks.configure(None)
        deal = await win_deal(stack, deal_from_template(FIRM, TEMPLATES[1]))
        codes = await redeliver_webhook(stack, deal.opportunity_id, 50)
        assert all(c < 300 for c in codes), codes
        handle = await wait_for_workflow(
            stack.client, deal.workflow_id, result_type=ProvisionProjectResult
        )
        await asyncio.wait_for(handle.result(), 60)
        # one run: the history of the only run began with the first start
        first_run = (await handle.describe()).raw_description.workflow_execution_info
        assert first_run.first_run_id == first_run.execution.run_id
        history = await handle.fetch_history()
        starts = [
            e for e in history.events if e.HasField("workflow_execution_started_event_attributes")
        ]
        assert len(starts) == 1
        assert count(stack, "psa", "psa_workspace") == 1
        assert count(stack, "erp", "erp_job") == 1
        inbox = stack.store.inbox_get("crm", f"evt_demo_{deal.opportunity_id}")
        assert inbox is not None and inbox.workflow_id == deal.workflow_id


# --------------------------------------------------------------------------- worker crashes

STEPS = [
    "erp.upsert_customer",
    "psa.create_project_shell",
    "erp.upsert_project",
    "store.link_xrefs",
    "crm.write_back_enterprise_id",
    "psa.seed_staffing_demand",
    "store.add_outbox",
]


def _store_step_done(stack: Stack, opp_id: str, name: str) -> bool:
    """The local store steps (issue 19) are not scheduled on the server: reached once their
    write is in the store (the kill then lands before their markers reach history, or just
    after)."""
    eid = stack.store.find_enterprise_id("CRM", "default", "Opportunity", opp_id)
    if eid is None:
        return False
    if name == "store.link_xrefs":
        return any(x.system == "ERP" for x in stack.store.xrefs_for(eid))
    return name == "store.add_outbox" and any(e.key == eid for e in stack.store.pending_outbox())


async def reached(
    handle: object, name: str, stack: Stack, opp_id: str, timeout_s: float = 60
) -> None:
    """Wait until the saga has reached activity `name`: a worker is running it, or it was
    already scheduled (or, for a local store step, its write is made). Killing then lands
    during the step or right after it, before the next one."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if name.startswith("store.") and _store_step_done(stack, opp_id, name):
            return
        desc = await handle.describe()  # type: ignore[attr-defined]
        if any(p.activity_type.name == name for p in desc.raw_description.pending_activities):
            return
        history = await handle.fetch_history()  # type: ignore[attr-defined]
        for event in history.events:
            attrs = event.activity_task_scheduled_event_attributes
            if event.HasField("activity_task_scheduled_event_attributes") and (
                attrs.activity_type.name == name
            ):
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} was never reached")


async def test_sigkill_of_the_worker_at_each_step_duplicates_nothing(tmp_path: Path) -> None:
    async with stack_for(tmp_path, run_worker=False) as stack:
        # Every twin answers slowly, so each kill lands while a request is in flight: the
        # system may apply the write after the worker died, and the retry must not repeat it.
        for system in ("crm", "psa", "erp"):
            stack.sandbox.state(system).faults.latency_ms = 400
        stack.sandbox.state("crm").webhooks.configure(None)  # started directly below
        crm = SalesforceCrm(stack.settings.crm)
        try:
            new = deal_from_template(FIRM, TEMPLATES[2])
            opp_id = await crm.create_opportunity(new)
            await crm.set_stage(opp_id, "Closed Won")
        finally:
            await crm.aclose()
        log = tmp_path / "worker.log"
        proc = start_worker_process(stack.settings, log)
        killed: list[str] = []
        try:
            handle = await stack.client.start_workflow(
                "OpportunityToProject",
                ProvisionProjectInput(
                    crm_tenant="default", opportunity_id=opp_id, activity_timeout_s=3
                ),
                id=f"crash-test/{opp_id}",
                task_queue=TASK_QUEUE,
                result_type=ProvisionProjectResult,
            )
            for step in STEPS:
                await reached(handle, step, stack, opp_id)
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                killed.append(step)
                proc = start_worker_process(stack.settings, log)
            result = await asyncio.wait_for(handle.result(), 120)
        finally:
            stop_process(proc)
        assert killed == STEPS
        eid = result.enterprise_id
        assert count(stack, "psa", "psa_workspace") == 1
        assert count(stack, "psa", "psa_story") == len(
            [line for line in new.lines if line.line_type.value != "milestone"]
        )
        assert count(stack, "psa", "psa_billing_milestone") == len(
            [line for line in new.lines if line.line_type.value == "milestone"]
        )
        roles = {line.role for line in new.lines if line.role}
        assert count(stack, "psa", "psa_resource_request") == len(roles)
        assert count(stack, "erp", "erp_job") == 1
        customers_before = len({c.id for c in FIRM.customers})
        assert count(stack, "erp", "erp_customer") == customers_before
        assert len(stack.store.xrefs_for(eid)) == 3
        assert [e.key for e in stack.store.pending_outbox()] == [eid]
        async with httpx.AsyncClient() as http:
            r = await http.get(
                f"{stack.urls['gateway']}/api/projects/{eid}",
                headers={"Authorization": "Bearer dev-ops-token"},
            )
        assert r.status_code == 200
