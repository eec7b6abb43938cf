"""A malformed vendor record never escapes a connector as a bare exception (issue 13)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from connectors._vendor_errors import unmappable
from contracts.errors import BusinessRuleViolation, PssyncError, UnmappableRecord


class Thing(BaseModel):
    id: str
    hours: Decimal


@unmappable("PSA", "time_entry")
def thing_from_vendor(raw: dict[str, Any]) -> Thing:
    return Thing(id=str(raw["id"]), hours=Decimal(raw["time_in_minutes"]) / 60)


@unmappable("ERP", "job")
def strict(raw: dict[str, Any]) -> Thing:
    return Thing.model_validate(raw)


def test_a_missing_field_names_the_record_its_id_and_the_field() -> None:
    with pytest.raises(UnmappableRecord) as caught:
        thing_from_vendor({"id": 8590085})
    error = caught.value
    assert (error.record, error.record_id, error.field) == (
        "time_entry",
        "8590085",
        "time_in_minutes",
    )
    assert error.system == "PSA" and error.code == "UNMAPPABLE_RECORD"
    assert isinstance(error, BusinessRuleViolation) and not error.retryable


@pytest.mark.parametrize(
    "raw",
    [
        {"id": 1, "time_in_minutes": "ninety"},  # decimal.InvalidOperation
        {"id": 1, "time_in_minutes": None},  # TypeError
        {"id": 1, "time_in_minutes": [90]},  # TypeError
    ],
)
def test_a_value_of_the_wrong_shape_is_typed_too(raw: dict[str, Any]) -> None:
    with pytest.raises(UnmappableRecord) as caught:
        thing_from_vendor(raw)
    assert caught.value.record_id == "1"


def test_a_validation_error_points_at_the_field() -> None:
    with pytest.raises(UnmappableRecord) as caught:
        strict({"id": "j1", "hours": "many"})
    assert caught.value.field == "hours"


def test_a_well_formed_record_maps_and_other_errors_pass_through() -> None:
    assert thing_from_vendor({"id": "t", "time_in_minutes": 90}).hours == Decimal("1.5")

    @unmappable("CRM", "opportunity")
    def refuses(raw: dict[str, Any]) -> Thing:
        raise PssyncError("not a mapping problem")

    with pytest.raises(PssyncError) as caught:
        refuses({})
    assert not isinstance(caught.value, UnmappableRecord)
