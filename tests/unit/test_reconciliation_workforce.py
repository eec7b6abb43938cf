"""Workforce, compared: given a worker HCM shows as a leaver, their PSA assignments and time and
the state of their termination run, each kind of drift is found with its keys, both sides'
values and its disposition — repaired by starting the run when there is none, escalated when
the run acted (or was rescinded) and the drift stayed. Pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from activities.reconciliation.workforce_rules import (
    Leaver,
    LeaverAssignment,
    LeaverTime,
    RunState,
    TerminationRepair,
    WorkforceContext,
    compare_leaver,
    is_leaver,
)
from contracts.v1.reconciliation import Disposition, Domain, DriftKind

NOW = datetime(2027, 2, 10, 3, 0, tzinfo=UTC)
TODAY = NOW.date()
LAST = date(2027, 2, 5)


def ctx(**changes: object) -> WorkforceContext:
    values: dict[str, object] = {"tenant": "acme", "today": TODAY, "now": NOW}
    return WorkforceContext(**(values | changes))  # type: ignore[arg-type]


def leaver(**changes: object) -> Leaver:
    values: dict[str, object] = {
        "worker_id": "W-00007",
        "termination_date": LAST,
        "last_day": LAST,
        "updated_at": NOW - timedelta(days=1),
    }
    return Leaver(**(values | changes))  # type: ignore[arg-type]


ENDS_LATER = LeaverAssignment("A1", "101", date(2027, 1, 4), date(2027, 3, 31))
ENDED = LeaverAssignment("A2", "101", date(2027, 1, 4), LAST)
OPEN = LeaverTime("T1", "101", LAST - timedelta(days=1), approved=False)
AFTER = LeaverTime("T2", "102", LAST + timedelta(days=3), approved=True)
DONE = LeaverTime("T3", "101", LAST, approved=True)


def test_only_a_termination_whose_date_has_come_makes_a_leaver() -> None:
    assert is_leaver(TODAY, TODAY) and is_leaver(LAST, TODAY)
    assert not is_leaver(TODAY + timedelta(days=1), TODAY) and not is_leaver(None, TODAY)


def test_a_leaver_with_nothing_left_in_the_psa_agrees() -> None:
    assert compare_leaver(ctx(), leaver(assignments=[ENDED], time=[DONE])) == []


def test_each_kind_is_found_and_repaired_by_starting_the_termination_run() -> None:
    findings = compare_leaver(
        ctx(), leaver(assignments=[ENDS_LATER, ENDED], time=[OPEN, AFTER, DONE])
    )
    by_kind = {f.drift.kind: f for f in findings}
    assert set(by_kind) == {
        DriftKind.WORKFORCE_LEAVER_OPEN_ASSIGNMENT,
        DriftKind.WORKFORCE_LEAVER_OPEN_TIME_ENTRY,
        DriftKind.WORKFORCE_LEAVER_FUTURE_TIME,
    }
    assert len(findings) == 3
    opened = by_kind[DriftKind.WORKFORCE_LEAVER_OPEN_ASSIGNMENT].drift
    assert opened.domain is Domain.WORKFORCE and opened.owner.value == "PSA"
    assert opened.keys == {
        "tenant": "acme",
        "worker_id": "W-00007",
        "period": "2027-02",
        "psa_project_id": "101",
        "assignment": "A1",
    }
    assert opened.values == {"hcm": "2027-02-05", "psa": "2027-03-31"}
    future = by_kind[DriftKind.WORKFORCE_LEAVER_FUTURE_TIME].drift
    assert future.keys["entry"] == "time:T2" and future.project == "102"
    assert by_kind[DriftKind.WORKFORCE_LEAVER_OPEN_TIME_ENTRY].drift.keys["entry"] == "time:T1"
    for f in findings:
        assert f.drift.disposition is Disposition.REPAIR
        assert f.repair == TerminationRepair("W-00007", LAST, LAST)
        assert "no termination run" in f.drift.detail


def test_a_run_on_its_way_is_joined() -> None:
    [found] = compare_leaver(
        ctx(), leaver(assignments=[ENDS_LATER], run=RunState.IN_PROGRESS, run_id="termination/x")
    )
    assert found.drift.disposition is Disposition.REPAIR and found.repair is not None
    assert found.evidence["termination_run"] == "termination/x"


def test_a_run_that_acted_or_was_rescinded_leaves_it_to_a_person() -> None:
    for state, words in ((RunState.ACTED, "took its steps"), (RunState.RESCINDED, "rescinded")):
        findings = compare_leaver(
            ctx(), leaver(assignments=[ENDS_LATER], time=[AFTER], run=state, run_id="t/1")
        )
        assert [f.drift.disposition for f in findings] == [Disposition.ESCALATE] * 2
        assert all(f.repair is None and words in f.drift.detail for f in findings)


def test_the_last_day_worked_counts_not_the_termination_date() -> None:
    early = leaver(termination_date=LAST, last_day=LAST - timedelta(days=10), time=[DONE])
    [found] = compare_leaver(ctx(), early)
    assert found.drift.kind is DriftKind.WORKFORCE_LEAVER_FUTURE_TIME
    assert found.repair == TerminationRepair("W-00007", LAST, LAST - timedelta(days=10))


def test_scope_settle_and_since() -> None:
    everything = leaver(assignments=[ENDS_LATER], time=[AFTER])
    assert [f.drift.project for f in compare_leaver(ctx(project="102"), everything)] == ["102"]
    fresh = leaver(assignments=[ENDS_LATER], updated_at=NOW - timedelta(seconds=60))
    assert compare_leaver(ctx(), fresh) == []
    assert len(compare_leaver(ctx(settle_s=0), fresh)) == 1
    assert compare_leaver(ctx(since=date(2027, 3, 1)), everything) == []
    assert len(compare_leaver(ctx(since=date(2027, 2, 20)), everything)) == 2  # same month
