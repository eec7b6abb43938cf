"""Project master reconciliation on the time-skipping server, over the in-memory fakes, wired as
`worker.build_workers` does: a won deal whose webhook was lost is an item whose retry starts the
provisioning saga; a lost xref link is written again; a project renamed in the ERP by hand is an
exception item; each later pass verifies (and finds nothing new)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from temporalio.testing import WorkflowEnvironment

import store
from activities.reconciliation import start_reconciliation
from contracts.naming import opportunity_workflow_id
from contracts.v1.processes import (
    RESOLVE_EXCEPTION_UPDATE,
    ExceptionResolution,
    ResolutionAction,
)
from contracts.v1.reconciliation import (
    DriftResolutionResult,
    ReconciliationReport,
    reconciliation_input,
)
from sandbox.temporal import time_skipping_temporal
from tests.workflows._provisioning import OPPORTUNITY, World, provisioning_world


@pytest.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_temporal() as env:
        yield env


async def reconcile(world: World) -> ReconciliationReport:
    settings = world.deployment.settings
    request = reconciliation_input(settings, "project_master", requested_by="test")
    request = request.model_copy(update={"settle_s": 0.0})
    handle = await start_reconciliation(world.client, request, task_queue=world.task_queue)
    return await handle.result()


async def test_project_master_drift_is_repaired_or_escalated(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with provisioning_world(ts_env.client, tmp_path) as world:
        # The deal is won, its webhook never reached pssync: nothing is provisioned. That is
        # for a person (a deal may predate pssync); their retry starts the saga.
        first = await reconcile(world)
        assert first.by_kind == {"missing_psa_project": 1} and first.escalated == 1, first
        [item] = world.store.list_exceptions(process="reconciliation")
        desk = ts_env.client.get_workflow_handle(item.workflow_id)
        answer = await desk.execute_update(
            RESOLVE_EXCEPTION_UPDATE,
            ExceptionResolution(
                item_id=item.id,
                action=ResolutionAction.RETRY,
                actor="ops",
                actor_roles=["ops"],
            ),
            result_type=DriftResolutionResult,
        )
        assert answer.outcome == "repaired" and "started" in answer.detail
        crm_tenant = world.deployment.settings.crm.tenant
        saga = ts_env.client.get_workflow_handle(opportunity_workflow_id(crm_tenant, OPPORTUNITY))
        provisioned = await saga.result()
        assert len(world.psa.projects) == 1 and len(world.erp.jobs) == 1

        second = await reconcile(world)
        assert (second.found, second.gone, second.unrepaired) == (0, 1, 0), second

        # Behind pssync's back: the PSA link is lost, the ERP project renamed by hand.
        engine = store.make_engine(world.deployment.settings.resolved_database_url)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM xref WHERE system = 'PSA'"))
        engine.dispose()
        world.erp.jobs[provisioned["erp_project_id"]].name = "Renamed by hand"
        third = await reconcile(world)
        assert third.by_kind == {"field_mismatch": 1, "xref_missing": 1}, third
        assert (third.repaired, third.escalated) == (1, 1)
        eid = provisioned["enterprise_id"]
        links = {(x.system, x.object_type) for x in world.store.xrefs_for(eid)}
        assert ("PSA", "workspace") in links  # linked again
        [item] = [
            i
            for i in world.store.list_exceptions(process="reconciliation")
            if i.status != "resolved"
        ]
        assert item.cause_code == "field_mismatch" and item.context["keys"]["field"] == "name"
        assert item.context["values"] == {
            "psa": "Acme data platform",
            "erp": "Renamed by hand",
        }

        fourth = await reconcile(world)
        assert (fourth.new, fourth.repaired, fourth.escalated) == (0, 0, 0), fourth
        assert (fourth.kept, fourth.gone, fourth.unrepaired) == (1, 1, 1)
