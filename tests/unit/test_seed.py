"""The seeded firm: reproducible, realistic, internally consistent."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest

from sandbox._ids import is_salesforce_id
from sandbox.seed import MANAGER_ROLES, ROLES, Firm, build_firm

TODAY = date(2025, 6, 15)


@pytest.fixture(scope="module")
def firm() -> Firm:
    return build_firm(7, today=TODAY)


def test_same_seed_same_firm() -> None:
    assert build_firm(7, today=TODAY) == build_firm(7, today=TODAY)
    assert build_firm(3, workers=40, today=TODAY) == build_firm(3, workers=40, today=TODAY)


def test_different_seed_different_firm() -> None:
    a, b = build_firm(7, today=TODAY), build_firm(8, today=TODAY)
    assert a != b
    assert [w.name for w in a.workers] != [w.name for w in b.workers]
    assert [o.id for o in a.opportunities] != [o.id for o in b.opportunities]


def test_today_defaults_to_the_clock() -> None:
    assert build_firm(7, workers=20).today == date.today()


def test_too_few_workers_is_refused() -> None:
    with pytest.raises(ValueError):
        build_firm(7, workers=3, today=TODAY)


def test_practices_and_cost_centers(firm: Firm) -> None:
    assert len(firm.practices) == 5
    active = [c for c in firm.cost_centers if c.active]
    inactive = [c for c in firm.cost_centers if not c.active]
    assert len(active) == 5 and len(inactive) == 1
    assert {p.cost_center for p in firm.practices} == {c.id for c in active}


def test_workers(firm: Firm) -> None:
    assert len(firm.workers) == 200
    assert len(build_firm(7, workers=57, today=TODAY).workers) == 57
    roles = Counter(w.role for w in firm.workers)
    assert set(roles) == set(ROLES)
    assert roles["Partner"] < roles["Manager"] < roles["Senior Consultant"]
    cost_centers = {c.id for c in firm.cost_centers if c.active}
    practices = {p.name: p.cost_center for p in firm.practices}
    for w in firm.workers:
        assert w.cost_center in cost_centers and practices[w.practice] == w.cost_center
        assert w.cost_rate == w.cost_rate.quantize(Decimal("0.01")) and w.cost_rate > 0
        assert w.email.endswith(".example") and "@" in w.email
        assert w.location in firm.locations
        if w.termination_date:
            assert w.hire_date <= w.termination_date
            assert w.last_day_worked is not None and w.last_day_worked <= w.termination_date
            assert w.termination_entered_at is not None
            assert w.termination_entered_at.date() <= TODAY
    # Seniority costs more, on average.
    mean = {r: sum(w.cost_rate for w in firm.workers if w.role == r) / roles[r] for r in ROLES}
    assert [mean[r] for r in ROLES] == sorted(mean.values(), reverse=True)


def test_life_events(firm: Firm) -> None:
    statuses = Counter(w.status for w in firm.workers)
    assert statuses["terminated"] >= 3 and statuses["leave"] >= 2
    assert all(
        w.termination_date and w.termination_date < TODAY
        for w in firm.workers
        if w.status == "terminated"
    )
    future_hires = [w for w in firm.workers if w.hire_date > TODAY]
    assert 1 <= len(future_hires) <= 5
    assert all(w.hire_date <= TODAY + timedelta(days=60) for w in future_hires)
    pending = [
        w
        for w in firm.workers
        if w.status == "active" and w.termination_date and w.termination_date > TODAY
    ]
    assert len(pending) == 1
    assert pending[0].termination_entered_at is not None


def test_ids_are_unique_and_vendor_shaped(firm: Firm) -> None:
    def unique(values: list[str]) -> None:
        assert len(values) == len(set(values))

    unique([w.id for w in firm.workers])
    unique([w.wid for w in firm.workers])
    unique([w.email for w in firm.workers])
    unique([c.id for c in firm.customers])
    unique([o.id for o in firm.opportunities])
    unique([line.id for o in firm.opportunities for line in o.lines])
    for prefix, ids in (
        ("001", [c.id for c in firm.customers]),
        ("006", [o.id for o in firm.opportunities]),
        ("00k", [line.id for o in firm.opportunities for line in o.lines]),
    ):
        for value in ids:
            assert len(value) == 18 and value.startswith(prefix) and is_salesforce_id(value)
    assert all(len(w.wid) == 32 and int(w.wid, 16) >= 0 for w in firm.workers)


def test_rate_cards(firm: Firm) -> None:
    cards = {c.id: c for c in firm.rate_cards}
    assert {c.currency for c in cards.values()} == {"USD", "EUR"}
    assert any(c.public_sector for c in cards.values())
    new_year = date(TODAY.year, 1, 1)
    for card in cards.values():
        for role in ROLES:
            old = card.rate_for(role, new_year - timedelta(days=1))
            new = card.rate_for(role, new_year)
            assert old is not None and new is not None and new > old
    std, pub = cards["RC-STD-USD"], cards["RC-PUB-USD"]
    assert all(pub.rate_for(r, TODAY) < std.rate_for(r, TODAY) for r in ROLES)  # type: ignore[operator]


def test_customers(firm: Firm) -> None:
    assert 18 <= len(firm.customers) <= 25
    assert sum(c.credit_hold for c in firm.customers) == 1
    assert {c.currency for c in firm.customers} == {"USD", "EUR"}


def test_opportunities_are_consistent(firm: Firm) -> None:
    assert 25 <= len(firm.opportunities) <= 35
    customers = {c.id: c for c in firm.customers}
    cards = {c.id: c for c in firm.rate_cards}
    workers = {w.id: w for w in firm.workers}
    practices = {p.name: p for p in firm.practices}
    types = Counter()
    for opp in firm.opportunities:
        assert opp.lines
        assert opp.amount == sum(line.total_price for line in opp.lines)
        assert opp.account_id in customers
        assert opp.close_date > TODAY
        assert opp.stage not in ("Closed Won", "Closed Lost")
        card = cards[opp.rate_card_id]
        assert card.currency == opp.currency == customers[opp.account_id].currency
        assert practices[opp.practice].cost_center == opp.cost_center
        manager = workers[opp.delivery_manager]
        assert manager.role in MANAGER_ROLES and manager.practice == opp.practice
        assert manager.status == "active" and manager.termination_date is None
        for line in opp.lines:
            types[line.line_type] += 1
            assert line.total_price == (line.quantity * line.unit_price).quantize(Decimal("0.01"))
            if line.line_type == "time_and_materials":
                assert line.role in ROLES
                assert line.unit_price == card.rate_for(line.role, opp.close_date)
            else:
                assert line.quantity == 1
            if line.line_type == "milestone":
                assert line.service_date is not None and line.service_date > opp.close_date
    assert set(types) == {"time_and_materials", "fixed_fee", "milestone"}


def test_periods(firm: Firm) -> None:
    periods = firm.periods
    assert len(periods) == 10
    for before, after in pairwise(periods):
        assert after.start == before.end + timedelta(days=1)
    current = next(p for p in periods if p.start <= TODAY <= p.end)
    index = periods.index(current)
    previous, nexts = periods[index - 1], periods[index + 1 :]
    assert current.period == "2025-06" and not current.closed and not previous.closed
    assert len(nexts) == 3 and not any(p.closed for p in nexts)
    assert all(p.closed for p in periods[: index - 1]) and len(periods[: index - 1]) == 5


def test_periods_across_a_year_boundary() -> None:
    firm = build_firm(7, workers=20, today=date(2026, 1, 10))
    assert [p.period for p in firm.periods][:2] == ["2025-07", "2025-08"]
    assert [p.period for p in firm.periods if not p.closed] == [
        "2025-12",
        "2026-01",
        "2026-02",
        "2026-03",
        "2026-04",
    ]
