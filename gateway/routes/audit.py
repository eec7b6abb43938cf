"""`GET /api/audit`: the audit trail of people's decisions, newest first (ops and auditors)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from gateway.audit import AUDIT_ROLES
from gateway.auth import require_roles
from gateway.openapi import ErrorBody
from gateway.routes._deps import ActorDep, ScoperDep, StoreDep
from gateway.webhooks import in_thread
from store import AUDIT_PAGE_MAX, AuditOutcome, AuditRow

router = APIRouter(tags=["audit"])


class AuditEntry(BaseModel):
    """One decision and how it ended."""

    id: int
    at: datetime
    """When the gateway received the decision (UTC)."""
    actor: str
    actor_roles: list[str]
    action: str
    """`exception.resolve`, `change_order.approve`, `change_order.reject`,
    `termination.rescind`, `billing.close_period`, `billing.bill_milestone`, ..."""
    subject_kind: str
    """`exception_item`, `change_order`, `termination` (`<worker>/<date>`), `project`."""
    subject_id: str
    tenant: str | None
    request: dict[str, Any]
    """The body the person sent (bounded; credentials redacted)."""
    request_id: str | None
    """The caller's `X-Request-ID` (or `X-Correlation-ID`)."""
    outcome: AuditOutcome
    """`attempted` (no answer was recorded: the gateway stopped, or the store failed after the
    decision was sent), `accepted`, `refused` (4xx) or `failed` (5xx)."""
    status_code: int | None
    result: dict[str, Any] | None
    """The run's answer, or the error's code and message (bounded)."""
    completed_at: datetime | None


class AuditList(BaseModel):
    items: list[AuditEntry]
    count: int
    next_cursor: int | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No bearer token, or one pssync does not accept"},
    403: {"model": ErrorBody, "description": "The actor holds neither `ops` nor `auditor`"},
    422: {"model": ErrorBody, "description": "A malformed filter"},
    503: {"model": ErrorBody, "description": "The store is unavailable (Retry-After)"},
}


_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def _utc(moment: datetime | None) -> datetime | None:
    """The time in UTC (one without a zone is read as UTC); a time UTC cannot hold (year 1
    east of Greenwich, year 9999 west of it) as the earliest or the latest there is."""
    if moment is None:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return _EARLIEST if moment.year < 5000 else _LATEST


@router.get("/api/audit", response_model=AuditList, responses=ERRORS)
async def list_audit(
    actor: ActorDep,
    store: StoreDep,
    scoper: ScoperDep,
    actor_name: Annotated[str | None, Query(alias="actor", max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    subject_kind: Annotated[str | None, Query(max_length=100)] = None,
    subject_id: Annotated[str | None, Query(max_length=500)] = None,
    since: Annotated[datetime | None, Query(description="inclusive; no zone: UTC")] = None,
    until: Annotated[datetime | None, Query(description="exclusive; no zone: UTC")] = None,
    limit: Annotated[int, Query(ge=1, le=AUDIT_PAGE_MAX)] = 100,
    cursor: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> AuditList:
    """People's decisions (resolutions, change-order approvals and rejections, rescinds,
    billing requests) and their outcomes, newest first, filtered by every given filter; page
    with `cursor`. Roles `ops` or `auditor` only. Filters no row can match (`since` after
    `until`) answer an empty page. An actor without the `*` scope sees only the records whose
    subject (item, change order, worker, project, tenant) its scopes reach: a page may then
    hold fewer than `limit` records while `next_cursor` still leads on."""
    require_roles(actor, AUDIT_ROLES, "read the audit trail")
    texts = (actor_name, action, subject_kind, subject_id)
    if any(value is not None and "\x00" in value for value in texts):
        # No row holds a NUL (the store replaces it), and PostgreSQL's text cannot take one.
        return AuditList(items=[], count=0, next_cursor=None)
    page = await in_thread(
        lambda: store.list_audit(
            actor=actor_name,
            action=action,
            subject_kind=subject_kind,
            subject_id=subject_id,
            since=_utc(since),
            until=_utc(until),
            cursor=cursor,
            limit=limit,
        )
    )
    items = [_view(row) for row in await scoper.visible_audit(actor, page.rows)]
    return AuditList(items=items, count=len(items), next_cursor=page.next_cursor)


def _view(row: AuditRow) -> AuditEntry:
    return AuditEntry.model_validate(row.model_dump())
