"""Contracts: valid and invalid input, money rules, IDs, the ownership map. No I/O."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import (
    BusinessRuleViolation,
    CurrencyMismatchError,
    Money,
    OwnershipViolation,
    System,
    check_write,
    is_ulid,
    may_write,
    mint_ulid,
    owner_of,
)
from contracts.errors import ErrorKind, RateLimitedError, TransientError
from contracts.ids import ulid_timestamp_ms
from contracts.schema_export import export_schemas
from contracts.v1 import (
    MODELS,
    BillingRule,
    CostPosting,
    Project,
    TimeEntry,
    Worker,
)
from tests._builders import rate, rate_card


def _fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in err["loc"]) for err in exc.errors()}


# --------------------------------------------------------------------------- money


def test_cross_currency_addition_is_refused_with_a_clear_error() -> None:
    with pytest.raises(CurrencyMismatchError, match="cannot add USD and EUR"):
        Money(10, "USD") + Money(5, "EUR")


def test_cross_currency_comparison_and_subtraction_refused() -> None:
    with pytest.raises(CurrencyMismatchError):
        Money(10, "USD") - Money(5, "EUR")
    with pytest.raises(CurrencyMismatchError):
        assert Money(10, "USD") < Money(5, "EUR")


def test_floats_are_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as exc:
        Money(10.5, "USD")
    assert _fields(exc.value) == {"amount"}
    with pytest.raises(TypeError):
        Money(10, "USD") * 1.5


def test_unknown_currency_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        Money(1, "XXY")
    assert _fields(exc.value) == {"currency"}


def test_money_arithmetic_and_minor_units() -> None:
    assert Money("19.99", "usd") + Money(1, "USD") == Money("20.99", "USD")
    assert Money(150, "USD") * Decimal("7.5") == Money("1125.0", "USD")
    assert Money.from_minor(12345, "USD") == Money("123.45", "USD")
    assert Money.from_minor(500, "JPY") == Money(500, "JPY")
    assert Money("10.005", "USD").to_minor() == 1001  # half-up at the cent
    assert sum([Money(1, "EUR"), Money(2, "EUR")]) == Money(3, "EUR")


@given(
    st.lists(st.decimals(min_value=-(10**9), max_value=10**9, places=2), min_size=1, max_size=20)
)
def test_money_sum_is_exact(amounts: list[Decimal]) -> None:
    total = Money.zero("USD")
    for amount in amounts:
        total = total + Money(amount, "USD")
    assert total.amount == sum(amounts)
    assert Money.from_minor(total.to_minor(), "USD") == total.rounded()


def test_money_round_trips_through_json() -> None:
    m = Money("1234.56", "EUR")
    assert Money.model_validate_json(m.model_dump_json()) == m


# --------------------------------------------------------------------------- entities


def _entry(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "external_id": "te-1",
        "project_id": "p-1",
        "worker_id": "w-1",
        "date_performed": "2026-11-02",
        "minutes": 90,
        "source_system": "PSA",
    }
    data.update(overrides)
    return data


def test_time_entry_valid() -> None:
    entry = TimeEntry.model_validate(_entry())
    assert entry.hours == Decimal("1.5")
    assert entry.date_performed == date(2026, 11, 2)


def test_time_entry_negative_minutes_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as exc:
        TimeEntry.model_validate(_entry(minutes=-30))
    assert _fields(exc.value) == {"minutes"}


def test_time_entry_unparseable_date_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as exc:
        TimeEntry.model_validate(_entry(date_performed="02/30/2026"))
    assert _fields(exc.value) == {"date_performed"}


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        TimeEntry.model_validate(_entry(time_in_minutes=30))
    assert _fields(exc.value) == {"time_in_minutes"}


def test_project_refuses_mixed_currencies() -> None:
    with pytest.raises(ValidationError, match=r"wbs\[0\].budget is in EUR"):
        Project(
            name="P",
            customer_id="c",
            billing_rule=BillingRule.TIME_AND_MATERIALS,
            contract_value=Money(1000, "USD"),
            start_date=date(2026, 1, 1),
            cost_center="CC-1",
            source_system=System.PSA,
            wbs=[{"code": "1", "name": "Build", "budget": Money(10, "EUR")}],
        )


def test_rate_card_picks_the_rate_effective_on_the_day() -> None:
    card = rate_card(
        rate("Consultant", Money(150, "USD"), date(2025, 1, 1), date(2025, 12, 31)),
        rate("Consultant", Money(165, "USD"), date(2026, 1, 1)),
        external_id="RC",
        name="Standard",
    )
    assert card.rate_for("Consultant", date(2025, 6, 1)) == Money(150, "USD")
    assert card.rate_for("Consultant", date(2026, 6, 1)) == Money(165, "USD")
    assert card.rate_for("Partner", date(2026, 6, 1)) is None


def test_worker_active_on_respects_last_day() -> None:
    worker = Worker(
        external_id="W-1",
        name="A",
        hire_date=date(2024, 1, 1),
        termination_date=date(2026, 11, 30),
        last_day_worked=date(2026, 11, 20),
        cost_center="CC-1",
        source_system=System.HCM,
    )
    assert worker.active_on(date(2026, 11, 20))
    assert not worker.active_on(date(2026, 11, 21))
    assert not worker.active_on(date(2023, 12, 31))
    with pytest.raises(ValidationError, match="last_day_worked is after termination_date"):
        Worker(
            external_id="W-2",
            name="B",
            hire_date=date(2024, 1, 1),
            termination_date=date(2026, 1, 1),
            last_day_worked=date(2026, 2, 1),
            cost_center="CC-1",
            source_system=System.HCM,
        )


def test_reversal_must_name_what_it_reverses() -> None:
    with pytest.raises(ValidationError, match="reversal must name"):
        CostPosting(
            idempotency_key="k",
            kind="reversal",
            project_id="p",
            source_entry_id="te",
            posting_date=date(2026, 11, 2),
            period="2026-11",
            cost_amount=Money(-100, "USD"),
            cost_center="CC",
            source_system=System.PSSYNC,
        )


# --------------------------------------------------------------------------- ids


def test_ulid_mint_is_deterministic_and_sortable() -> None:
    a = mint_ulid(1_700_000_000_000, 42)
    assert a == mint_ulid(1_700_000_000_000, 42)
    assert is_ulid(a) and len(a) == 26
    assert ulid_timestamp_ms(a) == 1_700_000_000_000
    assert mint_ulid(1_700_000_000_001, 0) > mint_ulid(1_700_000_000_000, 2**80 - 1)
    with pytest.raises(ValueError):
        mint_ulid(-1, 0)


def test_enterprise_id_must_be_a_ulid() -> None:
    with pytest.raises(ValidationError) as exc:
        TimeEntry.model_validate(_entry(enterprise_id="not-a-ulid"))
    assert _fields(exc.value) == {"enterprise_id"}


# --------------------------------------------------------------------------- ownership, errors


def test_ownership_map_answers_who_may_write() -> None:
    assert may_write(System.HCM, "Worker", "termination_date")
    assert not may_write(System.PSA, "Worker", "termination_date")
    assert owner_of("Project", "cost_center") is System.ERP
    assert may_write("PSA", "Project", "wbs")
    assert may_write(System.PSSYNC, "Opportunity", "enterprise_id")
    assert not may_write(System.CRM, "Opportunity", "enterprise_id")


def test_check_write_raises_a_business_error_naming_field_and_owner() -> None:
    with pytest.raises(OwnershipViolation) as exc:
        check_write(System.PSA, "Worker", ["role", "last_day_worked"])
    assert isinstance(exc.value, BusinessRuleViolation)
    assert exc.value.field == "role"
    assert exc.value.owner == "HCM"
    assert exc.value.code == "FIELD_NOT_OWNED"


def test_error_taxonomy_retryability() -> None:
    assert TransientError("x").retryable
    assert RateLimitedError("x", retry_after_s=2).info().retry_after_s == 2
    err = BusinessRuleViolation("PERIOD_CLOSED", "period 2026-01 is closed", field="tranDate")
    assert not err.retryable
    info = err.info()
    assert (info.kind, info.code, info.field) == (
        ErrorKind.BUSINESS_RULE,
        "PERIOD_CLOSED",
        "tranDate",
    )


# --------------------------------------------------------------------------- schema export


def test_export_writes_one_json_schema_per_model(tmp_path: Path) -> None:
    paths = export_schemas(tmp_path)
    assert {p.name for p in paths} == {f"{name}.schema.json" for name in MODELS}
    schema = json.loads((tmp_path / "TimeEntry.schema.json").read_text())
    assert schema["properties"]["minutes"]["minimum"] == 0
    assert "date_performed" in schema["required"]
