"""A termination takes effect at the worker's midnight, wherever the integration runs: a Sydney
worker's termination effective "tomorrow" there acts at 13:00 UTC, not at UTC's or New York's
midnight; daylight-saving changes give that midnight the offset in force then; an HCM event
without a zone keeps UTC days; and runs from before the change replay on UTC days.

WorkerTermination and HcmChangesPoller on a time-skipping server of this module's own, over
the in-memory PSA/ERP/HCM and a SQLite store (the worlds of test_worker_termination.py). The
server's clock only moves forward: each test first moves it to the moment its story needs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from contracts.naming import termination_workflow_id
from contracts.v1.worker_termination import (
    TerminationOutcome,
    TerminationResult,
    TerminationStep,
)
from plumbing.codec import data_converter
from sandbox.temporal import time_skipping_temporal
from tests.replay.replay_key import replay_keyring
from tests.workflows import test_worker_termination as term
from worker import WORKFLOWS

SYDNEY, NEW_YORK = "Australia/Sydney", "America/New_York"
HISTORIES = Path(__file__).parents[1] / "replay" / "histories"


@pytest.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """This module's own server: its clock is moved by months, under no other module's runs."""
    async with time_skipping_temporal() as env:
        yield env


def midnight(day: date, utc_offset_hours: int) -> datetime:
    """00:00 on `day` at a fixed UTC offset, as a UTC moment (the expected instants are
    written out with their offsets, not computed by the code under test)."""
    return datetime.combine(day, time(0), tzinfo=UTC) - timedelta(hours=utc_offset_hours)


async def move_to(env: WorkflowEnvironment, moment: datetime) -> None:
    """Skip the server's clock forward to `moment`."""
    now = await term._now(env)
    assert moment > now, f"{moment} is behind the server's clock {now}"
    await env.sleep(moment - now)


def next_hour(after: datetime, utc_hour: int, new_york_hour: int) -> datetime:
    """The first `utc_hour`:00 UTC after `after` at which New York reads `new_york_hour`:00
    (it does only on winter time (UTC-5) for 04:00 -> 23:00 and 20:00 -> 15:00)."""
    day = after.date()
    while True:
        moment = datetime.combine(day, time(utc_hour), tzinfo=UTC)
        if moment > after + timedelta(minutes=1) and (
            moment.astimezone(ZoneInfo(NEW_YORK)).hour == new_york_hour
        ):
            return moment
        day += timedelta(days=1)


def _offset(zone: str, day: date) -> timedelta | None:
    return datetime.combine(day, time(12), tzinfo=ZoneInfo(zone)).utcoffset()


def next_switch(zone: str, after: date, to_offset_hours: int) -> date:
    """The next day (after `after`) on which `zone` switches to UTC+`to_offset_hours`."""
    day = after + timedelta(days=1)
    while not (
        _offset(zone, day) == timedelta(hours=to_offset_hours)
        and _offset(zone, day - timedelta(days=1)) != _offset(zone, day)
    ):
        day += timedelta(days=1)
    return day


async def finish(handle: WorkflowHandle[Any, Any]) -> None:
    """Terminate a run left open for a rescind: its timers would fire under later tests."""
    if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
        await handle.terminate("test over")


def effective_notifications(world: term.World) -> list[datetime]:
    return [
        datetime.fromisoformat(n["at"])
        for n in world.outbox()
        if n["kind"] == "termination.effective"
    ]


def psa_untouched(world: term.World, running_until: date) -> bool:
    """No assignment ended, time entry open: what the PSA holds before the effective moment."""
    ends = {a.end_date for a in world.psa.assignments.values()}
    return running_until in ends and world.psa.users[term.WORKER].closed_after is None


# --------------------------------------------------------------------------- Sydney, run in US


@pytest.mark.parametrize(
    ("utc_hour", "new_york_hour", "not_yet"),
    [
        # 23:00 in New York, 15:00 in Sydney: New York's midnight is an hour away
        (4, 23, [NEW_YORK]),
        # 15:00 in New York, 07:00 in Sydney: UTC's midnight is four hours away too
        (20, 15, [NEW_YORK, "UTC"]),
    ],
)
async def test_termination_effective_today_in_sydney_acts_at_once_while_new_york_is_on_yesterday(
    ts_env: WorkflowEnvironment,
    tmp_path: Path,
    utc_hour: int,
    new_york_hour: int,
    not_yet: list[str],
) -> None:
    now = next_hour(await term._now(ts_env), utc_hour, new_york_hour)
    await move_to(ts_env, now)
    sydney_today = now.astimezone(ZoneInfo(SYDNEY)).date()
    assert sydney_today == now.astimezone(ZoneInfo(NEW_YORK)).date() + timedelta(days=1)
    async with term.termination_world(ts_env, tmp_path) as world:
        world.hcm.set_time_zone(term.WORKER, SYDNEY)
        staff = term.staff(world)
        last_day = sydney_today - timedelta(days=1)
        await world.hcm.terminate(term.WORKER, sydney_today, last_day)
        polled = await term.poll(world)
        wid = termination_workflow_id("test", term.WORKER, sydney_today.isoformat())
        assert (polled.started, polled.notes) == ([wid], [])
        handle = world.client.get_workflow_handle(wid, result_type=TerminationResult)
        try:
            # Sydney's day began at 13:00 UTC the day before: nothing to wait for
            status = await term.reaches(handle, TerminationStep.OPEN_FOR_RESCIND)
            assert (status.time_zone, status.effective_at) == (
                SYDNEY,
                midnight(sydney_today, 11),  # Sydney on summer time while New York on winter
            )
            assert world.psa.assignments[staff["running"].external_id].end_date == last_day
            assert world.psa.users[term.WORKER].closed_after == last_day
            acted_by = await term._now(ts_env)
            for zone in not_yet:  # a US-run integration would still be waiting for these
                zone_midnight = datetime.combine(sydney_today, time(0), tzinfo=ZoneInfo(zone))
                assert acted_by < zone_midnight, zone
            [acted_at] = effective_notifications(world)
            assert now <= acted_at < now + timedelta(minutes=5)
        finally:
            await finish(handle)


