"""The worker lifecycle's pure rules: effective instants in the worker's own zone (across a
daylight-saving change), and the reducer that never lets a stale HCM event overwrite a newer
one."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from activities.workforce import merge_leaves
from connectors.psa.resources import LeavePeriod
from contracts import Money
from contracts.v1.workforce import (
    Stale,
    WorkerChange,
    WorkerChangeKind,
    WorkerState,
    apply,
    effective_instant,
    local_day,
)

NEW_YORK = ZoneInfo("America/New_York")


def change(
    seq: int,
    kind: WorkerChangeKind,
    effective: date,
    *,
    tz: str = "Australia/Sydney",
    **fields: object,
) -> WorkerChange:
    return WorkerChange(
        event_id=f"evt-{seq}",
        sequence=seq,
        entered_at=datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=seq),
        worker_id="W-1",
        kind=kind,
        effective_date=effective,
        time_zone=tz,
        **fields,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- time zones


def test_a_sydney_change_effective_today_takes_effect_at_sydney_midnight() -> None:
    # The integration runs in New York on the afternoon of 9 March; in Sydney it is already
    # 10 March. A change HCM dates "10 March" for a Sydney worker is due now, not tomorrow
    # New York time (and not at UTC midnight).
    integration_now = datetime(2026, 3, 9, 15, 0, tzinfo=NEW_YORK)
    today_in_sydney = local_day(integration_now, "Australia/Sydney")
    assert today_in_sydney == date(2026, 3, 10)
    assert integration_now.date() == date(2026, 3, 9)

    instant = effective_instant(today_in_sydney, "Australia/Sydney")
    assert instant == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)  # 00:00 AEDT (UTC+11)
    assert instant.astimezone(NEW_YORK) == datetime(2026, 3, 9, 9, 0, tzinfo=NEW_YORK)
    assert instant <= integration_now
    # the naive reading (midnight where the integration runs) would be 15 hours late
    assert datetime(2026, 3, 10, tzinfo=NEW_YORK) - instant == timedelta(hours=15)


def test_a_new_york_change_is_not_due_at_sydney_midnight() -> None:
    instant = effective_instant(date(2026, 3, 10), "America/New_York")
    assert instant == datetime(2026, 3, 10, 4, 0, tzinfo=UTC)  # EDT began on 8 March


@pytest.mark.parametrize(
    ("day", "tz", "utc_offset_h"),
    [
        # Sydney leaves daylight time on 5 April 2026 (03:00 AEDT -> 02:00 AEST): the day
        # begins at +11 and the next at +10.
        (date(2026, 4, 5), "Australia/Sydney", 11),
        (date(2026, 4, 6), "Australia/Sydney", 10),
        # Sydney enters daylight time on 4 October 2026 (02:00 -> 03:00)
        (date(2026, 10, 4), "Australia/Sydney", 10),
        (date(2026, 10, 5), "Australia/Sydney", 11),
        # New York springs forward on 8 March 2026
        (date(2026, 3, 8), "America/New_York", -5),
        (date(2026, 3, 9), "America/New_York", -4),
    ],
)
def test_the_offset_is_the_one_in_force_at_the_local_midnight(
    day: date, tz: str, utc_offset_h: int
) -> None:
    instant = effective_instant(day, tz)
    assert instant.tzinfo is UTC
    local = instant.astimezone(ZoneInfo(tz))
    assert (local.date(), local.hour, local.minute) == (day, 0, 0)
    assert local.utcoffset() == timedelta(hours=utc_offset_h)


def test_a_day_whose_midnight_falls_in_a_dst_gap_starts_at_the_transition() -> None:
    # Chile springs forward at 24:00 on Saturday 5 September 2026: Sunday has no 00:00
    day = date(2026, 9, 6)
    instant = effective_instant(day, "America/Santiago")
    zone = ZoneInfo("America/Santiago")
    assert instant.astimezone(zone).date() == day
    assert (instant - timedelta(microseconds=1)).astimezone(zone).date() == day - timedelta(1)


def test_a_time_zone_that_is_not_iana_is_refused() -> None:
    with pytest.raises(ValueError, match="IANA"):
        change(1, WorkerChangeKind.HIRE, date(2026, 3, 1), tz="EST5EDT-ish")


# --------------------------------------------------------------------------- the reducer


def hired() -> WorkerState:
    state = apply(
        WorkerState(worker_id="W-1"),
        change(
            1,
            WorkerChangeKind.HIRE,
            date(2026, 3, 1),
            name="Ada",
            role="Consultant",
            location="Sydney",
            practice="Cloud",
            cost_rate=Money("80.00", "AUD"),
            fte=Decimal(1),
        ),
    )
    assert isinstance(state, WorkerState)
    return state


def test_a_hire_sets_the_worker_up() -> None:
    state = hired()
    assert (state.employed_from, state.role, state.location, state.time_zone) == (
        date(2026, 3, 1),
        "Consultant",
        "Sydney",
        "Australia/Sydney",
    )
    assert state.cost_rate == Money("80.00", "AUD")


def test_an_older_change_arriving_late_never_overwrites_a_newer_one() -> None:
    state = hired()
    newer = apply(
        state,
        change(
            5, WorkerChangeKind.COST_RATE_CHANGE, date(2026, 5, 1), cost_rate=Money("95", "AUD")
        ),
    )
    assert isinstance(newer, WorkerState)
    late = change(
        3,
        WorkerChangeKind.JOB_CHANGE,
        date(2026, 4, 1),
        role="Senior Consultant",
        cost_rate=Money("90", "AUD"),
    )
    after = apply(newer, late)
    assert isinstance(after, WorkerState)
    assert after.role == "Senior Consultant"  # nobody newer set the role
    assert after.cost_rate == Money("95", "AUD")  # the newer rate stays


def test_a_change_newer_for_nothing_is_stale() -> None:
    state = apply(
        hired(),
        change(
            5, WorkerChangeKind.COST_RATE_CHANGE, date(2026, 5, 1), cost_rate=Money("95", "AUD")
        ),
    )
    assert isinstance(state, WorkerState)
    stale = apply(
        state,
        change(
            4, WorkerChangeKind.COST_RATE_CHANGE, date(2026, 4, 1), cost_rate=Money("90", "AUD")
        ),
    )
    assert stale == Stale(event_id="evt-4", newer=["evt-5"])


def test_same_effective_day_the_later_hcm_sequence_wins_whatever_the_arrival_order() -> None:
    first = change(7, WorkerChangeKind.TRANSFER, date(2026, 6, 1), location="Melbourne")
    correction = change(8, WorkerChangeKind.TRANSFER, date(2026, 6, 1), location="Brisbane")
    in_order = apply(apply(hired(), first), correction)  # type: ignore[arg-type]
    reverse = apply(hired(), correction)
    assert isinstance(reverse, WorkerState)
    assert isinstance(in_order, WorkerState)
    assert isinstance(apply(reverse, first), Stale)
    assert in_order.location == reverse.location == "Brisbane"


def test_a_leave_wins_or_loses_as_a_whole() -> None:
    start = change(9, WorkerChangeKind.LEAVE_START, date(2026, 7, 1), leave_until=date(2026, 7, 31))
    back = change(10, WorkerChangeKind.LEAVE_END, date(2026, 8, 1))
    on_leave = apply(hired(), start)
    assert isinstance(on_leave, WorkerState)
    assert (on_leave.on_leave, on_leave.leave_from, on_leave.leave_until) == (
        True,
        date(2026, 7, 1),
        date(2026, 7, 31),
    )
    returned = apply(on_leave, back)
    assert isinstance(returned, WorkerState)
    assert not returned.on_leave
    # the start of the leave arriving again (out of order) does not put the worker back on it
    assert isinstance(apply(returned, start), Stale)


def test_the_reducer_does_not_touch_the_state_it_is_given() -> None:
    state = hired()
    before = state.model_dump()
    apply(state, change(2, WorkerChangeKind.FTE_CHANGE, date(2026, 3, 2), fte=Decimal("0.5")))
    assert state.model_dump() == before


def test_a_leave_end_closes_the_open_leave_the_day_before() -> None:
    state = WorkerState(worker_id="W-1")
    leaves = [LeavePeriod(start=date(2026, 7, 1))]
    back = change(10, WorkerChangeKind.LEAVE_END, date(2026, 8, 1))
    assert merge_leaves(leaves, state, back) == [
        LeavePeriod(start=date(2026, 7, 1), end=date(2026, 7, 31))
    ]
