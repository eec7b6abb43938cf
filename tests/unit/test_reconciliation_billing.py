"""Billing status, compared: given one project's billing milestones, its approved entries'
invoiced flags, the ledger (which entry went on which invoice) and the ERP's invoices, each
kind of drift is found with its keys, both sides' values and its disposition (and the repair
a safe one asks for) — and nothing where the systems agree. Plus `list_invoices_of`, the
read the comparison makes of the ERP, against the ERP twin over real HTTP and the fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.reconciliation import ReconciliationActivities
from activities.reconciliation._base import _actions
from activities.reconciliation.billing_rules import (
    BillingContext,
    BillingFinding,
    BillingRepair,
    ErpInvoice,
    LedgerLine,
    PsaItem,
    PsaMilestone,
    billing_repairable,
    compare_billing,
    invoice_source,
)
from connectors.crm import FakeCrm
from connectors.erp import ErpPort, FakeErp, NetSuiteErp
from connectors.psa import FakePsa
from contracts import Money, System
from contracts.v1 import InvoiceLine, InvoiceStatus
from contracts.v1.processes import ResolutionAction
from contracts.v1.reconciliation import CompareChunk, Disposition, Domain, Drift, DriftKind
from contracts.v1.time_to_invoice import BillingRequest, BillingTrigger
from tests.connectors._psa_fixtures import make_project
from tests.connectors.test_erp import ENTERPRISE_ID, invoice, provision, settings
from tests.twins._erp_fixtures import ACTIVE_CC, ErpTwin, erp_twin

NOW = datetime(2027, 2, 10, 3, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=2)
P = "101"
JAN = "2027-01"
W = "W-00001"


def ctx(*, tm: bool = True, **changes: object) -> BillingContext:
    values: dict[str, object] = {
        "tenant": "acme",
        "psa_project_id": P,
        "now": NOW,
        "time_and_materials": tm,
    }
    return BillingContext(**(values | changes))  # type: ignore[arg-type]


def ms(code: str = "M1", status: str = "invoiced", amount: str = "5000.00") -> PsaMilestone:
    return PsaMilestone(code, f"50{code[-1]}", Decimal(amount), "USD", status)


def item(entry: str, *, invoiced: bool = True, period: str = JAN, **extra: object) -> PsaItem:
    kind, _, entry_id = entry.partition(":")
    values: dict[str, object] = {"updated_at": LONG_AGO} | extra
    return PsaItem(kind, entry_id, period, invoiced, **values)  # type: ignore[arg-type]


def row(entry: str, ref: str | None, bill: str = "150.00", **extra: object) -> LedgerLine:
    values: dict[str, object] = {
        "entry_key": entry,
        "period": JAN,
        "state": "posted",
        "billable": True,
        "bill": Decimal(bill),
        "invoice_ref": ref,
        "updated_at": LONG_AGO,
    }
    return LedgerLine(**(values | extra))  # type: ignore[arg-type]


def inv(key: str | None, total: str, *, status: str = "open", **extra: object) -> ErpInvoice:
    values: dict[str, object] = {
        "erp_id": str(abs(hash(key)) % 10_000),
        "key": key,
        "milestone_code": None,
        "period": None,
        "total": Decimal(total),
        "currency": "USD",
        "status": status,
        "updated_at": LONG_AGO,
    }
    return ErpInvoice(**(values | extra))  # type: ignore[arg-type]


MS_KEY = f"inv-{P}-ms-501"
JAN_KEY = f"inv-{P}-period-{JAN}"


def ms_invoice(total: str = "5000.00", key: str = MS_KEY, **extra: Any) -> ErpInvoice:
    return inv(key, total, milestone_code="M1", **extra)


def jan_invoice(total: str = "300.00", key: str = JAN_KEY, **extra: Any) -> ErpInvoice:
    return inv(key, total, period=JAN, **extra)


def kinds(findings: list[BillingFinding]) -> list[tuple[str, str]]:
    return [(f.drift.kind.value, f.drift.disposition.value) for f in findings]


def only(findings: list[BillingFinding]) -> BillingFinding:
    assert len(findings) == 1, kinds(findings)
    return findings[0]


# --------------------------------------------------------------------------- agreement


def test_nothing_is_found_where_the_systems_agree() -> None:
    # Fixed fee: the milestone billed once, at its amount; its entries marked with it.
    assert (
        compare_billing(
            ctx(tm=False),
            [ms(), ms("M2", "planned")],
            [item("time:1"), item("time:2", invoiced=False)],
            [row("time:1", MS_KEY), row("time:2", None, bill="0", billable=False)],
            [ms_invoice(), inv("INV-BY-HAND", "99.00")],  # not pssync's: not its business
        )
        == []
    )
    # T&M: January billed (and a late entry on a second invoice), February still open.
    late = f"{JAN_KEY}-a1"
    assert (
        compare_billing(
            ctx(),
            [],
            [
                item("time:1"),
                item("expense:2"),
                item("time:3"),
                item("time:4", invoiced=False, period="2027-02"),
            ],
            [
                row("time:1", JAN_KEY),
                row("expense:2", JAN_KEY),
                row("time:3", late, bill="75"),
                row("time:4", None, period="2027-02"),
            ],
            [jan_invoice(), jan_invoice("75.00", late)],
        )
        == []
    )


# --------------------------------------------------------------------------- invoice_missing


def test_a_completed_milestone_without_invoice_is_billed_through_the_pipeline() -> None:
    found = only(compare_billing(ctx(tm=False), [ms(status="completed")], [], [], []))
    drift = found.drift
    assert (drift.kind, drift.disposition) == (
        DriftKind.BILLING_INVOICE_MISSING,
        Disposition.REPAIR,
    )
    assert drift.keys == {"tenant": "acme", "psa_project_id": P, "milestone": "M1"}
    assert drift.values == {"psa": "5000.00", "erp": None}
    assert found.repair is not None and found.repair.action == "bill"
    assert found.repair.request == BillingRequest(
        trigger=BillingTrigger.MILESTONE, milestone_id="501", requested_by="reconciliation"
    )
    assert billing_repairable(drift)
    # A T&M project's milestone bills its unbilled time, if any (the periods speak for it).
    assert compare_billing(ctx(), [ms(status="completed")], [], [], []) == []


def test_a_milestone_the_psa_calls_invoiced_without_an_erp_invoice_is_escalated() -> None:
    found = only(compare_billing(ctx(tm=False), [ms()], [], [], []))
    assert kinds([found]) == [("invoice_missing", "escalate")]
    assert found.repair is None and "invoiced" in found.drift.detail


def test_a_closed_period_with_unbilled_entries_is_billed_and_an_open_one_waits() -> None:
    rows = [row("time:1", None), row("time:2", None, bill="50.00"),
            row("time:3", None, period="2027-02")]  # fmt: skip
    items = [item("time:1", invoiced=False), item("time:2", invoiced=False)]
    found = only(compare_billing(ctx(), [], items, rows, []))
    assert kinds([found]) == [("invoice_missing", "repair")]
    assert found.drift.keys["period"] == JAN and found.drift.values["psa"] == "200.00"
    assert found.repair is not None and found.repair.request == BillingRequest(
        trigger=BillingTrigger.PERIOD_CLOSE, period=JAN, requested_by="reconciliation"
    )
    # Left alone: entries the pipeline changed a moment ago, periods before `since`.
    busy = [row("time:1", None, updated_at=NOW - timedelta(seconds=10))]
    assert compare_billing(ctx(), [], items, busy, []) == []
    assert compare_billing(ctx(since_period="2027-02"), [], items, rows, []) == []
    # A fixed-fee project bills no period.
    assert compare_billing(ctx(tm=False), [], items, rows, []) == []


def test_entries_billed_on_an_invoice_the_erp_no_longer_holds_are_escalated() -> None:
    found = only(compare_billing(ctx(), [], [item("time:1")], [row("time:1", JAN_KEY)], []))
    assert kinds([found]) == [("invoice_missing", "escalate")]
    assert found.drift.keys["invoice"] == JAN_KEY and found.drift.values["psa"] == "150.00"
    assert not billing_repairable(found.drift)


# --------------------------------------------------------------------------- duplicates, amounts


def test_a_second_live_invoice_for_one_milestone_is_a_duplicate() -> None:
    found = only(
        compare_billing(
            ctx(tm=False), [ms()], [], [], [ms_invoice(), ms_invoice(key=f"{MS_KEY}-a1")]
        )
    )
    assert kinds([found]) == [("invoice_duplicate", "escalate")]
    assert found.drift.values["erp"] == f"{MS_KEY},{MS_KEY}-a1"
    assert _actions(found.drift) == [ResolutionAction.SKIP]


def test_a_second_period_invoice_billing_no_entry_is_a_duplicate() -> None:
    found = only(
        compare_billing(
            ctx(),
            [],
            [item("time:1"), item("time:2")],
            [row("time:1", JAN_KEY), row("time:2", JAN_KEY)],
            [jan_invoice(), jan_invoice(key=f"{JAN_KEY}-a1")],
        )
    )
    assert kinds([found]) == [("invoice_duplicate", "escalate")]
    assert found.drift.keys["period"] == JAN


def test_an_invoice_edited_in_the_erp_is_an_amount_mismatch() -> None:
    fixed = only(compare_billing(ctx(tm=False), [ms()], [], [], [ms_invoice("4500.00")]))
    assert kinds([fixed]) == [("invoice_amount_mismatch", "escalate")]
    assert fixed.drift.keys["invoice"] == MS_KEY
    assert fixed.drift.values == {"expected": "5000.00", "erp": "4500.00"}
    tm = only(
        compare_billing(
            ctx(),
            [],
            [item("time:1"), item("time:2")],
            [row("time:1", JAN_KEY), row("time:2", JAN_KEY)],
            [jan_invoice("310.00")],
        )
    )
    assert kinds([tm]) == [("invoice_amount_mismatch", "escalate")]
    assert tm.drift.values == {"expected": "300.00", "erp": "310.00"}
    assert "2 entries" in tm.drift.detail


# --------------------------------------------------------------------------- voided


def test_an_invoice_voided_behind_pssyncs_back_is_escalated_once() -> None:
    voided = ms_invoice(status="void")
    found = only(
        compare_billing(ctx(tm=False), [ms()], [item("time:1")], [row("time:1", MS_KEY)],
                        [voided])
    )  # fmt: skip
    assert kinds([found]) == [("invoice_voided", "escalate")]
    assert found.drift.keys == {"tenant": "acme", "psa_project_id": P, "milestone": "M1"}
    assert found.drift.values == {"psa": "invoiced", "erp": "void"}
    assert found.evidence["ledger_entries"] == "1"
    period = only(
        compare_billing(ctx(), [], [item("time:1")], [row("time:1", JAN_KEY)],
                        [jan_invoice(status="void")])
    )  # fmt: skip
    assert kinds([period]) == [("invoice_voided", "escalate")]


def test_pssyncs_own_compensation_is_reported_while_the_pipeline_holds_it() -> None:
    # Compensation voided the invoice and unmarked the PSA and the ledger.
    milestone = only(
        compare_billing(ctx(tm=False), [ms(status="completed")], [], [],
                        [ms_invoice(status="void")])
    )  # fmt: skip
    assert kinds([milestone]) == [("invoice_missing", "report")]
    period = only(
        compare_billing(
            ctx(), [], [item("time:1", invoiced=False)], [row("time:1", None)],
            [jan_invoice(status="void")],
        )
    )  # fmt: skip
    assert kinds([period]) == [("invoice_missing", "report")]
    # ... and once a person's retry billed it under a new key, nothing is left.
    assert (
        compare_billing(
            ctx(),
            [],
            [item("time:1")],
            [row("time:1", f"{JAN_KEY}-a1")],
            [jan_invoice(status="void"), jan_invoice("150.00", key=f"{JAN_KEY}-a1")],
        )
        == []
    )


# --------------------------------------------------------------------------- invoiced flags


def test_flags_the_psa_lost_are_marked_again_under_the_invoice() -> None:
    found = only(
        compare_billing(
            ctx(tm=False),
            [ms(status="completed")],
            [item("time:1", invoiced=False), item("expense:2", invoiced=False), item("time:3")],
            [row("time:1", MS_KEY), row("expense:2", MS_KEY), row("time:3", MS_KEY)],
            [ms_invoice()],
        )
    )
    assert kinds([found]) == [("invoiced_flag_mismatch", "repair")]
    assert found.drift.keys == {"tenant": "acme", "psa_project_id": P, "invoice": MS_KEY}
    assert found.drift.owner.value == "PSA"
    repair = found.repair
    assert repair is not None and repair.action == "remark" and repair.invoice_ref == MS_KEY
    assert (repair.time_ids, repair.expense_ids, repair.milestone_codes) == (
        ("1",), ("2",), ("M1",),
    )  # fmt: skip
    assert billing_repairable(found.drift)
    assert _actions(found.drift) == [ResolutionAction.SKIP, ResolutionAction.RETRY]


def test_invoices_made_in_the_erp_by_hand_are_told_apart_and_their_flags_escalated() -> None:
    """Two invoices made in the ERP by hand (no external id): a copy of M1's, and M2's only
    invoice while the PSA shows M2 completed, not invoiced. The copy being a duplicate does
    not hide the other (each is its own invoice, not "the keyless one"), and M2's flag is for
    a person: there is no key of pssync's to mark the PSA under."""
    copy = inv(None, "5000.00", erp_id="71", milestone_code="M1")
    by_hand = inv(None, "1000.00", erp_id="72", milestone_code="M2")
    found = compare_billing(
        ctx(tm=False),
        [ms(), ms("M2", status="completed", amount="1000.00")],
        [],
        [],
        [ms_invoice(), copy, by_hand],
    )
    assert kinds(found) == [
        ("invoice_duplicate", "escalate"),
        ("invoiced_flag_mismatch", "escalate"),
    ]
    flag = found[1]
    assert flag.drift.keys == {
        "tenant": "acme",
        "psa_project_id": P,
        "invoice": "invoice-72",
        "milestone": "M2",
    }
    assert flag.repair is None and not billing_repairable(flag.drift)


