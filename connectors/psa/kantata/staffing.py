"""Kantata staffing: resource requests, assignments, users' time-entry window, change orders."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date
from typing import Any

from connectors.psa._constants import API, DEMAND_MARKER, SYSTEM
from connectors.psa._values import _marker_code, assignee_of, required_ref
from connectors.psa.kantata._base import Included, KantataBase
from connectors.psa.mapping import (
    _CO_STATES,
    assignment_from_kantata,
    change_order_from_kantata,
    resource_request_from_kantata,
)
from contracts.errors import ConflictError, NotFoundError, StaleVersionError
from contracts.v1 import Assignment, ChangeOrder, ChangeOrderStatus

ASSIGNMENT_INCLUDE = "assignee,story"
"""Kantata sends an assignment's `assignee_id` and `story_id` only when `assignee` and `story`
are included; its project and dates are its story's (published Assignment schema)."""


class StaffingMixin(KantataBase):
    """`KantataPsa`'s resource requests, assignments, resources and change orders."""

    # ---------------------------------------------------------------- staffing demand

    async def create_resource_requests(
        self, psa_id: str, demands: Sequence[Assignment]
    ) -> list[str]:
        """One open resource request per demand, keyed by (project, role, demand key =
        `Assignment.external_id`); repeats return the same ids, cancelled ones reopen."""
        existing: dict[tuple[str, str], dict[str, Any]] = {}
        for req in await self._all("/resource_requests.json", {"workspace_id": psa_id}):
            key = _marker_code(req.get("notes"), DEMAND_MARKER)
            if key is not None:
                existing.setdefault((str(req.get("role")), key), req)
        ids: list[str] = []
        for demand in demands:
            found = existing.get((demand.role, demand.external_id))
            if found is not None:
                if found.get("status") == "cancelled":
                    await self._call(
                        "PUT",
                        f"/resource_requests/{found['id']}.json",
                        json={"resource_request": {"status": "open"}},
                    )
                ids.append(str(found["id"]))
                continue
            created = await self._create(
                "/resource_requests.json",
                "resource_request",
                {
                    "workspace_id": int(psa_id),
                    "role": demand.role,
                    "start_date": demand.start_date.isoformat(),
                    "end_date": demand.end_date.isoformat(),
                    "minutes": demand.allocated_minutes,
                    "notes": f"{DEMAND_MARKER}{demand.external_id}",
                },
                functools.partial(self._find_demand, psa_id, demand.role, demand.external_id),
            )
            existing[(demand.role, demand.external_id)] = created
            ids.append(str(created["id"]))
        return ids

    async def _find_demand(self, psa_id: str, role: str, key: str) -> dict[str, Any] | None:
        """The resource request for (project, role, demand key), cancelled or not."""
        for req in await self._all("/resource_requests.json", {"workspace_id": psa_id}):
            if (
                str(req.get("role")) == role
                and _marker_code(req.get("notes"), DEMAND_MARKER) == key
            ):
                return req
        return None

    async def cancel_resource_request(self, request_id: str) -> None:
        try:
            req = self._one(await self._call("GET", f"/resource_requests/{request_id}.json"))
        except NotFoundError:
            return
        if req.get("status") != "cancelled":
            await self._call(
                "PUT",
                f"/resource_requests/{request_id}.json",
                json={"resource_request": {"status": "cancelled"}},
            )

    async def list_resource_requests(
        self, psa_id: str, *, include_cancelled: bool = False
    ) -> list[Assignment]:
        found = await self._all("/resource_requests.json", {"workspace_id": psa_id})
        return [
            resource_request_from_kantata(r)
            for r in found
            if include_cancelled or r.get("status") != "cancelled"
        ]

    # ---------------------------------------------------------------- assignments

    async def _assignment(self, obj: dict[str, Any], side: Included | None = None) -> Assignment:
        """Map an assignment, its story (Kantata keeps an assignment's project and dates on
        its task) looked up among the side-loaded `stories`."""
        user = assignee_of(obj)
        story = side.get("stories", obj.get("story_id")) if side is not None else None
        worker = await self._worker_of(user) if user else None
        return assignment_from_kantata(obj, worker, story)

    async def _assignment_of(self, body: dict[str, Any]) -> Assignment:
        """The one assignment of a response read or written with `ASSIGNMENT_INCLUDE`."""
        return await self._assignment(self._one(body), Included.of(body, ("stories",)))

    async def list_assignments(
        self, project_id: str | None = None, worker_id: str | None = None
    ) -> list[Assignment]:
        params: dict[str, Any] = {"include": ASSIGNMENT_INCLUDE}
        if project_id is not None:
            params["workspace_id"] = project_id
        if worker_id is not None:
            user_id = await self._user_of(worker_id)
            if user_id is None:
                return []
            params["assignee_id"] = user_id
        found = await self._all_included("/assignments.json", params, ("stories",))
        return [await self._assignment(a, found) for a in found.objects]

    async def get_assignment(self, assignment_id: str) -> Assignment:
        body = await self._call(
            "GET", f"/assignments/{assignment_id}.json", params={"include": ASSIGNMENT_INCLUDE}
        )
        return await self._assignment_of(body)

    async def _put_assignment(
        self, assignment_id: str, fields: dict[str, Any], expected_version: str | None
    ) -> Assignment:
        if expected_version is not None:
            fields = {**fields, "lock_version": int(expected_version)}
        try:
            body = await self._call(
                "PUT",
                f"/assignments/{assignment_id}.json",
                params={"include": ASSIGNMENT_INCLUDE},
                json={"assignment": fields},
            )
        except ConflictError as exc:
            raise StaleVersionError(exc.message, system=SYSTEM) from exc
        return await self._assignment_of(body)

    async def update_assignment_end(
        self, assignment_id: str, end_date: date, *, expected_version: str | None = None
    ) -> Assignment:
        return await self._put_assignment(
            assignment_id, {"end_date": end_date.isoformat()}, expected_version
        )

    async def delete_assignment(self, assignment_id: str) -> None:
        try:
            await self.http.request("DELETE", f"{API}/assignments/{assignment_id}.json")
        except NotFoundError:
            return

    async def restore_assignment(self, assignment: Assignment) -> Assignment:
        """Compensation: put an assignment back as it was (re-created if it was deleted; the
        re-created one has a new id)."""
        user_id = await self._require_user(assignment.worker_id) if assignment.worker_id else None
        fields: dict[str, Any] = {
            "user_id": int(user_id) if user_id else None,
            "role": assignment.role,
            "start_date": assignment.start_date.isoformat(),
            "end_date": assignment.end_date.isoformat(),
            "allocated_minutes": assignment.allocated_minutes,
        }
        try:
            return await self._put_assignment(assignment.external_id, fields, None)
        except NotFoundError:
            pass

        async def find_same() -> dict[str, Any] | None:
            # Assignments carry no free text for a marker: the assignment itself is the key.
            params: dict[str, Any] = {
                "workspace_id": assignment.project_id,
                "include": ASSIGNMENT_INCLUDE,
            }
            if user_id:
                params["assignee_id"] = user_id
            for obj in await self._all("/assignments.json", params):
                if all(obj.get(k) == v for k, v in fields.items() if k != "user_id") and (
                    str(assignee_of(obj) or "") == str(user_id or "")
                ):
                    return obj
            return None

        # A repeat (the compensation retried after a lost answer) finds the one restored before.
        restored = await find_same()
        if restored is None:
            restored = await self._create(
                "/assignments.json",
                "assignment",
                {**fields, "workspace_id": int(assignment.project_id)},
                find_same,
            )
        return await self._assignment(restored)

    # ---------------------------------------------------------------- resources

    async def close_resource_to_time(self, worker_id: str, after: date) -> None:
        """No time may be entered for the worker after `after` (their last day)."""
        user_id = await self._require_user(worker_id)
        await self._call(
            "PUT",
            f"/users/{user_id}.json",
            json={"user": {"time_entry_closed_after": after.isoformat()}},
        )

    async def reopen_resource_to_time(self, worker_id: str) -> None:
        user_id = await self._require_user(worker_id)
        await self._call(
            "PUT", f"/users/{user_id}.json", json={"user": {"time_entry_closed_after": None}}
        )

    # ---------------------------------------------------------------- change orders

    async def get_change_order(self, change_order_id: str) -> ChangeOrder:
        body = await self._call("GET", f"/change_orders/{change_order_id}.json")
        return change_order_from_kantata(self._one(body))

    async def set_change_order_state(
        self, change_order_id: str, state: ChangeOrderStatus
    ) -> ChangeOrder:
        body = await self._call(
            "PUT",
            f"/change_orders/{change_order_id}.json",
            json={"change_order": {"state": _CO_STATES[state]}},
        )
        return change_order_from_kantata(self._one(body))

    async def list_change_orders_awaiting(self, approver: str) -> list[ChangeOrder]:
        submitted = await self._all("/change_orders.json", {"state": "submitted"})
        managers: dict[str, str | None] = {}
        awaiting: list[ChangeOrder] = []
        for obj in submitted:
            ws_id = required_ref(obj, "change order", "workspace_id")
            if ws_id not in managers:
                ws = self._one(await self._call("GET", f"/workspaces/{ws_id}.json"))
                managers[ws_id] = ws.get("delivery_manager")
            if managers[ws_id] == approver:
                awaiting.append(change_order_from_kantata(obj))
        return awaiting
