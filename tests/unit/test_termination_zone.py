"""A termination's days are days where the worker works: the input refuses a zone that is not
IANA, `start_of_day` gives each day's midnight there at the offset in force then, and the HCM
poller carries the worker's HCM zone into the termination (UTC days without one)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from activities.hcm_poll import termination_input
from connectors.hcm import WorkerChange, WorkerEventType
from contracts import System
from contracts.v1 import Worker
from contracts.v1.worker_termination import PollerInput, TerminationInput, start_of_day

DAY = date(2027, 1, 11)


def termination(**fields: object) -> TerminationInput:
    values: dict[str, object] = {
        "hcm_tenant": "acme",
        "worker_id": "W-1",
        "termination_date": DAY,
        "last_day_worked": DAY,
    }
    return TerminationInput.model_validate(values | fields)


def test_an_iana_zone_is_kept_and_none_means_utc_days() -> None:
    assert termination(time_zone="Australia/Sydney").time_zone == "Australia/Sydney"
    assert termination().time_zone is None
    # a message from an older poller (no field) still reads
    assert TerminationInput.model_validate_json(termination().model_dump_json()).time_zone is None


@pytest.mark.parametrize("bad", ["Mars/Olympus_Mons", "Sydney", "", "../../etc/passwd", "+10:00"])
def test_a_zone_that_is_not_iana_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ValidationError) as refused:
        termination(time_zone=bad)
    assert f"not an IANA time zone: {bad!r}" in str(refused.value)


@pytest.mark.parametrize(
    ("day", "zone", "begins"),
    [
        # no zone: UTC's midnight, as before
        (DAY, None, datetime(2027, 1, 11, 0, tzinfo=UTC)),
        # Sydney on summer time (UTC+11): the afternoon before in UTC
        (DAY, "Australia/Sydney", datetime(2027, 1, 10, 13, tzinfo=UTC)),
        (DAY, "America/New_York", datetime(2027, 1, 11, 5, tzinfo=UTC)),
        # New York springs forward on 2027-03-14 at 02:00: that day's midnight is still EST,
        # the next one EDT
        (date(2027, 3, 14), "America/New_York", datetime(2027, 3, 14, 5, tzinfo=UTC)),
        (date(2027, 3, 15), "America/New_York", datetime(2027, 3, 15, 4, tzinfo=UTC)),
        # Sydney's summer time ends on 2027-04-04 at 03:00: the next day starts at UTC+10
        (date(2027, 4, 5), "Australia/Sydney", datetime(2027, 4, 4, 14, tzinfo=UTC)),
        # Havana springs forward at midnight (00:00 -> 01:00): the day starts at the switch
        (date(2027, 3, 14), "America/Havana", datetime(2027, 3, 14, 5, tzinfo=UTC)),
    ],
)
def test_a_day_begins_at_the_workers_midnight(
    day: date, zone: str | None, begins: datetime
) -> None:
    assert start_of_day(day, zone) == begins


# --------------------------------------------------------------------------- the poller


def hcm_termination(time_zone: str | None, **fields: object) -> WorkerChange:
    values: dict[str, object] = {
        "worker": Worker(
            external_id="W-1",
            name="Ada Lovelace",
            hire_date=date(2020, 1, 6),
            cost_center="CC-100",
            source_system=System.HCM,
        ),
        "event_id": "evt-7",
        "event_type": WorkerEventType.TERMINATE,
        "effective_date": DAY,
        "entry_moment": datetime(2027, 1, 10, 4, tzinfo=UTC),
        "termination_date": DAY,
        "last_day_worked": date(2027, 1, 8),
        "time_zone": time_zone,
    }
    return WorkerChange.model_validate(values | fields)


def test_the_poller_gives_the_termination_the_workers_hcm_zone() -> None:
    started, note = termination_input(
        "acme", "W-1", hcm_termination("Australia/Sydney"), PollerInput(payroll_cutoff_days=5)
    )
    assert note is None
    assert (started.time_zone, started.termination_date, started.last_day_worked) == (
        "Australia/Sydney",
        DAY,
        date(2027, 1, 8),
    )
    assert (started.cutoff, started.event_id, started.worker_name) == (
        date(2027, 1, 13),
        "evt-7",
        "Ada Lovelace",
    )
    assert start_of_day(started.termination_date, started.time_zone) == datetime(
        2027, 1, 10, 13, tzinfo=UTC
    )


def test_a_termination_without_a_zone_keeps_utc_days() -> None:
    started, note = termination_input(
        "acme", "W-1", hcm_termination(None, termination_date=None, last_day_worked=None),
        PollerInput(),
    )  # fmt: skip
    assert (note, started.time_zone) == (None, None)
    # HCM's effective date stands for both when it gives neither
    assert (started.termination_date, started.last_day_worked) == (DAY, DAY)


def test_a_termination_with_a_zone_that_is_not_iana_still_starts_on_utc_days_and_says_so() -> None:
    started, note = termination_input("acme", "W-1", hcm_termination("Sydney"), PollerInput())
    assert started.time_zone is None
    assert note == "evt-7: not an IANA time zone: 'Sydney': the termination uses UTC days"
