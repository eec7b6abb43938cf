"""The workforce scene: two people join in the HCM twin and the PSA and the ERP follow, each
change on its own day in the worker's time zone (Sydney, whatever the machine's zone is): a hire
effective today is a PSA user staffed and booking time the same day, and a raise of theirs
effective tomorrow leaves today's cost alone; someone hired four days ago gets a raise effective
today, and their time is costed at the rate in force on its own date — yesterday's at the old
rate, today's at the new one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from rich.table import Table

from demo.checks import Check
from demo.deals import DealOutcome
from demo.time_to_invoice import open_time_run
from stack import Stack

if TYPE_CHECKING:
    import httpx

    from contracts.v1.workforce import LifecycleStatus

ZONE = "Australia/Sydney"
"""Where the two workers work: their days, and so their effective dates, are Sydney's."""
ROLE = "Consultant"
"""Their job profile, a role the demo projects' rate cards have."""
PRACTICE = "Cloud"
HIRE_RATE = Decimal("80.00")
"""Both workers' cost rate on hire (USD an hour)."""
TOMORROWS_RATE = Decimal("95.00")
"""The new hire's raise, effective tomorrow: it must not cost today's time."""
RAISE = Decimal("100.00")
"""The earlier hire's raise, effective today: today's time costs it, yesterday's does not."""
HOURS = {"hired today": 450, "yesterday": 480, "today": 420}
"""Minutes logged: the new hire today, the earlier hire yesterday and today."""
AUTH = {"Authorization": "Bearer dev-static-token"}


@dataclass
class _Person:
    worker_id: str
    name: str
    hired_on: date
    user: int = 0
    first_day: str | None = None
    labor_cost: Decimal | None = None
    """The ERP employee's labor cost: the rate in force on the worker's today."""
    history: tuple[tuple[date, Decimal], ...] = ()
    """The ERP's rate history: (effective from, rate) rows."""
    waiting: tuple[tuple[date, Decimal | None], ...] = ()
    """Changes pssync holds until their effective day: (effective date, cost rate)."""


@dataclass
class _Entry:
    person: _Person
    day: date
    minutes: int
    expected_rate: Decimal
    entry_id: str = ""
    cost: Decimal | None = None

    @property
    def hours(self) -> Decimal:
        return Decimal(self.minutes) / 60

    @property
    def expected_cost(self) -> Decimal:
        return (self.hours * self.expected_rate).quantize(Decimal("0.01"))


@dataclass
class WorkforceOutcome:
    hired: str
    """The worker hired today."""
    raised: str
    """The worker hired earlier, raised today."""
    checks: list[Check]
    table: Table
    """The workforce lines of the summary: workers, PSA users, rates in force, costs."""


async def workforce_scene(stack: Stack, deal: DealOutcome, say: Any = print) -> WorkforceOutcome:
    """Hires and raises entered in the HCM twin (Workday's routes), read by one HCM poll;
    the two workers staffed on `deal`'s project in the PSA twin and their approved time
    costed in the ERP twin by the time pipeline, each entry at the rate in force on its day."""
    today = datetime.now(ZoneInfo(ZONE)).date()  # the workers' today, not the machine's
    stamp = uuid.uuid4().hex[:6].upper()  # the demo runs again on the same twins
    hired = _Person(f"N-{stamp}-1", "Mia Chen", today)
    raised = _Person(f"N-{stamp}-2", "Liam Walsh", today - timedelta(days=4))
    await _enter_in_hcm(stack, hired, raised, today)
    say(
        f"{hired.name} hired today ({today}, {ZONE}) at {HIRE_RATE}/h with a raise to "
        f"{TOMORROWS_RATE} from tomorrow; {raised.name}, hired {raised.hired_on}, raised to "
        f"{RAISE} from today; polling HCM now"
    )
    await _poll_hcm(stack)
    hired_status = await _lifecycle(stack, hired.worker_id, applied=1, waiting=1)
    raised_status = await _lifecycle(stack, raised.worker_id, applied=2, waiting=0)
    for person, status in ((hired, hired_status), (raised, raised_status)):
        person.waiting = tuple(
            (c.effective_date, None if c.cost_rate is None else c.cost_rate.amount)
            for c in status.pending
        )
    entries = [
        _Entry(hired, today, HOURS["hired today"], HIRE_RATE),
        _Entry(raised, today - timedelta(days=1), HOURS["yesterday"], HIRE_RATE),
        _Entry(raised, today, HOURS["today"], RAISE),
    ]
    async with open_time_run(stack, deal) as run:
        staffed = []
        for person in (hired, raised):
            person.user = await run.user_of(person.worker_id)
            person.first_day = await _first_day(run.http, run.psa, person.user)
            staffed.append(await _staff(run.http, run.psa, deal, person, today))
        say(
            f"{hired.name} is PSA user {hired.user}, staffed on {deal.name} from today; "
            f"both log approved time"
        )
        for entry in entries:
            entry.entry_id = await run.log_time(entry.person.user, entry.day, entry.minutes)
        ids = [e.entry_id for e in entries]
        await run.until(lambda: len(run.erp_rows(ids)) == len(ids), "the workforce postings")
    await _read_erp(stack, [hired, raised], entries)
    say(
        "; ".join(
            f"{e.person.name} {e.day}: {e.hours:.1f} h cost {e.cost} in the ERP" for e in entries
        )
    )
    checks = _checks(hired, raised, entries, today, all(staffed))
    return WorkforceOutcome(hired.worker_id, raised.worker_id, checks, _table(entries))


