"""Forecast alignment, compared: given one project's PSA assignments, what its assignment sync
knows and the ERP forecast per period, each kind of drift is found with its keys, both sides'
values and its disposition, the sync is told exactly what it missed — and nothing is found
where the systems agree. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from activities.reconciliation.forecast_rules import (
    ErpForecast,
    ForecastContext,
    ForecastSide,
    SyncNudge,
    SyncView,
    compare_forecast,
    periods_to_read,
)
from contracts.money import Money
from contracts.v1.assignment_sync import AssignmentFacts, SyncSettings, labor_forecast
from contracts.v1.reconciliation import Disposition, Domain, DriftKind

NOW = datetime(2027, 2, 10, 3, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=2)
RATES = {"W-1": Money("80.00", "USD"), "W-2": Money("100.00", "USD")}


def assignment(
    aid: str,
    worker: str = "W-1",
    *,
    version: int = 1,
    hours: int = 40,
    start: date = date(2027, 3, 1),
    end: date = date(2027, 3, 5),
) -> AssignmentFacts:
    return AssignmentFacts(
        assignment_id=aid,
        version=version,
        role="Consultant",
        worker_id=worker,
        start_date=start,
        end_date=end,
        allocated_minutes=hours * 60,
    )


def erp_as_synced(
    assignments: list[AssignmentFacts], **override: object
) -> dict[str, ErpForecast | None]:
    """The ERP forecast exactly as the sync writes it for these assignments."""
    wanted, _ = labor_forecast(assignments, dict(RATES), SyncSettings())
    found: dict[str, ErpForecast | None] = {}
    for f in wanted:
        values: dict[str, object] = {
            "period": f.period,
            "hours": f.hours,
            "labor_cost": f.labor_cost.amount,
            "currency": "USD",
        }
        found[f.period] = ErpForecast(**(values | override))  # type: ignore[arg-type]
    return found


def side(
    assignments: list[AssignmentFacts],
    erp: Mapping[str, ErpForecast | None] | None = None,
    *,
    sync: SyncView | None = None,
    synced: bool = True,
    **extra: object,
) -> ForecastSide:
    if sync is None and synced:
        sync = SyncView(
            assignments={a.assignment_id: a.version for a in assignments},
            periods=tuple(sorted({p for a in assignments for p in erp_as_synced([a])})),
        )
    values: dict[str, object] = {
        "psa_project_id": "101",
        "assignments": assignments,
        "rates": dict(RATES),
        "erp": erp_as_synced(assignments) if erp is None else erp,
        "sync": sync,
        "changed_at": LONG_AGO,
    }
    return ForecastSide(**(values | extra))  # type: ignore[arg-type]


def ctx(**changes: object) -> ForecastContext:
    values: dict[str, object] = {"tenant": "acme", "now": NOW}
    return ForecastContext(**(values | changes))  # type: ignore[arg-type]


def kinds(findings: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(f.drift.kind.value, f.drift.disposition.value) for f in findings]


def test_nothing_is_found_where_the_forecast_matches_the_staffing() -> None:
    a = [assignment("A1"), assignment("A2", "W-2", hours=60, end=date(2027, 4, 9))]
    assert compare_forecast(ctx(), side(a)) == []


def test_a_staffed_period_without_a_forecast_is_missing_and_repaired() -> None:
    a = [assignment("A1")]
    [found] = compare_forecast(ctx(), side(a, {"2027-03": None}, synced=False))
    drift = found.drift
    assert (drift.domain, drift.kind, drift.disposition) == (
        Domain.FORECAST_ALIGNMENT,
        DriftKind.FORECAST_MISSING,
        Disposition.REPAIR,
    )
    assert drift.keys == {"tenant": "acme", "psa_project_id": "101", "period": "2027-03"}
    assert drift.values["psa"] == "40.00" and drift.values["erp"] is None
    assert drift.values["psa_cost"] == "3200.00"
    # No sync at all: it is started with every assignment (thin: it re-reads them).
    assert found.repair == SyncNudge("101", (("A1", 1),))


def test_a_forecast_the_sync_fell_behind_on_is_stale_and_the_sync_told_what_it_missed() -> None:
    old = [assignment("A1"), assignment("A2", "W-2")]
    now = [assignment("A1", version=2, hours=20)]  # A1 edited, A2 deleted: no webhook
    sync = SyncView(assignments={"A1": 1, "A2": 1}, periods=("2027-03",))
    [found] = compare_forecast(ctx(), side(now, erp_as_synced(old), sync=sync))
    assert (found.drift.kind, found.drift.disposition) == (
        DriftKind.FORECAST_STALE,
        Disposition.REPAIR,
    )
    assert found.drift.values == {
        "psa": "20.00",
        "erp": "80.00",
        "psa_cost": "1600.00",
        "erp_cost": "7200.00",
    }
    assert found.repair == SyncNudge("101", (("A1", 2), ("A2", 2)))
    assert "missed a staffing change" in found.drift.detail


def test_a_period_whose_staffing_all_went_must_read_zero() -> None:
    gone = assignment("A9", start=date(2027, 5, 3), end=date(2027, 5, 7))
    stays = assignment("A1")
    sync = SyncView(assignments={"A1": 1, "A9": 1}, periods=("2027-03", "2027-05"))
    erp = erp_as_synced([stays]) | erp_as_synced([gone])
    findings = compare_forecast(ctx(), side([stays], erp, sync=sync))
    assert [(f.drift.kind, f.drift.period, f.drift.values["psa"]) for f in findings] == [
        (DriftKind.FORECAST_STALE, "2027-05", "0.00")
    ]
    assert periods_to_read([stays], sync) == ["2027-03", "2027-05"]


def test_a_forecast_edited_by_hand_is_a_mismatch_and_the_sync_writes_it_again() -> None:
    a = [assignment("A1", version=3)]
    erp = erp_as_synced(a, hours=Decimal("32.00"))
    [found] = compare_forecast(ctx(), side(a, erp))
    assert (found.drift.kind, found.drift.disposition) == (
        DriftKind.FORECAST_HOURS_MISMATCH,
        Disposition.REPAIR,
    )
    assert found.drift.owner.value == "ERP"
    # The sync knows the staffing: one thin change at the next version makes it write again.
    assert found.repair == SyncNudge("101", (("A1", 4),))
    cost_only = erp_as_synced(a, labor_cost=Decimal("1.00"))
    assert kinds(compare_forecast(ctx(), side(a, cost_only))) == [
        ("forecast_hours_mismatch", "repair")
    ]


def test_an_approved_or_locked_forecast_is_never_overwritten_but_escalated() -> None:
    a = [assignment("A1", version=2)]
    for status in ("approved", "locked"):
        erp = erp_as_synced(a, hours=Decimal("10.00"), status=status)
        [found] = compare_forecast(ctx(), side(a, erp))
        assert (found.drift.kind, found.drift.disposition) == (
            DriftKind.FORECAST_HOURS_MISMATCH,
            Disposition.ESCALATE,
        )
        assert found.repair is None and status in found.drift.detail
    behind = SyncView(assignments={"A1": 1}, periods=("2027-03",))
    locked = erp_as_synced(a, hours=Decimal("10.00"), status="locked")
    assert kinds(compare_forecast(ctx(), side(a, locked, sync=behind))) == [
        ("forecast_hours_mismatch", "escalate")  # one drift while the sync catches up
    ]


def test_nothing_to_recompute_from_is_escalated() -> None:
    erp = {"2027-03": ErpForecast("2027-03", Decimal("8"), Decimal("640"), "USD")}
    empty = SyncView(assignments={}, periods=("2027-03",))
    assert kinds(compare_forecast(ctx(), side([], erp, sync=empty))) == [
        ("forecast_hours_mismatch", "escalate")
    ]


def test_staffing_beyond_the_budget_is_a_variance_for_a_person() -> None:
    a = [assignment("A1", hours=100)]  # 100 h x 80 = 8,000
    assert compare_forecast(ctx(), side(a, budget=Money("7500", "USD"))) == []  # within 10 %
    [found] = compare_forecast(ctx(), side(a, budget=Money("7000", "USD")))
    drift = found.drift
    assert (drift.kind, drift.disposition) == (
        DriftKind.FORECAST_ASSIGNMENT_BUDGET_VARIANCE,
        Disposition.ESCALATE,
    )
    assert drift.keys == {"tenant": "acme", "psa_project_id": "101"}
    assert drift.values == {"psa": "8000.00", "erp": "7000"}
    assert "14.3% over" in drift.detail and drift.owner.value == "PSA"
    strict = ctx(budget_variance=Decimal("0"))
    assert kinds(compare_forecast(strict, side(a, budget=Money("7500", "USD")))) == [
        ("assignment_budget_variance", "escalate")
    ]


def test_fresh_changes_and_pending_syncs_are_left_for_the_next_run() -> None:
    a = [assignment("A1")]
    missing = {"2027-03": None}
    fresh = side(a, missing, synced=False, changed_at=NOW - timedelta(seconds=30))
    assert compare_forecast(ctx(), fresh) == []
    assert kinds(compare_forecast(ctx(settle_s=10), fresh)) == [("forecast_missing", "repair")]
    pending = SyncView(assignments={}, periods=(), pending=True)
    assert compare_forecast(ctx(), side(a, missing, sync=pending)) == []


def test_periods_before_since_are_not_compared_and_the_fingerprint_ignores_values() -> None:
    a = [assignment("A1", hours=10)]
    assert (
        compare_forecast(ctx(since_period="2027-04"), side(a, {"2027-03": None}, synced=False))
        == []
    )
    one = compare_forecast(ctx(), side(a, erp_as_synced(a, hours=Decimal("1"))))
    two = compare_forecast(ctx(), side(a, erp_as_synced(a, hours=Decimal("2"))))
    assert one[0].drift.fingerprint == two[0].drift.fingerprint
