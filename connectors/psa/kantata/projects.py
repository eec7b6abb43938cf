"""Kantata workspaces: project shells (WBS stories, billing milestones, external reference),
budgets, rate cards and the activity feed.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from connectors._concurrency import all_of
from connectors.psa._constants import (
    MILESTONE_MARKER,
    POST_MARKER,
    PROJECT_MARKER,
    PROJECT_MODEL,
    RATE_CARD_MODEL,
    SYSTEM,
    WBS_MARKER,
)
from connectors.psa._values import _marker_code, _version, missing, required_ref
from connectors.psa.kantata._base import Included
from connectors.psa.kantata.custom_fields import CustomFieldsMixin
from connectors.psa.mapping import (
    _STORY_TYPES,
    budget_from_kantata,
    custom_field_values_by_name,
    project_from_kantata,
    rate_card_from_kantata,
    reference_from_kantata,
    wbs_in_creation_order,
)
from contracts.errors import BusinessRuleViolation, ConflictError, NotFoundError, StaleVersionError
from contracts.money import Money
from contracts.ownership import check_write
from contracts.systems import System
from contracts.v1 import Project, RateCard, WbsNode

WORKSPACE_INCLUDE = "stories,billing_milestones,custom_field_values"
"""What a project read side-loads: its WBS, its billing milestones and (Kantata) the custom
field values that hold what Kantata has no field for (`CUSTOM_FIELDS`)."""


def _listed(
    side: Included, key: str, obj: dict[str, Any], ids_field: str, record: str
) -> list[dict[str, Any]]:
    """The side-loaded `key` records `obj` lists in `ids_field`, in its order; an id whose
    record the response left out is `UnmappableRecord` (a WBS or rate card read in part
    would look whole)."""
    found: list[dict[str, Any]] = []
    for ident in obj.get(ids_field) or []:
        related = side.get(key, ident)
        if related is None:
            raise missing(record, obj, ids_field, f"{key} {ident} is not in the response")
        found.append(related)
    return found


async def _none() -> None:
    return None


class ProjectsMixin(CustomFieldsMixin):
    """`KantataPsa`'s projects, rate cards and activity feed."""

    # ---------------------------------------------------------------- projects

    async def _project_ref(self, enterprise_id: str) -> dict[str, Any] | None:
        refs = await self._refs(
            subject_type="Workspace", service_model=PROJECT_MODEL, service_model_ref=enterprise_id
        )
        return min(refs, key=lambda r: int(reference_from_kantata(r)[0])) if refs else None

    async def _workspace_by_marker(self, enterprise_id: str) -> str | None:
        # `search` is Kantata's workspace text search; the marker line in the description is
        # exact-matched here, so a search that also matches titles or other text is harmless.
        found = await self._all(
            "/workspaces.json",
            {"search": f"{PROJECT_MARKER}{enterprise_id}", "include_archived": "true"},
        )
        exact = [
            w for w in found if _marker_code(w.get("description"), PROJECT_MARKER) == enterprise_id
        ]
        return str(min(int(required_ref(w, "workspace", "id")) for w in exact)) if exact else None

    async def find_project_by_enterprise_id(self, enterprise_id: str) -> str | None:
        """The workspace provisioned for `enterprise_id`, complete or not (a half-built
        shell is found too, so compensation can archive it)."""
        ref = await self._project_ref(enterprise_id)
        if ref is not None:
            return reference_from_kantata(ref)[0]
        return await self._workspace_by_marker(enterprise_id)

    async def _resolve_rate_card(self, rate_card_id: str) -> str:
        """Kantata rate card id for a canonical rate card id: an external reference first
        (seeded cards keep their source id there), else a Kantata id as it is."""
        cached = self._rate_cards.get(rate_card_id)
        if cached is not None:
            return cached
        refs = await self._refs(
            subject_type="RateCard", service_model=RATE_CARD_MODEL, service_model_ref=rate_card_id
        )
        if refs:
            psa_id = reference_from_kantata(refs[0])[0]
        elif rate_card_id.isdigit():
            try:
                await self._call("GET", f"/rate_cards/{rate_card_id}.json")
            except NotFoundError:
                raise BusinessRuleViolation(
                    "UNKNOWN_RATE_CARD",
                    f"rate card {rate_card_id} does not exist in the PSA",
                    field="rate_card_id",
                    system=SYSTEM,
                ) from None
            psa_id = rate_card_id
        else:
            raise BusinessRuleViolation(
                "UNKNOWN_RATE_CARD",
                f"rate card {rate_card_id} does not exist in the PSA",
                field="rate_card_id",
                system=SYSTEM,
            )
        self._rate_cards[rate_card_id] = psa_id
        return psa_id

    @staticmethod
    def _workspace_fields(
        project: Project, enterprise_id: str, rate_card_id: str | None
    ) -> dict[str, Any]:
        """Kantata's own workspace fields of a project; the facts Kantata has no field for
        go to custom field values (`_write_workspace_facts`)."""
        return {
            "title": project.name,
            "description": f"Provisioned by pssync.\n{PROJECT_MARKER}{enterprise_id}",
            "start_date": project.start_date.isoformat(),
            "due_date": project.end_date.isoformat() if project.end_date else None,
            "price_in_cents": project.contract_value.to_minor(),
            "budgeted": True,
            "budget_in_cents": project.contract_value.to_minor(),
            "currency": project.currency,
            "rate_card_id": int(rate_card_id) if rate_card_id else None,
            "change_orders_enabled": True,
        }

    async def create_project_shell(self, project: Project, *, enterprise_id: str) -> str:
        """Workspace + custom field values + WBS stories + billing milestones + external
        reference, idempotently.

        Safe to call again after a crash at any point: the reference (or, before it exists,
        the workspace's marker) leads back to the same workspace, the custom field values are
        written again (Kantata overrides them), and only missing stories and milestones are
        created. The reference turns `successful` only when all exist. A bad WBS, an unknown
        rate card or a tenant without the custom fields is refused before anything is written.
        """
        nodes = wbs_in_creation_order(project)
        # Three independent reads side by side (the rate card and the custom fields are
        # cached per client after the first project, the reference is read every time).
        rate_card, _, ref = await all_of(
            self._resolve_rate_card(project.rate_card_id) if project.rate_card_id else _none(),
            self._check_workspace_custom_fields(),
            self._project_ref(enterprise_id),
        )
        fields = self._workspace_fields(project, enterprise_id, rate_card)
        ws_id: str | None = reference_from_kantata(ref)[0] if ref else None
        if ref is not None and ref.get("status") == "successful":
            ws = self._one(await self._call("GET", f"/workspaces/{ws_id}.json"))
            if ws.get("archived"):
                await self._call(
                    "PUT", f"/workspaces/{ws_id}.json", json={"workspace": {"archived": False}}
                )
            assert ws_id is not None
            return ws_id
        if ws_id is None:
            ws_id = await self._workspace_by_marker(enterprise_id)
        if ws_id is None:

            async def find_workspace() -> dict[str, Any] | None:
                found = await self._workspace_by_marker(enterprise_id)
                return {"id": found} if found is not None else None

            created = await self._create("/workspaces.json", "workspace", fields, find_workspace)
            ws_id = str(created["id"])
        else:
            # Resuming: bring the shell in line with the (possibly corrected) project.
            await self._call(
                "PUT",
                f"/workspaces/{ws_id}.json",
                json={"workspace": {**fields, "archived": False}},
            )
        await self._put_ref("Workspace", ws_id, PROJECT_MODEL, enterprise_id, "pending")
        try:
            await self._write_workspace_facts(ws_id, project)
            # Stories and milestones are different records of the workspace, neither needs
            # the other: side by side. Within each, records are still made one by one in
            # order (a story needs its parent; ids follow the WBS and milestone order, which
            # is the order a project is read back in).
            await all_of(
                self._ensure_stories(ws_id, project, nodes),
                self._ensure_milestones(ws_id, project),
            )
        except BusinessRuleViolation as exc:
            await self._put_ref(
                "Workspace", ws_id, PROJECT_MODEL, enterprise_id, "failed", exc.message
            )
            raise
        await self._put_ref("Workspace", ws_id, PROJECT_MODEL, enterprise_id, "successful")
        return ws_id

    async def _ensure_stories(self, ws_id: str, project: Project, nodes: list[WbsNode]) -> None:
        existing: dict[str, str] = {}
        for story in await self._all("/stories.json", {"workspace_id": ws_id}):
            code = _marker_code(story.get("description"), WBS_MARKER)
            if code is not None:
                existing.setdefault(code, str(story["id"]))
        for position, node in enumerate(nodes):
            if node.code in existing:
                continue
            created = await self._create(
                "/stories.json",
                "story",
                {
                    "workspace_id": int(ws_id),
                    "title": node.name,
                    "description": f"{WBS_MARKER}{node.code}",
                    "parent_id": int(existing[node.parent_code]) if node.parent_code else None,
                    "story_type": _STORY_TYPES[node.node_type],
                    "time_estimate_in_minutes": node.estimated_minutes,
                    "budget_estimate_in_cents": node.budget.to_minor(),
                    "billable": node.billable,
                    "role": node.role,
                    "position": position,
                },
                functools.partial(
                    self._find_by_marker,
                    "/stories.json",
                    {"workspace_id": ws_id},
                    "description",
                    WBS_MARKER,
                    node.code,
                ),
            )
            existing[node.code] = str(created["id"])

    async def _ensure_milestones(self, ws_id: str, project: Project) -> None:
        existing = {
            _marker_code(m.get("description"), MILESTONE_MARKER)
            for m in await self._all("/billing_milestones.json", {"workspace_id": ws_id})
        }
        for ms in project.milestones:
            if ms.code in existing:
                continue
            await self._create(
                "/billing_milestones.json",
                "billing_milestone",
                {
                    "workspace_id": int(ws_id),
                    "title": ms.name,
                    "description": f"{MILESTONE_MARKER}{ms.code}",
                    "amount_in_cents": ms.amount.to_minor(),
                    "currency": ms.amount.currency,
                    "target_date": ms.target_date.isoformat() if ms.target_date else None,
                },
                functools.partial(
                    self._find_by_marker,
                    "/billing_milestones.json",
                    {"workspace_id": ws_id},
                    "description",
                    MILESTONE_MARKER,
                    ms.code,
                ),
            )

    async def archive_project(self, psa_id: str, *, reason: str) -> None:
        """Compensation for `create_project_shell`: archive (idempotent; a missing workspace
        counts as done) and mark pssync's reference failed with the reason."""
        try:
            ws = self._one(await self._call("GET", f"/workspaces/{psa_id}.json"))
        except NotFoundError:
            return
        if not ws.get("archived"):
            await self._call(
                "PUT",
                f"/workspaces/{psa_id}.json",
                json={"workspace": {"archived": True, "status": "archived"}},
            )
        refs = await self._refs(
            subject_type="Workspace", subject_id=psa_id, service_model=PROJECT_MODEL
        )
        for ref in refs:
            if ref.get("status") != "failed":
                await self._put_ref(
                    "Workspace",
                    psa_id,
                    PROJECT_MODEL,
                    reference_from_kantata(ref)[1],
                    "failed",
                    f"archived: {reason}",
                )

    async def get_project(self, psa_id: str) -> Project:
        body = await self._call(
            "GET", f"/workspaces/{psa_id}.json", params={"include": WORKSPACE_INCLUDE}
        )
        ws = self._one(body)
        side = Included.of(body, ("stories", "billing_milestones", "custom_field_values"))
        stories = _listed(side, "stories", ws, "story_ids", "workspace")
        milestones = _listed(side, "billing_milestones", ws, "billing_milestone_ids", "workspace")
        custom = custom_field_values_by_name(ws, side.side.get("custom_field_values", {}))
        refs = await self._refs(
            subject_type="Workspace", subject_id=psa_id, service_model=PROJECT_MODEL
        )
        return project_from_kantata(ws, stories, milestones, refs[0] if refs else None, custom)

    async def set_enterprise_id(self, psa_id: str, enterprise_id: str) -> None:
        check_write(System.PSSYNC, "Project", ["enterprise_id"])
        self._one(await self._call("GET", f"/workspaces/{psa_id}.json"))
        await self._put_ref("Workspace", psa_id, PROJECT_MODEL, enterprise_id, "successful")

    async def get_project_budget(self, psa_id: str) -> Money | None:
        ws = self._one(await self._call("GET", f"/workspaces/{psa_id}.json"))
        return budget_from_kantata(ws)

    async def update_project_budget(
        self, psa_id: str, budget: Money, *, expected_version: str | None = None
    ) -> str:
        """Mirror the ERP-owned budget into the workspace; returns the new version. With
        `expected_version`, a concurrent change raises `StaleVersionError`."""
        check_write(System.ERP, "Project", ["budget"])
        ws = self._one(await self._call("GET", f"/workspaces/{psa_id}.json"))
        if str(ws.get("currency")) != budget.currency:
            raise BusinessRuleViolation(
                "CURRENCY_MISMATCH",
                f"project is in {ws.get('currency')}, budget in {budget.currency}",
                field="budget",
                system=SYSTEM,
            )
        fields: dict[str, Any] = {"budgeted": True, "budget_in_cents": budget.to_minor()}
        if expected_version is not None:
            fields["lock_version"] = int(expected_version)
        try:
            body = await self._call("PUT", f"/workspaces/{psa_id}.json", json={"workspace": fields})
        except ConflictError as exc:
            raise StaleVersionError(exc.message, system=SYSTEM) from exc
        return _version(self._one(body))

    # ---------------------------------------------------------------- rate cards

    async def get_rate_card(self, rate_card_id: str) -> RateCard:
        try:
            psa_id = await self._resolve_rate_card(rate_card_id)
        except BusinessRuleViolation as exc:
            raise NotFoundError(exc.detail, system=SYSTEM) from exc
        body = await self._call(
            "GET", f"/rate_cards/{psa_id}.json", params={"include": "rate_card_roles"}
        )
        card = self._one(body)
        side = Included.of(body, ("rate_card_roles",))
        roles = _listed(side, "rate_card_roles", card, "rate_card_role_ids", "rate card")
        return rate_card_from_kantata(card, roles)

    # ---------------------------------------------------------------- activity feed

    async def post_notification(
        self, workspace_id: str, message: str, recipients: Sequence[str], *, key: str | None = None
    ) -> str:
        find: Callable[[], Awaitable[dict[str, Any] | None]] | None = None
        if key is not None:
            find = functools.partial(
                self._find_by_marker,
                "/posts.json",
                {"workspace_id": workspace_id},
                "message",
                POST_MARKER,
                key,
            )
            earlier = await find()
            if earlier is not None:
                return str(earlier["id"])
            message = f"{message}\n\n{POST_MARKER}{key}"
        created = await self._create(
            "/posts.json",
            "post",
            {
                "workspace_id": int(workspace_id),
                "message": message,
                "recipient_roles": list(recipients),
            },
            find,
        )
        return str(created["id"])
