"""How the API shows the store's rows (JSON views), and metric labels for refusals."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts.systems import System
from gateway.errors import GatewayError
from store import ExceptionItemRow, InboxRow, XrefRow


def outcome_label(exc: GatewayError) -> str:
    return {
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        409: "conflict",
        422: "rejected",
        503: "unavailable",
    }.get(exc.status, "error")


def crm_opportunity(rows: list[XrefRow]) -> XrefRow | None:
    for row in rows:
        if row.system == System.CRM.value and row.object_type.lower() == "opportunity":
            return row
    return None


def xref_view(row: XrefRow) -> dict[str, Any]:
    return {
        "system": row.system,
        "tenant": row.tenant,
        "object_type": row.object_type,
        "external_id": row.external_id,
        "entity_type": row.entity_type,
        "status": row.status,
        "remote_version": row.remote_version,
        "last_synced_at": row.last_synced_at.isoformat(),
    }


def inbox_view(row: InboxRow, now: datetime) -> dict[str, Any]:
    return {
        "source": row.source,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "state": row.state,
        "received_at": row.received_at.isoformat(),
        "age_s": round((now - row.received_at).total_seconds(), 3),
        "attempts": row.attempts,
        "last_error": row.last_error,
        "workflow_id": row.workflow_id,
    }


def exception_view(row: ExceptionItemRow, now: datetime) -> dict[str, Any]:
    """`age_s`: seconds the item has been open (until its resolution, once resolved)."""
    end = row.resolved_at or now
    return {
        "id": row.id,
        "workflow_id": row.workflow_id,
        "run_id": row.run_id,
        "process": row.process,
        "cause_code": row.cause_code,
        "field": row.field,
        "detail": row.detail,
        "status": row.status,
        "owner": row.owner,
        "created": row.created_at.isoformat(),
        "age_s": round((end - row.created_at).total_seconds(), 3),
        "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
        "resolution": row.resolution,
        "context": row.context,
    }