async def test_termination_effective_tomorrow_in_sydney_acts_at_sydney_midnight(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    # 04:00 UTC = 23:00 in New York (the day before) = 15:00 in Sydney
    now = next_hour(await term._now(ts_env), 4, 23)
    await move_to(ts_env, now)
    sydney_tomorrow = now.astimezone(ZoneInfo(SYDNEY)).date() + timedelta(days=1)
    # Sydney on summer time (UTC+11): its tomorrow starts at 13:00 UTC today, nine hours
    # before UTC's midnight and fourteen before New York's
    due = midnight(sydney_tomorrow, 11)
    assert due == datetime.combine(now.date(), time(13), tzinfo=UTC)
    async with term.termination_world(ts_env, tmp_path) as world:
        world.hcm.set_time_zone(term.WORKER, SYDNEY)
        staff = term.staff(world)
        running_until = staff["running"].end_date
        last_day = sydney_tomorrow - timedelta(days=1)
        await world.hcm.terminate(term.WORKER, sydney_tomorrow, last_day)
        polled = await term.poll(world)
        wid = termination_workflow_id("test", term.WORKER, sydney_tomorrow.isoformat())
        assert polled.started == [wid]
        handle = world.client.get_workflow_handle(wid, result_type=TerminationResult)
        try:
            status = await term.reaches(handle, TerminationStep.WAITING_FOR_EFFECTIVE_DATE)
            assert (status.time_zone, status.effective_at) == (SYDNEY, due)
            await move_to(ts_env, due - timedelta(minutes=30))
            await term.reaches(handle, TerminationStep.WAITING_FOR_EFFECTIVE_DATE)
            assert psa_untouched(world, running_until)
            await move_to(ts_env, due + timedelta(minutes=30))
            await term.reaches(handle, TerminationStep.OPEN_FOR_RESCIND)
            assert world.psa.assignments[staff["running"].external_id].end_date == last_day
            assert world.psa.users[term.WORKER].closed_after == last_day
            [acted_at] = effective_notifications(world)
            assert due <= acted_at < due + timedelta(minutes=30)
            # the run as recorded (with its patch marker) replays
            history = await handle.fetch_history()
            replayed = await Replayer(
                workflows=list(WORKFLOWS), data_converter=world.client.data_converter
            ).replay_workflow(history, raise_on_replay_failure=False)
            assert replayed.replay_failure is None, replayed.replay_failure
        finally:
            await finish(handle)


# --------------------------------------------------------------------------- daylight saving


@pytest.mark.parametrize(
    ("zone", "switch_to", "days_after_switch", "offset_then"),
    [
        # the day after New York springs forward (EST -> EDT): 00:00 EDT = 04:00 UTC
        (NEW_YORK, -4, 1, -4),
        # the spring-forward day itself: its midnight (before 02:00) is still EST
        (NEW_YORK, -4, 0, -5),
        # the day after New York falls back (EDT -> EST): 00:00 EST = 05:00 UTC
        (NEW_YORK, -5, 1, -5),
        # the day after Sydney's summer time starts (AEST -> AEDT): 13:00 UTC the day before
        (SYDNEY, 11, 1, 11),
        # the day after Sydney's summer time ends (AEDT -> AEST): 14:00 UTC the day before
        (SYDNEY, 10, 1, 10),
    ],
    ids=["ny-spring-forward+1", "ny-spring-forward", "ny-fall-back+1", "syd-dst-start+1",
         "syd-dst-end+1"],
)  # fmt: skip
async def test_termination_around_a_daylight_saving_change_acts_at_the_local_midnight(
    ts_env: WorkflowEnvironment,
    tmp_path: Path,
    zone: str,
    switch_to: int,
    days_after_switch: int,
    offset_then: int,
) -> None:
    switch = next_switch(zone, (await term._now(ts_env)).date() + timedelta(days=3), switch_to)
    effective = switch + timedelta(days=days_after_switch)
    due = midnight(effective, offset_then)
    await move_to(ts_env, due - timedelta(days=2))
    async with term.termination_world(ts_env, tmp_path) as world:
        staff = term.staff(world)
        running_until = staff["running"].end_date
        last_day = effective - timedelta(days=1)
        handle = await term.start(world, effective, last_day, time_zone=zone)
        try:
            status = await term.reaches(handle, TerminationStep.WAITING_FOR_EFFECTIVE_DATE)
            assert (status.time_zone, status.effective_at) == (zone, due)
            # an hour's error either way (the offset before the switch) would show here
            await move_to(ts_env, due - timedelta(minutes=30))
            await term.reaches(handle, TerminationStep.WAITING_FOR_EFFECTIVE_DATE)
            assert psa_untouched(world, running_until)
            await move_to(ts_env, due + timedelta(minutes=30))
            await term.reaches(handle, TerminationStep.OPEN_FOR_RESCIND)
            assert world.psa.users[term.WORKER].closed_after == last_day
            assert world.psa.assignments[staff["running"].external_id].end_date == last_day
            [acted_at] = effective_notifications(world)
            assert due <= acted_at < due + timedelta(minutes=30)
            # open for a rescind until the payroll cutoff (last day + 3) begins there, after
            # the switch: at that midnight's own offset
            result = await handle.result()
            assert result.outcome is TerminationOutcome.COMPLETED
            closed = (await handle.describe()).close_time
            assert closed is not None
            cutoff_begins = midnight(last_day + timedelta(days=3), switch_to)
            assert cutoff_begins <= closed < cutoff_begins + timedelta(minutes=5)
        finally:
            await finish(handle)


# --------------------------------------------------------------------------- no zone: UTC


async def test_termination_from_an_event_without_a_zone_keeps_utc_days(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    # 20:00 UTC: tomorrow has begun in Sydney, not yet in UTC
    now = next_hour(await term._now(ts_env), 20, 15)
    await move_to(ts_env, now)
    tomorrow = now.date() + timedelta(days=1)
    due = midnight(tomorrow, 0)
    async with term.termination_world(ts_env, tmp_path) as world:
        staff = term.staff(world)  # HCM has no zone for the worker
        running_until = staff["running"].end_date
        await world.hcm.terminate(term.WORKER, tomorrow, now.date())
        polled = await term.poll(world)
        wid = termination_workflow_id("test", term.WORKER, tomorrow.isoformat())
        assert (polled.started, polled.notes) == ([wid], [])
        handle = world.client.get_workflow_handle(wid, result_type=TerminationResult)
        try:
            status = await term.reaches(handle, TerminationStep.WAITING_FOR_EFFECTIVE_DATE)
            assert (status.time_zone, status.effective_at) == ("UTC", due)
            await move_to(ts_env, due - timedelta(minutes=30))
            await term.reaches(handle, TerminationStep.WAITING_FOR_EFFECTIVE_DATE)
            assert psa_untouched(world, running_until)
            await move_to(ts_env, due + timedelta(minutes=30))
            await term.reaches(handle, TerminationStep.OPEN_FOR_RESCIND)
            assert world.psa.users[term.WORKER].closed_after == now.date()
            [acted_at] = effective_notifications(world)
            assert due <= acted_at < due + timedelta(minutes=30)
        finally:
            await finish(handle)


# --------------------------------------------------------------------------- replay


def _with_zone(path: Path, zone: str) -> WorkflowHistory:
    """A committed history whose input names `zone`: a run a newer poller started, whose
    first tasks an older worker ran (no patch marker in its history)."""
    raw = json.loads(path.read_text())
    started = raw["events"][0]["workflowExecutionStartedEventAttributes"]
    payload = started["input"]["payloads"][0]
    value = json.loads(base64.b64decode(payload["data"]))
    assert "time_zone" not in value, "recorded before the zone existed"
    payload["data"] = base64.b64encode(json.dumps(value | {"time_zone": zone}).encode()).decode()
    workflow_id = path.stem.split("@", 1)[0].replace("~", "/")
    return WorkflowHistory.from_json(workflow_id, raw)


@pytest.mark.parametrize(
    "name",
    [
        "termination~default~21001~2026-11-26",
        "termination~test~W-00042~rescinded_after_effective_date",
    ],
)
async def test_a_run_begun_before_local_midnights_replays_on_utc_days(name: str) -> None:
    """Recorded at 10:44 and 09:08 UTC on their termination dates, these runs acted at once
    (UTC's midnight had passed). In Pago Pago (UTC-11) that day began at 11:00 UTC: were the
    zone used without the patch, replay would wait for it where the history read HCM."""
    path = HISTORIES / f"{name}.json"
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=data_converter(replay_keyring()))
    for history in (
        WorkflowHistory.from_json(path.stem.replace("~", "/"), path.read_text()),
        _with_zone(path, "Pacific/Pago_Pago"),
    ):
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, result.replay_failure
