"""The PSA and ERP the bench writes to: the connectors' in-memory fakes, each keeping a log of
every write (when, what), and the checks read from their state and logs.

An out-of-order application is a write that puts a worker's field back to the value of an
older change (by effective instant, then HCM sequence) than the one it held, or leaves a field
at the end on any value but the last change's. Leave periods are checked on their own: the last
leave change must be what the PSA's calendar shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from bench._workforce.plan import Expected, Key, norm
from connectors.erp import FakeErp
from connectors.erp.labor_cost import LaborCostRate, rate_on
from connectors.psa import FakePsa
from connectors.psa.resources import PsaResource
from contracts.v1.workforce import WorkerChangeKind

PSA_FIELDS = ("role", "location", "practice", "manager_id", "fte")


class ResourceWriteLog:
    """Mixed in front of a PSA port (`FakePsa`, `KantataPsa`): every resource write logged in
    `writes` (monotonic time, resource)."""

    writes: list[tuple[float, PsaResource]]

    async def upsert_resource(
        self, resource: PsaResource, *, current: PsaResource | None = None
    ) -> PsaResource:
        out: PsaResource = await super().upsert_resource(  # type: ignore[misc]
            resource, current=current
        )
        self.writes.append((time.monotonic(), resource.model_copy(deep=True)))
        return out


class LoggedPsa(ResourceWriteLog, FakePsa):
    """`FakePsa` with every resource write logged (monotonic time, resource)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = []


class LoggedErp(FakeErp):
    """`FakeErp` with every labor cost write logged (monotonic time, row, row in force after)."""

    def __init__(self) -> None:
        super().__init__(cost_centers=["CC-110"])
        self.writes: list[tuple[float, LaborCostRate, LaborCostRate | None]] = []
        self.calls = 0

    async def put_labor_cost_rate(self, rate: LaborCostRate, *, today: date) -> LaborCostRate:
        self.calls += 1
        out = await super().put_labor_cost_rate(rate, today=today)
        in_force = rate_on(self.labor_rates.get(rate.worker_id, []), today)
        self.writes.append((time.monotonic(), rate, in_force))
        return out

    async def labor_cost_rates(self, worker_id: str) -> list[LaborCostRate]:
        self.calls += 1
        return await super().labor_cost_rates(worker_id)


@dataclass
class Verdict:
    workers: int = 0
    workers_wrong: int = 0
    fields_wrong: int = 0
    leaves_wrong: int = 0
    out_of_order_writes: int = 0
    """Writes that put a field back to an older change's value."""
    by_field: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    @property
    def out_of_order(self) -> int:
        return self.out_of_order_writes + self.fields_wrong + self.leaves_wrong

    def report(self) -> dict[str, Any]:
        return {
            "out_of_order_applications": self.out_of_order,
            "out_of_order_writes": self.out_of_order_writes,
            "final_fields_wrong": self.fields_wrong,
            "final_leaves_wrong": self.leaves_wrong,
            "workers_checked": self.workers,
            "workers_wrong": self.workers_wrong,
            "wrong_by_field": dict(sorted(self.by_field.items())),
            "examples": self.examples[:5],
        }

    def wrong(self, what: str, example: str) -> None:
        self.by_field[what] = self.by_field.get(what, 0) + 1
        if len(self.examples) < 20:
            self.examples.append(example)


def verify(psa: LoggedPsa, erp: LoggedErp, expected: dict[str, Expected]) -> Verdict:
    """Each worker's final PSA resource and ERP labor cost against the last change of each
    field; every logged write against the writes before it."""
    v = Verdict(workers=len(expected))
    for wid, exp in expected.items():
        before = v.fields_wrong + v.leaves_wrong
        resource = psa.resources.get(wid)
        for name in PSA_FIELDS:
            want = exp.fields.get(name)
            got = None if resource is None else norm(getattr(resource, name))
            if want is not None and got != want[0]:
                v.fields_wrong += 1
                v.wrong(name, f"{wid}.{name}: PSA holds {got!r}, last change set {want[0]!r}")
        rate = exp.fields.get("cost_rate")
        held = erp.cost_rates.get(wid)
        got_rate = None if held is None else norm(held)
        if rate is not None and got_rate != rate[0]:
            v.fields_wrong += 1
            what = "cost_rate_same_day_correction" if _tie(erp, wid, rate[0]) else "cost_rate"
            v.wrong(what, f"{wid}.cost_rate: ERP holds {got_rate!r}, last set {rate[0]!r}")
        if resource is not None and resource.available_from != exp.available_from:
            v.fields_wrong += 1
            v.wrong("available_from", f"{wid}: available from {resource.available_from}")
        if not _leave_ok(resource, exp):
            v.leaves_wrong += 1
            v.wrong("leave", f"{wid}: leaves {resource.leaves if resource else None}")
        if v.fields_wrong + v.leaves_wrong > before:
            v.workers_wrong += 1
    v.out_of_order_writes = _regressions(psa, erp, expected, v)
    return v


def _tie(erp: LoggedErp, wid: str, want: Any) -> bool:
    """The ERP holds the last rate as a row, but an earlier row on the same effective day is
    the one in force (a same-day correction that did not take)."""
    rows = erp.labor_rates.get(wid, [])
    mine = [r for r in rows if norm(r.rate) == want]
    in_force = rate_on(rows, date.max)
    return bool(mine) and in_force is not None and mine[0].effective_from == in_force.effective_from


def _leave_ok(resource: PsaResource | None, exp: Expected) -> bool:
    last = exp.leave
    if last is None or last.kind is WorkerChangeKind.HIRE:
        return True
    leaves = [] if resource is None else resource.leaves
    if last.kind is WorkerChangeKind.LEAVE_START:
        return any(p.start == last.effective_date and p.end == last.leave_until for p in leaves)
    back = last.effective_date
    return not any(p.overlaps(back, back) for p in leaves)


def _regressions(psa: LoggedPsa, erp: LoggedErp, expected: dict[str, Expected], v: Verdict) -> int:
    count = 0
    held: dict[tuple[str, str], Key] = {}
    for _, resource in psa.writes:
        exp = expected.get(resource.worker_id)
        if exp is None:
            continue
        back = False
        for name in PSA_FIELDS:
            key = exp.values.get((name, norm(getattr(resource, name))))
            if key is None:
                continue
            prev = held.get((resource.worker_id, name))
            if prev is not None and key < prev:
                back = True
            else:
                held[(resource.worker_id, name)] = key
        count += back
    for _, _row, in_force in erp.writes:
        if in_force is None:
            continue
        exp = expected.get(in_force.worker_id)
        key = None if exp is None else exp.values.get(("cost_rate", norm(in_force.rate)))
        if key is None:
            continue
        prev = held.get((in_force.worker_id, "cost_rate"))
        if prev is not None and key < prev:
            count += 1
        else:
            held[(in_force.worker_id, "cost_rate")] = key
    return count


def psa_calls(psa: FakePsa) -> int:
    return len(psa.calls)


def last_write(psa: LoggedPsa, erp: LoggedErp) -> float | None:
    moments = [t for t, _ in psa.writes[-1:]] + [t for t, _, _ in erp.writes[-1:]]
    return max(moments) if moments else None
