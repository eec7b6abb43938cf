"""Forecast alignment's repair when the project's assignment sync is not running (terminated,
timed out): a new run must learn the whole staffing and the months it has to cover, or a month
whose only assignment went behind pssync's back is never written as zero. Pure, no I/O."""

from __future__ import annotations

from datetime import date

from activities.reconciliation.forecast_rules import SyncRestart, SyncView, restart_of
from tests.unit.test_reconciliation_forecast import assignment, erp_as_synced, side


def test_a_new_run_is_told_every_assignment_and_every_month_forecast_before() -> None:
    kept = assignment("A1")
    went = assignment("A2", "W-2", start=date(2027, 4, 5), end=date(2027, 4, 9))
    closed = SyncView(assignments={"A1": 1, "A2": 1}, periods=("2027-03", "2027-04"))
    erp = erp_as_synced([kept, went])
    restart = restart_of(side([kept], erp, sync=closed))
    # A1 at the PSA's version (the new run reads it); A2 at the next one (its re-read finds it
    # gone); both months covered, so April is written as zero and March kept.
    assert restart == SyncRestart("101", (("A1", 1), ("A2", 2)), ("2027-03", "2027-04"))


def test_a_month_the_erp_holds_is_covered_even_when_no_sync_ever_ran() -> None:
    kept = assignment("A1")
    stray = erp_as_synced([assignment("X", start=date(2027, 5, 3), end=date(2027, 5, 7))])
    restart = restart_of(side([kept], {**erp_as_synced([kept]), **stray}, synced=False))
    assert restart == SyncRestart("101", (("A1", 1),), ("2027-03", "2027-05"))


def test_nothing_to_name_anywhere_is_no_restart() -> None:
    assert restart_of(side([], {}, synced=False)) is None