def test_an_entry_invoiced_in_the_psa_on_no_invoice_of_pssyncs_is_escalated() -> None:
    found = only(compare_billing(ctx(), [], [item("time:9")], [row("time:9", None)], []))
    assert kinds([found]) == [("invoiced_flag_mismatch", "escalate")]
    assert found.drift.keys["entry"] == "time:9" and found.drift.keys["period"] == JAN
    assert found.drift.values == {"psa": "invoiced", "erp": None}
    # ... unless it changed a moment ago (the pipeline may be marking it).
    recent = item("time:9", updated_at=NOW - timedelta(seconds=5))
    assert compare_billing(ctx(), [], [recent], [row("time:9", None)], []) == []


def test_an_invoice_whose_marking_did_not_finish_is_reported_not_billed_again() -> None:
    found = only(
        compare_billing(
            ctx(), [], [item("time:1", invoiced=False)], [row("time:1", None)], [jan_invoice()]
        )
    )
    assert kinds([found]) == [("invoiced_flag_mismatch", "report")]
    assert found.drift.keys["invoice"] == JAN_KEY


# --------------------------------------------------------------------------- without source


@pytest.mark.parametrize(
    ("milestones", "tm", "invoice_", "why"),
    [
        ([ms(status="planned")], False, ms_invoice(), "is planned"),
        ([], False, ms_invoice(), "does not exist"),
        ([], True, inv(f"inv-{P}-period-2027-05", "10.00", period="2027-05"), "not begun"),
        ([], False, jan_invoice(), "not billed by time"),
        ([], True, jan_invoice(), "bills no entry"),
    ],
)
def test_an_invoice_of_pssyncs_without_its_source_is_escalated(
    milestones: list[PsaMilestone], tm: bool, invoice_: ErpInvoice, why: str
) -> None:
    found = only(compare_billing(ctx(tm=tm), milestones, [], [], [invoice_]))
    assert kinds([found]) == [("invoice_without_source", "escalate")]
    assert found.drift.keys["invoice"] == invoice_.key and why in found.drift.detail
    # A voided one is no longer anybody's concern.
    voided = ErpInvoice(**(invoice_.__dict__ | {"status": "void"}))
    assert compare_billing(ctx(tm=tm), milestones, [], [], [voided]) == []


