"""The unresolved items page (the console's inbox): filters, LIMIT/OFFSET, totals, per cause."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from store import ExceptionFilter, NewExceptionItem, Store

START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def seeded(engine: Engine) -> Store:
    """40 items, one a minute from START: causes A (25) and B (15); owners, projects and a
    resolved and an escalated one among them."""
    moment = [START]
    store = Store(engine, clock=lambda: moment[0])
    for n in range(40):
        moment[0] = START + timedelta(minutes=n)
        context: dict[str, Any] = {"psa_project_id": "P-1"} if n % 4 == 0 else {}
        if n == 39:
            context = {"enterprise_id": "E-7"}
        store.open_exception(
            NewExceptionItem(
                id=f"i-{n:02}",
                workflow_id=f"time-to-invoice/acme/P-{n}",
                process="time_to_invoice" if n < 30 else "assignment_sync",
                cause_code="A" if n < 25 else "B",
                detail="d",
                owner="finance" if n % 2 else "delivery_manager",
                context=context,
            )
        )
    moment[0] = START + timedelta(hours=2)
    store.resolve_exception("i-00", {"action": "skip"}, "ops")
    store.escalate_exception("i-01", owner="ops")
    return store


def test_a_page_with_its_totals_and_counts_per_cause(engine: Engine) -> None:
    store = seeded(engine)
    everything = ExceptionFilter()
    first = store.unresolved_exception_page(everything, limit=10)
    assert [r.id for r in first.rows] == [f"i-{n:02}" for n in range(1, 11)]  # oldest first
    assert first.rows[0].status == "escalated"  # escalated items are still waiting
    assert first.total == 39 and first.by_cause == {"A": 24, "B": 15}
    last = store.unresolved_exception_page(everything, limit=10, offset=30)
    assert [r.id for r in last.rows] == [f"i-{n:02}" for n in range(31, 40)]
    beyond = store.unresolved_exception_page(everything, limit=10, offset=100)
    assert beyond.rows == [] and beyond.total == 39

    only_b = store.unresolved_exception_page(ExceptionFilter(cause_code="B"), limit=50)
    assert only_b.total == 15 and {r.cause_code for r in only_b.rows} == {"B"}
    assert only_b.by_cause == {"A": 24, "B": 15}  # counts ignore the cause filter

    finance = store.unresolved_exception_page(ExceptionFilter(owner="finance"))
    assert finance.total == 19  # 20 odd ones; i-01 was handed to ops
    sync = store.unresolved_exception_page(ExceptionFilter(process="assignment_sync"))
    assert sync.total == 10 and sync.by_cause == {"B": 10}
    project = store.unresolved_exception_page(ExceptionFilter(project="P-1"))
    assert [r.id for r in project.rows] == [f"i-{n:02}" for n in range(4, 40, 4)]
    assert [r.id for r in store.unresolved_exceptions(ExceptionFilter(project="E-7"))] == ["i-39"]
    old = ExceptionFilter(opened_before=START + timedelta(minutes=5))
    assert [r.id for r in store.unresolved_exceptions(old)] == [f"i-{n:02}" for n in range(1, 6)]
    both = ExceptionFilter(cause_code="A", owner="finance", project="P-1")
    assert store.unresolved_exception_page(both).total == 0


def test_bad_paging_is_refused(engine: Engine) -> None:
    store = Store(engine)
    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}):
        with pytest.raises(ValueError):
            store.unresolved_exception_page(ExceptionFilter(), **bad)
    with pytest.raises(ValueError, match="naive"):
        store.unresolved_exceptions(ExceptionFilter(opened_before=datetime(2026, 1, 1)))
