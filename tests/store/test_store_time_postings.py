"""The time-posting ledger: bulk upserts, exact decimals, unbilled time, billing marks, totals,
bulk lineage. Runs on SQLite and PostgreSQL like every store test."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, inspect

from store import NotFound, Store, TimePostingState, TimeTotal, make_engine, upgrade

Together = Callable[[int, Callable[[int], Any]], list[Any]]
RowCount = Callable[..., int]

T0 = datetime(2026, 5, 12, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(engine: Engine, clock: Clock) -> Store:
    return Store(engine, clock=clock)


def entry(
    n: int,
    *,
    project: str = "P1",
    period: str = "2026-05",
    state: TimePostingState | str = TimePostingState.POSTED,
    kind: str = "time",
    hours: str = "8",
    bill: str | None = "1200.00",
    cost: str | None = "640.00",
    billable: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """A full ledger row (every column a new row needs)."""
    return {
        "entry_key": f"{kind}:{n}",
        "kind": kind,
        "entry_id": str(n),
        "psa_project_id": project,
        "erp_project": f"ERP-{project}",
        "worker_id": "W1",
        "work_date": date.fromisoformat(f"{period}-04"),
        "period": period,
        "entry_version": "v1",
        "state": state,
        "posting_key": f"post:{kind}:{n}:v1",
        "erp_id": None,
        "hours": Decimal(hours),
        "cost_amount": None if cost is None else Decimal(cost),
        "bill_amount": None if bill is None else Decimal(bill),
        "currency": "USD",
        "cost_center": "CC-100",
        "billable": billable,
        "fingerprint": f"{kind}|{project}|W1|{period}-04|task|{n}",
        "workflow_id": f"time-to-invoice/{project}",
        **extra,
    }


# -- upserts ------------------------------------------------------------------------------------


def test_insert_and_read_back_every_column(ledger: Store, clock: Clock) -> None:
    row = entry(1, hours="1.333333", bill="12345.67", cost="0.01", state=TimePostingState.POSTING)

    assert ledger.record_time_postings([row]) == 1

    got = ledger.time_postings(["time:1", "time:404"])
    assert list(got) == ["time:1"]
    stored = got["time:1"]
    assert stored.model_dump() == {
        **row,
        "state": "posting",
        "cause": None,
        "item_id": None,
        "invoice_ref": None,
        "updated_at": T0,
    }
    # exact, at the column's scale, identically on both backends (never through a float)
    assert (str(stored.hours), str(stored.bill_amount), str(stored.cost_amount)) == (
        "1.333333",
        "12345.67",
        "0.01",
    )
    assert stored.work_date == date(2026, 5, 4)
    assert ledger.time_postings([]) == {}


def test_decimals_at_full_precision_round_trip_exactly(ledger: Store) -> None:
    # 18 significant digits: a float (SQLite's NUMERIC) would come back as ...999998 or so
    ledger.record_time_postings(
        [entry(1, hours="999999999999.999999", bill="9999999999999999.99", cost="-0.05")]
    )

    stored = ledger.time_postings(["time:1"])["time:1"]

    assert stored.hours == Decimal("999999999999.999999")
    assert stored.bill_amount == Decimal("9999999999999999.99")
    assert stored.cost_amount == Decimal("-0.05")
    assert str(ledger.time_postings(["time:1"])["time:1"].hours) == "999999999999.999999"


def test_update_of_a_subset_keeps_the_other_columns(ledger: Store, clock: Clock) -> None:
    ledger.record_time_postings([entry(1, state=TimePostingState.POSTING), entry(2)])
    later = clock.tick()

    written = ledger.record_time_postings(
        [{"entry_key": "time:1", "state": "posted", "erp_id": "TB-77"}]
    )

    assert written == 1
    rows = ledger.time_postings(["time:1", "time:2"])
    one = rows["time:1"]
    assert (one.state, one.erp_id, one.updated_at) == ("posted", "TB-77", later)
    assert (one.hours, one.bill_amount, one.posting_key, one.entry_version) == (
        Decimal("8"),
        Decimal("1200.00"),
        "post:time:1:v1",
        "v1",
    )
    assert rows["time:2"].updated_at == T0  # untouched


def test_full_row_upsert_replaces_the_given_columns(ledger: Store) -> None:
    ledger.record_time_postings([entry(1, hours="8", bill="1200.00")])

    ledger.record_time_postings(
        [entry(1, hours="7.5", bill="1125.00", entry_version="v2", posting_key="post:time:1:v2")]
    )

    stored = ledger.time_postings(["time:1"])["time:1"]
    assert (stored.hours, stored.bill_amount, stored.entry_version, stored.posting_key) == (
        Decimal("7.5"),
        Decimal("1125.00"),
        "v2",
        "post:time:1:v2",
    )


def test_state_transitions_through_the_ledger(ledger: Store) -> None:
    ledger.record_time_postings([entry(1, state=TimePostingState.POSTING)])
    ledger.record_time_postings(
        [{"entry_key": "time:1", "state": TimePostingState.POSTED, "erp_id": "TB-1"}]
    )
    assert ledger.time_postings(["time:1"])["time:1"].state == "posted"

    # unapproved after posting: the reversal is posted, nothing live
    ledger.record_time_postings(
        [{"entry_key": "time:1", "state": "reversed", "posting_key": None, "erp_id": None}]
    )
    reversed_ = ledger.time_postings(["time:1"])["time:1"]
    assert (reversed_.state, reversed_.posting_key, reversed_.erp_id) == ("reversed", None, None)

    # re-approved at v2 but invalid now: an exception, then a person fixes it and it posts
    ledger.record_time_postings(
        [
            {
                "entry_key": "time:1",
                "entry_version": "v2",
                "state": "exception",
                "cause": "MissingRateCard",
                "item_id": "ti-time:1-v2",
            }
        ]
    )
    exc = ledger.time_postings(["time:1"])["time:1"]
    assert (exc.state, exc.cause, exc.item_id, exc.entry_version) == (
        "exception",
        "MissingRateCard",
        "ti-time:1-v2",
        "v2",
    )
    ledger.record_time_postings(
        [
            {
                "entry_key": "time:1",
                "state": "posted",
                "cause": None,
                "item_id": None,
                "posting_key": "post:time:1:v2",
                "erp_id": "TB-2",
            }
        ]
    )
    done = ledger.time_postings(["time:1"])["time:1"]
    assert (done.state, done.cause, done.item_id, done.erp_id) == ("posted", None, None, "TB-2")
    assert ledger.time_posting_counts() == {
        "posting": 0,
        "posted": 1,
        "exception": 0,
        "rejected": 0,
        "reversed": 0,
    }


def test_one_batch_mixes_new_rows_updates_and_repeated_keys(ledger: Store) -> None:
    ledger.record_time_postings([entry(1, state="posting")])

    written = ledger.record_time_postings(
        [
            {"entry_key": "time:1", "state": "posted"},
            entry(2, state="posting"),
            {"entry_key": "time:2", "state": "posted", "erp_id": "TB-2"},  # same key again
            entry(3, kind="expense", hours="1", bill=None, billable=False),
        ]
    )

    assert written == 3
    rows = ledger.time_postings(["time:1", "time:2", "expense:3"])
    assert {k: (r.state, r.erp_id) for k, r in rows.items()} == {
        "time:1": ("posted", None),
        "time:2": ("posted", "TB-2"),
        "expense:3": ("posted", None),
    }
    assert rows["time:2"].hours == Decimal("8")  # from the first mention of the key


def test_a_partial_row_for_an_unknown_entry_writes_nothing(
    ledger: Store, row_count: RowCount
) -> None:
    with pytest.raises(NotFound) as raised:
        ledger.record_time_postings([entry(1), {"entry_key": "time:2", "state": "posted"}])

    assert raised.value.key == "time:2"
    assert row_count("time_posting") == 0


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"colour": "red"}, ValueError, "unknown time_posting columns"),
        ({"updated_at": T0}, ValueError, "unknown time_posting columns"),
        ({"state": "invoiced"}, ValueError, "unknown state"),
        ({"kind": "mileage"}, ValueError, "unknown kind"),
        ({"hours": 1.5}, TypeError, "never a float"),
        ({"cost_amount": 12.5}, TypeError, "never a float"),
        ({"hours": "8"}, TypeError, "never a float or str"),
        ({"bill_amount": Decimal("10.005")}, ValueError, "more than 2 digits"),
        ({"cost_amount": Decimal("1E+17")}, ValueError, "does not fit"),
        ({"hours": Decimal("1E+12")}, ValueError, "does not fit"),
        ({"hours": Decimal("1E+30") + Decimal("0.5")}, ValueError, "does not fit"),
        ({"hours": Decimal("NaN")}, ValueError, "finite"),
        ({"entry_key": ""}, ValueError, "needs an entry_key"),
    ],
)
def test_invalid_rows_are_refused_before_anything_is_written(
    ledger: Store, row_count: RowCount, change: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ledger.record_time_postings([entry(1), {**entry(2), **change}])

    assert row_count("time_posting") == 0


def test_a_new_row_missing_a_required_column_fails_the_whole_batch(
    ledger: Store, row_count: RowCount
) -> None:
    incomplete = entry(2)
    del incomplete["hours"]

    with pytest.raises(NotFound):
        ledger.record_time_postings([entry(1), incomplete])

    assert row_count("time_posting") == 0
    assert ledger.record_time_postings([]) == 0


def test_trailing_zeros_and_ints_are_exact_values(ledger: Store) -> None:
    ledger.record_time_postings([entry(1, hours="1.3333330", bill="100.000"), entry(2, hours="2")])
    ledger.record_time_postings([{"entry_key": "time:2", "cost_amount": 15}])

    rows = ledger.time_postings(["time:1", "time:2"])

    assert str(rows["time:1"].hours) == "1.333333"
    assert str(rows["time:1"].bill_amount) == "100.00"
    assert str(rows["time:2"].hours) == "2.000000"
    assert str(rows["time:2"].cost_amount) == "15.00"


def test_hours_are_rounded_to_six_places_amounts_are_not(
    ledger: Store, row_count: RowCount
) -> None:
    twenty_minutes = Decimal(20) / Decimal(60)  # 0.3333... to 28 digits
    ledger.record_time_postings(
        [entry(1, hours=str(twenty_minutes)), entry(2, hours=str(Decimal(40) / Decimal(60)))]
    )

    rows = ledger.time_postings(["time:1", "time:2"])
    assert (str(rows["time:1"].hours), str(rows["time:2"].hours)) == ("0.333333", "0.666667")

    # a sub-cent amount is the caller's rounding bug: refused, never rounded here
    with pytest.raises(ValueError, match="more than 2 digits"):
        ledger.record_time_postings([{"entry_key": "time:1", "bill_amount": Decimal("10.005")}])
    assert ledger.time_postings(["time:1"])["time:1"].bill_amount == Decimal("1200.00")
    assert row_count("time_posting") == 2


def test_posted_fingerprints_find_live_duplicates(ledger: Store) -> None:
    ledger.record_time_postings(
        [
            entry(1, fingerprint="A"),
            entry(2, fingerprint="A"),
            entry(3, fingerprint="B", state="posting"),
            entry(4, fingerprint="C", state="reversed"),
            entry(5, fingerprint="D", state="exception"),
            entry(6, fingerprint="E"),
        ]
    )

    found = ledger.posted_fingerprints(["A", "B", "C", "D", "E", "Z"], exclude=["time:6"])

    assert found == {"A": "time:1", "B": "time:3"}
    assert ledger.posted_fingerprints(["A"], exclude=["time:1"]) == {"A": "time:2"}
    assert ledger.posted_fingerprints([]) == {}


# -- billing ------------------------------------------------------------------------------------


def test_unbilled_time_lists_posted_billable_uninvoiced_entries(ledger: Store) -> None:
    ledger.record_time_postings(
        [
            entry(5),
            entry(1),
            entry(2, period="2026-04"),
            entry(3, kind="expense", hours="1", bill="42.10"),
            entry(10, billable=False, bill=None),  # not billable
            entry(11, bill=None),  # billable but no bill amount (yet)
            entry(12, state="exception"),
            entry(13, state="reversed"),
            entry(14, state="posting"),
            entry(15, invoice_ref="INV-0"),  # already invoiced
            entry(16, project="P2"),
        ]
    )

    assert [r.entry_key for r in ledger.unbilled_time("P1")] == [
        "expense:3",
        "time:1",
        "time:2",
        "time:5",
    ]
    may = ledger.unbilled_time("P1", period="2026-05")
    assert [r.entry_key for r in may] == ["expense:3", "time:1", "time:5"]
    assert sum((r.bill_amount or Decimal(0) for r in may), Decimal(0)) == Decimal("2442.10")
    assert ledger.unbilled_time("P3") == []


def test_unbilled_periods_lists_closed_periods_with_unbilled_entries(ledger: Store) -> None:
    ledger.record_time_postings(
        [
            entry(1, period="2026-03"),
            entry(2, period="2026-03"),
            entry(3, period="2026-04", invoice_ref="INV-1"),  # billed already
            entry(4, period="2026-04", state="exception"),
            entry(5, period="2026-05"),  # the current month: not closed yet
            entry(6, project="P0", period="2025-12"),
            entry(7, project="P2", period="2026-04", bill=None),
            entry(8, project="P2", period="2026-02"),
        ]
    )

    assert ledger.unbilled_periods("2026-05") == [
        ("P0", "2025-12"),
        ("P1", "2026-03"),
        ("P2", "2026-02"),
    ]
    assert ledger.unbilled_periods("2026-06")[1:3] == [("P1", "2026-03"), ("P1", "2026-05")]
    assert ledger.unbilled_periods("2025-01") == []


def test_marking_billed_is_idempotent_and_never_steals_rows(
    ledger: Store, clock: Clock, row_count: RowCount
) -> None:
    ledger.record_time_postings([entry(1), entry(2), entry(3)])
    marked_at = clock.tick()

    assert ledger.mark_time_billed(["time:1", "time:2"], "INV-1") == 2
    clock.tick()
    assert ledger.mark_time_billed(["time:1", "time:2", "time:1"], "INV-1") == 2  # a retry
    # another invoice over an overlapping set only gets what is still unbilled
    assert ledger.mark_time_billed(["time:2", "time:3", "time:404"], "INV-2") == 1

    rows = ledger.time_postings(["time:1", "time:2", "time:3"])
    assert {k: r.invoice_ref for k, r in rows.items()} == {
        "time:1": "INV-1",
        "time:2": "INV-1",
        "time:3": "INV-2",
    }
    assert rows["time:1"].updated_at == marked_at  # the retry changed nothing
    assert ledger.unbilled_time("P1") == []
    assert ledger.mark_time_billed([], "INV-3") == 0

    # INV-1 voided: its entries are billable again, INV-2's stay billed
    assert ledger.unmark_time_billed("INV-1") == 2
    assert ledger.unmark_time_billed("INV-1") == 0
    assert [r.entry_key for r in ledger.unbilled_time("P1")] == ["time:1", "time:2"]
    assert row_count("time_posting", "invoice_ref = :r", r="INV-2") == 1


def test_marking_more_keys_than_one_in_list_holds(ledger: Store, row_count: RowCount) -> None:
    ledger.record_time_postings([entry(n) for n in range(1, 1201)])
    keys = [f"time:{n}" for n in range(1, 1201)]

    assert ledger.mark_time_billed(keys, "INV-BIG") == 1200
    assert ledger.mark_time_billed(keys, "INV-BIG") == 1200
    assert len(ledger.time_postings(keys)) == 1200
    assert row_count("time_posting", "invoice_ref = 'INV-BIG'") == 1200


# -- totals and counts --------------------------------------------------------------------------


def test_totals_per_project_period_and_kind_over_posted_rows(ledger: Store) -> None:
    ledger.record_time_postings(
        [
            entry(1, hours="1.333333", bill="200.00", cost="100.01"),
            entry(2, hours="1.333333", bill="200.00", cost="100.01"),
            entry(3, hours="1.333333", bill="200.01", cost="100.01"),
            entry(4, hours="4", bill=None, cost="50.00", billable=False),
            entry(5, period="2026-04", hours="2.5", bill="375.00", cost="160.00"),
            entry(6, kind="expense", hours="1", bill="12345.67", cost="12345.67"),
            entry(7, kind="expense", hours="1", bill="10.00", cost="10.00", currency="EUR"),
            entry(8, project="P2", hours="3", bill="450.00", cost="192.00"),
            # not posted: left out of every total
            entry(20, state="posting", hours="100"),
            entry(21, state="exception", hours="100"),
            entry(22, state="reversed", hours="100"),
            entry(23, state="rejected", hours="100"),
        ]
    )

    p1 = [
        TimeTotal("P1", "2026-04", "time", "USD", Decimal("2.5"), Decimal("375"), Decimal(160), 1),
        TimeTotal("P1", "2026-05", "expense", "EUR", Decimal(1), Decimal(10), Decimal(10), 1),
        TimeTotal(
            "P1", "2026-05", "expense", "USD", Decimal(1), Decimal("12345.67"),
            Decimal("12345.67"), 1,
        ),
        TimeTotal(
            "P1", "2026-05", "time", "USD", Decimal("7.999999"), Decimal("600.01"),
            Decimal("350.03"), 4,
        ),
    ]  # fmt: skip
    assert ledger.time_totals("P1") == p1
    assert ledger.time_totals() == [
        *p1,
        TimeTotal("P2", "2026-05", "time", "USD", Decimal(3), Decimal(450), Decimal(192), 1),
    ]
    assert str(ledger.time_totals("P1")[3].hours) == "7.999999"
    assert ledger.time_totals("P3") == []


def test_totals_of_rows_without_amounts_are_zero(ledger: Store) -> None:
    ledger.record_time_postings([entry(1, hours="0.25", bill=None, cost=None, billable=False)])

    [total] = ledger.time_totals()

    assert (total.hours, total.bill_amount, total.cost_amount, total.entries) == (
        Decimal("0.25"),
        Decimal(0),
        Decimal(0),
        1,
    )


def test_counts_per_state(ledger: Store) -> None:
    ledger.record_time_postings(
        [
            entry(1),
            entry(2),
            entry(3, state="exception"),
            entry(4, state="posting"),
            entry(5, project="P2", state="rejected"),
            entry(6, project="P2", state="reversed"),
        ]
    )

    assert ledger.time_posting_counts("P1") == {
        "posting": 1,
        "posted": 2,
        "exception": 1,
        "rejected": 0,
        "reversed": 0,
    }
    assert ledger.time_posting_counts() == {
        "posting": 1,
        "posted": 2,
        "exception": 1,
        "rejected": 1,
        "reversed": 1,
    }
    assert set(ledger.time_posting_counts("P3").values()) == {0}


# -- lineage ------------------------------------------------------------------------------------


def test_record_lineage_many_appends_every_row(ledger: Store, row_count: RowCount) -> None:
    ledger.record_lineage("time_entry", "time:1", ["hours"], "PSA", "v0", "wf", "r0", "earlier")
    rows = [
        {
            "entity_type": "time_entry",
            "entity_key": f"time:{n}",
            "fields": ("hours", "bill_amount"),
            "source_system": "PSA",
            "source_version": f"v{n}",
            "workflow_id": "time-to-invoice/P1",
            "run_id": "run-1",
            "activity": "post_time_batch",
        }
        for n in (1, 2)
    ]
    rows.append(
        {
            "entity_type": "time_entry",
            "entity_key": "time:1",
            "fields": ["invoice_ref"],
            "source_system": "ERP",
            "workflow_id": "time-to-invoice/P1",
            "activity": "bill_project",
        }
    )

    assert ledger.record_lineage_many(rows) == 3

    one = ledger.lineage_for("time_entry", "time:1")
    assert [(r.fields, r.source_system, r.source_version, r.run_id, r.activity) for r in one] == [
        (["hours"], "PSA", "v0", "r0", "earlier"),
        (["hours", "bill_amount"], "PSA", "v1", "run-1", "post_time_batch"),
        (["invoice_ref"], "ERP", None, None, "bill_project"),
    ]
    assert one[1].recorded_at == T0
    assert [r.source_version for r in ledger.lineage_for("time_entry", "time:2")] == ["v2"]
    assert ledger.record_lineage_many([]) == 0
    assert row_count("lineage") == 4


def test_record_lineage_many_refuses_incomplete_rows(ledger: Store, row_count: RowCount) -> None:
    good = {
        "entity_type": "time_entry",
        "entity_key": "time:1",
        "fields": ["hours"],
        "source_system": "PSA",
        "workflow_id": "wf",
        "activity": "act",
    }
    for bad in (
        {k: v for k, v in good.items() if k != "activity"},
        {**good, "colour": "red"},
        {**good, "fields": "hours"},
    ):
        with pytest.raises(ValueError):
            ledger.record_lineage_many([good, bad])

    assert row_count("lineage") == 0


def _lineage_of(n: int) -> dict[str, Any]:
    return {
        "entity_type": "time_entry",
        "entity_key": f"time:{n}",
        "fields": ["hours", "erp_posting"],
        "source_system": "PSA",
        "source_version": "v1",
        "workflow_id": "time-to-invoice/P1",
        "activity": "time.process_batch",
    }


def test_posted_rows_and_their_lineage_are_recorded_together(
    ledger: Store, row_count: RowCount
) -> None:
    ledger.record_time_postings([entry(n, state=TimePostingState.POSTING) for n in (1, 2)])

    written = ledger.record_time_postings(
        [{"entry_key": f"time:{n}", "state": "posted", "erp_id": f"9{n}"} for n in (1, 2)],
        lineage=[_lineage_of(1), _lineage_of(2)],
    )

    assert written == 2
    rows = ledger.time_postings(["time:1", "time:2"])
    assert {k: (r.state, r.erp_id, r.hours) for k, r in rows.items()} == {
        "time:1": ("posted", "91", Decimal("8.000000")),
        "time:2": ("posted", "92", Decimal("8.000000")),
    }
    assert [r.fields for r in ledger.lineage_for("time_entry", "time:2")] == [
        ["hours", "erp_posting"]
    ]
    assert ledger.lineage_for("time_entry", "time:1")[0].recorded_at == T0
    assert row_count("lineage") == 2


def test_lineage_is_not_written_when_its_ledger_rows_are_refused(
    ledger: Store, row_count: RowCount
) -> None:
    with pytest.raises(NotFound):  # a partial row for an entry the ledger does not hold
        ledger.record_time_postings(
            [{"entry_key": "time:404", "state": "posted", "erp_id": "1"}],
            lineage=[_lineage_of(404)],
        )
    with pytest.raises(ValueError):  # a malformed lineage row refuses the ledger rows too
        ledger.record_time_postings([entry(1)], lineage=[{**_lineage_of(1), "colour": "red"}])

    assert row_count("lineage") == 0
    assert ledger.time_postings(["time:1"]) == {}


# -- bulk and concurrency -----------------------------------------------------------------------


def test_ten_thousand_rows_in_fifty_batches(ledger: Store, row_count: RowCount) -> None:
    keys: list[str] = []
    for batch in range(50):
        rows = [entry(batch * 200 + i, state="posting") for i in range(200)]
        keys += [r["entry_key"] for r in rows]
        assert ledger.record_time_postings(rows) == 200
    for batch in range(50):
        chunk = keys[batch * 200 : (batch + 1) * 200]
        updates = [{"entry_key": k, "state": "posted", "erp_id": f"TB-{k}"} for k in chunk]
        assert ledger.record_time_postings(updates) == 200

    assert row_count("time_posting") == 10_000
    assert row_count("time_posting", "state = 'posted' AND erp_id IS NOT NULL") == 10_000
    assert len(ledger.time_postings(keys)) == 10_000
    [total] = ledger.time_totals("P1")
    assert (total.hours, total.bill_amount, total.entries) == (
        Decimal(80_000),
        Decimal(12_000_000),
        10_000,
    )


def test_concurrent_batches_over_the_same_entries_all_succeed(
    ledger: Store, row_count: RowCount, together: Together
) -> None:
    def batch(i: int) -> int:
        rows = [entry(n, entry_version=f"v{i}") for n in range(100)]
        return ledger.record_time_postings(rows if i % 2 else rows[::-1])

    outcomes = together(8, batch)

    assert outcomes == [100] * 8
    assert row_count("time_posting") == 100
    rows = ledger.time_postings(f"time:{n}" for n in range(100)).values()
    versions = {r.entry_version for r in rows}
    assert len(versions) == 1  # each batch is one transaction: one of them wrote last, entirely


# -- migration ----------------------------------------------------------------------------------


def test_upgrade_creates_the_time_posting_table(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        inspector = inspect(engine)
        assert "time_posting" in inspector.get_table_names()
        columns = {c["name"]: c for c in inspector.get_columns("time_posting")}
        assert set(columns) == {
            "entry_key", "kind", "entry_id", "psa_project_id", "erp_project", "worker_id",
            "work_date", "period", "entry_version", "state", "posting_key", "erp_id", "hours",
            "cost_amount", "bill_amount", "currency", "cost_center", "billable", "cause",
            "item_id", "invoice_ref", "fingerprint", "workflow_id", "updated_at",
        }  # fmt: skip
        assert not columns["hours"]["nullable"] and columns["bill_amount"]["nullable"]
        pk = inspector.get_pk_constraint("time_posting")
        assert (pk["name"], pk["constrained_columns"]) == ("pk_time_posting", ["entry_key"])
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("time_posting")}
        assert indexes == {
            "ix_time_posting_project_period": ["psa_project_id", "period"],
            "ix_time_posting_invoice_ref": ["invoice_ref"],
            "ix_time_posting_fingerprint": ["fingerprint"],
            "ix_time_posting_state_kind": ["state", "kind"],
        }
    finally:
        engine.dispose()
