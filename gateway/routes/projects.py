"""`GET /api/projects/{enterprise_id}`: a project's ids in every system and its saga run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.errors import GatewayError
from gateway.routes._deps import ProcessesDep, StoreDep
from gateway.views import crm_opportunity, xref_view
from gateway.webhooks import in_thread

router = APIRouter(tags=["status"])


@router.get("/api/projects/{enterprise_id}")
async def project_status(
    enterprise_id: str, store: StoreDep, processes: ProcessesDep
) -> dict[str, Any]:
    rows = await in_thread(store.xrefs_for, enterprise_id)
    if not rows:
        raise GatewayError(404, "project_not_found", f"no system is linked to {enterprise_id!r}")
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
