"""Each worker lifecycle change end to end on the real dev server (issue 18): HCM twin (Workday
business processes) -> Schedule -> poller -> the worker's one `WorkerLifecycle` run -> what a
user sees in the Kantata twin (the user, its custom fields Location, Practice, Manager, FTE,
Available From, Leave Calendar; assignments), in the NetSuite twin (labor cost rows) and on the
exception desk (the gateway's `/api/exceptions`).

One stack and one `pssync worker` process for the module; the workers are hired before the
worker starts (one poll routes them all), and each test changes its own worker:

- a transfer effective today moves the resource (location, practice, manager) and flags the
  assignment on the old practice's project once, for the resource manager, until skipped;
- a future-dated leave flags the assignment during it at once and waits for its day; a leave
  already begun is on the resource at once, and the return closes it;
- an FTE change and a job change effective today reach the resource; tomorrow's FTE waits;
- a rehire after a termination makes the resource available again from its new start date;
- a transfer entered later but effective earlier does not overwrite the newer location, and the
  same events read or delivered again add nothing;
- the worker process killed while a hire's PSA resource upsert is in flight: a new worker
  finishes it, with one PSA user, one ERP labor cost row and one applied change.

Every worker's "today" is its own (`datetime.now(ZoneInfo(zone)).date()`).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text

import worker
from activities.hcm_poll import ensure_hcm_schedule, lifecycle_change
from bench._harness.waiting import must_eventually as eventually
from connectors.erp import NetSuiteErp
from connectors.hcm import WorkdayHcm
from connectors.psa import KantataPsa
from contracts import Money, System
from contracts.naming import TASK_QUEUE
from contracts.settings import load_settings
from contracts.v1 import BillingRule, Project
from contracts.v1.processes import STATUS_QUERY
from contracts.v1.worker_termination import HCM_CHANGES_POLLER, PollerInput, PollResult
from contracts.v1.workforce import (
    PROCESS_WORKER_LIFECYCLE,
    WORKER_CHANGE_SIGNAL,
    LifecycleStatus,
    lifecycle_workflow_id,
)
from stack import Stack, running_stack
from tests._servers import start_worker_process, stop_process

pytestmark = pytest.mark.e2e

POLL_EVERY_1S = {"PSSYNC_HCM_POLL_INTERVAL_S": "1"}
AUTH = {"Authorization": "Bearer dev-static-token"}
OPS = {"Authorization": "Bearer dev-ops-token"}
EID = "01JWKCH0000000000000000001"
PRACTICE = "Cloud"  # the hires' practice, and the project's

# worker id -> its time zone (IANA, as HCM has it on the worker's location)
ZONES = {
    "LC-T1": "Australia/Sydney",  # transfer
    "LC-L1": "Europe/London",  # future-dated leave
    "LC-L2": "Europe/London",  # leave begun, then the return
    "LC-F1": "America/New_York",  # FTE and job change
    "LC-R1": "Asia/Tokyo",  # termination, then rehire
    "LC-D1": "Europe/Berlin",  # out of order, duplicates
    "LC-C1": "America/Los_Angeles",  # hired while the worker process is killed
}
HIRED_AT_START = ("LC-T1", "LC-L1", "LC-L2", "LC-F1", "LC-R1", "LC-D1")


def today_in(worker_id: str) -> date:
    """The worker's today (effective dates are days where the worker works)."""
    return datetime.now(ZoneInfo(ZONES[worker_id])).date()


def email_of(worker_id: str) -> str:
    return f"{worker_id.lower()}@example.com"


def hire_body(worker_id: str, on: date, rate: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "workerId": worker_id,
        "firstName": "Ada",
        "lastName": f"Lovelace {worker_id}",
        "email": email_of(worker_id),
        "hireDate": on.isoformat(),
        "jobProfile": "Consultant",
        "location": "Head Office",
        "timeZone": ZONES[worker_id],
        "costCenterId": "CC-130",
        "practice": PRACTICE,
        "managerWorkerId": "M-100",
    }
    if rate is not None:
        body["costRate"] = {"amount": rate, "currency": "USD"}
    return body


