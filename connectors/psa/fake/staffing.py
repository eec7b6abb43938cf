"""The in-memory PSA's resource requests, assignments, resources and change orders."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from connectors.psa._constants import SYSTEM
from connectors.psa.fake._base import FakePsaBase, _found, _refused
from connectors.psa.mapping import _CO_STATES, _CO_STATES_BACK
from contracts.errors import NotFoundError, StaleVersionError
from contracts.systems import System
from contracts.v1 import Assignment, AssignmentKind, ChangeOrder, ChangeOrderStatus

# The PSA's change-order workflow (mirrors the twin's and Kantata's approval states).
_CO_TRANSITIONS: dict[str, set[str]] = {
    "submitted": {"approved", "rejected", "expired"},
    "approved": {"applied", "rejected"},
    "applied": {"approved"},
    "rejected": set(),
    "expired": set(),
}


class FakeStaffingMixin(FakePsaBase):
    """`FakePsa`'s resource requests, assignments, resources and change orders."""

    # ---------------------------------------------------------------- staffing demand

    async def create_resource_requests(
        self, psa_id: str, demands: Sequence[Assignment]
    ) -> list[str]:
        self._enter("create_resource_requests")
        self._open_project(psa_id)
        ids: list[str] = []
        for demand in demands:
            if demand.end_date < demand.start_date:
                raise _refused("end date must be on or after the start date", "end_date")
            found = next(
                (
                    rid
                    for rid, (d, key, _) in self.resource_requests.items()
                    if d.project_id == psa_id
                    and d.role == demand.role
                    and key == demand.external_id
                ),
                None,
            )
            if found is not None:
                d, key, _ = self.resource_requests[found]
                self.resource_requests[found] = (d, key, "open")
                ids.append(found)
                continue
            rid = self._id()
            stored = demand.model_copy(
                update={
                    "external_id": rid,
                    "project_id": psa_id,
                    "kind": AssignmentKind.ROLE_DEMAND,
                    "worker_id": None,
                    "source_system": System.PSA,
                    "source_version": "1",
                }
            )
            self.resource_requests[rid] = (stored, demand.external_id, "open")
            ids.append(rid)
        return ids

    async def cancel_resource_request(self, request_id: str) -> None:
        self._enter("cancel_resource_request")
        if request_id in self.resource_requests:
            d, key, _ = self.resource_requests[request_id]
            self.resource_requests[request_id] = (d, key, "cancelled")

    async def list_resource_requests(
        self, psa_id: str, *, include_cancelled: bool = False
    ) -> list[Assignment]:
        self._enter("list_resource_requests")
        return [
            d
            for d, _, status in self.resource_requests.values()
            if d.project_id == psa_id and (include_cancelled or status != "cancelled")
        ]

    # ---------------------------------------------------------------- assignments

    async def list_assignments(
        self, project_id: str | None = None, worker_id: str | None = None
    ) -> list[Assignment]:
        self._enter("list_assignments")
        return [
            a
            for a in self.assignments.values()
            if (project_id is None or a.project_id == project_id)
            and (worker_id is None or a.worker_id == worker_id)
        ]

    async def get_assignment(self, assignment_id: str) -> Assignment:
        self._enter("get_assignment")
        return _found(self.assignments, assignment_id, "assignment")

    async def update_assignment_end(
        self, assignment_id: str, end_date: date, *, expected_version: str | None = None
    ) -> Assignment:
        self._enter("update_assignment_end")
        current = self.assignments.get(assignment_id)
        if current is None:
            raise NotFoundError(f"assignment {assignment_id} not found", system=SYSTEM)
        if expected_version is not None and expected_version != current.source_version:
            raise StaleVersionError(
                f"assignment {assignment_id} is at version {current.source_version}",
                system=SYSTEM,
            )
        if end_date < current.start_date:
            raise _refused("end date must be on or after the start date", "end_date")
        if end_date != current.end_date:
            self.assignments[assignment_id] = self._bump(current, end_date=end_date)
        return self.assignments[assignment_id]

    async def delete_assignment(self, assignment_id: str) -> None:
        self._enter("delete_assignment")
        self.assignments.pop(assignment_id, None)

    async def restore_assignment(self, assignment: Assignment) -> Assignment:
        self._enter("restore_assignment")
        current = self.assignments.get(assignment.external_id)
        fields = {
            "worker_id": assignment.worker_id,
            "kind": assignment.kind,
            "role": assignment.role,
            "start_date": assignment.start_date,
            "end_date": assignment.end_date,
            "allocated_minutes": assignment.allocated_minutes,
        }
        if current is not None:
            if any(getattr(current, k) != v for k, v in fields.items()):
                self.assignments[current.external_id] = self._bump(current, **fields)
            return self.assignments[current.external_id]
        restored = assignment.model_copy(update={"external_id": self._id(), "source_version": "1"})
        self.assignments[restored.external_id] = restored
        return restored

    # ---------------------------------------------------------------- resources

    async def close_resource_to_time(self, worker_id: str, after: date) -> None:
        self._enter("close_resource_to_time")
        if worker_id not in self.users:
            raise NotFoundError(f"no PSA user for worker {worker_id}", system=SYSTEM)
        self.users[worker_id].closed_after = after

    async def reopen_resource_to_time(self, worker_id: str) -> None:
        self._enter("reopen_resource_to_time")
        if worker_id not in self.users:
            raise NotFoundError(f"no PSA user for worker {worker_id}", system=SYSTEM)
        self.users[worker_id].closed_after = None

    # ---------------------------------------------------------------- change orders

    async def get_change_order(self, change_order_id: str) -> ChangeOrder:
        self._enter("get_change_order")
        return _found(self.change_orders, change_order_id, "change order")

    async def set_change_order_state(
        self, change_order_id: str, state: ChangeOrderStatus
    ) -> ChangeOrder:
        self._enter("set_change_order_state")
        co = await self.get_change_order(change_order_id)
        current, wanted = _CO_STATES[co.status], _CO_STATES[state]
        if current == wanted:
            return co
        if wanted not in _CO_TRANSITIONS[current]:
            raise _refused(
                f"change order {change_order_id} cannot go from {current} to {wanted}", "state"
            )
        self.change_orders[change_order_id] = self._bump(co, status=_CO_STATES_BACK[wanted])
        return self.change_orders[change_order_id]

    async def list_change_orders_awaiting(self, approver: str) -> list[ChangeOrder]:
        self._enter("list_change_orders_awaiting")
        return [
            co
            for co in self.change_orders.values()
            if _CO_STATES[co.status] == "submitted"
            and co.project_id in self.projects
            and self.projects[co.project_id].project.delivery_manager == approver
        ]
