"""The lifecycle changes the bench enters in the HCM twin, and what each worker must end up as.

Every worker is hired 120 days ago (in their own zone) and then gets transfers, job changes,
FTE changes, cost-rate changes and leaves (a start, usually followed by the return), entered
one after the other through the twin's Workday business processes. Their effective dates are
drawn at random between the hire and the worker's today, so many are entered after a change
effective later (back-dated: out of order by effective date), about one in ten is effective on
the worker's today, and some cost-rate changes correct an earlier one on the same day. No date
is in the future: the lifecycle runs apply everything at once, no timer holds the bench.

Each value a change sets is unique for its worker and field (`Loc-3`, `Role-5`, a cost rate
of 103.25), so a value read from the PSA or the ERP names the change it came from.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from contracts.money import Money
from contracts.v1.workforce import WorkerChange, WorkerChangeKind, local_day

ZONES = (
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Pacific/Auckland",
)
HIRED_DAYS_AGO = 120
SCALAR_FIELDS = ("role", "location", "practice", "manager_id", "fte", "cost_rate")
"""The state fields checked against the last change that set them."""
Key = tuple[datetime, int]


@dataclass
class Op:
    """One business process to enter in the twin: `path` under the worker, and its body."""

    worker_id: str
    kind: WorkerChangeKind
    path: str
    body: dict[str, Any]


@dataclass
class WorkerPlan:
    worker_id: str
    time_zone: str
    ops: list[Op] = field(default_factory=list)


def _amount(value: Decimal) -> dict[str, str]:
    return {"amount": str(value), "currency": "USD"}


def _rate(n: int) -> Decimal:
    return Decimal(100 + n) + Decimal("0.25")


def plan_workers(workers: int, changes: int, *, now: datetime, seed: int) -> list[WorkerPlan]:
    """`workers` hires and `changes` lifecycle changes in all (hires included), spread evenly."""
    rng = random.Random(seed)
    plans: list[WorkerPlan] = []
    per_worker = max(1, changes // workers)
    extra = changes - per_worker * workers
    for i in range(workers):
        wid = f"WF{i:05d}"
        tz = ZONES[i % len(ZONES)]
        today = local_day(now, tz)
        hired = today - timedelta(days=HIRED_DAYS_AGO)
        plan = WorkerPlan(wid, tz)
        plan.ops.append(
            Op(
                wid,
                WorkerChangeKind.HIRE,
                "",
                {
                    "workerId": wid,
                    "firstName": "Bench",
                    "lastName": wid,
                    "email": f"{wid.lower()}@bench.example",
                    "hireDate": hired.isoformat(),
                    "jobProfile": "Role-0",
                    "location": "Loc-0",
                    "timeZone": tz,
                    "costCenterId": "CC-110",
                    "practice": "Practice-0",
                    "managerWorkerId": f"M{i}-0",
                    "fte": "0.50",
                    "costRate": _amount(_rate(0)),
                },
            )
        )
        count = per_worker + (1 if i < extra else 0)
        _more_ops(plan, count - 1, rng, hired, today, i)
        plans.append(plan)
    return plans


def _more_ops(
    plan: WorkerPlan, count: int, rng: random.Random, hired: date, today: date, i: int
) -> None:
    wid = plan.worker_id
    last_rate_day = hired
    n = 0
    while n < count:
        n += 1
        day = (
            today if rng.random() < 0.1 else hired + timedelta(days=rng.randint(1, HIRED_DAYS_AGO))
        )
        roll = rng.random()
        if roll < 0.2:
            body = {
                "type": "transfer",
                "effectiveDate": day.isoformat(),
                "location": f"Loc-{n}",
                "costCenterId": f"CC-{n}",
                "practice": f"Practice-{n}",
                "managerWorkerId": f"M{i}-{n}",
            }
            plan.ops.append(Op(wid, WorkerChangeKind.TRANSFER, "jobChanges", body))
        elif roll < 0.35:
            body = {
                "type": "job_change",
                "effectiveDate": day.isoformat(),
                "jobProfile": f"Role-{n}",
            }
            plan.ops.append(Op(wid, WorkerChangeKind.JOB_CHANGE, "jobChanges", body))
        elif roll < 0.5:
            fte = Decimal(50 + n % 50) / 100
            body = {"type": "fte_change", "effectiveDate": day.isoformat(), "fte": str(fte)}
            plan.ops.append(Op(wid, WorkerChangeKind.FTE_CHANGE, "jobChanges", body))
        elif roll < 0.8:
            if rng.random() < 0.15:
                day = last_rate_day  # a correction of the last rate, same effective day
            last_rate_day = max(last_rate_day, day)
            body = {"effectiveDate": day.isoformat(), "costRate": _amount(_rate(n))}
            plan.ops.append(Op(wid, WorkerChangeKind.COST_RATE_CHANGE, "compensationChanges", body))
        else:
            start = min(day, today - timedelta(days=1))
            until = start + timedelta(days=rng.randint(3, 15))
            plan.ops.append(
                Op(
                    wid,
                    WorkerChangeKind.LEAVE_START,
                    "leavesOfAbsence",
                    {
                        "firstDayOfLeave": start.isoformat(),
                        "estimatedLastDayOfLeave": until.isoformat(),
                    },
                )
            )
            if n < count:
                n += 1
                back = min(start + timedelta(days=rng.randint(1, 20)), today)
                plan.ops.append(
                    Op(
                        wid,
                        WorkerChangeKind.LEAVE_END,
                        "returnFromLeave",
                        {"firstDayBackAtWork": back.isoformat()},
                    )
                )


async def enter(http: httpx.AsyncClient, base: str, tenant: str, plan: WorkerPlan) -> None:
    """Enter the worker's business processes in the twin, one after the other."""
    root = f"{base}/ccx/api/v1/{quote(tenant, safe='')}/workers"
    ref = quote(f"Employee_ID={plan.worker_id}", safe="=")
    for op in plan.ops:
        url = root if op.kind is WorkerChangeKind.HIRE else f"{root}/{ref}/{op.path}"
        r = await http.post(url, json=op.body)
        if r.status_code >= 300:
            raise RuntimeError(f"{op.kind} {plan.worker_id}: {r.status_code} {r.text[:300]}")