@dataclass
class World:
    """The module's stack, its clients and the worker process."""

    stack: Stack
    psa: KantataPsa
    hcm_port: WorkdayHcm
    hcm: httpx.AsyncClient
    gateway: httpx.AsyncClient
    twins: httpx.AsyncClient
    project: str
    """The PSA workspace (practice Cloud) the workers are staffed on."""
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def tenant(self) -> str:
        return self.stack.settings.hcm.tenant

    # ------------------------------------------------------------------ HCM (business processes)

    async def hr(self, path: str, body: dict[str, Any]) -> str:
        """Run an HCM business process; the id of the event it completed."""
        answer = await self.hcm.post(path, json=body)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["id"])

    async def job_change(self, worker_id: str, **body: Any) -> str:
        return await self.hr(f"/workers/Employee_ID={worker_id}/jobChanges", _dates(body))

    # ------------------------------------------------------------------ the PSA as a user sees it

    def query(self, system: str, sql: str, **params: Any) -> list[Any]:
        with self.stack.sandbox.state(system).engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def user_ids(self, worker_id: str) -> list[int]:
        found = self.query(
            "psa", "SELECT id FROM psa_user WHERE email_address = :e", e=email_of(worker_id)
        )
        return [int(r[0]) for r in found]

    def user_id(self, worker_id: str) -> int:
        [uid] = self.user_ids(worker_id)
        return uid

    def facts(self, worker_id: str) -> dict[str, str]:
        """The user's custom field values by field name (Location, Practice, ...)."""
        uids = self.user_ids(worker_id)
        if not uids:
            return {}
        found = self.query(
            "psa",
            "SELECT f.name, v.value FROM psa_custom_field_value v JOIN psa_custom_field f "
            "ON f.id = v.custom_field_id WHERE v.subject_type = 'User' AND v.subject_id = :u",
            u=uids[0],
        )
        return {str(name): str(value) for name, value in found}

    def user(self, worker_id: str) -> dict[str, Any]:
        [row] = self.query(
            "psa",
            "SELECT role, active, start_date, time_entry_closed_after, lock_version "
            "FROM psa_user WHERE id = :u",
            u=self.user_id(worker_id),
        )
        user = dict(row._mapping)
        for day in ("start_date", "time_entry_closed_after"):  # SQLite answers text
            if isinstance(user[day], str):
                user[day] = date.fromisoformat(user[day])
        return user

    def writes_to(self, worker_id: str) -> tuple[int, int]:
        """(the user's lock version, its newest custom field value id): both move on a write."""
        uid = self.user_id(worker_id)
        [(newest,)] = self.query(
            "psa",
            "SELECT max(id) FROM psa_custom_field_value WHERE subject_type = 'User' "
            "AND subject_id = :u",
            u=uid,
        )
        return int(self.user(worker_id)["lock_version"]), int(newest or 0)

    async def staff(self, worker_id: str, start: date, end: date) -> str:
        """Staff the worker on the project (a resource manager's act in the PSA)."""
        body = await self.psa._call(
            "POST",
            "/assignments.json",
            json={
                "assignment": {
                    "workspace_id": int(self.project),
                    "user_id": self.user_id(worker_id),
                    "role": "Consultant",
                    "start_date": start.isoformat(),
                    "end_date": end.isoformat(),
                    "allocated_minutes": 4800,
                }
            },
        )
        return str(self.psa._one(body)["id"])

    # ------------------------------------------------------------------ the exception desk

    async def items(
        self, worker_id: str, count: int, timeout_s: float = 30
    ) -> list[dict[str, Any]]:
        """The lifecycle run's exception items as the API lists them, once there are `count`
        (never more: a test asking for 1 fails if a second appears)."""
        run = lifecycle_workflow_id(self.tenant, worker_id)

        async def listed() -> list[dict[str, Any]] | None:
            got = await self.gateway.get(
                "/api/exceptions",
                params={"process": PROCESS_WORKER_LIFECYCLE, "workflow_id": run},
            )
            got.raise_for_status()
            items: list[dict[str, Any]] = got.json()["items"]
            assert len(items) <= count, [i["cause_code"] for i in items]
            return items if len(items) == count else None

        found: list[dict[str, Any]] = await eventually(listed, timeout_s)
        return found

    async def skip(self, item_id: str) -> None:
        """The resource manager acknowledges a conflict; the item is then resolved."""
        answer = await self.gateway.post(
            f"/api/exceptions/{item_id}/resolution",
            json={"action": "skip", "note": "acknowledged by the resource manager"},
        )
        assert answer.status_code == 200, answer.text

        async def resolved() -> bool:
            got = await self.gateway.get(f"/api/exceptions/{item_id}")
            return bool(got.json()["status"] == "resolved")

        await eventually(resolved, 20)

    # ------------------------------------------------------------------ the run, the polls

    async def status(self, worker_id: str) -> LifecycleStatus:
        handle = self.stack.client.get_workflow_handle(
            lifecycle_workflow_id(self.tenant, worker_id)
        )
        found: LifecycleStatus = await handle.query(STATUS_QUERY, result_type=LifecycleStatus)
        return found

    async def status_when(
        self, worker_id: str, check: Callable[[LifecycleStatus], bool], timeout_s: float = 30
    ) -> LifecycleStatus:
        async def matches() -> LifecycleStatus | None:
            status = await self.status(worker_id)
            return status if check(status) else None

        found: LifecycleStatus = await eventually(matches, timeout_s)
        return found

    async def polls_after(self, since: datetime, count: int, timeout_s: float = 30) -> list[Any]:
        """The results of `count` HCM polls started after `since` (each reads a window that
        overlaps the ones before: it reads again what they read)."""
        after = (since + timedelta(seconds=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = (
            f"WorkflowType = '{HCM_CHANGES_POLLER}' AND ExecutionStatus = 'Completed' "
            f"AND StartTime > '{after}'"
        )

        async def done() -> list[Any] | None:
            runs = [w async for w in self.stack.client.list_workflows(query)]
            return runs if len(runs) >= count else None

        runs = await eventually(done, timeout_s)
        return [
            await self.stack.client.get_workflow_handle(
                r.id, run_id=r.run_id, result_type=PollResult
            ).result()
            for r in runs
        ]


def _dates(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in body.items()}


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    home = tmp_path_factory.mktemp("lifecycle-changes")
    settings = load_settings(home=home / ".pssync")
    async with running_stack(settings, ephemeral_ports=True, run_worker=False) as stack:
        deployment = worker.Deployment.from_settings(stack.settings)
        psa, erp, hcm_port = deployment.psa, deployment.erp, deployment.hcm
        assert isinstance(psa, KantataPsa) and isinstance(erp, NetSuiteErp)
        assert isinstance(hcm_port, WorkdayHcm)
        tenant = stack.settings.hcm.tenant
        clients = contextlib.AsyncExitStack()
        world: World | None = None
        try:
            hcm = await clients.enter_async_context(
                httpx.AsyncClient(
                    base_url=f"{stack.settings.hcm.base_url}/ccx/api/v1/{tenant}", headers=AUTH
                )
            )
            gateway = await clients.enter_async_context(
                httpx.AsyncClient(base_url=stack.urls["gateway"], headers=OPS, timeout=30)
            )
            twins = await clients.enter_async_context(httpx.AsyncClient(timeout=30))
            # The ERP's employee master has them (HR's own ERP feed, not this process).
            for wid in ZONES:
                await erp._send(
                    "PUT",
                    erp._path("employee", wid, external=True),
                    {"firstName": "Ada", "lastName": wid, "currency": {"id": "USD"}},
                )
            first = min(today_in(w) for w in ZONES)
            project = Project(
                name="Lifecycle changes e2e",
                customer_id="ACC-LIFECH",
                billing_rule=BillingRule.TIME_AND_MATERIALS,
                contract_value=Money("90000.00", "USD"),
                start_date=first - timedelta(days=60),
                end_date=first + timedelta(days=180),
                cost_center="CC-130",
                practice=PRACTICE,
                source_system=System.CRM,
            )
            psa_id = await psa.create_project_shell(project, enterprise_id=EID)
            # Hired before the worker starts: the first poll routes every hire at once.
            for wid in HIRED_AT_START:
                answer = await hcm.post(
                    "/workers", json=hire_body(wid, today_in(wid) - timedelta(20))
                )
                assert answer.status_code == 200, answer.text
            log = home / "worker.log"
            proc = start_worker_process(stack.settings, log, POLL_EVERY_1S)
            world = World(stack, psa, hcm_port, hcm, gateway, twins, psa_id, proc, log)
            ready = world

            def everyone_in_the_pool() -> bool:
                return all(ready.facts(w).get("Available From") for w in HIRED_AT_START)

            await eventually(everyone_in_the_pool, 60)
            yield world
        finally:
            if world is not None:
                stop_process(world.proc)  # the one running now (the crash test starts another)
            with contextlib.suppress(Exception):
                await stack.client.get_schedule_handle("hcm-changes-poller").delete()
            await clients.aclose()
            await deployment.aclose()


# --------------------------------------------------------------------------- 1. transfer


async def test_transfer_moves_the_resource_and_flags_work_on_the_old_practice(
    world: World,
) -> None:
    wid = "LC-T1"
    today = today_in(wid)
    # staffed on a Cloud project running past the transfer
    assignment = await world.staff(wid, today - timedelta(days=5), today + timedelta(days=30))
    event = await world.job_change(
        wid,
        type="transfer",
        effectiveDate=today,
        location="Melbourne",
        costCenterId="CC-120",
        practice="Data & AI",
        managerWorkerId="M-200",
    )
    since = datetime.now(UTC)

    await eventually(lambda: world.facts(wid).get("Location") == "Melbourne", 30)
    facts = world.facts(wid)
    assert (facts["Location"], facts["Practice"], facts["Manager"]) == (
        "Melbourne",
        "Data & AI",
        "M-200",
    )
    [item] = await world.items(wid, 1)
    assert item["cause_code"] == "ASSIGNMENT_OTHER_PRACTICE"
    assert item["owner"] == "resource_manager"
    assert item["status"] == "open"
    assert item["context"]["assignment_id"] == assignment
    assert item["context"]["project_id"] == world.project
    assert item["context"]["event_id"] == event

    # the polls after it read the transfer again: still the one item
    polls = await world.polls_after(since, 2)
    assert all(p.duplicates >= 1 for p in polls), polls
    [again] = await world.items(wid, 1)
    assert again["id"] == item["id"]

    await world.skip(item["id"])
    status = await world.status(wid)
    assert not status.open_items
    assert world.facts(wid)["Practice"] == "Data & AI"  # the skip changed nothing else


# --------------------------------------------------------------------------- 2. leave


async def test_leave_is_flagged_at_once_applied_when_due_and_closed_by_the_return(
    world: World,
) -> None:
    # LC-L1: a leave from tomorrow, over an assignment that starts the day after
    future, today1 = "LC-L1", today_in("LC-L1")
    assignment = await world.staff(future, today1 + timedelta(days=2), today1 + timedelta(days=20))
    leave = await world.hr(
        f"/workers/Employee_ID={future}/leavesOfAbsence",
        _dates(
            {
                "firstDayOfLeave": today1 + timedelta(days=1),
                "estimatedLastDayOfLeave": today1 + timedelta(days=10),
            }
        ),
    )
    # LC-L2: a leave that began two days ago (entered today): due at once
    begun, today2 = "LC-L2", today_in("LC-L2")
    await world.hr(
        f"/workers/Employee_ID={begun}/leavesOfAbsence",
        _dates(
            {
                "firstDayOfLeave": today2 - timedelta(days=2),
                "estimatedLastDayOfLeave": today2 + timedelta(days=10),
            }
        ),
    )

    # flagged at once, before the leave's first day, for the resource manager
    [item] = await world.items(future, 1)
    assert item["cause_code"] == "ASSIGNMENT_DURING_LEAVE"
    assert item["owner"] == "resource_manager"
    assert item["context"]["assignment_id"] == assignment
    assert item["context"]["effective_date"] == (today1 + timedelta(days=1)).isoformat()
    # the leave itself waits for its day: not on the resource yet
    status = await world.status(future)
    assert [c.event_id for c in status.pending] == [leave]
    assert world.facts(future)["Leave Calendar"] == ""

    begun_leave = f"{today2 - timedelta(days=2)}..{today2 + timedelta(days=10)}"
    await eventually(lambda: world.facts(begun).get("Leave Calendar") == begun_leave, 30)

    # back today: the leave closes the day before
    await world.hr(
        f"/workers/Employee_ID={begun}/returnFromLeave",
        {"firstDayBackAtWork": today2.isoformat()},
    )
    closed = f"{today2 - timedelta(days=2)}..{today2 - timedelta(days=1)}"
    await eventually(lambda: world.facts(begun).get("Leave Calendar") == closed, 30)

    await world.skip(item["id"])
    assert world.facts(future)["Leave Calendar"] == ""  # still not due


# --------------------------------------------------------------------------- 3. FTE, job


async def test_fte_and_job_change_reach_the_resource_on_their_date(world: World) -> None:
    wid = "LC-F1"
    today = today_in(wid)
    assert world.facts(wid)["FTE"] == "1"
    await world.job_change(wid, type="fte_change", effectiveDate=today, fte="0.5")
    await world.job_change(wid, type="job_change", effectiveDate=today, jobProfile="Manager")
    tomorrow = await world.job_change(
        wid, type="fte_change", effectiveDate=today + timedelta(days=1), fte="0.8"
    )

    await eventually(
        lambda: world.facts(wid).get("FTE") == "0.5" and world.user(wid)["role"] == "Manager", 30
    )
    # tomorrow's FTE is in the run, waiting for the worker's midnight
    await world.status_when(wid, lambda s: [c.event_id for c in s.pending] == [tomorrow])
    assert world.facts(wid)["FTE"] == "0.5"
    assert world.user(wid)["role"] == "Manager"


# --------------------------------------------------------------------------- 4. rehire


@dataclass
class Rehired:
    worker_id: str
    today: date
    last_day: date
    event_id: str


@pytest.fixture(scope="module")
async def rehired(world: World) -> Rehired:
    """LC-R1 terminated two days ago (the termination carried out in the PSA), then rehired
    today."""
    wid = "LC-R1"
    today = today_in(wid)
    last_day = today - timedelta(days=2)
    await world.hr(
        f"/workers/Employee_ID={wid}/terminate",
        {"terminationDate": last_day.isoformat(), "lastDayOfWork": last_day.isoformat()},
    )
    # WorkerTermination closes the worker to time after the last day
    await eventually(lambda: world.user(wid)["time_entry_closed_after"] == last_day, 40)
    event = await world.hr(f"/workers/Employee_ID={wid}/rehire", {"hireDate": today.isoformat()})
    await eventually(lambda: world.facts(wid).get("Available From") == today.isoformat(), 30)
    return Rehired(wid, today, last_day, event)


async def test_rehire_makes_the_resource_available_again_from_its_new_start(
    world: World, rehired: Rehired
) -> None:
    wid, today = rehired.worker_id, rehired.today
    user = world.user(wid)
    assert user["active"]
    assert user["start_date"] == today  # `Available From`: the first day for time
    assert world.user_ids(wid) == [world.user_id(wid)]  # the same user, not a second one
    # the run records the change once its writes are done
    status = await world.status_when(
        wid, lambda s: any(h.event_id == rehired.event_id for h in s.history)
    )
    [applied] = [h for h in status.history if h.event_id == rehired.event_id]
    assert not applied.stale
    assert "employed_from" in applied.fields


async def test_rehired_worker_can_log_time_from_the_rehire_date(
    world: World, rehired: Rehired
) -> None:
    answer = await world.twins.post(
        f"{world.stack.settings.psa.base_url}/api/v1/time_entries.json",
        headers=AUTH,
        json={
            "time_entry": {
                "workspace_id": int(world.project),
                "user_id": world.user_id(rehired.worker_id),
                "date_performed": rehired.today.isoformat(),
                "time_in_minutes": 60,
            }
        },
    )
    assert answer.status_code in (200, 201), answer.text


# --------------------------------------------------------------------------- 5. order, dups


async def test_older_transfer_entered_later_and_events_read_again_change_nothing_newer(
    world: World,
) -> None:
    wid = "LC-D1"
    today = today_in(wid)
    started = datetime.now(UTC)
    newer = await world.job_change(wid, type="transfer", effectiveDate=today, location="Munich")
    await eventually(lambda: world.facts(wid).get("Location") == "Munich", 30)
    # entered later, effective three days ago: its location is older than Munich's; its
    # manager is newer than the hire's (nothing newer set it)
    older = await world.job_change(
        wid,
        type="transfer",
        effectiveDate=today - timedelta(days=3),
        location="Hamburg",
        managerWorkerId="M-900",
    )
    await eventually(lambda: world.facts(wid).get("Manager") == "M-900", 30)
    assert world.facts(wid)["Location"] == "Munich"
    before = world.writes_to(wid)
    # older than Munich for everything it sets: stale, nothing written
    stale = await world.job_change(
        wid, type="transfer", effectiveDate=today - timedelta(days=2), location="Cologne"
    )
    await world.status_when(wid, lambda s: any(h.event_id == stale for h in s.history))

    # the poller crashed after signalling, before its inbox row: the same events again
    events = [
        c
        for c in await world.hcm_port.changed_workers(started, datetime.now(UTC))
        if c.worker.external_id == wid
    ]
    assert {c.event_id for c in events} == {newer, older, stale}
    handle = world.stack.client.get_workflow_handle(lifecycle_workflow_id(world.tenant, wid))
    dropped = (await world.status(wid)).duplicates
    for change in events:
        await handle.signal(WORKER_CHANGE_SIGNAL, lifecycle_change(wid, change))
    await world.status_when(wid, lambda s: s.duplicates >= dropped + 3)
    # and the polls read them again (the window overlaps): the inbox drops them
    polls = await world.polls_after(datetime.now(UTC), 2)
    assert all(p.duplicates >= 3 for p in polls), polls

    assert world.writes_to(wid) == before
    facts = world.facts(wid)
    assert (facts["Location"], facts["Manager"]) == ("Munich", "M-900")
    status = await world.status(wid)
    by_event = {h.event_id: h for h in status.history}
    assert sum(h.event_id in (newer, older, stale) for h in status.history) == 3
    assert not by_event[newer].stale and "location" in by_event[newer].fields
    assert not by_event[older].stale and by_event[older].fields == ["manager_id"]
    assert by_event[stale].stale and by_event[stale].fields == []
    assert status.pending == [] and not status.open_items


# --------------------------------------------------------------------------- 6. crash


CRASH_ACTIVITY_TIMEOUT_S = 8
"""The lifecycle run's start-to-close timeout for this test: the killed worker's activity is
retried by the new worker once it passes. The poller passes its `PollerInput.activity_timeout_s`
to the runs it starts; pssync has no setting for it, so the test updates the Schedule."""
PSA_LATENCY_MS = 1500
"""Holds each PSA request long enough to kill the worker between two of the upsert's."""


async def test_worker_killed_mid_hire_finishes_it_once(world: World) -> None:
    wid = "LC-C1"
    today = today_in(wid)
    await ensure_hcm_schedule(
        world.stack.client,
        every=timedelta(seconds=1),
        task_queue=TASK_QUEUE,
        poller=PollerInput(activity_timeout_s=CRASH_ACTIVITY_TIMEOUT_S),
    )
    await world.polls_after(datetime.now(UTC), 1)  # the next poll starts runs with it
    psa_admin = f"{world.stack.settings.psa.base_url}/_admin/faults"
    (await world.twins.post(psa_admin, json={"latency_ms": PSA_LATENCY_MS})).raise_for_status()
    try:
        hire = await world.hr("/workers", hire_body(wid, today, rate="80.00"))
        # the upsert invited the user, and has not yet written its reference and fields
        await eventually(lambda: world.user_ids(wid), 40, every_s=0.1)
        world.proc.send_signal(signal.SIGKILL)
        world.proc.wait(10)
    finally:
        (await world.twins.post(psa_admin, json={})).raise_for_status()
    assert world.facts(wid) == {}, "the kill came after the change was written"
    assert world.query("erp", "SELECT id FROM erp_labor_cost_rate WHERE employee = :w", w=wid) == []

    world.proc = start_worker_process(world.stack.settings, world.log, POLL_EVERY_1S)
    await eventually(lambda: world.facts(wid).get("Available From") == today.isoformat(), 60)
    await eventually(
        lambda: world.query("erp", "SELECT 1 FROM erp_labor_cost_rate WHERE employee = :w", w=wid),
        30,
    )
    assert len(world.user_ids(wid)) == 1  # invited once, found again by its e-mail
    assert world.facts(wid)["Practice"] == PRACTICE
    rows = world.query(
        "erp", "SELECT event, rate FROM erp_labor_cost_rate WHERE employee = :w", w=wid
    )
    assert [(event, float(rate)) for event, rate in rows] == [(hire, 80.0)]
    status = await world.status_when(wid, lambda s: any(h.event_id == hire for h in s.history))
    applied = [h for h in status.history if h.event_id == hire]
    assert len(applied) == 1 and not applied[0].stale
    assert {"cost_rate", "employed_from"} <= set(applied[0].fields)
    assert status.pending == [] and not status.open_items
