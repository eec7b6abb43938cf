"""Forecast alignment end to end on the real dev server: a deal won in the CRM twin is
provisioned by the saga; a consultant is staffed on its PSA project in three months, and the
PSA twin's `assignment.changed` webhooks reach the assignment sync through the gateway, which
writes the ERP twin's labor forecast. Then the twins drift behind pssync's back:

- an assignment deleted in the PSA (tamper: no webhook)     -> forecast_stale, repaired
- a month's forecast approved and changed by finance         -> forecast_hours_mismatch,
                                                                escalated (never overwritten)
- a month's forecast record deleted in the ERP               -> forecast_missing, repaired
- the project's budget cut in the ERP below the staffing     -> assignment_budget_variance,
                                                                escalated (a person decides)

`POST /api/reconciliations` runs a pass: the stale month is written again by the assignment
sync (it reads zero) and the missing one written anew, the approved month and the variance
become exception items, and a second pass finds nothing new.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench._harness.waiting import must_eventually as eventually
from connectors.erp import NetSuiteErp
from connectors.erp.mapping import forecast_external_id
from contracts.money import Money
from contracts.naming import assignment_sync_workflow_id
from contracts.settings import load_settings
from contracts.v1.assignment_sync import STAFFING_QUERY, Staffing
from contracts.v1.models import ForecastStatus
from contracts.v1.processes import ProvisionProjectResult
from demo import deal_from_template, provisionable_templates, wait_for_workflow, win_deal
from sandbox.seed import build_firm
from stack import Stack, running_stack
from tests.e2e._desk import desk_items, reconcile
from tests.e2e.test_time_to_invoice import OPS

pytestmark = pytest.mark.e2e
PSA_AUTH = {"Authorization": "Bearer dev-static-token"}


@pytest.fixture
def settle_now(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The gateway's runs compare what changed a moment ago too (the drift is fresh here)."""
    monkeypatch.setenv("PSSYNC_RECONCILE__SETTLE_S", "0")
    yield


async def forecast_pass(gateway: httpx.AsyncClient) -> dict[str, Any]:
    return await reconcile(gateway, "forecast_alignment")


def _monday(month_start: date) -> date:
    day = month_start
    while day.weekday() != 0:
        day += timedelta(days=1)
    return day


async def _staff(stack: Stack, project: str, month: date) -> int:
    """A seeded consultant assigned to the PSA project for a week of `month` (40 h)."""
    psa = f"{stack.urls['sandbox']}/psa/api/v1"
    worker = next(w for w in build_firm(7).workers if w.status == "active")
    async with httpx.AsyncClient(timeout=60, headers=PSA_AUTH) as http:
        refs = await http.get(
            f"{psa}/external_references.json",
            params={"subject_type": "User", "service_model_ref": worker.id},
        )
        user_id = int(next(iter(refs.json()["external_references"].values()))["subject_id"])
        start = _monday(month)
        created = await http.post(
            f"{psa}/assignments.json",
            json={
                "assignment": {
                    "workspace_id": int(project),
                    "user_id": user_id,
                    "role": worker.role,
                    "start_date": start.isoformat(),
                    "end_date": (start + timedelta(days=4)).isoformat(),
                    "allocated_minutes": 2400,
                }
            },
        )
        created.raise_for_status()
        return int(created.json()["results"][0]["id"])