# --------------------------------------------------------------------------- expectations


def key_of(change: WorkerChange) -> Key:
    return (change.effective_at, change.sequence)


@dataclass
class Expected:
    """What a worker must end up as: each field's value from the last change (by effective
    instant, then HCM sequence) that set it, and that change's key."""

    worker_id: str
    fields: dict[str, tuple[Any, Key]] = field(default_factory=dict)
    leave: WorkerChange | None = None
    """The last change that set the leave (a hire, a leave start or a return)."""
    available_from: date | None = None
    values: dict[tuple[str, Any], Key] = field(default_factory=dict)
    """(field, value) -> the key of the change that set it (values are unique per worker)."""
    events: int = 0


def field_values(change: WorkerChange) -> dict[str, Any]:
    return {
        name: getattr(change, name) for name in SCALAR_FIELDS if getattr(change, name) is not None
    }


def expectations(changes: list[WorkerChange]) -> dict[str, Expected]:
    """Per worker, from the changes as the connector read them from the twin."""
    out: dict[str, Expected] = {}
    for change in changes:
        exp = out.setdefault(change.worker_id, Expected(change.worker_id))
        exp.events += 1
        key = key_of(change)
        for name, value in field_values(change).items():
            exp.values[(name, _norm(value))] = key
            held = exp.fields.get(name)
            if held is None or key > held[1]:
                exp.fields[name] = (_norm(value), key)
        if change.kind in (
            WorkerChangeKind.HIRE,
            WorkerChangeKind.LEAVE_START,
            WorkerChangeKind.LEAVE_END,
        ) and (exp.leave is None or key > key_of(exp.leave)):
            exp.leave = change
        if change.kind is WorkerChangeKind.HIRE:
            exp.available_from = change.effective_date
    return out


def _norm(value: Any) -> Any:
    """Values compared as the systems hold them (an FTE of 0.5 is 0.50)."""
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, Money):
        return (value.amount.normalize(), value.currency)
    return value


def norm(value: Any) -> Any:
    return _norm(value)


def delivered_out_of_order(changes: list[WorkerChange]) -> int:
    """Changes delivered after a change of the same worker with a later key."""
    newest: dict[str, Key] = {}
    late = 0
    for change in changes:
        key = key_of(change)
        seen = newest.get(change.worker_id)
        if seen is not None and key < seen:
            late += 1
        else:
            newest[change.worker_id] = key
    return late


def now_utc() -> datetime:
    return datetime.now(UTC)
