"""Project master reconciliation on the time-skipping server, over the in-memory fakes, wired as
`worker.build_workers` does: a won deal whose webhook was lost is an item whose retry starts the
provisioning saga; a lost xref link is written again; a project renamed in the ERP by hand is an
exception item; each later pass verifies (and finds nothing new). Budget and status: a PSA
budget and an ERP status changed by hand are one item each; a second ERP project for the deal
(re-keyed by a person) is one `duplicate_project` item with both projects, and so is a job a
person made again by hand (no enterprise ID, the deal's name) until it is closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.testing import WorkflowEnvironment

import store
from activities.reconciliation import start_reconciliation
from bench._harness.waiting import must_eventually as eventually
from contracts.money import Money
from contracts.naming import opportunity_workflow_id
from contracts.v1.models import ProjectStatus
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
from tests.workflows._provisioning import OPPORTUNITY, World, provisioning_world, start_saga


@pytest.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_temporal() as env:
        yield env


async def reconcile(world: World) -> ReconciliationReport:
    settings = world.deployment.settings
    request = reconciliation_input(settings, "project_master", requested_by="test")
    # A tenant of the world's own: the tests of this module share one server, and each
    # world's desk (`reconcile-desk/{tenant}`) must run on that world's workers.
    request = request.model_copy(update={"settle_s": 0.0, "tenant": f"t-{world.task_queue}"})
    handle = await start_reconciliation(world.client, request, task_queue=world.task_queue)
    return await handle.result()


async def desk_items(world: World, count: int) -> list[Any]:
    """The reconciliation items, once the desk has opened `count` (it opens them as the run's
    signals reach it)."""

    def opened() -> list[Any]:
        items = world.store.list_exceptions(process="reconciliation")
        return items if len(items) >= count else []

    items: list[Any] = await eventually(opened, 30)
    return items


async def test_project_master_drift_is_repaired_or_escalated(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with provisioning_world(ts_env.client, tmp_path) as world:
        # The deal is won, its webhook never reached pssync: nothing is provisioned. That is
        # for a person (a deal may predate pssync); their retry starts the saga.
        first = await reconcile(world)
        assert first.by_kind == {"missing_psa_project": 1} and first.escalated == 1, first
        [item] = await desk_items(world, 1)
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
        [item] = [i for i in await desk_items(world, 2) if i.status != "resolved"]
        assert item.cause_code == "field_mismatch" and item.context["keys"]["field"] == "name"
        assert item.context["values"] == {
            "psa": "Acme data platform",
            "erp": "Renamed by hand",
        }

        fourth = await reconcile(world)
        assert (fourth.new, fourth.repaired, fourth.escalated) == (0, 0, 0), fourth
        assert (fourth.kept, fourth.gone, fourth.unrepaired) == (1, 1, 1)


async def test_budget_status_and_a_second_project_are_escalated_with_their_evidence(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with provisioning_world(ts_env.client, tmp_path) as world:
        provisioned = await (await start_saga(world)).result()
        eid, psa_id = provisioned.enterprise_id, provisioned.psa_project_id
        erp_id = provisioned.erp_project_id
        assert psa_id is not None and erp_id is not None
        clean = await reconcile(world)
        assert (clean.found, clean.projects) == (0, 1), clean  # budget and status agree

        # Behind pssync's back: the PSA budget edited, the ERP project closed.
        world.psa.projects[psa_id].budget = Money("1234.50", "USD")
        world.erp.jobs[erp_id].status = ProjectStatus.CLOSED
        drifted = await reconcile(world)
        assert drifted.by_kind == {"field_mismatch": 2} and drifted.escalated == 2, drifted
        items = {i.context["keys"]["field"]: i for i in await desk_items(world, 2)}
        assert set(items) == {"budget", "status"}
        budget = world.erp.jobs[erp_id].budget
        assert budget is not None
        assert items["budget"].context["values"] == {
            "psa": "1234.50 USD",
            "erp": f"{budget.rounded().amount} USD",
        }
        assert items["budget"].context["owner_system"] == "PSA"  # the copy; the ERP owns the budget
        assert items["status"].context["values"] == {"psa": "open", "erp": "closed"}
        assert items["status"].context["owner_system"] == "ERP"
        again = await reconcile(world)
        assert (again.new, again.escalated, again.kept) == (0, 0, 2), again

        # A person re-keys the deal in the ERP: a copy of the job takes the enterprise ID as
        # its external ID; pssync's job (the one the xref links) is still there.
        world.erp.jobs[erp_id].status = ProjectStatus.ACTIVE
        world.psa.projects[psa_id].budget = budget
        original = world.erp.jobs[erp_id]
        copy = replace(original, erp_id="9001", name=f"{original.name} (re-keyed)")
        original.external_id = f"old-{eid}"
        world.erp.jobs[copy.erp_id] = copy
        rekeyed = await reconcile(world)
        assert rekeyed.by_kind == {"duplicate_project": 1} and rekeyed.escalated == 1, rekeyed
        [dup] = [i for i in await desk_items(world, 3) if i.cause_code == "duplicate_project"]
        assert dup.context["keys"]["system"] == "ERP"
        assert dup.context["values"] == {"xref": erp_id, "projects": f"{erp_id},9001"}
        assert dup.context["evidence"]["xref_links"] == erp_id
        assert dup.context["evidence"]["carries_enterprise_id"] == "9001"
        last = await reconcile(world)
        assert (last.new, last.repaired, last.escalated) == (0, 0, 0), last

        # A person makes the deal's project again by hand, for the same customer: no
        # enterprise ID, the name in other case and spacing.
        by_hand = world.erp.add_job_by_hand(
            original.customer_erp_id, f"  {original.name.upper()} ", cost_center="CC-110"
        )
        hand_made = await reconcile(world)
        assert (hand_made.new, hand_made.escalated) == (1, 1), hand_made
        [item] = [
            i for i in await desk_items(world, 4) if i.context["keys"].get("duplicate") == by_hand
        ]
        assert item.cause_code == "duplicate_project" and item.context["keys"]["system"] == "ERP"
        assert item.context["evidence"]["duplicate_name"] == f"  {original.name.upper()} "
        assert "same name" in item.context["evidence"]["matched"]
        # closed by the person: not a duplicate any more
        await world.erp.close_project(by_hand, reason="made by mistake")
        closed = await reconcile(world)
        assert (closed.new, closed.escalated, closed.gone) == (0, 0, 1), closed
