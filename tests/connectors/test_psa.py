"""The PSA connector: every port operation against the Kantata twin over HTTP and against
`FakePsa` (same scenarios, same rules), then what only the HTTP adapter faces: a crash at any
point of `create_project_shell`, 429s without Retry-After, 5xx bursts, outages, auth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlmodel import select

from connectors.psa import FakePsa, KantataPsa
from contracts.errors import (
    AuthError,
    BusinessRuleViolation,
    NotFoundError,
    StaleVersionError,
    TransientError,
)
from contracts.money import Money
from contracts.systems import System
from contracts.v1 import (
    Assignment,
    AssignmentKind,
    ChangeOrderLine,
    ChangeOrderStatus,
    MilestoneStatus,
    ProjectStatus,
)
from sandbox import psa as twin
from tests.connectors._psa_fixtures import (
    EID,
    EID2,
    FakeHarness,
    Harness,
    TwinHarness,
    fake_harness,
    make_project,
    twin_harness,
)

D = date


@pytest.fixture(params=["twin", "fake"])
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "fake":
        yield fake_harness()
        return
    async with twin_harness() as harness:
        yield harness


async def collect(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]


async def twin_rows(harness: TwinHarness, collection: str, **params: Any) -> list[dict[str, Any]]:
    r = await harness.client.get(f"/api/v1/{collection}.json", params={"per_page": 200, **params})
    body = r.json()
    return [body[x["key"]][x["id"]] for x in body["results"]]


def demand(key: str, role: str = "Consultant") -> Assignment:
    return Assignment(
        external_id=key,
        project_id="n/a",
        role=role,
        kind=AssignmentKind.ROLE_DEMAND,
        start_date=D(2025, 3, 1),
        end_date=D(2025, 6, 30),
        allocated_minutes=24000,
        source_system=System.PSSYNC,
    )


# --------------------------------------------------------------------------- projects


async def test_create_project_shell_is_idempotent_and_reads_back(h: Harness) -> None:
    port = h.port
    assert await port.find_project_by_enterprise_id(EID) is None
    psa_id = await port.create_project_shell(make_project(), enterprise_id=EID)
    assert await port.create_project_shell(make_project(), enterprise_id=EID) == psa_id
    assert await port.find_project_by_enterprise_id(EID) == psa_id

    project = await port.get_project(psa_id)
    assert project.enterprise_id == EID
    assert project.status is ProjectStatus.ACTIVE
    assert project.contract_value == Money("120000.00", "USD")
    assert project.cost_center == "CC-100" and project.customer_id == "ACC-1"
    assert {(n.code, n.parent_code) for n in project.wbs} == {
        ("1", None),
        ("1.1", "1"),
        ("1.2", "1"),
    }
    report = next(n for n in project.wbs if n.code == "1.2")
    assert report.budget == Money("5000.50", "USD") and report.billable is False
    assert [(m.code, m.amount) for m in project.milestones] == [
        ("M1", Money("20000.00", "USD")),
        ("M2", Money("100000.00", "USD")),
    ]
    if isinstance(h, TwinHarness):
        assert len(await twin_rows(h, "workspaces")) == 1
        assert len(await twin_rows(h, "stories", workspace_id=psa_id)) == 3
        assert len(await twin_rows(h, "billing_milestones", workspace_id=psa_id)) == 2
        refs = await twin_rows(h, "external_references", subject_type="Workspace")
        assert [(r["service_model_ref"], r["status"]) for r in refs] == [(EID, "successful")]


async def test_workspace_facts_are_custom_field_values_once_each_despite_lost_answers() -> None:
    """Twin only: the facts Kantata has no workspace field for are custom field values, one
    per field however often the override-write is sent again (answers lost at random, the
    shell provisioned again as a retried activity would)."""
    async with twin_harness(retry_budget_s=0.3) as h:
        faults = await h.client.post("/_admin/psa/lost-responses", json={"rate": 0.4, "seed": 1})
        assert faults.status_code == 200, faults.text
        psa_id = None
        for _attempt in range(30):  # as Temporal retries the activity
            try:
                psa_id = await h.port.create_project_shell(make_project(), enterprise_id=EID)
                break
            except (TransientError, NotFoundError, StaleVersionError):
                continue
        assert psa_id is not None
        lost = await h.client.post("/_admin/psa/lost-responses", json={"rate": 0})
        assert lost.json()["dropped"] > 0
        state = h.app.state.twin
        # Which request a lost answer hits depends on how the concurrent reads and retries
        # interleave, so the facts may have been written only once so far. A crash after the
        # facts and before the reference turned `successful` makes the repeat certain: the
        # next provisioning resumes the shell and writes the six values again.
        with state.session() as s:
            for ref in s.exec(select(twin.PsaExternalReference)).all():
                ref.status = "pending"
                s.add(ref)
            s.commit()
        assert await h.port.create_project_shell(make_project(), enterprise_id=EID) == psa_id
        with state.session() as s:
            values = s.exec(select(twin.PsaCustomFieldValue)).all()
            workspace = s.get(twin.PsaWorkspace, int(psa_id))
        names = {f.id: f.name for f in await _twin_custom_fields(h)}
        assert sorted(names[v.custom_field_id] for v in values) == sorted(
            ["Customer ID", "Opportunity ID", "Billing Rule", "Cost Center", "Practice",
             "Delivery Manager"]
        )  # fmt: skip
        assert {v.subject_id for v in values} == {int(psa_id)}
        # The write was applied more than once (a lost answer or a resumed call, then the same
        # body again): each repeat replaced the six values under new ids instead of adding.
        assert max(v.id for v in values) > len(values)
        assert workspace is not None
        assert (workspace.cost_center, workspace.opportunity_ref) == ("CC-100", "OPP-1")
        project = await h.port.get_project(psa_id)
        assert (project.practice, project.delivery_manager) == ("Data", "dana.manager")


async def _twin_custom_fields(h: TwinHarness) -> list[Any]:
    with h.app.state.twin.session() as s:
        return list(s.exec(select(twin.PsaCustomField)).all())


async def test_project_shell_refuses_bad_input_before_writing(h: Harness) -> None:
    with pytest.raises(BusinessRuleViolation) as unknown:
        await h.port.create_project_shell(make_project(rate_card_id="RC-NOPE"), enterprise_id=EID)
    assert unknown.value.code == "UNKNOWN_RATE_CARD" and unknown.value.field == "rate_card_id"
    broken = make_project()
    broken.wbs[1].parent_code = "9"
    with pytest.raises(BusinessRuleViolation) as wbs:
        await h.port.create_project_shell(broken, enterprise_id=EID)
    assert wbs.value.code == "INVALID_WBS" and wbs.value.field == "wbs[1].parent_code"
    assert await h.port.find_project_by_enterprise_id(EID) is None


async def test_archive_is_an_idempotent_compensation(h: Harness) -> None:
    port = h.port
    psa_id = await port.create_project_shell(make_project(), enterprise_id=EID)
    await port.archive_project(psa_id, reason="ERP project refused")
    await port.archive_project(psa_id, reason="ERP project refused")
    await port.archive_project("987654", reason="never existed")
    assert (await port.get_project(psa_id)).status is ProjectStatus.ARCHIVED
    await h.add_user("W1")
    with pytest.raises(BusinessRuleViolation) as refused:
        await h.add_time(psa_id, "W1", D(2025, 3, 3), 60)
    assert refused.value.field == "workspace_id"
    # Provisioning the same enterprise project again reuses (and reactivates) the shell.
    assert await port.create_project_shell(make_project(), enterprise_id=EID) == psa_id
    assert (await port.get_project(psa_id)).status is ProjectStatus.ACTIVE


async def test_enterprise_id_and_budget(h: Harness) -> None:
    port = h.port
    psa_id = await port.create_project_shell(make_project(), enterprise_id=EID)
    await port.set_enterprise_id(psa_id, EID2)
    assert (await port.get_project(psa_id)).enterprise_id == EID2
    with pytest.raises(NotFoundError):
        await port.set_enterprise_id("987654", EID)

    assert await port.get_project_budget(psa_id) == Money("120000.00", "USD")
    version = (await port.get_project(psa_id)).source_version
    assert version is not None
    new_version = await port.update_project_budget(
        psa_id, Money("150000.00", "USD"), expected_version=version
    )
    assert int(new_version) > int(version)
    assert await port.get_project_budget(psa_id) == Money("150000.00", "USD")
    with pytest.raises(StaleVersionError):
        await port.update_project_budget(psa_id, Money("90000.00", "USD"), expected_version=version)
    with pytest.raises(BusinessRuleViolation) as currency:
        await port.update_project_budget(psa_id, Money("1.00", "EUR"))
    assert currency.value.code == "CURRENCY_MISMATCH" and currency.value.field == "budget"
    assert await port.get_project_budget(psa_id) == Money("150000.00", "USD")


# --------------------------------------------------------------------------- staffing demand


async def test_resource_requests_are_idempotent_per_project_role_and_key(h: Harness) -> None:
    port = h.port
    psa_id = await port.create_project_shell(make_project(), enterprise_id=EID)
    wanted = [demand("OPP-1:L1"), demand("OPP-1:L2", role="Analyst")]
    ids = await port.create_resource_requests(psa_id, wanted)
    assert len(set(ids)) == 2
    assert await port.create_resource_requests(psa_id, wanted) == ids
    listed = await port.list_resource_requests(psa_id)
    assert sorted(r.external_id for r in listed) == sorted(ids)
    assert {(r.role, r.allocated_minutes, r.kind) for r in listed} == {
        ("Consultant", 24000, AssignmentKind.ROLE_DEMAND),
        ("Analyst", 24000, AssignmentKind.ROLE_DEMAND),
    }
    await port.cancel_resource_request(ids[0])
    await port.cancel_resource_request(ids[0])
    assert [r.external_id for r in await port.list_resource_requests(psa_id)] == [ids[1]]
    assert len(await port.list_resource_requests(psa_id, include_cancelled=True)) == 2
    # The same demand raised again reopens the cancelled request rather than duplicating it.
    assert await port.create_resource_requests(psa_id, wanted[:1]) == ids[:1]
    assert len(await port.list_resource_requests(psa_id)) == 2


# --------------------------------------------------------------------------- time and expense


async def test_approved_time_listing_paging_and_watermark(h: Harness) -> None:
    port = h.port
    psa_id = await port.create_project_shell(make_project(), enterprise_id=EID)
    await h.add_user("W1")
    approved = [
        await h.add_time(psa_id, "W1", D(2025, 3, d), 60 * d, approve=True) for d in (3, 4, 5)
    ]
    await h.add_time(psa_id, "W1", D(2025, 3, 6), 30)
    entries = await collect(port.list_approved_time(page_size=2))
    assert [e.external_id for e in entries] == approved
    first = entries[0]
    assert (first.worker_id, first.project_id, first.minutes) == ("W1", psa_id, 180)
    assert first.approved and not first.invoiced and first.source_system is System.PSA
    assert first.hours == Decimal(3)
    later = await collect(port.list_approved_time(since=entries[1].updated_at))
    assert [e.external_id for e in later] == approved[2:]
    assert await collect(port.list_approved_time(project_id="987654")) == []
    fetched = await port.get_time_entry(approved[0])
    assert fetched.source_version == first.source_version
    with pytest.raises(NotFoundError):
        await port.get_time_entry("987654")


async def test_approved_time_walk_loses_nothing_on_ties_or_concurrent_updates() -> None:
    async with twin_harness() as h:
        psa_id = await h.port.create_project_shell(make_project(), enterprise_id=EID)
        await h.add_user("W1")
        ids = [
            await h.add_time(psa_id, "W1", D(2025, 3, d), 30, approve=True) for d in range(3, 10)
        ]
        # Kantata stamps whole seconds: give every entry the same updated_at.
        same = datetime(2025, 3, 10, 12, 0, 0, tzinfo=UTC)
        with h.app.state.twin.session() as session:
            for entry_id in ids:
                row = session.get(twin.PsaTimeEntry, int(entry_id))
                assert row is not None
                row.updated_at = same
                session.add(row)
            session.commit()
        walked = [e.external_id for e in await collect(h.port.list_approved_time(page_size=2))]
        assert walked == ids
        assert await collect(h.port.list_approved_time(since=same)) == []

        # An entry re-approved mid-walk moves to the end; none of the others is skipped.
        seen: list[str] = []
        async for entry in h.port.list_approved_time(page_size=2):
            seen.append(entry.external_id)
            if len(seen) == 1:
                url = f"time_entries/{ids[1]}.json"
                await h.put(url, {"time_entry": {"approved": False}})
                await h.put(url, {"time_entry": {"approved": True}})
        assert set(seen) == set(ids)
        assert seen[-1] == ids[1]


async def test_time_refusals_are_business_rule_violations(h: Harness) -> None:
    psa_id = await h.port.create_project_shell(make_project(), enterprise_id=EID)
    await h.add_user("W1", start_date=D(2025, 1, 1), closed_after=D(2025, 3, 31))
    await h.add_user("W2", active=False)
    cases = [
        ("W1", D(2025, 4, 1), 60, "date_performed"),
        ("W1", D(2024, 12, 31), 60, "date_performed"),
        ("W2", D(2025, 3, 3), 60, "user_id"),
        ("W1", D(2025, 3, 3), 0, "time_in_minutes"),
        ("W1", D(2025, 3, 3), 1441, "time_in_minutes"),
    ]
    for worker, on, minutes, field in cases:
        with pytest.raises(BusinessRuleViolation) as refused:
            await h.add_time(psa_id, worker, on, minutes)
        assert (refused.value.code, refused.value.field) == ("VALIDATION", field)
    # Business refusals come back through the connector's own operations too.
    with pytest.raises(BusinessRuleViolation) as ended:
        await h.port.create_resource_requests(
            psa_id,
            [
                demand("K").model_copy(
                    update={"start_date": D(2025, 6, 1), "end_date": D(2025, 5, 1)}
                )
            ],
        )
    assert ended.value.code == "VALIDATION" and ended.value.field == "end_date"


async def test_close_and_reopen_resource_to_time(h: Harness) -> None:
    psa_id = await h.port.create_project_shell(make_project(), enterprise_id=EID)
    await h.add_user("W1")
    await h.port.close_resource_to_time("W1", D(2025, 3, 14))
    await h.add_time(psa_id, "W1", D(2025, 3, 14), 60)
    with pytest.raises(BusinessRuleViolation) as refused:
        await h.add_time(psa_id, "W1", D(2025, 3, 15), 60)
    assert refused.value.field == "date_performed"
    await h.port.reopen_resource_to_time("W1")
    await h.add_time(psa_id, "W1", D(2025, 3, 15), 60)
    with pytest.raises(NotFoundError):
        await h.port.close_resource_to_time("W-UNKNOWN", D(2025, 3, 14))


async def test_mark_and_unmark_invoiced(h: Harness) -> None:
    port = h.port
    psa_id = await port.create_project_shell(make_project(), enterprise_id=EID)
    await h.add_user("W1")
    t1 = await h.add_time(psa_id, "W1", D(2025, 3, 3), 60, approve=True)
    t2 = await h.add_time(psa_id, "W1", D(2025, 3, 4), 60, approve=True)
    pending = await h.add_time(psa_id, "W1", D(2025, 3, 5), 60)
    x1 = await h.add_expense(psa_id, "W1", D(2025, 3, 3), 4500)
    ms = await port.complete_milestone(psa_id, "M1")
    assert ms.status is MilestoneStatus.COMPLETED

    with pytest.raises(BusinessRuleViolation) as refused:
        await port.mark_invoiced([pending], invoice_ref="INV-0")
    assert refused.value.field == "time_entry_ids"

    inv = await port.mark_invoiced(
        [t1], invoice_ref="INV-1", expense_ids=[x1], project_id=psa_id, milestone_codes=["M1"]
    )
    # A repeat (e.g. a retried activity) changes nothing; a wider repeat adds only what's new.
    assert await port.mark_invoiced([t1], invoice_ref="INV-1", expense_ids=[x1]) == inv
    assert await port.mark_invoiced([t1, t2], invoice_ref="INV-1") == inv
    assert (await port.get_time_entry(t1)).invoiced and (await port.get_time_entry(t2)).invoiced
    assert (await port.get_expense(x1)).invoiced
    statuses = {m.code: m.status for m in await port.list_milestones(psa_id)}
    assert statuses == {"M1": MilestoneStatus.INVOICED, "M2": MilestoneStatus.PLANNED}
    invoiced = await collect(port.list_approved_time(invoiced=True))
    assert sorted(e.external_id for e in invoiced) == sorted([t1, t2])
    with pytest.raises(BusinessRuleViolation):
        await port.mark_invoiced([t1], invoice_ref="INV-OTHER")

    await port.unmark_invoiced(invoice_ref="INV-1")
    await port.unmark_invoiced(invoice_ref="INV-1")
    assert not (await port.get_time_entry(t1)).invoiced
    assert not (await port.get_expense(x1)).invoiced
    assert {m.code: m.status for m in await port.list_milestones(psa_id)}["M1"] is (
        MilestoneStatus.COMPLETED
    )
    expenses = await collect(port.list_approved_expenses(project_id=psa_id))
    assert [(e.external_id, e.amount) for e in expenses] == [(x1, Money("45.00", "USD"))]


# --------------------------------------------------------------------------- rate cards


async def test_rate_card(h: Harness) -> None:
    card = await h.port.get_rate_card("RC-STD")
    assert card.currency == "USD"
    assert card.rate_for("Consultant", D(2025, 3, 3)) == Money("150.00", "USD")
    assert card.rate_for("Analyst", D(2026, 1, 5)) is None
    if isinstance(h, TwinHarness):
        assert (await h.port.get_rate_card(card.external_id)).lines == card.lines
    with pytest.raises(NotFoundError):
        await h.port.get_rate_card("RC-NOPE")


# --------------------------------------------------------------------------- assignments


async def test_assignments_versions_end_delete_and_restore(h: Harness) -> None:
    port = h.port
    psa_id = await port.create_project_shell(make_project(), enterprise_id=EID)
    await h.add_user("W1")
    a1 = await h.add_assignment(psa_id, "W1", "Consultant", D(2025, 3, 1), D(2025, 9, 30))
    a2 = await h.add_assignment(psa_id, None, "Analyst", D(2025, 4, 1), D(2025, 5, 31))
    by_project = await port.list_assignments(project_id=psa_id)
    assert sorted(a.external_id for a in by_project) == sorted([a1, a2])
    mine = await port.list_assignments(worker_id="W1")
    assert [(a.external_id, a.worker_id, a.kind) for a in mine] == [
        (a1, "W1", AssignmentKind.NAMED)
    ]
    assert await port.list_assignments(worker_id="W-UNKNOWN") == []
    original = mine[0]
    ended = await port.update_assignment_end(
        a1, D(2025, 5, 15), expected_version=original.source_version
    )
    assert ended.end_date == D(2025, 5, 15)
    assert int(ended.source_version or 0) == int(original.source_version or 0) + 1
    with pytest.raises(StaleVersionError):
        await port.update_assignment_end(
            a1, D(2025, 5, 1), expected_version=original.source_version
        )
    with pytest.raises(BusinessRuleViolation) as before_start:
        await port.update_assignment_end(a1, D(2025, 2, 1))
    assert before_start.value.field == "end_date"

    restored = await port.restore_assignment(original)
    assert (restored.external_id, restored.end_date) == (a1, D(2025, 9, 30))
    await port.delete_assignment(a1)
    await port.delete_assignment(a1)
    with pytest.raises(NotFoundError):
        await port.get_assignment(a1)
    recreated = await port.restore_assignment(original)
    assert recreated.external_id != a1
    assert (recreated.worker_id, recreated.start_date, recreated.end_date) == (
        "W1",
        D(2025, 3, 1),
        D(2025, 9, 30),
    )
    assert (await port.get_assignment(recreated.external_id)).role == "Consultant"


# --------------------------------------------------------------------------- change orders


async def test_change_orders(h: Harness) -> None:
    port = h.port
    psa_id = await port.create_project_shell(make_project(), enterprise_id=EID)
    co_id = await h.add_change_order(
        psa_id,
        "More workshops",
        Money("7500.00", "USD"),
        [ChangeOrderLine(role="Consultant", hours_delta=Decimal("40.5"))],
    )
    co = await port.get_change_order(co_id)
    assert co.status is ChangeOrderStatus.SUBMITTED and co.project_id == psa_id
    assert co.budget_delta == Money("7500.00", "USD") and co.hours_delta == Decimal("40.5")
    assert co.requested_by == "dana.manager"
    with pytest.raises(BusinessRuleViolation) as skip:
        await port.set_change_order_state(co_id, ChangeOrderStatus.APPLIED)
    assert skip.value.field == "state"
    approved = await port.set_change_order_state(co_id, ChangeOrderStatus.APPROVED)
    assert approved.status is ChangeOrderStatus.APPROVED
    again = await port.set_change_order_state(co_id, ChangeOrderStatus.APPROVED)
    assert again.source_version == approved.source_version
    applied = await port.set_change_order_state(co_id, ChangeOrderStatus.APPLIED)
    assert applied.status is ChangeOrderStatus.APPLIED
    with pytest.raises(NotFoundError):
        await port.get_change_order("987654")


async def test_milestones(h: Harness) -> None:
    port = h.port
    psa_id = await port.create_project_shell(make_project(), enterprise_id=EID)
    done = await port.complete_milestone(psa_id, "M2")
    assert done.status is MilestoneStatus.COMPLETED
    assert (await port.complete_milestone(psa_id, "M2")).status is MilestoneStatus.COMPLETED
    milestones = {m.code: m for m in await port.list_milestones(psa_id)}
    assert milestones["M2"].status is MilestoneStatus.COMPLETED
    assert milestones["M1"].target_date == D(2025, 3, 15)
    with pytest.raises(NotFoundError):
        await port.complete_milestone(psa_id, "M9")


# --------------------------------------------------------------------------- crash recovery


class Killed(Exception):
    """Stands for a worker SIGKILL: nothing after it runs in this attempt."""


class CrashingTransport(httpx.AsyncBaseTransport):
    """Dies at the n-th write, before sending it or after the vendor applied it."""

    def __init__(self, crash_at: int, *, after_send: bool) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.crash_at = crash_at
        self.after_send = after_send
        self.writes = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method in ("POST", "PUT") and not request.url.path.endswith("/oauth2/token"):
            self.writes += 1
            if self.writes == self.crash_at:
                if self.after_send:
                    response = await self.inner.handle_async_request(request)
                    await response.aread()
                raise Killed(f"killed at write {self.writes}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_create_project_shell_resumes_after_a_crash_at_any_write() -> None:
    async with twin_harness() as h:
        clean = KantataPsa(h.port.http.settings, backoff_base_s=0.01)
        # Count the writes of an uninterrupted run, then crash at each of them in turn.
        counter = CrashingTransport(crash_at=10**6, after_send=False)
        counting = KantataPsa(h.port.http.settings, transport=counter)
        await counting.create_project_shell(make_project(), enterprise_id=EID)
        await counting.aclose()
        total = counter.writes
        assert total >= 7
        eids = [f"01J9Z8Y7X6W5V4T3S2R1Q0P{i:03d}" for i in range(2 * total)]
        runs = [(n, after) for n in range(1, total + 1) for after in (False, True)]
        for (crash_at, after_send), eid in zip(runs, eids, strict=True):
            crashing = KantataPsa(
                h.port.http.settings,
                transport=CrashingTransport(crash_at, after_send=after_send),
            )
            with pytest.raises(Killed):
                await crashing.create_project_shell(make_project(), enterprise_id=eid)
            await crashing.aclose()
            psa_id = await clean.create_project_shell(make_project(), enterprise_id=eid)
            assert await clean.create_project_shell(make_project(), enterprise_id=eid) == psa_id
            workspaces = [
                w
                for w in await twin_rows(h, "workspaces", include_archived=True)
                if w["description"].endswith(eid)
            ]
            assert [w["id"] for w in workspaces] == [psa_id], (crash_at, after_send)
            assert len(await twin_rows(h, "stories", workspace_id=psa_id)) == 3
            assert len(await twin_rows(h, "billing_milestones", workspace_id=psa_id)) == 2
            project = await clean.get_project(psa_id)
            assert project.status is ProjectStatus.ACTIVE and project.enterprise_id == eid
        await clean.aclose()


async def test_interrupted_shell_with_pending_reference_completes_without_duplicates() -> None:
    """The state a killed worker leaves: workspace and pending reference, one story."""
    async with twin_harness() as h:
        ws = await h.post(
            "workspaces.json",
            {"workspace": {"title": "Apollo", "description": f"pssync:project:{EID}"}},
        )
        await h.post(
            "external_references/create_or_update",
            {
                "external_reference": {
                    "subject_type": "Workspace",
                    "subject_id": ws["id"],
                    "service_name": "pssync",
                    "service_model": "enterprise_project",
                    "service_model_ref": EID,
                    "status": "pending",
                }
            },
        )
        await h.post(
            "stories.json",
            {
                "story": {
                    "workspace_id": ws["id"],
                    "title": "Discovery",
                    "description": "pssync:wbs:1",
                }
            },
        )
        assert (await h.port.get_project(ws["id"])).status is ProjectStatus.PROVISIONING
        assert await h.port.find_project_by_enterprise_id(EID) == ws["id"]
        assert await h.port.create_project_shell(make_project(), enterprise_id=EID) == ws["id"]
        assert len(await twin_rows(h, "workspaces")) == 1
        assert len(await twin_rows(h, "stories", workspace_id=ws["id"])) == 3
        project = await h.port.get_project(ws["id"])
        assert project.name == "Apollo rollout" and project.status is ProjectStatus.ACTIVE


async def test_orphan_workspace_without_reference_is_adopted_and_findable() -> None:
    async with twin_harness() as h:
        ws = await h.post(
            "workspaces.json",
            {
                "workspace": {
                    "title": "Apollo",
                    "description": f"Provisioned by pssync.\npssync:project:{EID}",
                }
            },
        )
        assert await h.port.find_project_by_enterprise_id(EID) == ws["id"]
        await h.port.archive_project(ws["id"], reason="saga compensated")
        assert await h.port.create_project_shell(make_project(), enterprise_id=EID) == ws["id"]
        assert len(await twin_rows(h, "workspaces", include_archived=True)) == 1


async def test_failed_children_mark_the_reference_failed_and_a_retry_resumes() -> None:
    async with twin_harness() as h:
        project = make_project()
        # The canonical model already refuses most bad input, so make the vendor refuse the
        # children by archiving the workspace between the shell's first write and its stories.
        original = h.port._ensure_stories

        async def archive_first(ws_id: str, *args: Any) -> None:
            await h.put(f"workspaces/{ws_id}.json", {"workspace": {"archived": True}})
            await original(ws_id, *args)

        h.port._ensure_stories = archive_first  # type: ignore[method-assign]
        with pytest.raises(BusinessRuleViolation) as refused:
            await h.port.create_project_shell(project, enterprise_id=EID)
        assert refused.value.field == "workspace_id"
        refs = await twin_rows(h, "external_references", subject_type="Workspace")
        assert refs[0]["status"] == "failed" and "archived" in refs[0]["external_message"]
        h.port._ensure_stories = original  # type: ignore[method-assign]
        psa_id = await h.port.create_project_shell(project, enterprise_id=EID)
        assert (await h.port.get_project(psa_id)).status is ProjectStatus.ACTIVE


# --------------------------------------------------------------------------- resilience


async def test_429_without_retry_after_is_retried_with_jitter() -> None:
    async with twin_harness() as h:
        psa_id = await h.port.create_project_shell(make_project(), enterprise_id=EID)
        await h.client.post("/_admin/stats/reset")
        await h.client.post("/_admin/faults", json={"rate_limit_rate": 0.5, "seed": 7})
        calls = [h.port.get_project(psa_id) for _ in range(6)]
        projects = await asyncio.gather(*calls)
        assert {p.name for p in projects} == {"Apollo rollout"}
        stats = (await h.client.get("/_admin/stats")).json()
        assert stats["throttled_429"] > 0
        assert h.port.http.retries >= stats["throttled_429"]
        # No Retry-After: the wait is full jitter, so it varies from one retry to the next.
        from tenacity import RetryCallState

        from contracts.errors import RateLimitedError

        waits = set()
        for attempt in range(1, 6):
            state = RetryCallState(None, None, (), {})
            state.attempt_number = attempt
            state.outcome = _failed(RateLimitedError("429", retry_after_s=None))
            waits.add(round(h.port.http._wait(state), 6))
        assert len(waits) > 1


def _failed(exc: BaseException) -> Any:
    from concurrent.futures import Future

    future: Future[None] = Future()
    future.set_exception(exc)
    return future


async def test_5xx_burst_is_absorbed() -> None:
    async with twin_harness() as h:
        await h.add_user("W1")
        psa_id = await h.port.create_project_shell(make_project(), enterprise_id=EID)
        for d in range(3, 8):
            await h.add_time(psa_id, "W1", D(2025, 3, d), 60, approve=True)
        await h.client.post(
            "/_admin/faults",
            json={"error_rate": 0.4, "error_statuses": [500, 502, 503, 504], "seed": 3},
        )
        entries = await collect(h.port.list_approved_time(page_size=2))
        assert len(entries) == 5
        again = await h.port.create_project_shell(make_project(), enterprise_id=EID)
        assert again == psa_id
        stats = (await h.client.get("/_admin/stats")).json()
        assert stats["injected_errors"] > 0
        await h.client.post("/_admin/faults", json={})
        assert len(await twin_rows(h, "workspaces")) == 1


class OutageWatch(httpx.AsyncBaseTransport):
    """Passes requests through and signals once the connector has seen `after` 503s."""

    def __init__(self, after: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.after = after
        self.unavailable = 0
        self.down = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if response.status_code == 503:
            self.unavailable += 1
            if self.unavailable >= self.after:
                self.down.set()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_outage_then_recovery_and_outage_past_the_budget() -> None:
    seen = OutageWatch(after=2)
    async with twin_harness(transport=lambda: seen) as h:
        psa_id = await h.port.create_project_shell(make_project(), enterprise_id=EID)
        await h.client.post("/_admin/faults", json={"outage": True})
        pending = asyncio.create_task(h.port.get_project(psa_id))
        await asyncio.wait_for(seen.down.wait(), 5)
        await h.client.post("/_admin/faults", json={})
        assert (await pending).name == "Apollo rollout"

    async with twin_harness(retry_budget_s=0.3) as h:
        await h.client.post("/_admin/faults", json={"outage": True})
        with pytest.raises(TransientError):
            await h.port.find_project_by_enterprise_id(EID)


async def test_refused_credentials_are_auth_errors() -> None:
    async with twin_harness(client_secret="wrong") as h:
        with pytest.raises(AuthError):
            await h.port.find_project_by_enterprise_id(EID)


# --------------------------------------------------------------------------- FakePsa only


async def test_fake_injected_failures_and_call_log() -> None:
    fake = fake_harness().port
    fake.fail_next("create_project_shell", TransientError("boom"))
    with pytest.raises(TransientError):
        await fake.create_project_shell(make_project(), enterprise_id=EID)
    psa_id = await fake.create_project_shell(make_project(), enterprise_id=EID)
    assert fake.calls == ["create_project_shell", "create_project_shell"]
    assert len(fake.projects) == 1 and psa_id in fake.projects


async def test_fake_keeps_approved_entries_locked_once_invoiced() -> None:
    h: FakeHarness = fake_harness()
    fake: FakePsa = h.port
    psa_id = await fake.create_project_shell(make_project(), enterprise_id=EID)
    await h.add_user("W1")
    t1 = await h.add_time(psa_id, "W1", D(2025, 3, 3), 60, approve=True)
    await fake.mark_invoiced([t1], invoice_ref="INV-1")
    with pytest.raises(BusinessRuleViolation) as locked:
        fake.approve_time_entry(t1, approved=False)
    assert locked.value.field == "is_invoiced"
    since = datetime.now(UTC)
    await fake.unmark_invoiced(invoice_ref="INV-1")
    assert [e.external_id for e in await collect(fake.list_approved_time(since=since))] == [t1]


async def test_unmapped_user_surfaces_as_psa_user() -> None:
    async with twin_harness() as h:
        twin.add_user(h.app, full_name="Unmapped")
        psa_id = await h.port.create_project_shell(make_project(), enterprise_id=EID)
        users = await twin_rows(h, "users")
        entry = await h.post(
            "time_entries.json",
            {
                "time_entry": {
                    "workspace_id": psa_id,
                    "user_id": users[0]["id"],
                    "date_performed": "2025-03-03",
                    "time_in_minutes": 15,
                }
            },
        )
        assert (
            await h.port.get_time_entry(str(entry["id"]))
        ).worker_id == f"psa-user:{users[0]['id']}"


# --------------------------------------------------------------------------- worker termination


async def test_worker_time_in_a_date_range_approved_or_not(h: Harness) -> None:
    port = h.port
    psa_id = await port.create_project_shell(make_project(), enterprise_id=EID)
    await h.add_user("W1")
    await h.add_user("W2")
    a3 = await h.add_time(psa_id, "W1", D(2025, 3, 3), 60, approve=True)
    a4 = await h.add_time(psa_id, "W1", D(2025, 3, 4), 90)
    a6 = await h.add_time(psa_id, "W1", D(2025, 3, 6), 30, approve=True)
    await h.add_time(psa_id, "W2", D(2025, 3, 4), 45, approve=True)
    everything = await port.list_worker_time("W1")
    assert [e.external_id for e in everything] == [a3, a4, a6]
    assert all(e.worker_id == "W1" for e in everything)
    through = await port.list_worker_time("W1", performed_through=D(2025, 3, 4))
    assert [(e.external_id, e.approved) for e in through] == [(a3, True), (a4, False)]
    unapproved = await port.list_worker_time("W1", approved=False)
    assert [e.external_id for e in unapproved] == [a4]
    window = await port.list_worker_time(
        "W1", performed_from=D(2025, 3, 4), performed_through=D(2025, 3, 6), approved=True
    )
    assert [e.external_id for e in window] == [a6]
    assert await port.list_worker_time("nobody") == []


async def test_change_orders_awaiting_an_approver(h: Harness) -> None:
    port = h.port
    managed = make_project().model_copy(update={"delivery_manager": "W-DM"})
    other = make_project().model_copy(update={"delivery_manager": "W-OTHER", "name": "Other"})
    psa_id = await port.create_project_shell(managed, enterprise_id=EID)
    other_id = await port.create_project_shell(other, enterprise_id=EID2)
    open_co = await h.add_change_order(psa_id, "More workshops", Money("10.00", "USD"), [])
    decided = await h.add_change_order(psa_id, "Fewer", Money("-5.00", "USD"), [])
    await port.set_change_order_state(decided, ChangeOrderStatus.REJECTED)
    await h.add_change_order(other_id, "Elsewhere", Money("10.00", "USD"), [])
    awaiting = await port.list_change_orders_awaiting("W-DM")
    assert [co.external_id for co in awaiting] == [open_co]
    assert awaiting[0].project_id == psa_id
    assert await port.list_change_orders_awaiting("W-NOBODY") == []


# --------------------------------------------------------------------------- activity feed


async def test_notification_posts_are_idempotent_by_key(h: Harness) -> None:
    port = h.port
    psa_id = await port.create_project_shell(make_project(), enterprise_id=EID)
    other_id = await port.create_project_shell(make_project(), enterprise_id=EID2)
    first = await port.post_notification(
        psa_id, "Change order approved\n\nConsultant 20 h", ["resource_managers"], key="ntf_1"
    )
    assert await port.post_notification(psa_id, "again", ["resource_managers"], key="ntf_1") == (
        first
    )
    # the key is per workspace; without a key every call posts
    elsewhere = await port.post_notification(other_id, "x", ["resource_managers"], key="ntf_1")
    plain = await port.post_notification(psa_id, "FYI", ["delivery_manager"])
    assert len({first, elsewhere, plain}) == 3
    with pytest.raises(BusinessRuleViolation):
        await port.post_notification("999999", "lost", ["resource_managers"], key="ntf_2")

    if isinstance(h, TwinHarness):
        posts = await twin_rows(h, "posts", workspace_id=psa_id)
        assert [p["id"] for p in posts] == [first, plain]
        assert posts[0]["workspace_id"] == psa_id
        assert posts[0]["message"].startswith("Change order approved\n\nConsultant 20 h")
        assert posts[0]["message"].endswith("pssync:notification:ntf_1")
        assert posts[0]["recipient_roles"] == ["resource_managers"]
        assert posts[1]["recipient_roles"] == ["delivery_manager"]
    else:
        assert isinstance(h, FakeHarness)
        mine = [p for p in h.port.posts if p.workspace_id == psa_id]
        assert [(p.id, p.message, p.recipients) for p in mine] == [
            (first, "Change order approved\n\nConsultant 20 h", ["resource_managers"]),
            (plain, "FYI", ["delivery_manager"]),
        ]


# --------------------------------------------------------------------------- time to invoice


async def _approve(h: Harness, entry_id: str) -> None:
    """Approve (again) as a PSA user would."""
    if isinstance(h, TwinHarness):
        await h.put(f"time_entries/{entry_id}.json", {"time_entry": {"approved": True}})
    else:
        assert isinstance(h, FakeHarness)
        h.port.approve_time_entry(entry_id)


async def test_entries_and_expenses_read_by_id_in_bulk(h: Harness) -> None:
    port = h.port
    psa_id = await port.create_project_shell(make_project(), enterprise_id=EID)
    await h.add_user("W1")
    await h.add_user("W2", role="Architect")  # a role the project's rate card has no rate for
    t = [await h.add_time(psa_id, "W1", D(2025, 3, d), 60, approve=d % 2 == 1) for d in (3, 4, 5)]
    other = await h.add_time(psa_id, "W2", D(2025, 3, 3), 30)
    x1 = await h.add_expense(psa_id, "W1", D(2025, 3, 3), 4500)

    found = await port.get_time_entries([t[2], t[0], "987654", "no-such-id", t[0], other])
    assert sorted(e.external_id for e in found) == sorted([t[0], t[2], other])
    by_id = {e.external_id: e for e in found}
    assert by_id[t[0]] == await port.get_time_entry(t[0])
    assert (by_id[t[0]].worker_id, by_id[t[0]].approved) == ("W1", True)
    assert (by_id[other].worker_id, by_id[other].approved) == ("W2", False)
    # Each entry carries its price per hour as the PSA set it from the rate card.
    assert by_id[t[0]].bill_rate == Money("150.00", "USD")
    assert by_id[other].bill_rate is None
    assert await port.get_time_entries([]) == []

    expenses = await port.get_expenses([x1, "987654", x1])
    assert [(e.external_id, e.worker_id, e.amount) for e in expenses] == [
        (x1, "W1", Money("45.00", "USD"))
    ]


async def test_milestones_carry_the_psa_id(h: Harness) -> None:
    psa_id = await h.port.create_project_shell(make_project(), enterprise_id=EID)
    listed = await h.port.list_milestones(psa_id)
    ids = [m.external_id for m in listed]
    assert all(ids) and len(set(ids)) == 2
    assert [m.external_id for m in (await h.port.get_project(psa_id)).milestones] == ids
    assert (await h.port.complete_milestone(psa_id, "M1")).external_id == ids[0]
    if isinstance(h, TwinHarness):
        rows = await twin_rows(h, "billing_milestones", workspace_id=psa_id)
        assert sorted(ids) == sorted(r["id"] for r in rows)


async def test_rejected_back_to_the_submitter_once(h: Harness) -> None:
    port = h.port
    psa_id = await port.create_project_shell(make_project(), enterprise_id=EID)
    await h.add_user("W1")
    t1 = await h.add_time(psa_id, "W1", D(2025, 3, 3), 60, approve=True)
    approved = await port.get_time_entry(t1)

    reason = "Cost center CC-9 is inactive in the ERP"
    rejected = await port.reject_time_entry(t1, reason)
    assert not rejected.approved
    assert rejected.notes.splitlines()[-1] == f"[pssync] {reason}"
    assert int(rejected.source_version or 0) > int(approved.source_version or 0)
    # A repeat (a retried activity) finds it sent back already and changes nothing.
    again = await port.reject_time_entry(t1, reason)
    assert (again.source_version, again.notes) == (rejected.source_version, rejected.notes)
    assert await port.get_time_entry(t1) == again
    assert [e.external_id for e in await collect(port.list_approved_time())] == []

    # Resubmitted unchanged and refused again for the same reason: the line is not repeated;
    # a new reason is added below it.
    await _approve(h, t1)
    same = await port.reject_time_entry(t1, "Cost center  CC-9 is inactive\nin the ERP")
    assert not same.approved and same.notes == rejected.notes
    await _approve(h, t1)
    other = await port.reject_time_entry(t1, "No rate for the role")
    assert other.notes.splitlines() == [f"[pssync] {reason}", "[pssync] No rate for the role"]

    with pytest.raises(BusinessRuleViolation) as blank:
        await port.reject_time_entry(t1, "  ")
    assert blank.value.field == "reason"
    with pytest.raises(NotFoundError):
        await port.reject_time_entry("987654", reason)
    t2 = await h.add_time(psa_id, "W1", D(2025, 3, 4), 60, approve=True)
    await port.mark_invoiced([t2], invoice_ref="INV-1")
    with pytest.raises(BusinessRuleViolation) as invoiced:
        await port.reject_time_entry(t2, reason)
    assert invoiced.value.field == "is_invoiced"
    assert (await port.get_time_entry(t2)).approved

    x1 = await h.add_expense(psa_id, "W1", D(2025, 3, 3), 4500)
    sent_back = await port.reject_expense(x1, "No receipt")
    assert not sent_back.approved
    repeat = await port.reject_expense(x1, "No receipt")
    assert repeat.source_version == sent_back.source_version
    assert [e.external_id for e in await collect(port.list_approved_expenses())] == []
    if isinstance(h, TwinHarness):
        rows = await twin_rows(h, "expenses", only=x1)
        assert rows[0]["notes"] == "[pssync] No receipt"
        entry = await twin_rows(h, "time_entries", only=t1)
        assert entry[0]["notes"] == other.notes and entry[0]["approved"] is False
    else:
        assert isinstance(h, FakeHarness)
        assert h.port.expense_notes[x1] == "[pssync] No receipt"


class Recording(httpx.AsyncBaseTransport):
    """Passes requests on; records them, and loses the response of the PUTs asked for."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []
        self.lose_next_put = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = await self.inner.handle_async_request(request)
        if request.method == "PUT" and self.lose_next_put:
            self.lose_next_put = False
            await response.aread()
            raise httpx.ReadTimeout("the response was lost", request=request)
        return response

    def gets(self, path: str) -> int:
        return sum(r.method == "GET" and r.url.path == path for r in self.requests)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_bulk_reads_take_one_request_per_200_ids() -> None:
    recording = Recording()
    async with twin_harness(transport=lambda: recording) as h:
        psa_id = await h.port.create_project_shell(make_project(), enterprise_id=EID)
        await h.add_user("W1")
        await h.add_user("W2")
        entries = [
            {
                "workspace_id": int(psa_id),
                "user_id": h.users[("W1", "W2")[n % 2]],
                "date_performed": "2025-03-03",
                "time_in_minutes": 30,
            }
            for n in range(450)
        ]
        r = await h.client.post("/_admin/time_entries/bulk", json={"entries": entries})
        ids = r.json()["ids"]
        recording.requests.clear()
        found = await h.port.get_time_entries([*ids, "987654"])
        assert sorted(e.external_id for e in found) == sorted(ids)
        assert {e.worker_id for e in found} == {"W1", "W2"}
        assert recording.gets("/api/v1/time_entries.json") == 3
        assert recording.gets("/api/v1/external_references.json") == 1
        # The worker map is kept: a second read is the three pages only.
        await h.port.get_time_entries(ids[::-1])
        assert recording.gets("/api/v1/time_entries.json") == 6
        assert recording.gets("/api/v1/external_references.json") == 1


async def test_rejection_whose_response_was_lost_is_not_doubled() -> None:
    recording = Recording()
    async with twin_harness(transport=lambda: recording) as h:
        psa_id = await h.port.create_project_shell(make_project(), enterprise_id=EID)
        await h.add_user("W1")
        t1 = await h.add_time(psa_id, "W1", D(2025, 3, 3), 60, approve=True)
        recording.lose_next_put = True
        rejected = await h.port.reject_time_entry(t1, "No rate for the role")
        # The lost PUT went through; its retry met a newer lock_version, the entry was read
        # again and found sent back already.
        puts = [r for r in recording.requests if r.method == "PUT"]
        assert len(puts) == 2
        assert not rejected.approved and rejected.notes == "[pssync] No rate for the role"
