"""The exception inbox and an item's page, with the resolution forms.

- `GET /console/exceptions?process=&cause=&owner=&project=&age=&page=` — the unresolved items
  the person's scopes reach (the API's `Scoper`), oldest first, 50 a page, with the count per
  cause and, per cause, a bulk retry form.
- `GET /console/exceptions/{item_id}` — the cause in business words, the business keys, the
  evidence (redacted), the decisions recorded on it, and the actions this person may take.
- `POST /console/exceptions/{item_id}/resolution` — `action`, `note`, `correction.<field>`,
  `csrf_token`: through `gateway.routes.exceptions.resolve_from_console`, the very path (and
  audit record) of `POST /api/exceptions/{item_id}/resolution`; accepted, 303 back to the item
  with a message; refused, the item's page again with the refusal and the API's status.
- `POST /console/exceptions/bulk-retry` — `cause` and the inbox's other filters: `retry` for
  each matching item this person may retry (at most `BULK_MAX`), one audited resolution each.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from contracts import scopes
from contracts.settings import Actor
from contracts.v1.processes import RESOLVER_ROLES, ResolutionAction
from gateway.console import csrf, views
from gateway.console.pages import (
    HOME,
    PREFIX,
    ConsoleRefusal,
    Visitor,
    flash_redirect,
    render,
    sessions_of,
    signed_in,
)
from gateway.errors import GatewayError
from gateway.routes.exceptions import ResolutionRequest, exception_in_scope, resolve_from_console
from gateway.routes.from_console import request_scoper
from gateway.scoping import Scoper
from gateway.webhooks import in_thread
from store import ExceptionFilter, ExceptionItemRow, ExceptionPage, Store

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PAGE_SIZE = 50
BULK_MAX = 200
"""Items one bulk retry sends at most (the rest stay for another press)."""
BULK_CONCURRENCY = 4
HISTORY_ROWS = 20


def _filter(query: views.InboxQuery, now: datetime) -> ExceptionFilter:
    age = views.AGES[query.age][1]
    return ExceptionFilter(
        process=query.process or None,
        cause_code=query.cause or None,
        owner=query.owner or None,
        project=query.project or None,
        opened_before=now - age if age is not None else None,
    )


async def visible_page(
    store: Store, scoper: Scoper, actor: Actor, where: ExceptionFilter, page: int
) -> ExceptionPage:
    """A page of the items the actor reaches: paged in the database for actors who reach
    everything; for scoped actors, the matching items are filtered by scope, then paged."""
    offset = (page - 1) * PAGE_SIZE
    if scopes.EVERYTHING in actor.scopes:
        return await in_thread(
            partial(store.unresolved_exception_page, limit=PAGE_SIZE, offset=offset), where
        )
    rows = await in_thread(store.unresolved_exceptions, replace(where, cause_code=None))
    rows = await scoper.visible_items(actor, rows)
    by_cause = Counter(row.cause_code for row in rows)
    matching = [r for r in rows if where.cause_code is None or r.cause_code == where.cause_code]
    return ExceptionPage(
        rows=matching[offset : offset + PAGE_SIZE],
        total=len(matching),
        by_cause=dict(sorted(by_cause.items())),
    )


def _row_view(row: ExceptionItemRow, now: datetime) -> dict[str, Any]:
    return {
        "id": row.id,
        "process": views.process_name(row.process),
        "cause": row.cause_code,
        "cause_words": views.cause_words(row.cause_code),
        "detail": row.detail,
        "owner": row.owner,
        "project": views.project_of(row) or "",
        "status": row.status,
        "age": views.age_text(row.created_at, now),
        "opened": row.created_at.strftime("%Y-%m-%d %H:%M UTC"),
    }


@router.get("/exceptions")
async def inbox(request: Request) -> Response:
    visitor = await signed_in(request)
    query = views.InboxQuery.parse(request.query_params)
    now = datetime.now(UTC)
    store: Store = request.app.state.store
    found = await visible_page(
        store, request_scoper(request), visitor.actor, _filter(query, now), query.page
    )
    pages = max(1, -(-found.total // PAGE_SIZE))
    reach = [query.process] if query.process else list(RESOLVER_ROLES)
    may_retry = any(views.may_resolve(visitor.actor, p) for p in reach)
    return render(
        request,
        "inbox.html",
        {
            "query": query,
            "rows": [_row_view(row, now) for row in found.rows],
            "total": found.total,
            "by_cause": [
                (cause, n, views.cause_words(cause)) for cause, n in found.by_cause.items()
            ],
            "page": query.page,
            "pages": pages,
            "first": (query.page - 1) * PAGE_SIZE + 1 if found.rows else 0,
            "last": (query.page - 1) * PAGE_SIZE + len(found.rows),
            "processes": [(p, views.process_name(p)) for p in sorted(RESOLVER_ROLES)],
            "ages": [(k, label) for k, (label, _) in views.AGES.items()],
            "may_retry": may_retry,
            "bulk_max": BULK_MAX,
        },
        session=visitor.session,
        actor=visitor.actor,
    )


async def _item_in_scope(request: Request, actor: Actor, item_id: str) -> ExceptionItemRow:
    store: Store = request.app.state.store
    try:
        return await exception_in_scope(store, request_scoper(request), actor, item_id)
    except GatewayError as exc:  # missing or out of scope: the same answer
        raise ConsoleRefusal(404, "No such exception item", exc.message) from None


async def _item_page(
    request: Request,
    visitor: Visitor,
    row: ExceptionItemRow,
    *,
    status: int = 200,
    error: str | None = None,
) -> Response:
    store: Store = request.app.state.store
    history = await in_thread(
        partial(
            store.list_audit, subject_kind="exception_item", subject_id=row.id, limit=HISTORY_ROWS
        )
    )
    actions = views.actions_for(visitor.actor, row)
    allowed = RESOLVER_ROLES.get(row.process, frozenset())
    context = {
        "item": _row_view(row, datetime.now(UTC)),
        "row": row,
        "keys": views.business_keys(row),
        "evidence": views.evidence(row),
        "resolution": (
            json.dumps(views.redact(row.resolution), indent=2, sort_keys=True, default=str)
            if row.resolution
            else None
        ),
        "actions": [
            {"value": a.value, "label": views.ACTION_LABELS[a], "help": views.ACTION_HELP[a]}
            for a in actions
        ],
        "correctable": [(f, views.words(f)) for f in views.correctable_fields(row)],
        "resolver_roles": sorted(allowed),
        "may_resolve": views.may_resolve(visitor.actor, row.process),
        "history": [
            {
                "at": h.at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                "actor": h.actor,
                "action": (h.request or {}).get("action", h.action),
                "outcome": h.outcome,
                "status": h.status_code,
                "message": ((h.result or {}).get("message") or "") if h.result else "",
            }
            for h in history.rows
        ],
        "error": error,
    }
    return render(
        request,
        "item.html",
        context,
        session=visitor.session,
        actor=visitor.actor,
        status=status,
    )


@router.get("/exceptions/{item_id}")
async def item(request: Request, item_id: str) -> Response:
    visitor = await signed_in(request)
    row = await _item_in_scope(request, visitor.actor, item_id)
    return await _item_page(request, visitor, row)


def _resolution_body(form: FormData) -> ResolutionRequest:
    """The form as the API's request body (corrections: the non-empty `correction.<field>`)."""
    corrections = {
        str(name).removeprefix("correction."): value.strip()
        for name, value in form.multi_items()
        if str(name).startswith("correction.") and isinstance(value, str) and value.strip()
    }
    note = form.get("note")
    return ResolutionRequest(
        action=ResolutionAction(str(form.get("action", ""))),
        corrections=corrections,
        note=note.strip() if isinstance(note, str) else "",
    )


