"""The audit trail over real HTTP, a real SQLite store and the real Temporal dev server: every
decision that reaches a route leaves one row with its outcome; a decision that cannot be
audited is not sent; `GET /api/audit` is for ops and auditors only.

Uses the gateway stack of `test_gateway.py` (the stand-in saga takes one resolution and ends).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from contracts.naming import opportunity_workflow_id
from contracts.settings import Actor, Settings, load_settings
from tests.gateway.test_gateway import (
    CRM_TENANT,
    Gw,
    link_psa_project,
    new_opp,
    open_item,
    post_event,
    won_event,
)

OPS = {"Authorization": "Bearer dev-ops-token"}
DM = {"Authorization": "Bearer dev-dm-token"}
FINANCE = {"Authorization": "Bearer dev-finance-token"}
AUDITOR = {"Authorization": "Bearer audit-token"}
PROJECT_AUDITOR = {"Authorization": "Bearer project-audit-token"}
SCOPED_PROJECT = "4399001"
"""The one PSA project the project auditor's scopes reach."""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The embedded profile's actors and one auditor, serving the tests' CRM tenant."""
    dev = load_settings(home=tmp_path / ".pssync")
    auditor = Actor(name="ada.auditor", roles=["auditor"], scopes=["*"])
    scoped = Actor(name="pat.auditor", roles=["auditor"], scopes=[f"project:{SCOPED_PROJECT}"])
    settings = load_settings(
        home=tmp_path / ".pssync",
        actors={**dev.actors, "audit-token": auditor, "project-audit-token": scoped},
    )
    settings.crm.tenants = [CRM_TENANT]
    return settings


