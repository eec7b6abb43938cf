"""Kantata resources (`PsaResourcesPort`): a worker as a Kantata user, found by pssync's
external reference to the HCM worker (`hcm_worker`, the one the other mixins map users by).

What goes where — only documented Kantata mechanisms (developer.kantata.com):
- a new worker joins the account by `POST /account_invitations` ("Adds a user to your
  account": full name, e-mail). Kantata has no idempotency key, so the create looks first:
  the user with the worker's e-mail (`GET /users?by_email_address=`) is the one a lost answer
  hid, and it is never invited twice (`KantataBase._create`). Then the external reference
  (`POST /external_references/create_or_update`, an upsert) ties the user to the worker;
- role and active through `PUT /users/{id}` (as closing a leaver to time does), sent only
  when they differ from the `current` resource the caller has just read (`get_resource`):
  an upsert that changes only custom-field facts sends no PUT. Without `current`, or for a
  user just invited, it is sent;
- the facts Kantata has no user field for — location, practice, manager (HCM id), FTE, the
  first bookable day and the leave calendar — in User custom fields (`RESOURCE_FIELDS`; the
  tenant creates them as text fields of a custom field set for users, like the workspace
  ones), written in one `POST /custom_field_values`, which overrides a subject's value of a
  field, so a repeat leaves the same values. Leaves are a text calendar
  (`2026-03-01..2026-03-31; 2026-05-04..`), not Kantata time off entries: those are hours
  per day, and an open-ended leave has no last day to book.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.psa._constants import SYSTEM, WORKER_MODEL
from connectors.psa.kantata._base import Included, KantataBase
from connectors.psa.mapping import custom_field_values_by_name
from connectors.psa.resources import LeavePeriod, PsaResource
from contracts.errors import BusinessRuleViolation, NotFoundError

RESOURCE_SUBJECT = "User"
RESOURCE_FIELDS: dict[str, str] = {
    "location": "Location",
    "practice": "Practice",
    "manager_id": "Manager",
    "fte": "FTE",
    "available_from": "Available From",
    "leaves": "Leave Calendar",
}
"""Resource facts Kantata has no user field for -> the User custom field that holds them."""


def leave_calendar(leaves: list[LeavePeriod]) -> str:
    """`2026-03-01..2026-03-31; 2026-05-04..` (an open end: until further notice)."""
    return "; ".join(
        f"{leave.start.isoformat()}..{leave.end.isoformat() if leave.end else ''}"
        for leave in leaves
    )


def parse_leave_calendar(text: str | None) -> list[LeavePeriod]:
    leaves: list[LeavePeriod] = []
    for part in (text or "").split(";"):
        part = part.strip()
        if not part:
            continue
        start, _, end = part.partition("..")
        leaves.append(
            LeavePeriod(
                start=date.fromisoformat(start.strip()),
                end=date.fromisoformat(end.strip()) if end.strip() else None,
            )
        )
    return sorted(leaves, key=lambda leave: leave.start)


def resource_facts(resource: PsaResource) -> dict[str, str]:
    """The resource's custom-field facts by field name ("" clears a fact)."""
    values: dict[str, str] = {
        "location": resource.location or "",
        "practice": resource.practice or "",
        "manager_id": resource.manager_id or "",
        "fte": str(resource.fte),
        "available_from": resource.available_from.isoformat() if resource.available_from else "",
        "leaves": leave_calendar(resource.leaves),
    }
    return {RESOURCE_FIELDS[name]: value for name, value in values.items()}


def resource_from_kantata(
    worker_id: str, user: dict[str, Any], custom: dict[str, str]
) -> PsaResource:
    def fact(name: str) -> str | None:
        value = custom.get(RESOURCE_FIELDS[name])
        return value or None

    fte = Decimal(1)
    if fact("fte"):
        try:
            fte = Decimal(str(fact("fte")))
        except InvalidOperation:
            fte = Decimal(1)
    available = fact("available_from")
    return PsaResource(
        worker_id=worker_id,
        name=str(user.get("full_name") or worker_id),
        email=user.get("email_address") or None,
        role=user.get("role") or None,
        location=fact("location"),
        practice=fact("practice"),
        manager_id=fact("manager_id"),
        fte=fte,
        available_from=date.fromisoformat(available) if available else None,
        leaves=parse_leave_calendar(fact("leaves")),
        active=bool(user.get("active", True)),
    )