def _accepted_text(body: ResolutionRequest, answer: dict[str, Any]) -> str:
    done = views.ACTION_LABELS[body.action]
    fixed = ", ".join(f"{k} = {v}" for k, v in sorted(body.corrections.items()))
    text = f"Sent: {done}{f' ({fixed})' if fixed else ''}. The run accepted it"
    result = answer.get("result")
    if isinstance(result, dict) and result.get("outcome"):
        text += f" (outcome: {result['outcome']})"
    return text + "; the item closes once the run has applied it."


@router.post("/exceptions/bulk-retry")
async def bulk_retry(request: Request) -> Response:
    visitor = await signed_in(request)
    form = await request.form()
    csrf.check(request, visitor.session, form.get(csrf.FIELD))
    query = views.InboxQuery.parse({k: v for k, v in form.items() if isinstance(v, str)})
    back = f"{HOME}?{_query_string(query)}"
    if not query.cause:
        return flash_redirect(request, visitor, back, "error", "Choose a cause to retry.")
    store: Store = request.app.state.store
    scoper = request_scoper(request)
    rows = await in_thread(store.unresolved_exceptions, _filter(query, datetime.now(UTC)))
    rows = await scoper.visible_items(visitor.actor, rows)
    chosen = [r for r in rows if ResolutionAction.RETRY in views.actions_for(visitor.actor, r)][
        :BULK_MAX
    ]
    if not chosen:
        raise ConsoleRefusal(
            403,
            "Nothing to retry",
            f"{visitor.actor.name} may retry none of the open {query.cause} items shown.",
        )
    gate = asyncio.Semaphore(BULK_CONCURRENCY)
    body = ResolutionRequest(action=ResolutionAction.RETRY, note="bulk retry from the console")

    async def retry(row: ExceptionItemRow) -> str | None:
        async with gate:
            try:
                await resolve_from_console(request, row.id, body, visitor.actor)
            except GatewayError as exc:
                return f"{row.id}: {exc.message}"
            return None

    refusals = [r for r in await asyncio.gather(*(retry(row) for row in chosen)) if r]
    sent = len(chosen) - len(refusals)
    text = f"Retry sent for {sent} of {len(chosen)} {query.cause} items."
    if refusals:
        text += " Refused: " + "; ".join(refusals[:5]) + (" …" if len(refusals) > 5 else "")
    return flash_redirect(request, visitor, back, "error" if refusals else "ok", text)


@router.post("/exceptions/{item_id}/resolution")
async def resolve(request: Request, item_id: str) -> Response:
    visitor = await signed_in(request)
    form = await request.form()
    csrf.check(request, visitor.session, form.get(csrf.FIELD))
    row = await _item_in_scope(request, visitor.actor, item_id)
    try:
        body = _resolution_body(form)
    except (ValueError, ValidationError):
        return await _item_page(
            request, visitor, row, status=422, error="That action or its values are not valid."
        )
    try:
        answer = await resolve_from_console(request, item_id, body, visitor.actor)
    except GatewayError as exc:
        store: Store = request.app.state.store
        latest: ExceptionItemRow | None = await in_thread(store.get_exception, item_id)
        row = latest or row
        return await _item_page(request, visitor, row, status=exc.status, error=exc.message)
    url = f"{PREFIX}/exceptions/{item_id}"
    return flash_redirect(request, visitor, url, "ok", _accepted_text(body, answer))


def _query_string(query: views.InboxQuery) -> str:
    return urlencode(query.params(page=1))


__all__ = ["router", "sessions_of", "visible_page"]
