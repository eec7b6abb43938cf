"""Bounded waits the demo, tests and benches share (a run to start, a run to reach a step, an
exception item to open) and the bearer token of a configured role."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from contracts.settings import DEV_TOKENS, hash_token

if TYPE_CHECKING:
    from temporalio.client import Client

    from stack import Stack


async def wait_for_workflow(
    client: Client, workflow_id: str, timeout_s: float = 60, result_type: type | None = None
) -> Any:
    """The handle of a workflow that a webhook is about to start (bounded wait)."""
    from temporalio.service import RPCError

    deadline = asyncio.get_running_loop().time() + timeout_s
    handle = client.get_workflow_handle(workflow_id, result_type=result_type)
    while True:
        try:
            await handle.describe()
            return handle
        except RPCError:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"workflow {workflow_id} never started") from None
            await asyncio.sleep(0.1)


async def wait_for_open_exception(stack: Stack, workflow_id: str, timeout_s: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        items = await asyncio.to_thread(
            stack.store.list_exceptions, status="open", workflow_id=workflow_id
        )
        if items:
            return items[0]
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no exception item opened by {workflow_id}")
        await asyncio.sleep(0.1)


async def wait_for_step(handle: Any, step: str, timeout_s: float = 60) -> Any:
    """Poll a run's `status` query until it reports `step` (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            status = await handle.query("status")
            if status.get("step") == step:
                return status
        except Exception:  # not started or not queryable yet
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{handle.id} never reached {step}")
        await asyncio.sleep(0.1)


def actor_token(stack: Stack, role: str) -> str:
    """The dev profile's bearer token for `role` (settings keep only the tokens' hashes; the
    demo runs on the dev profile, whose tokens are the well-known `DEV_TOKENS`)."""
    token = DEV_TOKENS.get(role, DEV_TOKENS["ops"])
    if hash_token(token) not in stack.settings.actors:
        raise RuntimeError(f"the demo needs the dev profile's {role} token (PSSYNC_ACTORS is set)")
    return token