class ResourcesMixin(KantataBase):
    """`KantataPsa`'s resource pool (`PsaResourcesPort`)."""

    _resource_field_ids_cache: dict[str, str] | None = None
    """The User custom fields' ids by name, once read (an administrator's setup)."""

    async def _resource_field_ids(self) -> dict[str, str]:
        """The ids of the User custom fields in `RESOURCE_FIELDS`, by name; a tenant that
        lacks one is refused (`MISSING_CUSTOM_FIELD`) before anything is written."""
        if self._resource_field_ids_cache is not None:
            return self._resource_field_ids_cache
        found = await self._all_included(
            "/custom_fields.json", {"include": "custom_field_set"}, ("custom_field_sets",)
        )
        sets = found.side.get("custom_field_sets", {})
        ids: dict[str, str] = {}
        for field in found.objects:
            field_set = sets.get(str(field.get("custom_field_set_id"))) or {}
            if field_set.get("subject_type") == RESOURCE_SUBJECT:
                ids.setdefault(str(field.get("name")), str(field["id"]))
        missing = [n for n in RESOURCE_FIELDS.values() if n not in ids]
        if missing:
            raise BusinessRuleViolation(
                "MISSING_CUSTOM_FIELD",
                f"the PSA has no {RESOURCE_SUBJECT} custom field named "
                + ", ".join(repr(n) for n in missing)
                + ": an account administrator creates them as text fields in a custom field "
                "set for users",
                field=missing[0],
                system=SYSTEM,
            )
        self._resource_field_ids_cache = ids
        return ids

    async def _user_by_email(self, email: str) -> dict[str, Any] | None:
        found = await self._all("/users.json", {"by_email_address": email})
        return found[0] if found else None

    async def get_resource(self, worker_id: str) -> PsaResource | None:
        user_id = await self._user_of(worker_id)
        if user_id is None:
            return None
        try:
            body = await self._call(
                "GET", f"/users/{user_id}.json", params={"include": "custom_field_values"}
            )
        except NotFoundError:
            return None
        user = self._one(body)
        side = Included.of(body, ("custom_field_values",))
        custom = custom_field_values_by_name(user, side.side.get("custom_field_values", {}))
        return resource_from_kantata(worker_id, user, custom)

    async def upsert_resource(
        self, resource: PsaResource, *, current: PsaResource | None = None
    ) -> PsaResource:
        field_ids = await self._resource_field_ids()
        user_id = await self._user_of(resource.worker_id)
        if user_id is None:
            async with self._join_locks.setdefault(resource.worker_id, asyncio.Lock()):
                # an upsert of the same worker that held the lock has tied them meanwhile
                user_id = self._users_by_worker.get(resource.worker_id)
                if user_id is None:
                    user_id = await self._join(resource)
            current = None  # a user just invited holds nothing of ours yet
        if current is None or (current.role, current.active) != (resource.role, resource.active):
            await self._call(
                "PUT",
                f"/users/{user_id}.json",
                json={"user": {"role": resource.role, "active": resource.active}},
            )
        values = [
            {
                "subject_type": RESOURCE_SUBJECT,
                "subject_id": int(user_id),
                "custom_field_id": int(field_ids[name]),
                "value": value,
            }
            for name, value in resource_facts(resource).items()
        ]
        await self._call("POST", "/custom_field_values.json", json={"custom_field_values": values})
        return resource.model_copy(deep=True)

    async def _join(self, resource: PsaResource) -> str:
        """The worker's user: the account's user with their e-mail, else a new one invited
        (never twice), then tied to the worker by pssync's external reference."""
        if not resource.email:
            raise BusinessRuleViolation(
                "RESOURCE_WITHOUT_EMAIL",
                f"worker {resource.worker_id} has no e-mail: Kantata adds users by e-mail",
                field="email",
                system=SYSTEM,
            )
        user = await self._user_by_email(resource.email)
        if user is None:
            await self._create(
                "/account_invitations.json",
                "account_invitation",
                {"full_name": resource.name, "email_address": resource.email},
                functools.partial(self._user_by_email, resource.email),
            )
            user = await self._user_by_email(resource.email)
            if user is None:
                raise NotFoundError(
                    f"the invited user {resource.email} is not in the account yet", system=SYSTEM
                )
        user_id = str(user["id"])
        await self._put_ref("User", user_id, WORKER_MODEL, resource.worker_id, "successful")
        async with self._worker_map_lock:
            self._users_by_worker[resource.worker_id] = user_id
            self._workers_by_user[user_id] = resource.worker_id
        return user_id
