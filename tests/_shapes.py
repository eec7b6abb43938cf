"""Compare a twin's JSON with a vendor's published example by shape: the same keys, the same
JSON types (values are not compared). Used by the twin-shape tests so that the twins cannot
drift from the vendors' formats again.

    assert_same_shape(twin_body, load_fixture("workday", "workers_list.json"),
                      extra={"workerStatus"}, nullable={"primaryWorkEmail"})
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "vendors"
"""`tests/fixtures/vendors/<vendor>/<file>` (sources in each vendor's MANIFEST.md)."""


def load_fixture(vendor: str, name: str) -> Any:
    """A stored vendor payload, parsed (`*.json` files only)."""
    return json.loads((FIXTURES / vendor / name).read_text())


def json_type(value: Any) -> str:
    """The JSON type of a parsed value; integers and fractions are both `number` (vendors
    send `23.0` and `23` for the same field)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__  # not JSON (a Decimal, a date): always a mismatch


def shape_problems(
    actual: Any,
    expected: Any,
    *,
    extra: Collection[str] | bool = (),
    missing: Collection[str] = (),
    nullable: Collection[str] | bool = (),
    path: str = "$",
) -> list[str]:
    """Where `actual` differs in shape from `expected` (empty when they agree).

    - An object must have every key of the expected object except those in `missing`, and no
      other key except those in `extra` (`True`: any further key).
    - Types must match; `null` is accepted for a key named in `nullable` (`True`: for any
      key), and an expected `null` accepts any type (the example does not say).
    - An array's items are compared with the expected array's first item.
    Key names in `extra`, `missing` and `nullable` apply at any depth.
    """
    options: dict[str, Any] = {"extra": extra, "missing": missing, "nullable": nullable}
    if expected is None:
        return []
    got, want = json_type(actual), json_type(expected)
    if got != want:
        key = path.rsplit(".", 1)[-1]
        if got == "null" and (nullable is True or key in nullable):  # type: ignore[operator]
            return []
        return [f"{path}: {got}, expected {want}"]
    if want == "object":
        problems = [
            f"{path}.{key}: missing" for key in expected if key not in actual and key not in missing
        ]
        if extra is not True:
            problems += [
                f"{path}.{key}: not in the vendor's shape"
                for key in actual
                if key not in expected and key not in extra  # type: ignore[operator]
            ]
        for key in expected:
            if key in actual:
                problems += shape_problems(
                    actual[key], expected[key], path=f"{path}.{key}", **options
                )
        return problems
    if want == "array" and expected:
        problems = []
        for n, item in enumerate(actual):
            problems += shape_problems(item, expected[0], path=f"{path}[{n}]", **options)
        return problems
    return []


def assert_same_shape(actual: Any, expected: Any, **options: Any) -> None:
    """Fail with every difference `shape_problems` finds."""
    problems = shape_problems(actual, expected, **options)
    assert not problems, "shape differs from the vendor's:\n  " + "\n  ".join(problems)
