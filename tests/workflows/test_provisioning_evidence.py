"""A vendor's refusal during provisioning reaches the person with its evidence: the exception
item records what pssync sent and what the ERP answered (redacted), and the failing step.

The ERP's refusal is the connector's own: classified from a real HTTP answer by
`connectors._http.classify`, as the NetSuite connector raises it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from connectors._http import classify
from connectors.erp.mapping import parse_netsuite_error
from contracts.v1.processes import ProvisioningStep
from tests.workflows._provisioning import provisioning_world, start_saga, wait_for_step


def credit_hold_answer() -> Exception:
    """The ERP refusing the project for a customer on credit hold, over HTTP."""
    request = httpx.Request(
        "POST",
        "https://erp.example/services/rest/record/v1/job?access_token=tok-123",
        headers={"Authorization": "Bearer tok-123"},
        json={"companyName": "Acme data platform", "client_secret": "s3cr3t"},
    )
    response = httpx.Response(
        400,
        request=request,
        json={
            "o:errorDetails": [
                {
                    "detail": "Acme Corp is on credit hold",
                    "o:errorCode": "CUSTOMER_CREDIT_HOLD",
                    "o:errorPath": "customer",
                }
            ]
        },
        headers={"X-Request-Id": "ns-req-9"},
    )
    return classify("ERP", response, parse_netsuite_error)


async def test_a_refused_project_opens_an_item_with_what_was_sent_and_answered(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with provisioning_world(ts_env.client, tmp_path) as world:
        world.erp_refuses_the_project(credit_hold_answer())
        handle = await start_saga(world, escalation_after_s=3600)
        status = await wait_for_step(handle, ProvisioningStep.WAITING_FOR_RESOLUTION)
        assert status.open_exception is not None
        (item,) = world.store.list_exceptions()
        await handle.terminate("test over")
    assert item.cause_code == "CUSTOMER_CREDIT_HOLD"
    context = item.context or {}
    assert context["step"] == ProvisioningStep.ERP_PROJECT.value
    evidence = context["evidence"]
    assert evidence["system"] == "ERP"
    assert evidence["request"]["method"] == "POST"
    assert evidence["request"]["path"].startswith("/services/rest/record/v1/job?")
    assert evidence["request"]["body"]["companyName"] == "Acme data platform"
    assert evidence["response"]["status"] == 400
    assert evidence["response"]["request_id"] == "ns-req-9"
    assert "CUSTOMER_CREDIT_HOLD" in json.dumps(evidence["response"]["body"])
    assert context["master_data"]["cost_center"] == "CC-110"
    stored = json.dumps(context)
    assert "tok-123" not in stored and "s3cr3t" not in stored
