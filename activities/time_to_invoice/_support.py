"""Small helpers every seam of the time-to-invoice activities shares: the heartbeat ticker,
the calling workflow, today's date."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

from temporalio import activity

HEARTBEAT_EVERY_S = 2.0


async def _heartbeat_every(seconds: float) -> None:
    """Heartbeat every `seconds`, the first after `seconds`: a batch done sooner (most are)
    costs the server no heartbeat write; the heartbeat timeout (10 s) still counts from the
    start."""
    while True:
        await asyncio.sleep(seconds)
        activity.heartbeat()


def _activity_info() -> tuple[str, str | None]:
    try:
        info = activity.info()
    except RuntimeError:  # called outside an activity (unit tests)
        return "local", None
    return info.workflow_id or "local", info.workflow_run_id


def _today() -> date:
    return datetime.now(UTC).date()
