"""Kantata workspace custom fields: finding the fields that hold the facts Kantata has no
workspace field for (`CUSTOM_FIELDS`), and writing a project's values into them.

Kantata's documented mechanism (developer.kantata.com, "Custom Fields", "Creating a new
Custom Field Value"): custom fields belong to custom field sets, each for one subject type;
`POST /custom_field_values` takes `{"custom_field_values": [{"subject_type", "subject_id",
"custom_field_id", "value"}]}` (up to 100 in one request) and *overrides* a subject's existing
value of the same field. So the write is idempotent: sent again after a lost answer, or by a
resumed provisioning, it leaves the same values (under new value ids), never a second copy.
"""

from __future__ import annotations

from typing import Any

from connectors.psa._constants import CUSTOM_FIELD_SUBJECT, CUSTOM_FIELDS
from connectors.psa.kantata._base import KantataBase
from connectors.psa.mapping import workspace_custom_field_ids, workspace_facts
from contracts.errors import BusinessRuleViolation
from contracts.v1 import Project


class CustomFieldsMixin(KantataBase):
    """`KantataPsa`'s workspace custom fields."""

    async def _workspace_custom_field_ids(self) -> dict[str, str]:
        """The ids of the workspace custom fields named in `CUSTOM_FIELDS`, read once per
        client (the account's fields change only when an administrator changes them).

        Lists every custom field with its set (`include=custom_field_set`) and keeps those of
        Workspace sets: we found no subject-type filter on `GET /custom_fields` in Kantata's
        reference, so none is sent. A tenant that lacks a field raises the business rule
        `MISSING_CUSTOM_FIELD` naming it (see `workspace_custom_field_ids`); nothing is cached
        then, so the next call sees a field an administrator has just created."""
        if self._custom_field_ids is not None:
            return self._custom_field_ids
        async with self._custom_field_lock:
            if self._custom_field_ids is None:
                found = await self._all_included(
                    "/custom_fields.json", {"include": "custom_field_set"}, ("custom_field_sets",)
                )
                self._custom_field_ids = workspace_custom_field_ids(
                    found.objects,
                    found.side.get("custom_field_sets", {}),
                    list(CUSTOM_FIELDS.values()),
                )
            return self._custom_field_ids

    async def _check_workspace_custom_fields(self) -> None:
        """Refuse, before anything is written, a tenant that lacks a custom field."""
        await self._workspace_custom_field_ids()

    async def _write_workspace_facts(self, ws_id: str, project: Project) -> None:
        """The project's custom-field facts on workspace `ws_id`, in one
        `POST /custom_field_values.json`. Retried like a read: Kantata overrides a subject's
        value of the same field, so a repeat is harmless. A fact the project lacks (no
        practice, say) is not sent, and a value written earlier for it stays.

        A refusal (Kantata's `validation`: a field deleted since it was looked up, a value it
        will not take) is a business rule; the looked-up ids are forgotten so that the next
        attempt reads the fields again."""
        ids = await self._workspace_custom_field_ids()
        values: list[dict[str, Any]] = [
            {
                "subject_type": CUSTOM_FIELD_SUBJECT,
                "subject_id": int(ws_id),
                "custom_field_id": int(ids[name]),
                "value": value,
            }
            for name, value in workspace_facts(project).items()
            if value is not None
        ]
        if not values:
            return
        try:
            await self._call(
                "POST", "/custom_field_values.json", json={"custom_field_values": values}
            )
        except BusinessRuleViolation:
            self._custom_field_ids = None
            raise