def test_pssyncs_invoices_are_told_by_key_milestone_or_memo_period() -> None:
    by_key = invoice_source(P, inv(f"{MS_KEY}-a2", "1"))
    assert by_key is not None and (by_key.milestone, by_key.period) == ("501", None)
    by_memo = invoice_source(P, inv("INV-77", "1", period=JAN))
    assert by_memo is not None and by_memo.period == JAN
    assert invoice_source(P, inv("INV-77", "1")) is None
    assert invoice_source(P, inv("inv-999-ms-1", "1")) is None  # another project's key


def test_an_invoice_changed_a_moment_ago_leaves_its_source_for_the_next_run() -> None:
    fresh = ms_invoice("1.00", updated_at=NOW - timedelta(seconds=3))
    assert compare_billing(ctx(tm=False), [ms(status="completed")], [], [], [fresh]) == []


def test_every_billing_kind_is_in_the_closed_set() -> None:
    billing = {k.value for k in DriftKind if k.name.startswith("BILLING_")}
    assert billing == {
        "invoice_missing", "invoice_duplicate", "invoice_amount_mismatch", "invoice_voided",
        "invoiced_flag_mismatch", "invoice_without_source",
    }  # fmt: skip


# --------------------------------------------------------------------------- the repairs


def finding(repair: BillingRepair, **keys: str) -> BillingFinding:
    drift = Drift(
        domain=Domain.BILLING_STATUS,
        kind=DriftKind.BILLING_INVOICE_MISSING
        if repair.action == "bill"
        else DriftKind.BILLING_INVOICED_FLAG_MISMATCH,
        keys={"tenant": "acme", "psa_project_id": keys.pop("project"), **keys},
        owner=System.ERP,
        disposition=Disposition.REPAIR,
    )
    return BillingFinding(drift, repair)