async def audit(gw: Gw, headers: dict[str, str] = OPS, **params: Any) -> list[dict[str, Any]]:
    resp = await gw.http.get("/api/audit", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def test_every_resolution_that_reaches_the_route_is_audited(gw: Gw) -> None:
    opp = new_opp()
    assert (await post_event(gw, won_event(opp))).status_code == 202
    item_id = await asyncio.to_thread(open_item, gw.store, opp)
    url = f"/api/exceptions/{item_id}/resolution"
    decision = {"action": "retry_with_data", "corrections": {"cost_center": "CC-200"}}

    # Not an actor, or not a well-formed request: nothing reached a decision, nothing recorded.
    assert (await gw.http.post(url, json=decision)).status_code == 401
    assert (await gw.http.post(url, json={"action": "explode"}, headers=DM)).status_code == 422
    assert await audit(gw, subject_id=item_id) == []

    refused = await gw.http.post(url, json=decision, headers=FINANCE)
    assert refused.status_code == 403
    ok = await gw.http.post(
        url, json={**decision, "note": "fixed in ERP"}, headers={**DM, "X-Request-ID": "req-42"}
    )
    assert ok.status_code == 200, ok.text
    late = await gw.http.post(url, json=decision, headers=DM)  # the run has ended
    assert late.status_code == 409

    rows = await audit(gw, subject_id=item_id)
    assert [(r["actor"], r["outcome"], r["status_code"]) for r in rows] == [
        ("dana.manager", "refused", 409),
        ("dana.manager", "accepted", 200),
        ("frank.finance", "refused", 403),
    ]
    late_row, accepted, forbidden = rows
    assert {r["action"] for r in rows} == {"exception.resolve"}
    assert {r["subject_kind"] for r in rows} == {"exception_item"}
    assert accepted["request"] == {**decision, "note": "fixed in ERP"}
    assert accepted["request_id"] == "req-42"
    assert accepted["actor_roles"] == ["delivery_manager"]
    assert accepted["result"]["workflow_id"] == opportunity_workflow_id(CRM_TENANT, opp)
    assert accepted["result"]["result"]["item_id"] == item_id
    assert forbidden["result"]["code"] == "forbidden"
    assert late_row["result"]["code"] == "workflow_not_running"
    assert all(r["completed_at"] >= r["at"] for r in rows)
    assert "dev-dm-token" not in str(rows)


async def test_other_decisions_are_audited_with_their_subject_and_tenant(gw: Gw) -> None:
    co = f"9{uuid.uuid4().int % 10**6}"
    for approve in (True, False):  # no run for this change order: refused, still audited
        resp = await gw.http.post(
            f"/api/change-orders/{co}/decision", json={"approve": approve}, headers=OPS
        )
        assert resp.status_code == 409, resp.text
    rescind = await gw.http.post(
        "/api/terminations/W-77/2026-05-31/rescind", json={"reason": "rehired"}, headers=OPS
    )
    assert rescind.status_code == 409, rescind.text
    project = f"43{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(link_psa_project, gw, project)
    billing_url = f"/api/projects/{project}/billing"
    assert (
        await gw.http.post(billing_url, json={"period": "2026-10"}, headers=DM)
    ).status_code == 403
    billed = await gw.http.post(billing_url, json={"period": "2026-10"}, headers=FINANCE)
    assert billed.status_code == 202, billed.text

    psa, hcm = gw.settings.psa.tenant, gw.settings.hcm.tenant
    changes = await audit(gw, subject_kind="change_order", subject_id=co)
    assert [(r["action"], r["outcome"], r["status_code"], r["tenant"]) for r in changes] == [
        ("change_order.reject", "refused", 409, psa),
        ("change_order.approve", "refused", 409, psa),
    ]
    [rescinded] = await audit(gw, action="termination.rescind", subject_id="W-77/2026-05-31")
    assert (rescinded["subject_kind"], rescinded["tenant"]) == ("termination", hcm)
    assert rescinded["request"] == {"reason": "rehired"}
    billing = await audit(gw, subject_kind="project", subject_id=project)
    assert [(r["action"], r["actor"], r["outcome"], r["status_code"]) for r in billing] == [
        ("billing.close_period", "frank.finance", "accepted", 202),
        ("billing.close_period", "dana.manager", "refused", 403),
    ]
    assert billing[0]["result"]["workflow_id"] == billed.json()["workflow_id"]


async def test_a_decision_that_cannot_be_audited_is_not_sent(
    gw: Gw, monkeypatch: pytest.MonkeyPatch
) -> None:
    opp = new_opp()
    assert (await post_event(gw, won_event(opp))).status_code == 202
    item_id = await asyncio.to_thread(open_item, gw.store, opp)
    url = f"/api/exceptions/{item_id}/resolution"

    def move_audit_table(source: str, target: str) -> None:
        with gw.engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {source} RENAME TO {target}"))

    await asyncio.to_thread(move_audit_table, "audit", "audit_away")  # the trail is gone
    refused = await gw.http.post(url, json={"action": "skip"}, headers=OPS)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "audit_unavailable"
    assert refused.headers["retry-after"]
    await asyncio.to_thread(move_audit_table, "audit_away", "audit")

    # The refused decision never reached the run: the next one is its first and only one.
    # Its outcome cannot be recorded (the store fails after the decision went through): the
    # answer is still the decision's, and the row stays `attempted`, a visible trace.
    def store_down(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("store unavailable")

    monkeypatch.setattr(gw.store, "audit_complete", store_down)
    ok = await gw.http.post(url, json={"action": "skip"}, headers=OPS)
    assert ok.status_code == 200, ok.text
    monkeypatch.undo()
    result = await gw.client.get_workflow_handle(opportunity_workflow_id(CRM_TENANT, opp)).result()
    assert [r["action"] for r in result["resolutions"]] == ["skip"]
    [row] = await audit(gw, subject_id=item_id)
    assert (row["outcome"], row["status_code"], row["completed_at"]) == ("attempted", None, None)


async def test_the_trail_is_for_ops_and_auditors_filtered_and_paged(gw: Gw) -> None:
    assert (await gw.http.get("/api/audit")).status_code == 401
    forbidden = await gw.http.get("/api/audit", headers=DM)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"

    co = f"8{uuid.uuid4().int % 10**6}"
    for _ in range(5):
        await gw.http.post(f"/api/change-orders/{co}/decision", json={"approve": True}, headers=DM)
    everything = await audit(gw, AUDITOR, subject_id=co)
    assert len(everything) == 5

    pages: list[int] = []
    params: dict[str, Any] = {"subject_id": co, "limit": 2}
    while True:
        resp = await gw.http.get("/api/audit", params=params, headers=AUDITOR)
        body = resp.json()
        assert body["count"] == len(body["items"]) <= 2
        pages.extend(r["id"] for r in body["items"])
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert pages == [r["id"] for r in everything]  # every row once, newest first

    newest = everything[0]["at"]
    assert [r["id"] for r in await audit(gw, AUDITOR, subject_id=co, since=newest)] == [
        everything[0]["id"]
    ]
    assert len(await audit(gw, AUDITOR, subject_id=co, until=newest)) == 4
    assert await audit(gw, AUDITOR, subject_id=co, actor="ops") == []
    assert len(await audit(gw, AUDITOR, subject_id=co, actor="dana.manager")) == 5
    # Filters no row can match are empty pages, not errors.
    assert await audit(gw, AUDITOR, subject_id="a\x00b") == []
    assert await audit(gw, AUDITOR, subject_id=co, since=newest, until=everything[-1]["at"]) == []
    assert len(await audit(gw, AUDITOR, subject_id=co, until="9999-12-31T23:59:59-12:00")) == 5
    assert await audit(gw, AUDITOR, subject_id=co, since="9999-12-31T23:59:59-12:00") == []
    for bad in ({"limit": 501}, {"limit": 0}, {"since": "yesterday"}, {"cursor": -1}):
        resp = await gw.http.get("/api/audit", params=bad, headers=AUDITOR)
        assert resp.status_code == 422, bad
        assert resp.json()["error"]["field"] == next(iter(bad))


async def test_an_auditor_scoped_to_a_project_reads_only_that_projects_decisions(gw: Gw) -> None:
    other = f"44{uuid.uuid4().hex[:6]}"
    for project in (SCOPED_PROJECT, other):
        await asyncio.to_thread(link_psa_project, gw, project)
        resp = await gw.http.post(
            f"/api/projects/{project}/billing", json={"period": "2026-10"}, headers=FINANCE
        )
        assert resp.status_code == 202, resp.text
    co = f"7{uuid.uuid4().int % 10**6}"
    await gw.http.post(f"/api/change-orders/{co}/decision", json={"approve": True}, headers=OPS)
    await gw.http.post(
        "/api/terminations/W-78/2026-05-31/rescind", json={"reason": "x"}, headers=OPS
    )

    seen = await audit(gw, PROJECT_AUDITOR)
    assert {(r["subject_kind"], r["subject_id"]) for r in seen} == {("project", SCOPED_PROJECT)}
    # the same filters answer the unscoped auditor in full
    everything = await audit(gw, AUDITOR)
    assert {("project", other), ("change_order", co)} <= {
        (r["subject_kind"], r["subject_id"]) for r in everything
    }
    assert await audit(gw, PROJECT_AUDITOR, subject_id=other) == []
