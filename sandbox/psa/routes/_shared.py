"""What every PSA route module shares: the twin's state and `include=` as dependencies,
thin webhook events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from sandbox._twin import TwinState
from sandbox.psa.responses import ListParams, include_params


async def twin_state(request: Request) -> TwinState:
    """The twin's state (`app.state.twin`) for a route. A coroutine, so that FastAPI runs it on
    the event loop, not with a thread hop per request."""
    state: TwinState = request.app.state.twin
    return state


State = Annotated[TwinState, Depends(twin_state)]
"""A route's `state` parameter: the twin's state."""
Include = Annotated[ListParams, Depends(include_params)]
"""A route's `params` parameter when it answers one record: only `include=` applies."""


def emit(state: TwinState, event_type: str, data: dict[str, Any]) -> None:
    """Send a thin signed event, if the twin has a webhook target."""
    if state.webhooks is not None:
        state.webhooks.emit(event_type, data)


def emit_event(
    state: TwinState, event_type: str, row: Any, *, version: int | None = None, **extra: Any
) -> None:
    """Send the thin event about a workspace's record: `{"workspace_id", "<subject>_id",
    "version", **extra}`, the subject being the event type's prefix (`expense.approved` ->
    `expense_id`) and the version the row's `lock_version` unless given."""
    subject = event_type.partition(".")[0]
    emit(
        state,
        event_type,
        {
            "workspace_id": str(row.workspace_id),
            f"{subject}_id": str(row.id),
            "version": row.lock_version if version is None else version,
            **extra,
        },
    )