async def repaired(psa: FakePsa, *findings: BillingFinding) -> None:
    """`_repair_billing` in an activity's context; no Temporal client: a repair that tried to
    signal a pipeline would fail (`RuntimeError`)."""
    acts = ReconciliationActivities(FakeCrm(), psa, FakeErp(), store=None)  # type: ignore[arg-type]
    chunk = CompareChunk(
        run_id="r", domain=Domain.BILLING_STATUS, tenant="acme", units=[], task_queue="q"
    )
    await ActivityEnvironment().run(acts._repair_billing, chunk, list(findings))


async def test_a_milestone_the_pipeline_invoiced_since_the_comparison_is_not_billed_again() -> None:
    psa = FakePsa()
    pid = await psa.create_project_shell(make_project(rate_card_id=None), enterprise_id="e1")
    done = await psa.complete_milestone(pid, "M1")
    await psa.mark_invoiced([], invoice_ref="inv-x", project_id=pid, milestone_codes=["M1"])
    bill = BillingRepair(
        "bill",
        request=BillingRequest(trigger=BillingTrigger.MILESTONE, milestone_id=done.external_id),
    )
    await repaired(psa, finding(bill, project=pid, milestone="M1"))  # no signal: no error
    with pytest.raises(RuntimeError, match="Temporal client"):
        await psa.unmark_invoiced(invoice_ref="inv-x")  # completed again: it is billed
        await repaired(psa, finding(bill, project=pid, milestone="M1"))


