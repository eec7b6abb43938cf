"""Labor actuals, compared: given one project's approved PSA entries, the ERP's postings and the
ledger, each kind of drift is found with its keys, both sides' values and its disposition — and
nothing is found where the systems agree. Plus `decide`: what a run does with a drift given
what earlier runs did. Pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from activities.reconciliation.labor_rules import (
    EntryRepair,
    ErpPosting,
    Finding,
    LaborContext,
    LedgerEntry,
    PsaEntry,
    compare_labor,
    live_postings,
    periods_to_check,
)
from contracts.v1.reconciliation import (
    Disposition,
    Domain,
    Drift,
    DriftAction,
    DriftKind,
    DriftState,
    PriorDrift,
    decide,
    drift_fingerprint,
)

NOW = datetime(2027, 2, 10, 3, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=2)
DAY = date(2027, 1, 15)


def ctx(**changes: object) -> LaborContext:
    values: dict[str, object] = {"tenant": "acme", "psa_project_id": "101", "now": NOW}
    return LaborContext(**(values | changes))  # type: ignore[arg-type]


def approved(entry_id: str, hours: str = "8", *, version: str = "1", **extra: object) -> PsaEntry:
    values: dict[str, object] = {
        "kind": "time",
        "entry_id": entry_id,
        "version": version,
        "work_date": DAY,
        "quantity": Decimal(hours).quantize(Decimal("0.000001")),
        "updated_at": LONG_AGO,
    }
    return PsaEntry(**(values | extra))  # type: ignore[arg-type]


def posting(
    entry_id: str, hours: str = "8", *, version: str = "1", cost: str = "640.00", **extra: object
) -> ErpPosting:
    values: dict[str, object] = {
        "key": f"psa-time-{entry_id}-v{version}",
        "kind": "time",
        "posting_date": DAY,
        "hours": Decimal(hours),
        "cost": Decimal(cost),
        "bill": Decimal("1200.00"),
    }
    return ErpPosting(**(values | extra))  # type: ignore[arg-type]


def ledger(
    entry_id: str,
    *,
    version: str = "1",
    state: str = "posted",
    cost: str = "640.00",
    **extra: object,
) -> LedgerEntry:
    values: dict[str, object] = {
        "entry_key": f"time:{entry_id}",
        "version": version,
        "state": state,
        "posting_key": f"psa-time-{entry_id}-v{version}",
        "hours": Decimal(8),
        "cost": Decimal(cost),
        "bill": Decimal("1200.00"),
        "updated_at": LONG_AGO,
    }
    return LedgerEntry(**(values | extra))  # type: ignore[arg-type]


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [f.drift for f in findings]
    return findings[0]


def test_systems_that_agree_have_no_drift() -> None:
    psa = [approved("1"), approved("2", "1.5")]
    erp = [posting("1"), posting("2", "1.5")]
    rows = [ledger("1"), ledger("2")]
    assert compare_labor(ctx(), psa, erp, rows) == []


def test_an_approved_entry_without_a_posting_is_missing_and_repaired_through_the_pipeline() -> None:
    found = only(compare_labor(ctx(), [approved("1", "7.5")], [], []))
    drift = found.drift
    assert (drift.kind, drift.disposition) == (DriftKind.LABOR_MISSING_IN_ERP, Disposition.REPAIR)
    assert drift.keys == {
        "tenant": "acme", "psa_project_id": "101", "period": "2027-01", "entry": "time:1",
    }  # fmt: skip
    assert drift.values == {"psa": "7.500000", "erp": None}
    assert found.repair == EntryRepair("time", "1", "1", reset=False)
    assert found.periods == {"2027-01"}


def test_a_posting_the_ledger_has_but_the_erp_lost_is_posted_again_under_its_key() -> None:
    found = only(compare_labor(ctx(), [approved("1")], [], [ledger("1")]))
    assert found.drift.kind is DriftKind.LABOR_MISSING_IN_ERP
    assert found.repair == EntryRepair("time", "1", "1", reset=True)


def test_a_missing_posting_in_a_closed_period_is_escalated() -> None:
    found = only(compare_labor(ctx(closed_periods=frozenset({"2027-01"})), [approved("1")], [], []))
    assert found.drift.disposition is Disposition.ESCALATE
    assert "closed" in found.drift.detail


def test_an_entry_the_pipeline_holds_for_a_person_is_reported_only() -> None:
    row = ledger("1", state="exception", posting_key=None, item_id="tti.101.time-1.v1")
    found = only(compare_labor(ctx(), [approved("1")], [], [row]))
    assert found.drift.disposition is Disposition.REPORT
    assert found.repair is None and "tti.101.time-1.v1" in found.drift.detail


def test_a_posting_of_an_unapproved_entry_is_reversed_by_the_pipeline() -> None:
    found = only(compare_labor(ctx(), [], [posting("1")], [ledger("1")]))
    drift = found.drift
    assert (drift.kind, drift.disposition) == (
        DriftKind.LABOR_POSTED_NOT_APPROVED, Disposition.REPAIR,
    )  # fmt: skip
    assert drift.values == {"psa": None, "erp": "8.000000"}
    assert found.repair == EntryRepair("time", "1", None)


def test_a_posting_of_an_unapproved_entry_the_ledger_does_not_know_is_escalated() -> None:
    found = only(compare_labor(ctx(), [], [posting("1")], []))
    assert found.drift.disposition is Disposition.ESCALATE
    assert "ledger does not hold" in found.drift.detail


def test_an_old_version_posted_is_stale_and_reposted_by_the_pipeline() -> None:
    found = only(
        compare_labor(ctx(), [approved("1", "6", version="2")], [posting("1")], [ledger("1")])
    )
    drift = found.drift
    assert (drift.kind, drift.disposition) == (DriftKind.LABOR_STALE_VERSION, Disposition.REPAIR)
    assert drift.values["psa_version"] == "2" and drift.values["erp_version"] == "1"
    assert found.repair == EntryRepair("time", "1", "2")


@pytest.mark.parametrize(
    "why",
    ["invoiced", "closed", "ledger"],
)
def test_a_stale_posting_pssync_may_not_redo_is_escalated(why: str) -> None:
    entry = approved("1", "6", version="2", invoiced=why == "invoiced")
    rows = [] if why == "ledger" else [ledger("1")]
    closed = frozenset({"2027-01"}) if why == "closed" else frozenset()
    found = only(compare_labor(ctx(closed_periods=closed), [entry], [posting("1")], rows))
    assert found.drift.kind is DriftKind.LABOR_STALE_VERSION
    assert found.drift.disposition is Disposition.ESCALATE


def test_an_invoiced_entry_whose_version_moved_only_by_invoicing_is_no_drift() -> None:
    """Invoicing raises the PSA entry's lock_version; the hours pssync posted still hold."""
    entry = approved("1", version="3", invoiced=True)
    assert compare_labor(ctx(), [entry], [posting("1")], [ledger("1")]) == []
    edited = approved("1", "6", version="3", invoiced=True)  # hours changed too: a real drift
    found = only(compare_labor(ctx(), [edited], [posting("1")], [ledger("1")]))
    assert found.drift.kind is DriftKind.LABOR_STALE_VERSION


