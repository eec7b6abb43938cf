"""Reconciliation of billing status end to end on the real dev server: time approved in the PSA
twin reaches the ERP twin through webhooks, the gateway and a real `pssync worker` process;
last month and four of a fixed-fee project's milestones are billed through the API. Then the
twins drift behind pssync's back, as people do by hand (no webhook is sent for any of it):

- the T&M invoice is voided in the ERP                       -> invoice_voided, escalated
- milestone M1 is completed, its webhook never sent          -> invoice_missing, repaired
- M2's invoice is copied in the ERP (a second live one)      -> invoice_duplicate, escalated
- M3's invoice line is edited in the ERP (another total)     -> invoice_amount_mismatch,
                                                                escalated
- M4's invoice is cancelled in the PSA (M4 no longer shows
  invoiced; its ERP invoice stands)                          -> invoiced_flag_mismatch, repaired
- M5's invoice is cancelled in the PSA and M5 set back to
  planned (its ERP invoice bills nothing complete)           -> invoice_without_source, escalated

`POST /api/reconciliations` runs a billing pass: M1 is billed through the time pipeline (one
ERP invoice at its amount, the PSA milestone invoiced), M4 is marked invoiced in the PSA again
under its invoice's key, and the four others are exception items; a second pass finds nothing
new (the repairs are verified, the escalations not repeated).
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
from tests.e2e._desk import desk_items, reconcile
from tests.e2e.test_time_to_invoice import (
    BAD_STATUSES,
    OPS,
    TWIN_AUTH,
    World,
    pipeline_world,
    reconciled,
)

pytestmark = pytest.mark.e2e

MILESTONE_EID = "01JBS100000000000000000001"
MILESTONES = {
    code: Decimal(amount)
    for code, amount in (
        ("M1", "5000.00"),
        ("M2", "1000.00"),
        ("M3", "2000.00"),
        ("M4", "1500.00"),
        ("M5", "500.00"),
    )
}
BILLED_FIRST = ("M2", "M3", "M4", "M5")
"""Billed through the API before the drift; M1 is still planned."""


@pytest.fixture
def settle_now(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The gateway's runs compare what changed a moment ago too (the drift is fresh here)."""
    monkeypatch.setenv("PSSYNC_RECONCILE__SETTLE_S", "0")
    yield


async def billing_pass(world: World) -> dict[str, Any]:
    """Start a billing run through the API and wait for its report."""
    return await reconcile(world.gateway, "billing_status")