async def test_lost_flags_are_marked_again_under_the_invoices_key() -> None:
    psa = FakePsa()
    project = make_project(rate_card_id=None).model_copy(update={"start_date": date(2027, 1, 1)})
    pid = await psa.create_project_shell(project, enterprise_id="e1")
    psa.add_user(W, W, start_date=date(2026, 1, 1))
    entry = psa.add_time_entry(pid, W, date(2027, 1, 5), 60, approved=True)
    await psa.complete_milestone(pid, "M1")
    remark = BillingRepair(
        "remark", invoice_ref=MS_KEY, time_ids=(entry.external_id,), milestone_codes=("M1",)
    )
    await repaired(psa, finding(remark, project=pid, invoice=MS_KEY))
    assert psa.time_entries[entry.external_id].invoiced
    assert [m.status.value for m in await psa.list_milestones(pid) if m.code == "M1"] == [
        "invoiced"
    ]
    # A refusal (already marked under another invoice) is left to the next run.
    again = BillingRepair("remark", invoice_ref="inv-other", time_ids=(entry.external_id,))
    await repaired(psa, finding(again, project=pid, invoice="inv-other"))


# --------------------------------------------------------------------------- the ERP read


@pytest.fixture
async def twin() -> AsyncIterator[ErpTwin]:
    async with erp_twin() as t:
        yield t


