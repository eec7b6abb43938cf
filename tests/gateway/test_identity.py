"""Identity of a business key is canonical at the edge: one business key, one run.

A CRM tenant differing only in letter case, or a Salesforce id in its 15- or 18-character
form, names the run already there; a tenant pssync does not serve, or a tenant or id carrying
NUL or other control characters, is refused with a typed 4xx before the inbox and starts
nothing; billing (or reading) a PSA project pssync does not know is a 404 that starts nothing.
Same stack as test_gateway.py (its fixtures, through conftest.py): real HTTP, SQLite store,
the real dev server.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from contracts.naming import opportunity_workflow_id, time_pipeline_workflow_id
from tests.gateway.test_gateway import (
    CRM_TENANT,
    Gw,
    inbox_rows,
    link_psa_project,
    listed_runs,
    metric,
    new_opp,
    post_event,
    won_event,
    workflow_exists,
)

OPS_AUTH = {"Authorization": "Bearer dev-ops-token"}

FINANCE = {"Authorization": "Bearer dev-finance-token"}


async def started_total(gw: Gw) -> float:
    text = (await gw.http.get("/metrics", headers=OPS_AUTH)).text
    return metric(text, "pssync_gateway_workflows_started_total", workflow="OpportunityToProject")


async def no_run_named(gw: Gw, *workflow_ids: str) -> bool:
    """None of the ids names a run (an id Temporal refuses to even look up names none)."""
    for workflow_id in workflow_ids:
        try:
            if await workflow_exists(gw.client, workflow_id):
                return False
        except Exception:  # e.g. INVALID_ARGUMENT for an id with a NUL: no such run
            continue
    return True


# --------------------------------------------------------------------------- tenants


async def test_a_tenant_differing_only_in_case_joins_the_same_run(gw: Gw) -> None:
    opp = new_opp()
    spellings = [CRM_TENANT.upper(), CRM_TENANT, CRM_TENANT.title()]
    responses = [
        await post_event(gw, won_event(opp, tenant=tenant), event_id=f"evt-case-{n}")
        for n, tenant in enumerate(spellings)
    ]
    assert [r.status_code for r in responses] == [202, 202, 202], [r.text for r in responses]
    wid = opportunity_workflow_id(CRM_TENANT, opp)
    assert f"/{CRM_TENANT}/" in wid
    assert {r.json()["workflow_id"] for r in responses} == {wid}
    assert len({r.json()["run_id"] for r in responses}) == 1
    assert len(await listed_runs(gw.client, wid)) == 1
    assert await started_total(gw) == 1
    # The saga got the canonical tenant (it links xref and writes back under it).
    status = await gw.client.get_workflow_handle(wid).query("status")
    assert status["ids"]["input"]["crm_tenant"] == CRM_TENANT


async def test_an_unknown_tenant_is_refused_and_starts_nothing(gw: Gw) -> None:
    opp = new_opp()
    resp = await post_event(gw, won_event(opp, tenant="globex"), event_id="evt-globex")
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert (error["code"], error["field"]) == ("unknown_tenant", "data.tenant")
    assert inbox_rows(gw, "crm") == []
    assert await no_run_named(gw, opportunity_workflow_id("globex", opp))
    assert await started_total(gw) == 0
    text = (await gw.http.get("/metrics", headers=OPS_AUTH)).text
    assert metric(text, "pssync_gateway_webhooks_refused_total",
                  source="crm", reason="unknown_tenant") == 1  # fmt: skip


# --------------------------------------------------------------------------- control characters


@pytest.mark.parametrize(
    ("where", "dirt"),
    [
        ("tenant", "\x00"),
        ("tenant", "\x07"),
        ("tenant", "\n"),
        ("tenant", "/x"),
        ("id", "\x00"),
        ("id", "\x1b"),
        ("id", "\u200b"),
    ],
    ids=["tenant-nul", "tenant-bell", "tenant-newline", "tenant-slash", "id-nul", "id-escape",
         "id-zero-width"],
)  # fmt: skip
async def test_control_characters_in_a_tenant_or_id_are_refused(
    gw: Gw, where: str, dirt: str
) -> None:
    opp = new_opp()
    tenant, opp_id = CRM_TENANT, opp
    if where == "tenant":
        tenant += dirt
    else:
        opp_id = opp[:9] + dirt + opp[9:]
    resp = await post_event(gw, won_event(opp, tenant=tenant, id=opp_id))
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_payload"
    assert error["field"] == f"data.{where}"
    assert inbox_rows(gw, "crm") == []
    assert await no_run_named(
        gw, opportunity_workflow_id(CRM_TENANT, opp), f"opp-to-project/{tenant}/{opp_id}"
    )
    assert await started_total(gw) == 0


@pytest.mark.parametrize(
    "data",
    [
        {"workspace_id": "42\x00", "time_entry_id": "7"},
        {"workspace_id": "42", "time_entry_id": "7\x00"},
        {"workspace_id": "4\n2", "time_entry_id": "7"},
        {"workspace_id": "42/../43", "time_entry_id": "7"},
    ],
    ids=["workspace-nul", "entry-nul", "workspace-newline", "workspace-slash"],
)
async def test_control_characters_in_psa_ids_are_refused(gw: Gw, data: dict[str, str]) -> None:
    resp = await post_event(gw, {"type": "time_entry.approved", "data": data}, source="psa")
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "invalid_payload"
    assert inbox_rows(gw, "psa") == []
    raw = f"time-to-invoice/{gw.settings.psa.tenant}/{data['workspace_id']}"
    assert await no_run_named(gw, raw)


# --------------------------------------------------------------------------- Salesforce ids


async def test_salesforce_15_and_18_character_ids_name_one_run(gw: Gw) -> None:
    id18 = new_opp()
    forms = [id18[:15], id18, id18.lower(), id18.upper()]
    responses = [
        await post_event(gw, won_event(form), event_id=f"evt-form-{n}")
        for n, form in enumerate(forms)
    ]
    assert [r.status_code for r in responses] == [202] * 4, [r.text for r in responses]
    wid = opportunity_workflow_id(CRM_TENANT, id18)
    assert wid == opportunity_workflow_id(CRM_TENANT, id18[:15])
    assert {r.json()["workflow_id"] for r in responses} == {wid}
    assert len(await listed_runs(gw.client, wid)) == 1
    assert await started_total(gw) == 1
    text = (await gw.http.get("/metrics", headers=OPS_AUTH)).text
    assert metric(text, "pssync_gateway_webhooks_accepted_total",
                  source="crm", event_type="opportunity.won", result="joined") == 3  # fmt: skip
    status = await gw.client.get_workflow_handle(wid).query("status")
    assert status["ids"]["input"]["opportunity_id"] == id18


# --------------------------------------------------------------------------- unknown projects


async def test_billing_an_unknown_project_is_404_and_starts_nothing(gw: Gw) -> None:
    project = f"44{uuid.uuid4().int % 10**6}"
    wid = time_pipeline_workflow_id(gw.settings.psa.tenant, project)
    resp = await gw.http.post(
        f"/api/projects/{project}/billing", json={"period": "2026-10"}, headers=FINANCE
    )
    assert resp.status_code == 404, resp.text
    assert resp.json()["error"]["code"] == "project_not_found"
    milestone = await gw.http.post(
        f"/api/projects/{project}/billing", json={"milestone_id": "5"}, headers=FINANCE
    )
    assert milestone.status_code == 404, milestone.text
    status = await gw.http.get(f"/api/projects/{project}/time-to-invoice", headers=OPS_AUTH)
    assert status.status_code == 404
    assert status.json()["error"]["code"] == "project_not_found"
    assert not await workflow_exists(gw.client, wid)

    bad = await gw.http.post("/api/projects/44%00/billing", json={"period": "2026-10"},
                             headers=FINANCE)  # fmt: skip
    assert bad.status_code == 422, bad.text
    assert (bad.json()["error"]["code"], bad.json()["error"]["field"]) == (
        "invalid_id",
        "psa_project_id",
    )


async def test_billing_a_known_project_starts_or_signals_its_pipeline(gw: Gw) -> None:
    # Linked in xref (the saga provisioned it): signal-with-start.
    linked = f"45{uuid.uuid4().int % 10**6}"
    await asyncio.to_thread(link_psa_project, gw, linked)
    resp = await gw.http.post(
        f"/api/projects/{linked}/billing", json={"period": "2026-10"}, headers=FINANCE
    )
    assert resp.status_code == 202, resp.text
    assert await workflow_exists(gw.client, time_pipeline_workflow_id("default", linked))

    # Not linked, but its pipeline runs (the PSA's time webhooks started it): signalled only.
    running = f"46{uuid.uuid4().int % 10**6}"
    event = {"type": "time_entry.approved", "data": {"workspace_id": running, "time_entry_id": 1}}
    started = await post_event(gw, event, source="psa")
    assert started.status_code == 202, started.text
    resp = await gw.http.post(
        f"/api/projects/{running}/billing", json={"period": "2026-10"}, headers=FINANCE
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["workflow_id"] == started.json()["workflow_id"]
    assert len(await listed_runs(gw.client, started.json()["workflow_id"])) == 1