def test_two_live_postings_of_one_entry_are_a_duplicate() -> None:
    erp = [posting("1"), posting("1", version="0")]
    found = only(compare_labor(ctx(), [approved("1")], erp, [ledger("1")]))
    assert (found.drift.kind, found.drift.disposition) == (
        DriftKind.LABOR_DUPLICATE_POSTING, Disposition.ESCALATE,
    )  # fmt: skip
    assert found.drift.values == {"psa": "8.000000", "erp": "16.000000"}


def test_a_reversed_posting_is_not_live() -> None:
    old = posting("1", version="0")
    reversal = posting(
        "1", "-8", version="0", key="psa-time-1-v0-reversal", kind="reversal",
        cost="-640.00", reverses=old.key,
    )  # fmt: skip
    live, orphans = live_postings([old, reversal, posting("1")])
    assert [p.key for p in live] == ["psa-time-1-v1"] and orphans == []
    assert compare_labor(ctx(), [approved("1")], [old, reversal, posting("1")], [ledger("1")]) == []


@pytest.mark.parametrize(
    ("erp", "row", "values"),
    [
        (posting("1", "7.5"), ledger("1"), {"psa": "8.000000", "erp": "7.500000"}),
        (
            posting("1", cost="700.00"),
            ledger("1"),
            {"psa": "8.000000", "erp": "8.000000", "ledger_cost": "640.00", "erp_cost": "700.00"},
        ),
    ],
    ids=["hours", "cost"],
)
def test_a_posting_edited_in_the_erp_is_an_amount_mismatch_for_a_person(
    erp: ErpPosting, row: LedgerEntry, values: dict[str, str]
) -> None:
    found = only(compare_labor(ctx(), [approved("1")], [erp], [row]))
    assert (found.drift.kind, found.drift.disposition) == (
        DriftKind.LABOR_AMOUNT_MISMATCH, Disposition.ESCALATE,
    )  # fmt: skip
    assert found.drift.values == values
    assert found.repair == EntryRepair("time", "1", "1", reset=True)


