"""The reconciliation desk's exception items as the API lists them.

A run reports a drift escalated once it has signalled the desk; the desk opens the item a
moment later. Tests that read the items right after a pass wait for them with `desk_items`.
"""

from __future__ import annotations

from typing import Any

import httpx

from bench._harness.waiting import must_eventually as eventually

OPS = {"Authorization": "Bearer dev-ops-token"}


async def desk_items(
    gateway: httpx.AsyncClient, count: int, timeout_s: float = 30
) -> list[dict[str, Any]]:
    """The open reconciliation items, once there are `count` of them (never more: a test
    asking for 2 fails if a third appears)."""

    async def listed() -> list[dict[str, Any]] | None:
        got = await gateway.get(
            "/api/exceptions", params={"process": "reconciliation"}, headers=OPS
        )
        got.raise_for_status()
        items: list[dict[str, Any]] = got.json()["items"]
        assert len(items) <= count, [i["cause_code"] for i in items]
        return items if len(items) == count else None

    found: list[dict[str, Any]] = await eventually(listed, timeout_s)
    return found


async def reconcile(
    gateway: httpx.AsyncClient, domain: str, project: str | None = None, timeout_s: float = 90
) -> dict[str, Any]:
    """Start a reconciliation run through the API (as ops) and wait for its report."""
    body: dict[str, Any] = {"domain": domain}
    if project is not None:
        body["project"] = project
    started = await gateway.post("/api/reconciliations", json=body, headers=OPS)
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]

    async def finished() -> dict[str, Any] | None:
        got = await gateway.get(f"/api/reconciliations/{run_id}", headers=OPS)
        got.raise_for_status()
        report: dict[str, Any] = got.json()
        return report if report["run"]["state"] == "finished" else None

    report: dict[str, Any] = await eventually(finished, timeout_s)
    return report
