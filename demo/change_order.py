"""The change-order scene: submitted in the PSA twin, approved through the gateway, and the
ERP budget, PSA budget and staffing demand following."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from demo.checks import Check
from demo.deals import DealOutcome
from demo.waits import actor_token, wait_for_step, wait_for_workflow
from stack import Stack

if TYPE_CHECKING:
    import httpx

FINANCE_DELTA = 25_000
"""A budget increase above the default finance threshold: finance must approve too."""


async def change_order_scene(stack: Stack, deal: DealOutcome, say: Any = print) -> list[Check]:
    """A change order submitted in the PSA twin for a provisioned project: its signed webhook
    starts the saga, the delivery manager and finance approve through the gateway, and the
    ERP budget, PSA budget and staffing demand follow."""
    import httpx

    from connectors.erp import NetSuiteErp

    eid = deal.enterprise_id or ""
    erp = NetSuiteErp(stack.settings.erp)
    try:
        before = await erp.get_budget(f"eid:{eid}")
        delta = FINANCE_DELTA
        async with httpx.AsyncClient(timeout=60) as http:
            co_id = await _submit(http, stack, deal, delta, before.amount.currency)
            say(f"change order {co_id} submitted in the PSA (+{delta} {before.amount.currency})")
            handle, status, codes = await _approve(http, stack, co_id, say)
        result = await asyncio.wait_for(handle.result(), 60)
        after = await erp.get_budget(f"eid:{eid}")
        posts = await _workspace_posts(stack, deal)
    finally:
        await erp.aclose()
    say(f"change order {co_id}: {result.outcome}; ERP budget {before.amount} -> {after.amount}")
    return [
        Check(
            "change order: finance approval required above the threshold",
            "finance_controller" in status["required_roles"],
            ", ".join(status["required_roles"]),
        ),
        Check(
            "change order: approvals accepted through the gateway",
            all(c == 200 for c in codes),
            str(codes),
        ),
        Check(
            "change order: ERP budget revised by the delta",
            after.amount.amount - before.amount.amount == delta and after.version > before.version,
            f"{before.amount} -> {after.amount} (version {before.version} -> {after.version})",
        ),
        Check(
            "change order: staffing demand raised in the PSA",
            bool(result.resource_request_ids),
            f"{len(result.resource_request_ids)} request(s)",
        ),
        Check(
            "change order: resource managers notified on the PSA workspace's feed",
            any(
                "Extend the build phase" in p["message"]
                and "resource_managers" in p["recipient_roles"]
                for p in posts
            ),
            f"{len(posts)} post(s) on workspace {deal.psa_project_id}",
        ),
    ]


async def submit_change_order(
    stack: Stack, deal: DealOutcome, delta: int = FINANCE_DELTA
) -> tuple[Any, Any, Any]:
    """Submit "Extend the build phase" (+`delta` in the ERP budget's currency, 100 consultant
    hours) in the PSA twin for the deal's project, and wait for its run to ask for approval;
    returns the change order's ID, the run's handle and its status (`required_roles`...)."""
    import httpx

    budget = await erp_budget(stack, deal)
    async with httpx.AsyncClient(timeout=60) as http:
        co_id = await _submit(http, stack, deal, delta, budget.amount.currency)
    handle, status = await wait_for_approval(stack, co_id)
    return co_id, handle, status


async def erp_budget(stack: Stack, deal: DealOutcome) -> Any:
    """The ERP's budget record of the deal's project (amount and version), read through the
    ERP connector as pssync reads it."""
    from connectors.erp import NetSuiteErp

    erp = NetSuiteErp(stack.settings.erp)
    try:
        return await erp.get_budget(f"eid:{deal.enterprise_id or ''}")
    finally:
        await erp.aclose()


async def wait_for_approval(stack: Stack, co_id: Any) -> tuple[Any, Any]:
    """The change order's run (its handle typed to `ChangeOrderResult`) once it waits for
    approval, and its status then."""
    from contracts.naming import change_order_workflow_id
    from contracts.v1.change_orders import ChangeOrderResult

    handle = await wait_for_workflow(
        stack.client,
        change_order_workflow_id(stack.settings.psa.tenant, co_id),
        result_type=ChangeOrderResult,
    )
    return handle, await wait_for_step(handle, "waiting_for_approval")


async def _submit(
    http: httpx.AsyncClient, stack: Stack, deal: DealOutcome, delta: int, currency: Any
) -> Any:
    """Submit the change order in the PSA twin; returns its ID."""
    created = await http.post(
        f"{stack.urls['sandbox']}/psa/api/v1/change_orders.json",
        headers={"Authorization": "Bearer dev-static-token"},
        json={
            "change_order": {
                "workspace_id": int(deal.psa_project_id or 0),
                "title": "Extend the build phase",
                "budget_delta_in_cents": delta * 100,
                "currency": currency,
                "lines": [{"role": "Consultant", "minutes_delta": 100 * 60}],
                "requested_by": "dana.manager",
            }
        },
    )
    created.raise_for_status()
    return created.json()["results"][0]["id"]


async def _approve(
    http: httpx.AsyncClient, stack: Stack, co_id: Any, say: Any
) -> tuple[Any, Any, list[int]]:
    """Wait for the run to ask for approval, then approve as every role it asks for through
    the gateway; returns the run's handle, its status and the gateway's status codes."""
    handle, status = await wait_for_approval(stack, co_id)
    say(f"waiting for approval by {', '.join(status['required_roles'])}")
    codes = []
    for role in status["required_roles"]:
        answer = await http.post(
            f"{stack.urls['gateway']}/api/change-orders/{co_id}/decision",
            headers={"Authorization": f"Bearer {actor_token(stack, role)}"},
            json={"approve": True, "note": f"approved as {role}"},
        )
        codes.append(answer.status_code)
    return handle, status, codes


async def _workspace_posts(stack: Stack, deal: DealOutcome) -> list[Any]:
    """The posts on the deal's PSA workspace feed (none if the feed does not answer)."""
    import httpx

    async with httpx.AsyncClient(timeout=60) as http:
        feed = await http.get(
            f"{stack.urls['sandbox']}/psa/api/v1/posts.json",
            headers={"Authorization": "Bearer dev-static-token"},
            params={"workspace_id": deal.psa_project_id or "0", "per_page": 200},
        )
    return list(feed.json().get("posts", {}).values()) if feed.is_success else []
