"""`GET /api/projects/{enterprise_id}`: a project's ids in every system and its saga run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from contracts import scopes
from gateway.auth import READ_ROLES, require_roles
from gateway.errors import GatewayError
from gateway.routes._deps import ActorDep, ProcessesDep, ScoperDep, StoreDep
from gateway.views import crm_opportunity, xref_view
from gateway.webhooks import in_thread

router = APIRouter(tags=["status"])


@router.get("/api/projects/{enterprise_id}")
async def project_status(
    enterprise_id: str,
    actor: ActorDep,
    store: StoreDep,
    processes: ProcessesDep,
    scoper: ScoperDep,
) -> dict[str, Any]:
    """Out of the caller's scopes a project is 404, as one pssync does not know."""
    require_roles(actor, READ_ROLES, "read projects")
    rows = await in_thread(store.xrefs_for, enterprise_id)
    not_found = GatewayError(404, "project_not_found", f"no system is linked to {enterprise_id!r}")
    if not rows:
        raise not_found
    if scopes.EVERYTHING not in actor.scopes and not scopes.covers(
        actor.scopes, await scoper.project_keys(enterprise_id)
    ):
        raise not_found
    ids: dict[str, dict[str, str]] = {}
    for row in rows:
        ids.setdefault(row.system, {})[row.object_type] = row.external_id
    crm = crm_opportunity(rows)
    workflow = None
    if crm is not None:
        workflow = await processes.opportunity_run(crm.tenant, crm.external_id)
    return {
        "enterprise_id": enterprise_id,
        "ids": ids,
        "links": [xref_view(row) for row in rows],
        "workflow": workflow,
    }
