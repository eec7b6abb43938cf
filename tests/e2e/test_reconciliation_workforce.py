"""Workforce end to end on the real dev server: a consultant is staffed on a provisioned PSA
project (an assignment running two months on, time booked today and time booked two days ago
left unapproved); then the HCM twin
terminates them as of yesterday behind pssync's back — the termination's entry moment lies in
a window the HCM poller has already read, so it never sees it.

`POST /api/reconciliations` (workforce, the project's scope) runs a pass: the open assignment,
the unapproved time up to the last day and the time after it are found and repaired by
starting the worker's termination saga, as the poller would have (it ends the assignment on the
last day and flags the unapproved time for the project's managers); the next pass verifies the
assignment and escalates the two entries the saga does not undo (a person approves, rejects or
moves them); the pass after finds nothing new.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench._harness.waiting import must_eventually as eventually
from contracts.naming import termination_workflow_id
from contracts.settings import load_settings
from contracts.v1.processes import ProvisionProjectResult
from demo import deal_from_template, provisionable_templates, wait_for_workflow, win_deal
from sandbox.seed import build_firm
from stack import running_stack
from tests.e2e._desk import desk_items, reconcile
from tests.e2e.test_time_to_invoice import OPS

pytestmark = pytest.mark.e2e
PSA_AUTH = {"Authorization": "Bearer dev-static-token"}
ACTED = {"waiting_for_payroll_cutoff", "waiting_for_resolution", "open_for_rescind", "done"}


@pytest.fixture
def settle_now(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The gateway's runs compare what changed a moment ago too (the drift is fresh here)."""
    monkeypatch.setenv("PSSYNC_RECONCILE__SETTLE_S", "0")
    yield


async def workforce_pass(gateway: httpx.AsyncClient, project: str) -> dict[str, Any]:
    return await reconcile(gateway, "workforce", project)


async def test_a_leaver_the_poller_never_saw_is_terminated_by_reconciliation(
    tmp_path: Path, settle_now: None
) -> None:
    firm = build_firm(7)
    settings = load_settings(home=tmp_path / ".pssync")
    today = date.today()
    async with (
        running_stack(settings, ephemeral_ports=True) as stack,
        httpx.AsyncClient(base_url=stack.urls["gateway"], timeout=30) as gateway,
        httpx.AsyncClient(base_url=stack.urls["sandbox"], timeout=30) as twins,
    ):
        deal = await win_deal(stack, deal_from_template(firm, provisionable_templates(firm)[0]))
        handle = await wait_for_workflow(
            stack.client, deal.workflow_id, result_type=ProvisionProjectResult
        )
        project = str((await handle.result()).psa_project_id)
        leaver = next(
            w
            for w in firm.workers
            if w.status == "active" and w.hire_date < today - timedelta(days=60)
        )
        refs = await twins.get(
            "/psa/api/v1/external_references.json",
            params={"subject_type": "User", "service_model_ref": leaver.id},
            headers=PSA_AUTH,
        )
        user_id = int(next(iter(refs.json()["external_references"].values()))["subject_id"])
        staffed = await twins.post(
            "/psa/api/v1/assignments.json",
            json={
                "assignment": {
                    "workspace_id": int(project),
                    "user_id": user_id,
                    "role": leaver.role,
                    "start_date": (today - timedelta(days=14)).isoformat(),
                    "end_date": (today + timedelta(days=60)).isoformat(),
                    "allocated_minutes": 9600,
                }
            },
            headers=PSA_AUTH,
        )
        assert staffed.status_code in (200, 201), staffed.text
        booked: list[str] = []
        for day in (today, today - timedelta(days=2)):
            created = await twins.post(
                "/psa/api/v1/time_entries.json",
                json={
                    "time_entry": {
                        "workspace_id": int(project),
                        "user_id": user_id,
                        "date_performed": day.isoformat(),
                        "time_in_minutes": 240,
                    }
                },
                headers=PSA_AUTH,
            )
            assert created.status_code in (200, 201), created.text
            booked.append(str(created.json()["results"][0]["id"]))
        entry, unapproved = booked
        clean = (await workforce_pass(gateway, project))["run"]
        assert clean["found"] == 0, clean

        # -- behind pssync's back: terminated as of yesterday, entered two days ago (before
        # any window the HCM poller reads, so it never sees the event) -------------------------
        left = today - timedelta(days=1)
        terminated = await twins.post(
            f"/hcm/_admin/tamper/workers/Employee_ID={leaver.id}/terminate",
            json={
                "terminationDate": left.isoformat(),
                "lastDayOfWork": left.isoformat(),
                "enteredAt": (datetime.now(UTC) - timedelta(days=2)).isoformat(),
            },
        )
        assert terminated.status_code == 200, terminated.text
        run_id = termination_workflow_id(stack.settings.hcm.tenant, leaver.id, left.isoformat())

        first = await workforce_pass(gateway, project)
        run = first["run"]
        assert run["by_kind"] == {
            "leaver_future_time": 1,
            "leaver_open_assignment": 1,
            "leaver_open_time_entry": 1,
        }, first
        assert (run["found"], run["repaired"], run["escalated"]) == (3, 3, 0)
        by_kind = {d["kind"]: d for d in first["drifts"]}
        assert by_kind["leaver_future_time"]["keys"]["entry"] == f"time:{entry}"
        assert by_kind["leaver_open_time_entry"]["keys"]["entry"] == f"time:{unapproved}"
        assert by_kind["leaver_open_time_entry"]["state"] == "repaired"
        assert by_kind["leaver_open_assignment"]["values"]["hcm"] == left.isoformat()

        # Repaired: the termination saga runs, as if the poller had seen the termination.
        saga = await wait_for_workflow(stack.client, run_id)

        async def acted() -> bool:
            try:
                status = await saga.query("status")
            except Exception:
                return False
            return status.get("step") in ACTED

        await eventually(acted, 90)
        ended = await twins.get(
            f"/psa/api/v1/assignments/{staffed.json()['results'][0]['id']}.json",
            headers=PSA_AUTH,
        )
        assert next(iter(ended.json()["assignments"].values()))["end_date"] == left.isoformat()

        second = await workforce_pass(gateway, project)
        run = second["run"]
        assert (run["found"], run["gone"], run["repaired"], run["escalated"]) == (2, 1, 0, 2)
        by_cause = {i["cause_code"]: i for i in await desk_items(gateway, 2)}
        assert sorted(by_cause) == ["leaver_future_time", "leaver_open_time_entry"]
        assert all(i["context"]["evidence"]["termination_run"] == run_id for i in by_cause.values())
        assert (
            by_cause["leaver_open_time_entry"]["context"]["keys"]["entry"] == f"time:{unapproved}"
        )

        third = (await workforce_pass(gateway, project))["run"]
        assert (third["new"], third["repaired"], third["escalated"], third["kept"]) == (
            0,
            0,
            0,
            2,
        )
        items = await gateway.get(
            "/api/exceptions", params={"process": "reconciliation"}, headers=OPS
        )
        assert len(items.json()["items"]) == 2  # no second item for the same drift