async def three_invoices(erp: ErpPort) -> list[str]:
    await provision(erp)
    billed = invoice("inv-101-period-2025-06").model_copy(
        update={
            "milestone_code": None,
            "period": "2025-06",
            "lines": [InvoiceLine(description="June", quantity=Decimal("7.5"),
                                  amount=Money("1125.00", "USD"))],
        }
    )  # fmt: skip
    ids = [
        await erp.create_invoice(billed),
        await erp.create_invoice(invoice("inv-101-ms-501")),
        await erp.create_invoice(
            invoice("INV-BY-HAND").model_copy(update={"milestone_code": None})
        ),
    ]
    await erp.void_invoice(ids[0], reason="voided by hand")
    return ids


def headers(found: dict[str, list]) -> dict[str, tuple[object, ...]]:  # type: ignore[type-arg]
    return {
        h.key: (h.milestone_code, h.period, h.total, h.status)
        for invoices in found.values()
        for h in invoices
    }


EXPECTED = {
    "inv-101-period-2025-06": (None, "2025-06", Money("1125.00", "USD"), InvoiceStatus.VOID),
    "inv-101-ms-501": ("M1", None, Money("25000.50", "USD"), InvoiceStatus.OPEN),
    "INV-BY-HAND": (None, None, Money("25000.50", "USD"), InvoiceStatus.OPEN),
}


async def test_many_projects_invoices_in_a_few_queries(twin: ErpTwin) -> None:
    async with NetSuiteErp(
        settings(twin.base_url), backoff_base_s=0.01, poll_interval_s=0.01
    ) as erp:
        await three_invoices(erp)
    async with NetSuiteErp(settings(twin.base_url), backoff_base_s=0.01) as erp:
        before = erp.calls
        unknown = "eid:01J0000000000000000NOSUCH1"
        found = await erp.list_invoices_of([f"eid:{ENTERPRISE_ID}", unknown])
        assert erp.calls - before <= 2  # the project's id, its invoices
        assert found[unknown] == []
        assert headers(found) == EXPECTED
        header = found[f"eid:{ENTERPRISE_ID}"][0]
        assert header.project == f"eid:{ENTERPRISE_ID}" and header.updated_at is not None
        assert header.invoice_date == date(2025, 6, 30)


async def test_the_fake_lists_the_same_invoices() -> None:
    erp = FakeErp(cost_centers=[ACTIVE_CC], open_periods=["2025-06"])
    await three_invoices(erp)
    found = await erp.list_invoices_of([ENTERPRISE_ID, "eid:01J0000000000000000NOSUCH1"])
    assert headers(found) == EXPECTED
