"""The termination scene: a consultant staffed on a provisioned project leaves the firm in the
HCM twin; the PSA assignment ends, backfill is raised and approved time reaches the ERP."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from demo.checks import Check
from demo.deals import DealOutcome
from demo.waits import wait_for_step, wait_for_workflow
from stack import Stack

if TYPE_CHECKING:
    import httpx


@dataclass
class TerminationOutcome:
    worker_id: str
    workflow_id: str
    assignment_id: str
    checks: list[Check]


async def termination_scene(
    stack: Stack, deal: DealOutcome, say: Any = print
) -> TerminationOutcome:
    """A consultant staffed on a provisioned project with approved time is terminated in the
    HCM twin (effective today); one poll later the PSA assignment ends, backfill is raised,
    time entry closes and the approved time is in the ERP."""
    import httpx

    today = date.today()
    leaver = await _find_leaver(stack, today)
    psa = f"{stack.urls['sandbox']}/psa/api/v1"
    auth = {"Authorization": "Bearer dev-static-token"}
    async with httpx.AsyncClient(timeout=60, headers=auth) as http:
        assignment_id, entry_id = await _staff_with_time(http, psa, deal, leaver, today)
        say(f"{leaver.name} ({leaver.role}) staffed on {deal.name} with 7 h approved time")
        workflow_id, status = await _terminate(stack, leaver, today, say)
        ended = await http.get(f"{psa}/assignments/{assignment_id}.json")
        end_date = next(iter(ended.json()["assignments"].values()))["end_date"]
    with stack.sandbox.state("erp").engine.connect() as conn:
        from sqlalchemy import text

        posted = conn.execute(
            text("SELECT count(*) FROM erp_timebill WHERE external_id LIKE :k"),
            {"k": f"psa-time-{entry_id}-%"},
        ).scalar_one()
    say(f"termination applied: assignment ends {end_date}; {posted} timebill posted to the ERP")
    checks = [
        Check(
            "termination: PSA assignment ends on the last day",
            end_date == (today - timedelta(days=1)).isoformat(),
            f"end date {end_date}",
        ),
        Check("termination: approved time posted to the ERP once", posted == 1, f"{posted}"),
        Check(
            "termination: the run stays open for a rescind",
            status.get("step") == "open_for_rescind",
            str(status.get("step")),
        ),
    ]
    return TerminationOutcome(leaver.id, workflow_id, str(assignment_id), checks)


async def _find_leaver(stack: Stack, today: date) -> Any:
    """A seeded worker still employed in the HCM twin whose termination has not run today."""
    from temporalio.service import RPCError

    from connectors.hcm import WorkdayHcm
    from contracts.naming import termination_workflow_id
    from sandbox.seed import build_firm

    hcm = WorkdayHcm(stack.settings.hcm)
    try:
        # someone still employed in the HCM twin (the demo may have run before on this data)
        leaver = None
        for candidate in build_firm(7).workers:
            if candidate.status != "active" or candidate.hire_date >= today - timedelta(days=14):
                continue
            current = await hcm.get_worker(candidate.id)
            if current.termination_date is not None or current.status.value != "active":
                continue
            run_id = termination_workflow_id(
                stack.settings.hcm.tenant, candidate.id, today.isoformat()
            )
            with contextlib.suppress(RPCError):
                await stack.client.get_workflow_handle(run_id).describe()
                continue  # a termination of this worker today already ran
            leaver = candidate
            break
        if leaver is None:
            raise RuntimeError("no employed worker left to terminate in the HCM twin")
    finally:
        await hcm.aclose()
    return leaver


async def _staff_with_time(
    http: httpx.AsyncClient, psa: str, deal: DealOutcome, leaver: Any, today: date
) -> tuple[Any, Any]:
    """Assign the leaver to the deal's PSA project and approve 7 h of their time yesterday;
    returns the assignment's and the time entry's IDs."""
    refs = await http.get(
        f"{psa}/external_references.json",
        params={"subject_type": "User", "service_model_ref": leaver.id},
    )
    user_id = int(
        refs.json()["results"][0]["id"]
        and next(iter(refs.json()["external_references"].values()))["subject_id"]
    )
    assignment = await http.post(
        f"{psa}/assignments.json",
        json={
            "assignment": {
                "workspace_id": int(deal.psa_project_id or 0),
                "user_id": user_id,
                "role": leaver.role,
                "start_date": (today - timedelta(days=14)).isoformat(),
                "end_date": (today + timedelta(days=60)).isoformat(),
                "allocated_minutes": 9600,
            }
        },
    )
    assignment.raise_for_status()
    assignment_id = assignment.json()["results"][0]["id"]
    entry = await http.post(
        f"{psa}/time_entries.json",
        json={
            "time_entry": {
                "workspace_id": int(deal.psa_project_id or 0),
                "user_id": user_id,
                "date_performed": (today - timedelta(days=1)).isoformat(),
                "time_in_minutes": 420,
            }
        },
    )
    entry.raise_for_status()
    entry_id = entry.json()["results"][0]["id"]
    approved = await http.put(
        f"{psa}/time_entries/{entry_id}.json", json={"time_entry": {"approved": True}}
    )
    approved.raise_for_status()
    return assignment_id, entry_id


async def _terminate(stack: Stack, leaver: Any, today: date, say: Any) -> tuple[str, Any]:
    """Terminate the leaver in the HCM twin (effective today), poll the HCM at once and wait
    for the run to stay open for a rescind; returns its workflow ID and status."""
    from connectors.hcm import WorkdayHcm
    from contracts.naming import termination_workflow_id
    from contracts.v1.worker_termination import HCM_SCHEDULE_ID

    hcm = WorkdayHcm(stack.settings.hcm)
    try:
        await hcm.terminate(leaver.id, today, today - timedelta(days=1))
    finally:
        await hcm.aclose()
    say(f"{leaver.name} terminated in the HCM twin, effective today; polling HCM now")
    # The Schedule polls every PSSYNC_HCM_POLL_INTERVAL_S; an operator can poll at once.
    await stack.client.get_schedule_handle(HCM_SCHEDULE_ID).trigger()
    workflow_id = termination_workflow_id(stack.settings.hcm.tenant, leaver.id, today.isoformat())
    handle = await wait_for_workflow(stack.client, workflow_id)
    status = await wait_for_step(handle, "open_for_rescind")
    return workflow_id, status