def test_postings_not_from_pssync_make_the_period_totals_differ() -> None:
    manual = posting("x", "3", key="timebill-77")
    found = only(compare_labor(ctx(), [approved("1")], [posting("1"), manual], [ledger("1")]))
    drift = found.drift
    assert (drift.kind, drift.disposition) == (
        DriftKind.LABOR_PERIOD_TOTAL_MISMATCH, Disposition.ESCALATE,
    )  # fmt: skip
    assert drift.keys["period"] == "2027-01" and drift.keys["entry_kind"] == "time"
    assert drift.values == {"psa": None, "erp": "3.000000"}
    assert found.evidence["psa_period_total"] == "8.000000"
    assert found.evidence["erp_period_total"] == "11.000000"
    assert found.evidence["erp_postings"] == "timebill-77"


def test_entries_explain_their_own_period_difference() -> None:
    # A missing entry makes the period differ too, but it is one drift, not two.
    findings = compare_labor(ctx(), [approved("1"), approved("2")], [posting("1")], [ledger("1")])
    assert [f.drift.kind for f in findings] == [DriftKind.LABOR_MISSING_IN_ERP]


def test_expenses_are_compared_by_amount() -> None:
    entry = approved("5", kind="expense", quantity=Decimal("120.50"))
    erp = posting("5", "0", key="psa-expense-5-v1", kind="expense", cost="99.00")
    found = only(compare_labor(ctx(), [entry], [erp], []))
    assert found.drift.kind is DriftKind.LABOR_AMOUNT_MISMATCH
    assert found.drift.values == {"psa": "120.50", "erp": "99.00"}


def test_what_changed_within_the_settle_window_or_before_since_is_left_alone() -> None:
    fresh = approved("1", updated_at=NOW - timedelta(seconds=30))
    assert compare_labor(ctx(settle_s=300), [fresh], [], []) == []
    busy = ledger("2", state="posting", updated_at=NOW - timedelta(seconds=5))
    assert compare_labor(ctx(settle_s=300), [approved("2")], [], [busy]) == []
    assert compare_labor(ctx(since_period="2027-02"), [approved("3")], [], []) == []


def test_the_periods_a_repair_needs_open_are_asked_for() -> None:
    findings = compare_labor(
        ctx(), [approved("1"), approved("2", version="2", work_date=date(2027, 2, 1))],
        [posting("2")], [ledger("2")],
    )  # fmt: skip
    assert periods_to_check(findings) == {"2027-01", "2027-02"}


def test_the_same_drift_has_the_same_fingerprint_whatever_its_values() -> None:
    first = only(compare_labor(ctx(), [approved("1", "8")], [], [])).drift
    later = only(compare_labor(ctx(), [approved("1", "9", version="2")], [], [])).drift
    assert first.fingerprint == later.fingerprint != ""
    assert first.fingerprint == drift_fingerprint(Domain.LABOR_ACTUALS, first.kind, first.keys)
    other = only(compare_labor(ctx(psa_project_id="102"), [approved("1")], [], [])).drift
    assert other.fingerprint != first.fingerprint


# --------------------------------------------------------------------------- decide


def drift(disposition: Disposition, **values: str | None) -> Drift:
    return Drift(
        domain=Domain.LABOR_ACTUALS,
        kind=DriftKind.LABOR_MISSING_IN_ERP,
        keys={"tenant": "acme", "entry": "time:1"},
        values=values or {"psa": "8"},
        owner="ERP",  # type: ignore[arg-type]
        disposition=disposition,
        detail="d",
    )