async def _enter_in_hcm(stack: Stack, hired: _Person, raised: _Person, today: date) -> None:
    """Hire both in the HCM twin (Hire Employee) and enter their raises (Request Compensation
    Change), as HR would in Workday."""
    import httpx

    from sandbox.seed import build_firm

    # a cost center the ERP has (the seeded firm's), in the practice they join
    cost_center = next(w.cost_center for w in build_firm(7).workers if w.practice == PRACTICE)
    tenant = stack.settings.hcm.tenant
    base = f"{stack.settings.hcm.base_url}/ccx/api/v1/{tenant}"
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=AUTH) as hcm:
        for person, rate, raise_on in (
            (hired, TOMORROWS_RATE, today + timedelta(days=1)),
            (raised, RAISE, today),
        ):
            first, last = person.name.split(" ", 1)
            hire = await hcm.post(
                "/workers",
                json={
                    "workerId": person.worker_id,
                    "firstName": first,
                    "lastName": last,
                    "email": f"{person.worker_id.lower()}@example.com",
                    "hireDate": person.hired_on.isoformat(),
                    "jobProfile": ROLE,
                    "location": "Sydney",
                    "timeZone": ZONE,
                    "costCenterId": cost_center,
                    "practice": PRACTICE,
                    "costRate": {"amount": str(HIRE_RATE), "currency": "USD"},
                },
            )
            hire.raise_for_status()
            change = await hcm.post(
                f"/workers/Employee_ID={person.worker_id}/compensationChanges",
                json={
                    "effectiveDate": raise_on.isoformat(),
                    "costRate": {"amount": str(rate), "currency": "USD"},
                },
            )
            change.raise_for_status()


async def _poll_hcm(stack: Stack) -> None:
    """Poll HCM at once (the Schedule polls every PSSYNC_HCM_POLL_INTERVAL_S); a poll already
    running when asked is followed by this one rather than skipped."""
    from temporalio.client import ScheduleOverlapPolicy

    from contracts.v1.worker_termination import HCM_SCHEDULE_ID

    poller = stack.client.get_schedule_handle(HCM_SCHEDULE_ID)
    await poller.trigger(overlap=ScheduleOverlapPolicy.BUFFER_ONE)


async def _lifecycle(
    stack: Stack, worker_id: str, *, applied: int, waiting: int, timeout_s: float = 60
) -> LifecycleStatus:
    """The worker's lifecycle run once it has applied `applied` changes and holds `waiting`
    for a later day (bounded wait)."""
    from contracts.v1.processes import STATUS_QUERY
    from contracts.v1.workforce import LifecycleStatus, lifecycle_workflow_id

    handle = stack.client.get_workflow_handle(
        lifecycle_workflow_id(stack.settings.hcm.tenant, worker_id)
    )
    last: list[LifecycleStatus] = []

    async def done() -> bool:
        try:
            status = await handle.query(STATUS_QUERY, result_type=LifecycleStatus)
        except Exception:  # the poll has not started the run yet
            return False
        last[:] = [status]
        done = [h for h in status.history if not h.stale]
        return len(done) == applied and len(status.pending) == waiting

    await _until(done, f"{worker_id}'s lifecycle run", lambda: last, timeout_s)
    return last[0]


async def _until(
    check: Callable[[], Awaitable[bool]], what: str, seen: Callable[[], Any], timeout_s: float
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"workforce: {what} not as expected after {timeout_s}s: {seen()}")
        await asyncio.sleep(0.2)


async def _first_day(http: httpx.AsyncClient, psa: str, user: int) -> str | None:
    """The PSA user's first day for time (Kantata's `Available From` custom field)."""
    got = await http.get(f"{psa}/users/{user}.json")
    got.raise_for_status()
    start = next(iter(got.json()["users"].values())).get("start_date")
    return None if start is None else str(start)


async def _staff(
    http: httpx.AsyncClient, psa: str, deal: DealOutcome, person: _Person, today: date
) -> bool:
    """Assign the person to the deal's PSA project from their hire date or yesterday, whichever
    is later (the new hire from today; the earlier hire for the time they log)."""
    assignment = await http.post(
        f"{psa}/assignments.json",
        json={
            "assignment": {
                "workspace_id": int(deal.psa_project_id or 0),
                "user_id": person.user,
                "role": ROLE,
                "start_date": max(person.hired_on, today - timedelta(days=1)).isoformat(),
                "end_date": (today + timedelta(days=30)).isoformat(),
                "allocated_minutes": 4800,
            }
        },
    )
    return assignment.status_code == 200


