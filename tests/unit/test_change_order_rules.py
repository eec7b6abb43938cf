"""Change-order impact and approval policy; assignment-sync versions and labor forecast.
Pure functions: no Temporal, no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from contracts import Money, System
from contracts.v1 import ChangeOrder, ChangeOrderLine
from contracts.v1.assignment_sync import (
    AssignmentChange,
    AssignmentFacts,
    AssignmentSyncState,
    SyncSettings,
    apply_change,
    apply_reread,
    hours_by_period,
    labor_forecast,
)
from contracts.v1.change_orders import (
    DELIVERY_MANAGER,
    FINANCE_CONTROLLER,
    ApprovalPolicy,
    compute_impact,
    required_approvals,
)
from tests._builders import rate, rate_card

CARD = rate_card(
    rate("Consultant", Money(150, "USD"), date(2026, 1, 1)),
    rate("Manager", Money(200, "USD"), date(2026, 1, 1), date(2026, 6, 30)),
    rate("Manager", Money(220, "USD"), date(2026, 7, 1)),
    external_id="RC",
    name="Std",
)


def order(budget: int, *lines: tuple[str, int, date | None]) -> ChangeOrder:
    return ChangeOrder(
        external_id="CO1",
        project_id="P1",
        title="t",
        budget_delta=Money(budget, "USD"),
        lines=[ChangeOrderLine(role=r, hours_delta=Decimal(h), start_date=d) for r, h, d in lines],
        requested_by="x",
        submitted_at=datetime(2026, 8, 1, tzinfo=UTC),
        source_system=System.PSA,
    )


def test_impact_prices_lines_at_the_rate_card_on_their_dates() -> None:
    impact = compute_impact(
        order(
            9000,
            ("Consultant", 20, date(2026, 3, 1)),
            ("Manager", 10, date(2026, 3, 1)),
            ("Manager", 10, None),
        ),
        CARD,
        standard_cost_rates={"Consultant": Money(90, "USD")},
    )
    # 20 x 150 + 10 x 200 (March rate) + 10 x 220 (submitted in August)
    assert impact.rate_card_value == Money(7200, "USD")
    # 20 x 90 + managers at 60 % of their bill rate: 10 x 120 + 10 x 132
    assert impact.cost_delta == Money(4320, "USD")
    assert impact.projected_margin == Decimal("0.4")
    assert impact.hours_delta == 40 and impact.budget_delta == Money(9000, "USD")


def test_delivery_manager_alone_for_a_small_healthy_change() -> None:
    impact = compute_impact(order(5000, ("Consultant", 20, None)), CARD)
    assert required_approvals(impact, ApprovalPolicy()).roles == [DELIVERY_MANAGER]


def test_finance_above_threshold_below_floor_or_unpriced() -> None:
    policy = ApprovalPolicy(finance_threshold=Decimal(10000), margin_floor=Decimal("0.3"))
    big = compute_impact(order(-12000, ("Consultant", -80, None)), CARD)
    assert required_approvals(big, policy).roles == [DELIVERY_MANAGER, FINANCE_CONTROLLER]
    thin = compute_impact(
        order(3000, ("Consultant", 20, None)),
        CARD,
        standard_cost_rates={"Consultant": Money(120, "USD")},
    )
    assert thin.projected_margin == Decimal("0.2")
    assert FINANCE_CONTROLLER in required_approvals(thin, policy).roles
    unknown = compute_impact(order(1000, ("Architect", 5, None)), CARD)
    assert unknown.unpriced_roles == ["Architect"] and unknown.projected_margin is None
    assert "Architect" in required_approvals(unknown, policy).reasons[0]


def facts(version: int, minutes: int = 600) -> AssignmentFacts:
    return AssignmentFacts(
        assignment_id="A",
        version=version,
        role="Consultant",
        worker_id="W",
        start_date=date(2026, 3, 30),
        end_date=date(2026, 4, 3),
        allocated_minutes=minutes,
    )


def test_stale_and_duplicate_versions_are_dropped_and_deletes_are_tombstones() -> None:
    state = AssignmentSyncState(psa_tenant="t", psa_project_id="P")
    for v in (3, 1, 2, 3):
        apply_change(
            state, AssignmentChange(assignment_id="A", version=v, assignment=facts(v, v * 60))
        )
    assert state.assignments["A"].allocated_minutes == 180
    assert (state.changes_applied, state.changes_dropped) == (1, 3)
    apply_change(state, AssignmentChange(assignment_id="A", version=4, deleted=True))
    apply_change(state, AssignmentChange(assignment_id="A", version=3, assignment=facts(3)))
    assert state.assignments == {} and state.deleted == {"A": 4}
    # a thin change, then the PSA answers with an older record: the tombstone wins
    apply_change(state, AssignmentChange(assignment_id="A", version=5))
    apply_reread(state, "A", 5, facts(4))
    assert state.assignments == {}
    apply_change(state, AssignmentChange(assignment_id="A", version=6))
    apply_reread(state, "A", 6, facts(6))
    assert state.assignments["A"].version == 6 and state.reread == {}


def test_hours_spread_over_weekdays_per_month_and_costed() -> None:
    # Mon 30 Mar .. Fri 3 Apr: 2 weekdays in March, 3 in April
    assert hours_by_period(facts(1, 600)) == {"2026-03": Decimal(4), "2026-04": Decimal(6)}
    settings = SyncSettings(standard_cost_rates={"Consultant": Money(80, "USD")})
    demand = facts(1, 600).model_copy(update={"assignment_id": "B", "worker_id": None})
    forecast, unpriced = labor_forecast(
        [facts(1, 600), demand], {"W": Money(100, "USD")}, settings, periods=["2026-02"]
    )
    assert [(f.period, f.hours, f.labor_cost.amount) for f in forecast] == [
        ("2026-02", Decimal("0.00"), Decimal("0.00")),
        ("2026-03", Decimal("8.00"), Decimal("720.00")),
        ("2026-04", Decimal("12.00"), Decimal("1080.00")),
    ]
    assert unpriced == []
    _, unpriced = labor_forecast([demand], {}, SyncSettings())
    assert unpriced == ["B"]