async def fixed_fee_project(world: World) -> tuple[str, str]:
    """A fixed-fee project with the milestones of `MILESTONES`, provisioned as the saga leaves
    it (PSA shell, ERP customer and project, the xref link); its PSA id and ERP job id."""
    psa, erp = world.deployment.psa, world.deployment.erp
    like = await psa.get_project(str(world.projects[0].psa_id))
    milestones = [
        Milestone(code=code, name=f"Milestone {code}", amount=Money(amount, "USD"))
        for code, amount in MILESTONES.items()
    ]
    project = like.model_copy(
        update={
            "name": "Billing status e2e",
            "customer_id": "ACC-BS-0",
            "billing_rule": BillingRule.FIXED_FEE,
            "contract_value": Money(sum(MILESTONES.values(), Decimal(0)), "USD"),
            "milestones": milestones,
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
        project,
        enterprise_id=MILESTONE_EID,
        customer_erp_id=customer,
        budget=Money(sum(MILESTONES.values(), Decimal(0)), "USD"),
    )
    tenant = world.stack.settings.psa.tenant
    world.deployment.store.link_xref(MILESTONE_EID, "project", "PSA", tenant, "workspace", psa_id)
    return str(psa_id), str(job)


async def bill_milestones(world: World, psa_id: str, job: str) -> dict[str, Any]:
    """Complete `BILLED_FIRST` in the PSA and bill each through the API; wait until the ERP
    holds their invoices and the PSA shows them invoiced. The milestones, by code."""
    milestones = {m.code: m for m in await world.deployment.psa.list_milestones(psa_id)}
    for code in BILLED_FIRST:
        ident = milestones[code].external_id
        completed = await world.twins.post(
            f"/psa/_admin/tamper/billing_milestones/{ident}/complete"
        )
        assert completed.status_code == 200, completed.text
        billed = await world.gateway.post(
            f"/api/projects/{psa_id}/billing", json={"milestone_id": ident}, headers=OPS
        )
        assert billed.status_code == 202, billed.text

    def all_billed() -> bool:
        rows = world.erp_rows(f"SELECT milestone FROM erp_invoice WHERE job_id = {job}")
        ids = ", ".join(str(milestones[c].external_id) for c in BILLED_FIRST)
        [(marked,)] = world.psa_rows(
            f"SELECT count(*) FROM psa_billing_milestone WHERE id IN ({ids}) AND state = 'invoiced'"
        )
        return sorted(m for (m,) in rows) == list(BILLED_FIRST) and marked == len(BILLED_FIRST)

    await eventually(all_billed, 60)
    return milestones


async def cancel_psa_invoice(world: World, milestone_id: str) -> None:
    """A person cancels, in the PSA, the PSA invoice that covers the milestone."""
    [(invoice_id,)] = world.psa_rows(
        f"SELECT invoice_id FROM psa_billing_milestone WHERE id = {milestone_id}"
    )
    cancelled = await world.twins.put(
        f"/psa/api/v1/invoices/{invoice_id}/cancel.json", headers=TWIN_AUTH
    )
    assert cancelled.status_code == 200, cancelled.text


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
        milestones = await bill_milestones(world, psa_id, job)
        clean = (await billing_pass(world))["run"]
        assert (clean["found"], clean["projects"]) == (0, 2), clean  # the twins' shapes agree

        # -- the drift, behind pssync's back -------------------------------------------------
        voided = await world.twins.post(
            f"/erp/_admin/tamper/invoice/{invoice_id}/void", json={"memo": "by hand"}
        )
        assert voided.status_code == 200, voided.text
        completed = await world.twins.post(
            f"/psa/_admin/tamper/billing_milestones/{milestones['M1'].external_id}/complete"
        )
        assert completed.status_code == 200, completed.text
        ms_invoices = {
            m: (i, c, d)
            for i, c, d, m in world.erp_rows(
                "SELECT id, customer_id, tran_date, milestone FROM erp_invoice "
                f"WHERE job_id = {job}"
            )
        }
        _, customer, day = ms_invoices["M2"]
        copy = {  # "Make Copy" in the ERP: the same body fields, no external id
            "entity": {"id": str(customer)},
            "job": {"id": str(job)},
            "tranDate": str(day),
            "custbody_pssync_milestone": "M2",
            "item": {"items": [{"description": "Milestone M2", "quantity": 1, "amount": 1000}]},
        }
        copied = await world.twins.post(
            "/erp/services/rest/record/v1/invoice", json=copy, headers=TWIN_AUTH
        )
        assert copied.status_code == 204, copied.text
        edited = await world.twins.patch(
            f"/erp/services/rest/record/v1/invoice/{ms_invoices['M3'][0]}",
            json={"item": {"items": [{"description": "Milestone M3", "quantity": 1,
                                      "amount": 2500}]}},
            headers=TWIN_AUTH,
        )  # fmt: skip
        assert edited.status_code == 204, edited.text
        await cancel_psa_invoice(world, milestones["M4"].external_id)
        await cancel_psa_invoice(world, milestones["M5"].external_id)
        reopened = await world.twins.put(
            f"/psa/api/v1/billing_milestones/{milestones['M5'].external_id}.json",
            json={"billing_milestone": {"state": "planned"}},
            headers=TWIN_AUTH,
        )
        assert reopened.status_code == 200, reopened.text

        # -- the first pass ------------------------------------------------------------------
        first = await billing_pass(world)
        run = first["run"]
        assert run["by_kind"] == {
            "invoice_missing": 1,
            "invoice_voided": 1,
            "invoice_duplicate": 1,
            "invoice_amount_mismatch": 1,
            "invoiced_flag_mismatch": 1,
            "invoice_without_source": 1,
        }, first
        assert (run["found"], run["repaired"], run["escalated"]) == (6, 2, 4)
        assert run["vendor_calls"] > 0
        by_kind = {d["kind"]: d for d in first["drifts"]}
        assert by_kind["invoice_voided"]["keys"]["period"] == last_month
        assert {k: by_kind[k]["keys"].get("milestone") for k in by_kind} == {
            "invoice_missing": "M1",
            "invoice_voided": None,
            "invoice_duplicate": "M2",
            "invoice_amount_mismatch": "M3",
            "invoiced_flag_mismatch": None,  # keyed by its invoice
            "invoice_without_source": None,
        }
        m4_key = f"inv-{psa_id}-ms-{milestones['M4'].external_id}"
        assert by_kind["invoiced_flag_mismatch"]["keys"]["invoice"] == m4_key
        assert by_kind["invoice_amount_mismatch"]["values"] == {
            "expected": "2000.00",
            "erp": "2500.00",
        }
        states = {k: d["state"] for k, d in by_kind.items()}
        assert states == {
            "invoice_missing": "repaired",
            "invoice_voided": "escalated",
            "invoice_duplicate": "escalated",
            "invoice_amount_mismatch": "escalated",
            "invoiced_flag_mismatch": "repaired",
            "invoice_without_source": "escalated",
        }

        # Repaired through the time pipeline: one invoice for M1, at its amount; and M4 shows
        # invoiced in the PSA again (its ERP invoice untouched).
        m1, m4 = milestones["M1"].external_id, milestones["M4"].external_id

        def repairs_hold() -> bool:
            rows = world.erp_rows(
                f"SELECT total, status FROM erp_invoice WHERE job_id = {job} AND milestone = 'M1'"
            )
            states = dict(
                world.psa_rows(
                    f"SELECT id, state FROM psa_billing_milestone WHERE id IN ({m1}, {m4})"
                )
            )
            return [(Decimal(t), s) for t, s in rows] == [(Decimal("5000.00"), "Open")] and (
                states == {int(m1): "invoiced", int(m4): "invoiced"}
            )

        await eventually(repairs_hold, 60)
        [(m4_total, m4_status)] = world.erp_rows(
            f"SELECT total, status FROM erp_invoice WHERE job_id = {job} AND milestone = 'M4'"
        )
        assert (Decimal(m4_total), m4_status) == (Decimal("1500.00"), "Open")
        assert sorted(i["cause_code"] for i in await desk_items(world.gateway, 4)) == [
            "invoice_amount_mismatch",
            "invoice_duplicate",
            "invoice_voided",
            "invoice_without_source",
        ]

        # -- the second pass: nothing new ----------------------------------------------------
        second = (await billing_pass(world))["run"]
        assert (second["new"], second["repaired"], second["escalated"]) == (0, 0, 0), second
        assert (second["found"], second["kept"], second["gone"]) == (4, 4, 2)
        runs = await world.workflows()  # the two projects' pipelines, none failed
        assert len(runs) == 2 and not any(BAD_STATUSES & set(s) for s in runs.values()), runs
