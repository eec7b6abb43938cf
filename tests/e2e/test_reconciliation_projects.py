"""Project master reconciliation end to end on the real dev server: deals won in the CRM twin
are provisioned by the saga (webhook, gateway, a real worker) and agree across the twins — no
false drift from their shapes. Then the systems drift behind pssync's back, through the twins'
tamper endpoints and databases (no webhook is sent for any of it):

- a deal won while the CRM lost its webhook                 -> missing_psa_project, escalated
- a provisioned deal's ERP job deleted in the ERP            -> missing_erp_project, escalated
- a provisioned deal's PSA link lost from pssync's xref      -> xref_missing, repaired
- a deal re-keyed in the ERP by a person: a copy of the job takes the enterprise ID as its
  external ID, pssync's job (the one the xref links) stays   -> duplicate_project, escalated
- a deal's ERP job closed and renamed by hand, its PSA budget edited by hand
                                                             -> field_mismatch x3, escalated
- a deal made again by hand in the ERP: a job of the same customer, the same name in other
  case and spacing, no enterprise ID                         -> duplicate_project, escalated

One pass through `POST /api/reconciliations` finds each, repairs the lost link (written again)
and opens one exception item for each of the rest; a second pass finds nothing new.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

import store
from bench._harness.waiting import must_eventually as eventually
from contracts.settings import load_settings
from contracts.v1.processes import ProvisionProjectResult
from demo import deal_from_template, provisionable_templates, wait_for_workflow, win_deal
from sandbox.seed import build_firm
from stack import Stack, running_stack
from tests.e2e._desk import reconcile

pytestmark = pytest.mark.e2e

OPS = {"Authorization": "Bearer dev-ops-token"}


@pytest.fixture
def settle_now(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The gateway's runs compare what changed a moment ago too (the drift is fresh here)."""
    monkeypatch.setenv("PSSYNC_RECONCILE__SETTLE_S", "0")
    yield


async def project_pass(gateway: httpx.AsyncClient) -> dict[str, Any]:
    """Start a project-master run through the API and wait for its report."""
    return await reconcile(gateway, "project_master")


async def reconciliation_items(gateway: httpx.AsyncClient, at_least: int) -> list[Any]:
    """The reconciliation desk's exception items, once there are `at_least` (the desk opens
    them as the run's signals reach it)."""
    listed = await gateway.get("/api/exceptions", params={"process": "reconciliation"}, headers=OPS)
    listed.raise_for_status()
    items: list[Any] = listed.json()["items"]
    return items if len(items) >= at_least else []


async def provisioned_deals(stack: Stack, count: int) -> list[ProvisionProjectResult]:
    """`count` deals won in the CRM twin, each provisioned by the saga."""
    firm = build_firm(7)
    templates = provisionable_templates(firm)

    async def one(n: int) -> ProvisionProjectResult:
        new = deal_from_template(firm, templates[n % len(templates)], name=f"Recon deal {n}")
        deal = await win_deal(stack, new)
        handle = await wait_for_workflow(
            stack.client, deal.workflow_id, result_type=ProvisionProjectResult
        )
        result: ProvisionProjectResult = await asyncio.wait_for(handle.result(), 90)
        return result

    return list(await asyncio.gather(*(one(n) for n in range(count))))


def rekey_erp_job(stack: Stack, job_id: str, enterprise_id: str) -> int:
    """A person re-keys the deal in the ERP: a copy of the job takes the enterprise ID as its
    external ID (unique in NetSuite), the original keeps the rest. The copy's id."""
    with stack.sandbox.state("erp").engine.begin() as conn:
        columns = [
            row[1] for row in conn.execute(text("PRAGMA table_info(erp_job)")) if row[1] != "id"
        ]
        conn.execute(
            text("UPDATE erp_job SET external_id = :old WHERE id = :id"),
            {"old": f"re-keyed-{enterprise_id}", "id": int(job_id)},
        )
        copied = ", ".join(":eid" if c == "external_id" else c for c in columns)
        conn.execute(
            text(
                f"INSERT INTO erp_job ({', '.join(columns)}) "
                f"SELECT {copied} FROM erp_job WHERE id = :id"
            ),
            {"eid": enterprise_id, "id": int(job_id)},
        )
        return int(conn.execute(text("SELECT max(id) FROM erp_job")).scalar_one())


def job_by_hand(stack: Stack, job_id: str, name: str) -> int:
    """A person makes the deal's job again by hand: the same customer (and the rest), no
    external or enterprise ID. The new job's id."""
    with stack.sandbox.state("erp").engine.begin() as conn:
        columns = [
            row[1] for row in conn.execute(text("PRAGMA table_info(erp_job)")) if row[1] != "id"
        ]
        given = {"external_id": "NULL", "enterprise_id": "NULL", "company_name": ":name"}
        copied = ", ".join(given.get(c, c) for c in columns)
        conn.execute(
            text(
                f"INSERT INTO erp_job ({', '.join(columns)}) "
                f"SELECT {copied} FROM erp_job WHERE id = :id"
            ),
            {"name": name, "id": int(job_id)},
        )
        return int(conn.execute(text("SELECT max(id) FROM erp_job")).scalar_one())


