"""Reconciliation of billing status end to end on the real dev server: time approved in the PSA
twin reaches the ERP twin through webhooks, the gateway and a real `pssync worker` process,
and last month is billed through the API; then the twins drift behind pssync's back through
their tamper endpoints (no webhook is sent for any of it):

- the T&M invoice is voided by hand in the ERP              -> invoice_voided, escalated
- a fixed-fee project's milestone is completed, its webhook
  never sent                                                 -> invoice_missing, repaired

`POST /api/reconciliations` runs a billing pass: the milestone is billed through the time
pipeline (one ERP invoice at its amount, the PSA milestone invoiced) and the voided invoice is
an exception item; a second pass finds nothing new (the repair is verified, the escalation not
repeated).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bench._harness.waiting import must_eventually as eventually
from contracts import Money, System
from contracts.v1 import BillingRule, Customer, Milestone
from tests.e2e.test_time_to_invoice import (
    BAD_STATUSES,
    OPS,
    World,
    pipeline_world,
    reconciled,
)

pytestmark = pytest.mark.e2e

MILESTONE_EID = "01JBS100000000000000000001"


@pytest.fixture
def settle_now(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The gateway's runs compare what changed a moment ago too (the drift is fresh here)."""
    monkeypatch.setenv("PSSYNC_RECONCILE__SETTLE_S", "0")
    yield


async def billing_pass(world: World) -> dict[str, Any]:
    """Start a billing run through the API and wait for its report."""
    started = await world.gateway.post(
        "/api/reconciliations", json={"domain": "billing_status"}, headers=OPS
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]

    async def finished() -> dict[str, Any] | None:
        r = await world.gateway.get(f"/api/reconciliations/{run_id}", headers=OPS)
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body if body["run"]["state"] == "finished" else None

    body: dict[str, Any] = await eventually(finished, 90)
    return body


async def fixed_fee_project(world: World) -> tuple[str, str]:
    """A fixed-fee project with one 5,000 USD milestone, provisioned as the saga leaves it
    (PSA shell, ERP customer and project, the xref link); its PSA id and ERP job id."""
    psa, erp = world.deployment.psa, world.deployment.erp
    like = await psa.get_project(str(world.projects[0].psa_id))
    project = like.model_copy(
        update={
            "name": "Billing status e2e",
            "customer_id": "ACC-BS-0",
            "billing_rule": BillingRule.FIXED_FEE,
            "contract_value": Money("5000.00", "USD"),
            "milestones": [Milestone(code="M1", name="Go-live", amount=Money("5000.00", "USD"))],
            "enterprise_id": None,
            "source_system": System.CRM,
        }
    )
    psa_id = await psa.create_project_shell(project, enterprise_id=MILESTONE_EID)
    customer = await erp.upsert_customer(
        Customer(external_id="ACC-BS-0", name="BS 0", source_system=System.CRM),
        enterprise_id="01JBS200000000000000000001",
    )
    job = await erp.upsert_project(
        project, enterprise_id=MILESTONE_EID, customer_erp_id=customer, budget=Money("5000", "USD")
    )
    tenant = world.stack.settings.psa.tenant
    world.deployment.store.link_xref(MILESTONE_EID, "project", "PSA", tenant, "workspace", psa_id)
    return str(psa_id), str(job)


async def test_billing_drift_injected_in_the_twins_is_repaired_or_escalated(
    tmp_path: Path, settle_now: None
) -> None:
    async with pipeline_world(tmp_path, projects=1) as world:
        p = world.projects[0]
        await world.approve(world.plan(6))  # half last month, half this month
        await reconciled(world, 60)
        await eventually(world.pipelines_idle, 30)
        last_month = f"{date.today().replace(day=1) - timedelta(days=1):%Y-%m}"
        billed = await world.gateway.post(
            f"/api/projects/{p.psa_id}/billing", json={"period": last_month}, headers=OPS
        )
        assert billed.status_code == 202, billed.text

        def invoiced() -> list[Any]:
            rows = world.erp_rows(
                f"SELECT id, total, status FROM erp_invoice WHERE job_id = {p.job_id}"
            )
            [(marked,)] = world.psa_rows(
                "SELECT count(*) FROM psa_time_entry WHERE is_invoiced = 1 "
                f"AND workspace_id = {p.psa_id}"
            )
            return rows if rows and marked == 3 else []

        [(invoice_id, total, _)] = await eventually(invoiced, 60)
        assert Decimal(total) > 0
        psa_id, job = await fixed_fee_project(world)
        clean = (await billing_pass(world))["run"]
        assert (clean["found"], clean["projects"]) == (0, 2), clean  # the twins' shapes agree

        # -- the drift, behind pssync's back -------------------------------------------------
        voided = await world.twins.post(
            f"/erp/_admin/tamper/invoice/{invoice_id}/void", json={"memo": "by hand"}
        )
        assert voided.status_code == 200, voided.text
        [milestone] = await world.deployment.psa.list_milestones(psa_id)
        completed = await world.twins.post(
            f"/psa/_admin/tamper/billing_milestones/{milestone.external_id}/complete"
        )
        assert completed.status_code == 200, completed.text

        # -- the first pass ------------------------------------------------------------------
        first = await billing_pass(world)
        run = first["run"]
        assert run["by_kind"] == {"invoice_missing": 1, "invoice_voided": 1}, first
        assert (run["found"], run["repaired"], run["escalated"]) == (2, 1, 1)
        assert run["vendor_calls"] > 0
        by_kind = {d["kind"]: d for d in first["drifts"]}
        assert by_kind["invoice_missing"]["keys"]["milestone"] == "M1"
        assert by_kind["invoice_voided"]["keys"]["period"] == last_month
        assert by_kind["invoice_voided"]["state"] == "escalated"

        # Repaired through the time pipeline: one invoice for the milestone, at its amount.
        def milestone_billed() -> bool:
            rows = world.erp_rows(
                f"SELECT total, milestone, status FROM erp_invoice WHERE job_id = {job}"
            )
            [(state,)] = world.psa_rows(
                f"SELECT state FROM psa_billing_milestone WHERE id = {milestone.external_id}"
            )
            return [(Decimal(t), m, s) for t, m, s in rows] == [
                (Decimal("5000.00"), "M1", "Open")
            ] and state == "invoiced"

        await eventually(milestone_billed, 60)
        items = await world.gateway.get(
            "/api/exceptions", params={"process": "reconciliation"}, headers=OPS
        )
        assert [i["cause_code"] for i in items.json()["items"]] == ["invoice_voided"]

        # -- the second pass: nothing new ----------------------------------------------------
        second = (await billing_pass(world))["run"]
        assert (second["new"], second["repaired"], second["escalated"]) == (0, 0, 0), second
        assert (second["found"], second["kept"], second["gone"]) == (1, 1, 1)
        runs = await world.workflows()  # the two projects' pipelines, none failed
        assert len(runs) == 2 and not any(BAD_STATUSES & set(s) for s in runs.values()), runs
