"""The console's way into the decision routes: the same audited route functions its forms
share with the API, called with the app's parts as FastAPI's dependencies would hand them.

    answer = await call_from_console(request, resolve_exception, item_id=..., body=..., ...)

Refusals are the route's `GatewayError`s; the call is audited as an API call is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from gateway.audit import REQUEST_PARAM as AUDIT_REQUEST_PARAM  # what `audited` adds
from gateway.scoping import Scoper


def request_scoper(request: Request) -> Scoper:
    """A fresh scoper for one request (it caches the store's answers for that request only)."""
    state = request.app.state
    return Scoper(state.store, state.client, state.settings)


async def call_from_console(
    request: Request, route: Callable[..., Awaitable[Any]], **arguments: Any
) -> dict[str, Any]:
    """Call an audited route function for a console form: `arguments` are the route's own
    (ids, body, actor and the app's parts it takes); its scoper and the request its audit row
    reads are added here."""
    audit_request: dict[str, Any] = {AUDIT_REQUEST_PARAM: request}
    answer: dict[str, Any] = await route(
        **arguments, scoper=request_scoper(request), **audit_request
    )
    return answer