def test_a_new_drift_is_repaired_escalated_or_reported_by_its_disposition() -> None:
    assert decide(drift(Disposition.REPAIR), None, dry_run=False, max_repairs=3).action is (
        DriftAction.REPAIR
    )
    escalated = decide(drift(Disposition.ESCALATE), None, dry_run=False, max_repairs=3)
    assert (escalated.action, escalated.state, escalated.escalations) == (
        DriftAction.ESCALATE, DriftState.ESCALATED, 1,
    )  # fmt: skip
    assert decide(drift(Disposition.REPORT), None, dry_run=False, max_repairs=3).state is (
        DriftState.OPEN
    )


def test_a_dry_run_only_reports_and_keeps_what_was_known() -> None:
    new = decide(drift(Disposition.REPAIR), None, dry_run=True, max_repairs=3)
    assert (new.action, new.state) == (DriftAction.REPORT, DriftState.OPEN)
    prior = PriorDrift(state=DriftState.ESCALATED, escalations=1)
    known = decide(drift(Disposition.ESCALATE), prior, dry_run=True, max_repairs=3)
    assert (known.action, known.state, known.escalations) == (
        DriftAction.REPORT, DriftState.ESCALATED, 1,
    )  # fmt: skip


def test_an_escalated_drift_found_again_is_not_escalated_twice() -> None:
    prior = PriorDrift(state=DriftState.ESCALATED, escalations=1, values={"psa": "8"})
    again = decide(drift(Disposition.ESCALATE), prior, dry_run=False, max_repairs=3)
    assert (again.action, again.escalations) == (DriftAction.KEEP, 1)


def test_an_acknowledged_drift_comes_back_only_when_its_values_change() -> None:
    prior = PriorDrift(state=DriftState.ACKNOWLEDGED, escalations=1, values={"psa": "8"})
    same = decide(drift(Disposition.ESCALATE, psa="8"), prior, dry_run=False, max_repairs=3)
    assert same.action is DriftAction.KEEP
    moved = decide(drift(Disposition.ESCALATE, psa="9"), prior, dry_run=False, max_repairs=3)
    assert (moved.action, moved.escalations) == (DriftAction.ESCALATE, 2)


def test_a_repair_that_does_not_hold_is_escalated_after_max_repairs() -> None:
    prior = PriorDrift(state=DriftState.REPAIRED, repairs=2)
    third = decide(drift(Disposition.REPAIR), prior, dry_run=False, max_repairs=3)
    assert (third.action, third.repairs) == (DriftAction.REPAIR, 3)
    prior = PriorDrift(state=DriftState.REPAIRED, repairs=3)
    given_up = decide(drift(Disposition.REPAIR), prior, dry_run=False, max_repairs=3)
    assert (given_up.action, given_up.state) == (DriftAction.ESCALATE, DriftState.ESCALATED)
    assert given_up.detail.startswith("repaired 3 times")
    # Once gone, a drift that comes back starts over.
    back = decide(drift(Disposition.REPAIR), PriorDrift(state=DriftState.GONE, repairs=3),
                  dry_run=False, max_repairs=3)  # fmt: skip
    assert back.action is DriftAction.REPAIR


def test_a_kind_belongs_to_its_domain() -> None:
    with pytest.raises(ValueError, match="not a drift of"):
        Drift(
            domain=Domain.PROJECT_MASTER,
            kind=DriftKind.LABOR_MISSING_IN_ERP,
            keys={},
            owner="ERP",  # type: ignore[arg-type]
            disposition=Disposition.REPORT,
        )


def test_the_settings_name_every_domain_and_default_to_the_built_one() -> None:
    from typing import get_args

    from contracts.settings import ReconcileSettings

    [item] = get_args(ReconcileSettings.model_fields["domains"].annotation)
    assert set(get_args(item)) == {d.value for d in Domain}
    assert set(ReconcileSettings().domains) <= {d.value for d in Domain}


@pytest.mark.parametrize(
    "args",
    [["--domain", "nope"], ["--since", "2027-13-01"]],
    ids=["unknown domain", "bad date"],
)
def test_the_cli_refuses_a_bad_option_with_exit_2(args: list[str], tmp_path: object) -> None:
    from typer.testing import CliRunner

    import starter

    result = CliRunner().invoke(
        starter.app,
        ["reconcile", *args],
        env={"PSSYNC_HOME": str(tmp_path), "PSSYNC_TEMPORAL__ADDRESS": "127.0.0.1:9"},
    )
    assert result.exit_code == 2, result.output