async def test_each_project_master_drift_is_found_and_repaired_or_escalated(
    tmp_path: Path, settle_now: None
) -> None:
    settings = load_settings(home=tmp_path / ".pssync")
    async with (
        running_stack(settings, ephemeral_ports=True) as stack,
        httpx.AsyncClient(base_url=stack.urls["gateway"], timeout=30) as gateway,
        httpx.AsyncClient(base_url=stack.urls["sandbox"], timeout=30) as twins,
    ):
        gone, unlinked, rekeyed, edited = await provisioned_deals(stack, 4)
        clean = (await project_pass(gateway))["run"]
        assert (clean["found"], clean["projects"]) == (0, 4), clean  # the twins' shapes agree

        # -- the drift, behind pssync's back -------------------------------------------------
        dropped = await twins.post(
            "/crm/_admin/tamper/drop-webhooks", json={"type": "opportunity.won", "count": 1}
        )
        assert dropped.status_code == 200, dropped.text
        firm = build_firm(7)
        never = await win_deal(
            stack,
            deal_from_template(firm, provisionable_templates(firm)[0], name="Recon deal lost"),
        )
        with stack.sandbox.state("erp").engine.begin() as conn:
            conn.execute(
                text("DELETE FROM erp_job WHERE id = :id"), {"id": int(gone.erp_project_id)}
            )
            conn.execute(
                text("UPDATE erp_job SET company_name = 'Renamed by hand' WHERE id = :id"),
                {"id": int(edited.erp_project_id)},
            )
        closed = await twins.post(
            f"/erp/_admin/tamper/job/{edited.erp_project_id}/edit", json={"status": "Closed"}
        )
        assert closed.status_code == 200, closed.text
        with stack.sandbox.state("psa").engine.begin() as conn:
            conn.execute(
                text("UPDATE psa_workspace SET budget_in_cents = 123450 WHERE id = :id"),
                {"id": int(edited.psa_project_id)},
            )
        copy_id = rekey_erp_job(stack, rekeyed.erp_project_id, rekeyed.enterprise_id)
        assert unlinked.erp_project_id is not None
        hand_made = job_by_hand(stack, unlinked.erp_project_id, "  RECON   deal 1 ")
        engine = store.make_engine(settings.resolved_database_url)
        with engine.begin() as conn:
            conn.execute(
                text("DELETE FROM xref WHERE system = 'PSA' AND external_id = :id"),
                {"id": unlinked.psa_project_id},
            )
        engine.dispose()

        # -- one pass finds each, repairs the lost link, escalates the rest ------------------
        found = await project_pass(gateway)
        run = found["run"]
        assert run["by_kind"] == {
            "missing_psa_project": 1,
            "missing_erp_project": 1,
            "xref_missing": 1,
            "duplicate_project": 2,
            "field_mismatch": 3,
        }, run
        assert (run["repaired"], run["escalated"], run["projects"]) == (1, 7, 5), run
        drifts = {
            (d["kind"], d["keys"].get("field") or d["keys"]["opportunity"]): d
            for d in found["drifts"]
        }
        copied = drifts["duplicate_project", unlinked.opportunity_id]
        assert copied["state"] == "escalated" and copied["keys"]["duplicate"] == str(hand_made)
        assert copied["values"] == {"project": unlinked.erp_project_id, "duplicate": str(hand_made)}
        assert drifts["missing_psa_project", never.opportunity_id]["state"] == "escalated"
        assert "enterprise_id" not in drifts["missing_psa_project", never.opportunity_id]["keys"]
        assert drifts["missing_erp_project", gone.opportunity_id]["state"] == "escalated"
        assert drifts["xref_missing", unlinked.opportunity_id]["state"] == "repaired"
        duplicate = drifts["duplicate_project", rekeyed.opportunity_id]
        assert duplicate["state"] == "escalated" and duplicate["keys"]["system"] == "ERP"
        assert duplicate["values"] == {
            "xref": rekeyed.erp_project_id,
            "projects": f"{rekeyed.erp_project_id},{copy_id}",
        }
        assert drifts["field_mismatch", "name"]["values"]["erp"] == "Renamed by hand"
        assert drifts["field_mismatch", "status"]["values"] == {"psa": "open", "erp": "closed"}
        budget = drifts["field_mismatch", "budget"]
        assert budget["values"]["psa"] == "1234.50 USD" and budget["owner"] == "PSA"
        assert {d["state"] for k, d in drifts.items() if k[0] == "field_mismatch"} == {"escalated"}
        # the lost link is written again
        links = {(x.system, x.external_id) for x in stack.store.xrefs_for(unlinked.enterprise_id)}
        assert ("PSA", unlinked.psa_project_id) in links
        # one exception item per escalated drift, with the evidence
        items = await eventually(lambda: reconciliation_items(gateway, 7), 30)
        assert sorted(i["cause_code"] for i in items) == sorted(
            ["missing_psa_project", "missing_erp_project"]
            + ["duplicate_project"] * 2
            + ["field_mismatch"] * 3
        ), items
        [made_item] = [i for i in items if i["context"]["keys"].get("duplicate")]
        assert made_item["context"]["evidence"]["duplicate_name"] == "  RECON   deal 1 "
        assert "same name" in made_item["context"]["evidence"]["matched"]
        [dup_item] = [
            i
            for i in items
            if i["cause_code"] == "duplicate_project" and not i["context"]["keys"].get("duplicate")
        ]
        evidence = dup_item["context"]["evidence"]
        assert evidence["xref_links"] == rekeyed.erp_project_id
        assert evidence["carries_enterprise_id"] == str(copy_id)

        # -- a second pass: nothing new ------------------------------------------------------
        second = (await project_pass(gateway))["run"]
        assert (second["new"], second["repaired"], second["escalated"]) == (0, 0, 0), second
        assert (second["kept"], second["gone"]) == (7, 1), second
        assert len(await reconciliation_items(gateway, 0)) == 7  # no second item per drift
