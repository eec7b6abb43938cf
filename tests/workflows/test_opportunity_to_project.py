"""OpportunityToProject on the time-skipping server: the real workflow and activities over the
in-memory fakes and a real SQLite store. Asserts what each system ends up holding."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from contracts import AuthError
from contracts.v1 import ProjectStatus
from contracts.v1.processes import (
    ProvisioningStep,
    ResolutionAction,
)
from tests.workflows._provisioning import (
    OPPORTUNITY,
    World,
    cost_center_corrected,
    credit_hold,
    provisioning_world,
    resolution,
    start_saga,
    wait_for_step,
    won_opportunity,
)
from workflows.opportunity_to_project import OpportunityToProjectWorkflow

EXCEPTION_OPEN = SearchAttributeKey.for_bool("ExceptionOpen")


async def start(world: World, escalation_after_s: int = 3600) -> WorkflowHandle:
    return await start_saga(world, escalation_after_s=escalation_after_s)


async def test_won_deal_becomes_one_psa_and_one_erp_project_linked_by_one_id(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with provisioning_world(ts_env.client, tmp_path) as world:
        result = await (await start(world)).result()
    eid = result.enterprise_id
    assert len(world.psa.projects) == 1
    shell = world.psa.projects[result.psa_project_id]
    assert shell.enterprise_id == eid and not shell.archived
    assert {n.code for n in shell.project.wbs} == {"01", "02"}
    assert [m.code for m in shell.project.milestones] == ["M03"]
    assert len(world.erp.jobs) == 1
    job = next(iter(world.erp.jobs.values()))
    assert job.enterprise_id == eid and job.status is ProjectStatus.ACTIVE
    assert job.budget is not None and job.budget.amount == 25000
    # every system's ID is linked to the one enterprise ID
    links = {(x.system, x.object_type): x.external_id for x in world.store.xrefs_for(eid)}
    assert links == {
        ("CRM", "Opportunity"): OPPORTUNITY,
        ("PSA", "workspace"): result.psa_project_id,
        ("ERP", "job"): result.erp_project_id,
    }
    assert world.crm.opportunities[OPPORTUNITY].enterprise_id == eid
    assert world.crm.provisioning[OPPORTUNITY][0] == "Provisioned"
    # staffing demand: one request per role, hours from the T&M lines
    demand = {d.role: d.allocated_minutes for d, _, _ in world.psa.resource_requests.values()}
    assert demand == {"Consultant": 100 * 60, "Manager": 20 * 60}
    outbox = world.store.pending_outbox()
    assert [(e.event_type, e.key) for e in outbox] == [("project.provisioned", eid)]


async def test_unknown_cost_center_waits_for_an_authorised_correction(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    opp = won_opportunity(cost_center="CC-404")
    async with provisioning_world(ts_env.client, tmp_path, opportunity=opp) as world:
        handle = await start(world)
        status = await wait_for_step(handle, ProvisioningStep.WAITING_FOR_RESOLUTION)
        item = status.open_exception
        assert item is not None and item.cause_code == "INVALID_COST_CENTER"
        assert item.field == "cost_center"
        assert (await handle.describe()).typed_search_attributes.get(EXCEPTION_OPEN) is True
        stored = world.store.get_exception(item.item_id)
        assert stored is not None and stored.status == "open"
        assert not world.psa.projects and not world.erp.jobs  # nothing written yet

        # finance may not resolve provisioning items: refused before it reaches history
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(
                OpportunityToProjectWorkflow.resolve_exception,
                cost_center_corrected(
                    item.item_id, actor="frank.finance", actor_roles=["finance_controller"]
                ),
            )
        # nor may anyone correct a field that is not correctable
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(
                OpportunityToProjectWorkflow.resolve_exception,
                resolution(
                    item.item_id, ResolutionAction.RETRY_WITH_DATA, corrections={"amount": "1"}
                ),
            )
        history = [e.event_type for e in (await handle.fetch_history()).events]
        assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED not in history

        accepted = await handle.execute_update(
            OpportunityToProjectWorkflow.resolve_exception,
            cost_center_corrected(item.item_id),
        )
        assert accepted.action is ResolutionAction.RETRY_WITH_DATA
        result = await handle.result()
    job = next(iter(world.erp.jobs.values()))
    assert job.cost_center == "CC-120"
    assert world.psa.projects[result.psa_project_id].project.cost_center == "CC-120"
    resolved = world.store.get_exception(item.item_id)
    assert resolved is not None and resolved.status == "resolved"
    assert resolved.resolution is not None and resolved.resolution["actor"] == "dana.manager"


async def test_unresolved_exception_escalates_and_abandon_leaves_nothing_behind(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    opp = won_opportunity(rate_card_id="RC-MISSING")
    async with provisioning_world(ts_env.client, tmp_path, opportunity=opp) as world:
        handle = await start(world, escalation_after_s=4 * 3600)
        status = await wait_for_step(handle, ProvisioningStep.WAITING_FOR_RESOLUTION)
        item = status.open_exception
        assert item is not None and item.cause_code == "MISSING_RATE_CARD"
        await ts_env.sleep(timedelta(hours=4, minutes=1))
        deadline = asyncio.get_running_loop().time() + 10
        while (row := world.store.get_exception(item.item_id)) and row.status != "escalated":
            assert asyncio.get_running_loop().time() < deadline, "never escalated"
            await asyncio.sleep(0.05)
        assert row is not None and row.owner == "ops"
        await handle.execute_update(
            OpportunityToProjectWorkflow.resolve_exception,
            resolution(item.item_id, ResolutionAction.ABANDON, actor="ops", actor_roles=["ops"]),
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert "abandoned by ops on MISSING_RATE_CARD" in str(failure.value.cause)
    assert not world.psa.projects and not world.erp.jobs
    status_, reason = world.crm.provisioning[OPPORTUNITY]
    assert status_ == "Failed" and reason and "MISSING_RATE_CARD" in reason


async def test_erp_refusal_after_the_psa_shell_then_abandon_compensates_in_reverse(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with provisioning_world(ts_env.client, tmp_path) as world:
        world.erp_refuses_the_project(credit_hold("customer is on credit hold"))
        handle = await start(world)
        status = await wait_for_step(handle, ProvisioningStep.WAITING_FOR_RESOLUTION)
        assert status.open_exception is not None
        assert status.open_exception.cause_code == "CUSTOMER_CREDIT_HOLD"
        assert len(world.psa.projects) == 1  # the shell exists while a person decides
        await handle.execute_update(
            OpportunityToProjectWorkflow.resolve_exception,
            resolution(status.open_exception.item_id, ResolutionAction.ABANDON, note="lost deal"),
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    (shell,) = world.psa.projects.values()
    assert shell.archived
    # reverse of registration
    assert world.compensations() == ["erp.close_project", "psa.archive_project"]
    assert world.crm.provisioning[OPPORTUNITY][0] == "Failed"


async def test_permanent_erp_failure_fails_with_the_original_cause_and_archives_psa(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with provisioning_world(ts_env.client, tmp_path) as world:
        world.erp_refuses_the_project(
            AuthError("ERP 403 INSUFFICIENT_PERMISSION: role cannot create projects", system="ERP")
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await (await start(world)).result()
    chain, err = [], failure.value.cause
    while err is not None:
        chain.append(str(err))
        err = err.__cause__
    assert any("INSUFFICIENT_PERMISSION" in line for line in chain), chain
    (shell,) = world.psa.projects.values()
    assert shell.archived
    assert not world.store.list_exceptions()  # not a business rule: no item for a person
    status_, reason = world.crm.provisioning[OPPORTUNITY]
    assert status_ == "Failed" and reason and "INSUFFICIENT_PERMISSION" in reason


async def test_cancellation_while_waiting_compensates(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with provisioning_world(ts_env.client, tmp_path) as world:
        world.erp_refuses_the_project(credit_hold())
        handle = await start(world)
        await wait_for_step(handle, ProvisioningStep.WAITING_FOR_RESOLUTION)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    (shell,) = world.psa.projects.values()
    assert shell.archived