async def test_forecast_drift_injected_in_the_twins_is_repaired_or_escalated(
    tmp_path: Path, settle_now: None
) -> None:
    firm = build_firm(7)
    settings = load_settings(home=tmp_path / ".pssync")
    async with (
        running_stack(settings, ephemeral_ports=True) as stack,
        httpx.AsyncClient(base_url=stack.urls["gateway"], timeout=30) as gateway,
    ):
        deal = await win_deal(stack, deal_from_template(firm, provisionable_templates(firm)[0]))
        handle = await wait_for_workflow(
            stack.client, deal.workflow_id, result_type=ProvisionProjectResult
        )
        result = await handle.result()
        project = str(result.psa_project_id)
        first_month = (date.today().replace(day=1) + timedelta(days=40)).replace(day=1)
        second_month = (first_month + timedelta(days=40)).replace(day=1)
        third_month = (second_month + timedelta(days=40)).replace(day=1)
        m1, m2, m3 = (f"{m:%Y-%m}" for m in (first_month, second_month, third_month))
        await _staff(stack, project, first_month)
        gone = await _staff(stack, project, second_month)
        await _staff(stack, project, third_month)

        sync = stack.client.get_workflow_handle(
            assignment_sync_workflow_id(stack.settings.psa.tenant, project)
        )

        async def synced(periods: set[str], assignments: int) -> Staffing | None:
            try:
                s: Staffing = await sync.query(STAFFING_QUERY, result_type=Staffing)
            except Exception:
                return None
            done = not s.pending and {f.period for f in s.forecast} >= periods
            return s if done and len(s.assignments) == assignments else None

        await eventually(lambda: synced({m1, m2, m3}, 3), 90)
        erp = NetSuiteErp(stack.settings.erp)
        try:
            eid = f"eid:{result.enterprise_id}"
            clean = (await forecast_pass(gateway))["run"]
            assert (clean["found"], clean["projects"]) == (0, 1), clean

            # -- the drift, behind pssync's back ------------------------------------------------
            async with httpx.AsyncClient(base_url=stack.urls["sandbox"], timeout=30) as twins:
                deleted = await twins.post(f"/psa/_admin/tamper/assignments/{gone}/delete")
            assert deleted.status_code == 200, deleted.text
            current = await erp.get_forecast(eid, m1)
            assert current is not None and current.hours == Decimal("40.00")
            await erp.put_forecast(  # finance approves the month at its own figure
                current.model_copy(
                    update={
                        "hours": Decimal("35"),
                        "status": ForecastStatus.APPROVED,
                        "version": current.version + 1,
                    }
                ),
                project=eid,
            )
            with stack.sandbox.state("erp").engine.begin() as conn:  # a record deleted by hand
                conn.exec_driver_sql(
                    "DELETE FROM erp_labor_forecast WHERE external_id = "
                    f"'{forecast_external_id(str(result.erp_project_id), m3)}'"
                )
            budget = await erp.get_budget(eid)  # finance cuts the budget below the staffing
            await erp.revise_budget(
                eid, amount=Money("1.00", budget.amount.currency), expected_version=budget.version
            )

            first = await forecast_pass(gateway)
            run = first["run"]
            assert run["by_kind"] == {
                "assignment_budget_variance": 1,
                "forecast_hours_mismatch": 1,
                "forecast_missing": 1,
                "forecast_stale": 1,
            }, first
            assert (run["found"], run["repaired"], run["escalated"]) == (4, 2, 2)
            by_period = {d["keys"].get("period"): d for d in first["drifts"]}
            assert by_period[m2]["kind"] == "forecast_stale"
            stale = by_period[m2]["values"]
            assert (stale["psa"], stale["erp"], stale["psa_cost"]) == ("0.00", "40.00", "0.00")
            assert by_period[m1]["state"] == "escalated"
            missing = by_period[m3]
            assert (missing["kind"], missing["state"]) == ("forecast_missing", "repaired")
            assert (missing["values"]["psa"], missing["values"]["erp"]) == ("40.00", None)
            variance = by_period[None]
            assert (variance["kind"], variance["state"]) == (
                "assignment_budget_variance",
                "escalated",
            )
            assert Decimal(variance["values"]["erp"]) == 1 < Decimal(variance["values"]["psa"])

            # Repaired through the assignment sync: the deleted month's forecast reads zero,
            # the deleted record is written again.
            async def rewritten() -> bool:
                f = await erp.get_forecast(eid, m2)
                again = await erp.get_forecast(eid, m3)
                return (
                    f is not None
                    and f.hours == 0
                    and again is not None
                    and again.hours == Decimal("40.00")
                )

            await eventually(rewritten, 90)
            approved = await erp.get_forecast(eid, m1)
            assert approved is not None and approved.hours == Decimal("35.00")
            causes = sorted(i["cause_code"] for i in await desk_items(gateway, 2))
            assert causes == ["assignment_budget_variance", "forecast_hours_mismatch"]

            second = (await forecast_pass(gateway))["run"]
            assert (second["new"], second["repaired"], second["escalated"]) == (0, 0, 0), second
            assert (second["found"], second["kept"], second["gone"]) == (2, 2, 2)
            items = await gateway.get(
                "/api/exceptions", params={"process": "reconciliation"}, headers=OPS
            )
            assert len(items.json()["items"]) == 2  # no second item for the same drift
        finally:
            await erp.aclose()
