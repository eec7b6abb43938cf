"""Schemathesis against the gateway's own OpenAPI document, as an outside caller would.

The gateway runs for real (uvicorn on loopback, the Temporal dev server, a SQLite store with a
few exception items); schemathesis generates requests from the document — valid and invalid,
with an operator's token and with a token that is not one — and checks each answer: never a
server error, a status the document declares, a body and content type matching it.
Examples per operation: `PSSYNC_FUZZ_EXAMPLES` (default 12, so CI stays fast).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from temporalio.testing import WorkflowEnvironment

from contracts.naming import opportunity_workflow_id
from contracts.settings import load_settings
from contracts.v1.processes import PROCESS_OPPORTUNITY_TO_PROJECT
from gateway import create_app
from store import NewExceptionItem, Store, make_engine, upgrade
from tests._servers import serve

EXAMPLES = int(os.environ.get("PSSYNC_FUZZ_EXAMPLES", "12"))
TOKENS = {"ops": "Bearer dev-ops-token", "invalid": "Bearer not-a-token"}


@dataclass
class Target:
    url: str
    schema: dict[str, Any]


@pytest.fixture
async def target(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Target]:
    url = f"sqlite:///{tmp_path}/fuzz.db"
    upgrade(url)
    store = Store(make_engine(url))
    for n in range(3):
        store.open_exception(
            NewExceptionItem(
                id=f"exc-fuzz-{n}",
                workflow_id=opportunity_workflow_id("default", f"00600000000000{n}AAA"),
                process=PROCESS_OPPORTUNITY_TO_PROJECT,
                cause_code="COST_CENTER_INVALID",
                field="cost_center",
                detail="cost center CC-999 is not open in the ERP",
                owner="ops",
            )
        )
    settings = load_settings(home=tmp_path / ".pssync")
    app = create_app(settings, store, dev_env.client, task_queue="fuzz-no-worker")
    async with serve(app) as base_url:
        yield Target(base_url, app.openapi())


def fuzz(target: Target, authorization: str) -> int:
    """Run every operation's examples; return how many requests were sent."""
    schema = schemathesis.openapi.from_dict(target.schema)
    sent = 0
    failures: list[str] = []
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def check(case: Any) -> None:
            nonlocal sent
            headers = {"Authorization": authorization} if authorization else {}
            response = case.call(base_url=target.url, session=session, headers=headers)
            sent += 1
            try:
                case.validate_response(response)
            except BaseException as err:  # collect: one run reports every kind of failure
                if not isinstance(err, Exception | BaseExceptionGroup):
                    raise
                kinds = [ln.strip() for ln in str(err).splitlines() if ln.strip()[:4] == "- ST"]
                shown = f"{case.method} {case.operation.path}: {', '.join(kinds) or err}"
                failures.append(f"{shown}\n    {case.as_curl_command()}"[:2000])

        check()
    distinct = sorted(set(failures), key=failures.index)
    assert not failures, f"{len(failures)} of {sent} answers broke the contract:\n" + "\n".join(
        distinct[:30]
    )
    return sent


@pytest.mark.parametrize("who", sorted(TOKENS))
async def test_the_gateway_keeps_its_openapi_promises(target: Target, who: str) -> None:
    sent = await asyncio.to_thread(fuzz, target, TOKENS[who])
    print(f"schemathesis ({who} token): {sent} requests, 0 failures")
    assert sent >= len(target.schema["paths"])
