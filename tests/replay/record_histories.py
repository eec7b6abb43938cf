"""Record OpportunityToProject histories for the replay test.

    python -m tests.replay.record_histories

Runs the saga on the real dev server (what production histories look like) over the
in-memory fakes: a clean run, a run whose cost center a person corrects, and a run abandoned
after the ERP refused (compensations). Each history is written as JSON beside this file, named
by its workflow ID. Re-record only for a deliberate, patched change: the committed files stand
for the histories of workflows already running.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from temporalio.client import WorkflowFailureError

from contracts import BusinessRuleViolation
from contracts.settings import load_settings
from contracts.v1.processes import (
    ExceptionResolution,
    ProvisioningStatus,
    ProvisioningStep,
    ProvisionProjectInput,
    ResolutionAction,
)
from sandbox.temporal import embedded_temporal
from tests.workflows._provisioning import OPPORTUNITY, provisioning_world, won_opportunity
from workflows.opportunity_to_project import OpportunityToProjectWorkflow

HERE = Path(__file__).parent / "histories"


async def _waiting(handle: object) -> ProvisioningStatus:
    for _ in range(300):
        status = await handle.query(  # type: ignore[attr-defined]
            OpportunityToProjectWorkflow.status, result_type=ProvisioningStatus
        )
        if status.step is ProvisioningStep.WAITING_FOR_RESOLUTION:
            return status
        await asyncio.sleep(0.05)
    raise RuntimeError("never waited for a resolution")


async def main() -> None:
    HERE.mkdir(exist_ok=True)
    home = Path(tempfile.mkdtemp())
    async with embedded_temporal(load_settings(home=home), ui=False, persist=False) as env:
        scenarios = {
            "clean": (won_opportunity(), None),
            "corrected_cost_center": (won_opportunity(cost_center="CC-404"), "correct"),
            "abandoned_after_erp_refusal": (won_opportunity(), "abandon"),
        }
        for name, (opp, path) in scenarios.items():
            with tempfile.TemporaryDirectory() as tmp:
                async with provisioning_world(env.client, Path(tmp), opportunity=opp) as world:
                    if path == "abandon":
                        world.recorders["erp"].failures["upsert_project"] = BusinessRuleViolation(
                            "CUSTOMER_CREDIT_HOLD", "credit hold", field="customer", system="ERP"
                        )
                    handle = await env.client.start_workflow(
                        OpportunityToProjectWorkflow.run,
                        ProvisionProjectInput(crm_tenant="test", opportunity_id=OPPORTUNITY),
                        id=f"opportunity_to_project_{name}",  # = the file stem
                        task_queue=world.task_queue,
                    )
                    if path is not None:
                        status = await _waiting(handle)
                        assert status.open_exception is not None
                        action = (
                            ResolutionAction.RETRY_WITH_DATA
                            if path == "correct"
                            else ResolutionAction.ABANDON
                        )
                        await handle.execute_update(
                            OpportunityToProjectWorkflow.resolve_exception,
                            ExceptionResolution(
                                item_id=status.open_exception.item_id,
                                action=action,
                                actor="dana.manager",
                                actor_roles=["delivery_manager"],
                                corrections={"cost_center": "CC-120"} if path == "correct" else {},
                            ),
                        )
                    try:
                        await handle.result()
                    except WorkflowFailureError:
                        pass
                    history = await handle.fetch_history()
            (HERE / f"opportunity_to_project_{name}.json").write_text(history.to_json())
            print(f"recorded {name}: {len(history.events)} events")


async def from_the_demo() -> None:
    """One history per other workflow type, from the demo scenario on the whole stack: a
    change order approved by two people, a termination from HCM (still open for a rescind —
    an open history replays too) and the HCM poller."""
    import starter

    wanted = {
        "ChangeOrder",
        "WorkerTermination",
        "HcmChangesPoller",
        "AssignmentSync",
        "TimeToInvoice",
        "TimeToInvoiceSweep",
    }
    home = Path(tempfile.mkdtemp()) / ".pssync"
    async with starter.running_stack(load_settings(home=home), ephemeral_ports=True) as stack:
        await starter.run_scenario(stack, deals=2, say=lambda _m: None)
        # The sweep runs every few minutes; an operator can run it at once.
        from contracts.naming import time_sweep_schedule_id

        sweep = stack.client.get_schedule_handle(time_sweep_schedule_id(stack.settings.psa.tenant))
        await sweep.trigger()
        for _ in range(300):
            runs = [
                wf
                async for wf in stack.client.list_workflows(
                    "WorkflowType = 'TimeToInvoiceSweep' AND ExecutionStatus = 'Completed'"
                )
            ]
            if runs:
                break
            await asyncio.sleep(0.1)
        for workflow_type in sorted(wanted):
            runs = [
                wf async for wf in stack.client.list_workflows(f"WorkflowType = '{workflow_type}'")
            ]
            if not runs:
                print(f"no {workflow_type} run in the demo")
                continue
            # the run that did the most (e.g. the pipeline with a resolution and an invoice)
            histories = [
                await stack.client.get_workflow_handle(run.id).fetch_history() for run in runs
            ]
            history = max(histories, key=lambda h: len(h.events))
            # file stem = workflow id with '/' replaced (the replay test maps it back)
            name = history.workflow_id.replace("/", "~")
            (HERE / f"{name}.json").write_text(history.to_json())
            print(f"recorded {workflow_type} {history.workflow_id}: {len(history.events)} events")


if __name__ == "__main__":
    asyncio.run(main())
    asyncio.run(from_the_demo())