async def _read_erp(stack: Stack, people: list[_Person], entries: list[_Entry]) -> None:
    """What the ERP twin holds: each entry's cost, each worker's rate history and labor cost."""
    import httpx
    from sqlalchemy import text

    assert stack.sandbox is not None
    engine = stack.sandbox.state("erp").engine
    ids = ",".join(f"'{e.entry_id}'" for e in entries)
    workers = ",".join(f"'{p.worker_id}'" for p in people)
    with engine.connect() as conn:
        costs = dict(
            conn.execute(
                text(
                    "SELECT source_entry, cost_amount FROM erp_timebill "
                    f"WHERE source_entry IN ({ids}) AND reverses_id IS NULL"
                )
            ).all()
        )
        history = conn.execute(
            text(
                "SELECT employee, effective, rate FROM erp_labor_cost_rate "
                f"WHERE employee IN ({workers}) ORDER BY effective"
            )
        ).all()
    for entry in entries:
        posted = costs.get(entry.entry_id)
        entry.cost = None if posted is None else Decimal(str(posted)).quantize(Decimal("0.01"))
    erp = f"{stack.settings.erp.base_url}/services/rest/record/v1/employee"
    async with httpx.AsyncClient(timeout=60, headers=AUTH) as http:
        for person in people:
            person.history = tuple(
                (date.fromisoformat(str(r.effective)), Decimal(str(r.rate)))
                for r in history
                if r.employee == person.worker_id
            )
            got = await http.get(f"{erp}/eid:{person.worker_id}")
            cost = got.json().get("laborCost") if got.status_code == 200 else None
            person.labor_cost = (
                None if cost is None else Decimal(str(cost)).quantize(Decimal("0.01"))
            )


def _checks(
    hired: _Person, raised: _Person, entries: list[_Entry], today: date, staffed: bool
) -> list[Check]:
    new, before, after = entries

    def costed(entry: _Entry) -> bool:
        return entry.cost is not None and entry.cost == entry.expected_cost

    return [
        Check(
            "workforce: a hire effective today in Sydney is an ERP employee and a PSA user, "
            "staffed and booking time that day",
            hired.user > 0
            and hired.first_day == today.isoformat()
            and staffed
            and hired.labor_cost is not None,
            f"PSA user {hired.user} from {hired.first_day}, staffed {staffed}; ERP employee "
            f"{hired.worker_id} {'made by pssync' if hired.labor_cost is not None else 'missing'}",
        ),
        Check(
            "workforce: a raise effective tomorrow waits; today's time costs the hire's rate",
            costed(new)
            and [day for day, _rate in hired.waiting] == [today + timedelta(days=1)]
            and all(effective <= today for effective, _rate in hired.history)
            and hired.labor_cost == HIRE_RATE,
            f"{new.hours:.2f} h cost {new.cost} (expected {new.expected_cost}); "
            f"ERP rates {_rates(hired)}; waiting in pssync: {_waiting(hired)}",
        ),
        Check(
            "workforce: a raise effective today costs today's time, not yesterday's",
            costed(before) and costed(after) and raised.labor_cost == RAISE,
            f"yesterday {before.cost} (expected {before.expected_cost}), "
            f"today {after.cost} (expected {after.expected_cost}); ERP labor cost "
            f"{raised.labor_cost}",
        ),
    ]


def _table(entries: list[_Entry]) -> Table:
    """The workforce lines: each worker with their PSA user and the cost rates the ERP holds
    (and those pssync holds back until their day), then each entry and what the ERP costed it."""
    table = Table(title=f"workforce: people joining in {ZONE}")
    for column in ("worker", "PSA user", "cost rates (USD/h)", "time costed in the ERP"):
        table.add_column(column)
    shown: set[str] = set()
    for e in entries:
        p = e.person
        first = p.worker_id not in shown
        shown.add(p.worker_id)
        rates = "ERP:\n" + _rates(p, "\n") + f"\nin force: {p.labor_cost}"
        if p.waiting:
            rates += "\npssync waits:\n" + _waiting(p, "\n")
        rate = "?" if e.cost is None else f"{e.cost / e.hours:.2f}"
        table.add_row(
            f"{p.name}\n{p.worker_id}\nhired {p.hired_on}" if first else "",
            f"user {p.user}\nbooks from\n{p.first_day}" if first else "",
            rates if first else "",
            f"{e.day}: {e.hours:.2f} h\nx {rate} = {e.cost} USD",
        )
    return table


def _rates(person: _Person, sep: str = ", ") -> str:
    return sep.join(f"{effective}: {rate:.2f}" for effective, rate in person.history)


def _waiting(person: _Person, sep: str = ", ") -> str:
    return sep.join(f"{effective}: {rate}" for effective, rate in person.waiting) or "-"
