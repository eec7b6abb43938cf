"""Activities of the worker-termination process: conflicts, assignments, backfill, time entry.

Every write is safe to repeat and has its compensation here too: `end_assignments` /
`restore_assignments`, `raise_backfill` / `cancel_backfill`, `close_time_entry` /
`reopen_time_entry`. Snapshots of what was changed travel in the workflow's state, taken by a
read-only activity before the write, so a crash between the write and its answer still leaves
the workflow able to undo it. ERP posting lives in `activities/time_posting.py`; the HCM poller
in `activities/hcm_poll.py`. The composition root (`worker.py`) builds and registers them.
"""

from __future__ import annotations

from datetime import date, timedelta

from pydantic import BaseModel, Field
from temporalio import activity

from activities._errors import translate_errors
from connectors.hcm import HcmPort
from connectors.psa import PsaPort
from contracts.errors import NotFoundError
from contracts.systems import System
from contracts.v1 import Assignment, AssignmentKind, ChangeOrder, TimeEntry, Worker
from contracts.v1.worker_termination import EndedAssignment


class FindConflicts(BaseModel):
    worker_id: str
    last_day_worked: date


class Conflicts(BaseModel):
    """What stands in the way of a clean termination, found at once when it is entered."""

    assignments_after_last_day: list[Assignment] = Field(default_factory=list)
    unapproved_time: list[TimeEntry] = Field(default_factory=list)
    """Entries on or before the last day still waiting for approval."""
    change_orders_to_approve: list[ChangeOrder] = Field(default_factory=list)
    project_managers: dict[str, str | None] = Field(default_factory=dict)
    """PSA project id -> its delivery manager (HCM worker id), for every project involved."""


class ReadWorker(BaseModel):
    worker_id: str


class AssignmentsAfter(BaseModel):
    worker_id: str
    last_day_worked: date


class EndAssignments(BaseModel):
    last_day_worked: date
    assignments: list[Assignment]
    """Snapshots taken by `assignments_after` before anything changed."""


class RestoreAssignments(BaseModel):
    ended: list[EndedAssignment]


class Backfill(BaseModel):
    worker_id: str
    last_day_worked: date
    assignments: list[Assignment]


class TimeEntryClosure(BaseModel):
    worker_id: str
    last_day_worked: date | None = None


def backfill_demand(worker_id: str, last_day: date, assignment: Assignment) -> Assignment | None:
    """The role demand left open by ending `assignment` after `last_day` (None if nothing
    remains). Its `external_id` is the demand key the PSA dedupes resource requests by."""
    start = max(assignment.start_date, last_day + timedelta(days=1))
    if start > assignment.end_date:
        return None
    total_days = (assignment.end_date - assignment.start_date).days + 1
    remaining_days = (assignment.end_date - start).days + 1
    minutes = assignment.allocated_minutes * remaining_days // total_days
    return Assignment(
        external_id=f"backfill:{worker_id}:{assignment.external_id}",
        project_id=assignment.project_id,
        role=assignment.role,
        kind=AssignmentKind.ROLE_DEMAND,
        start_date=start,
        end_date=assignment.end_date,
        allocated_minutes=minutes,
        source_system=System.PSSYNC,
    )


class TerminationActivities:
    def __init__(self, psa: PsaPort, hcm: HcmPort) -> None:
        self.psa = psa
        self.hcm = hcm

    @activity.defn(name="termination.find_conflicts")
    @translate_errors
    async def find_conflicts(self, request: FindConflicts) -> Conflicts:
        after = await self._running_past(request.worker_id, request.last_day_worked)
        unapproved = await self.psa.list_worker_time(
            request.worker_id, performed_through=request.last_day_worked, approved=False
        )
        change_orders = await self.psa.list_change_orders_awaiting(request.worker_id)
        projects = {a.project_id for a in after} | {e.project_id for e in unapproved}
        projects |= {co.project_id for co in change_orders}
        managers: dict[str, str | None] = {}
        for project_id in sorted(projects):
            try:
                managers[project_id] = (await self.psa.get_project(project_id)).delivery_manager
            except NotFoundError:
                managers[project_id] = None
        return Conflicts(
            assignments_after_last_day=after,
            unapproved_time=unapproved,
            change_orders_to_approve=change_orders,
            project_managers=managers,
        )

    @activity.defn(name="termination.read_worker")
    @translate_errors
    async def read_worker(self, request: ReadWorker) -> Worker:
        return await self.hcm.get_worker(request.worker_id)

    @activity.defn(name="termination.assignments_after")
    @translate_errors
    async def assignments_after(self, request: AssignmentsAfter) -> list[Assignment]:
        """Read-only snapshot of the assignments running past the last day."""
        return await self._running_past(request.worker_id, request.last_day_worked)

    async def _running_past(self, worker_id: str, last_day: date) -> list[Assignment]:
        """The worker's assignments that end after `last_day`."""
        assignments = await self.psa.list_assignments(worker_id=worker_id)
        return [a for a in assignments if a.end_date > last_day]

    @activity.defn(name="termination.end_assignments")
    @translate_errors
    async def end_assignments(self, request: EndAssignments) -> list[EndedAssignment]:
        """End each assignment on the last day; one that starts after it is removed."""
        ended: list[EndedAssignment] = []
        for before in request.assignments:
            if before.start_date > request.last_day_worked:
                await self.psa.delete_assignment(before.external_id)
                ended.append(EndedAssignment(before=before, action="deleted"))
                continue
            try:
                await self.psa.update_assignment_end(before.external_id, request.last_day_worked)
            except NotFoundError:
                continue  # removed in the PSA meanwhile: nothing left to end
            ended.append(EndedAssignment(before=before, action="end_dated"))
        return ended

    @activity.defn(name="termination.restore_assignments")
    @translate_errors
    async def restore_assignments(self, request: RestoreAssignments) -> int:
        """Compensation: every assignment back as it was before the termination."""
        for item in request.ended:
            await self.psa.restore_assignment(item.before)
        return len(request.ended)

    async def _demands(self, request: Backfill) -> dict[str, list[Assignment]]:
        by_project: dict[str, list[Assignment]] = {}
        for a in request.assignments:
            demand = backfill_demand(request.worker_id, request.last_day_worked, a)
            if demand is not None:
                by_project.setdefault(a.project_id, []).append(demand)
        return by_project

    @activity.defn(name="termination.raise_backfill")
    @translate_errors
    async def raise_backfill(self, request: Backfill) -> list[str]:
        """One resource request per ended assignment for the demand after the last day."""
        ids: list[str] = []
        for project_id, demands in (await self._demands(request)).items():
            ids.extend(await self.psa.create_resource_requests(project_id, demands))
        return ids

    @activity.defn(name="termination.cancel_backfill")
    @translate_errors
    async def cancel_backfill(self, request: Backfill) -> int:
        """Compensation: find the requests by their demand keys (so also those raised by an
        attempt whose answer was lost) and cancel them."""
        cancelled = 0
        for project_id, demands in (await self._demands(request)).items():
            for request_id in await self.psa.create_resource_requests(project_id, demands):
                await self.psa.cancel_resource_request(request_id)
                cancelled += 1
        return cancelled

    @activity.defn(name="termination.close_time_entry")
    @translate_errors
    async def close_time_entry(self, request: TimeEntryClosure) -> None:
        assert request.last_day_worked is not None
        await self.psa.close_resource_to_time(request.worker_id, request.last_day_worked)

    @activity.defn(name="termination.reopen_time_entry")
    @translate_errors
    async def reopen_time_entry(self, request: TimeEntryClosure) -> None:
        await self.psa.reopen_resource_to_time(request.worker_id)
