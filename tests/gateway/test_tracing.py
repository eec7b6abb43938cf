"""One trace from a won deal's webhook to the vendor call its workflow's activity makes.

The gateway (real HTTP, real store, the real Temporal dev server, the fixtures of
test_gateway.py) runs with tracing on and an in-memory exporter; a stand-in saga registered under
"OpportunityToProject" runs one activity that calls a local "vendor" through pssync's own
`VendorHttp`. The trace the webhook request opens must run on through the workflow, the activity
and the vendor call, and the vendor must receive it in a `traceparent` header. With telemetry
off (the default) nothing of it exists.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI, Request
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from temporalio import activity, workflow
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.doctor import PingInput, ping
from connectors._http import CLIENT_HOOKS, VendorError, VendorHttp
from contracts.naming import opportunity_workflow_id
from contracts.settings import Settings, SystemSettings, TelemetrySettings
from contracts.v1.processes import ProvisionProjectInput
from gateway import create_app
from plumbing.telemetry import GATEWAY, WORKER, Tracing, start_tracing
from store import Store
from tests._servers import serve
from tests.gateway.test_gateway import CRM_TENANT, new_opp, sign, won_event
from workflows.doctor import DoctorWorkflow


@workflow.defn(name="OpportunityToProject")
class TracedStandIn:
    """Runs `call_vendor` once and completes with what the vendor answered."""

    @workflow.run
    async def run(self, inp: ProvisionProjectInput) -> str:
        return str(
            await workflow.execute_activity(
                "call_vendor", start_to_close_timeout=timedelta(seconds=30)
            )
        )


def vendor_app(seen: list[dict[str, str]]) -> FastAPI:
    """A vendor that remembers the headers of every request."""
    app = FastAPI()

    @app.get("/ping")
    async def ping(request: Request) -> dict[str, str]:
        seen.append(dict(request.headers))
        return {"ok": "pong"}

    return app


def parse_error(response: httpx.Response) -> VendorError:
    return VendorError(code=f"HTTP_{response.status_code}", message=response.text)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(exporter: InMemorySpanExporter) -> Iterator[tuple[Tracing, Tracing]]:
    """The gateway's and the worker's tracing (two providers, one exporter), the worker's
    vendor clients instrumented as `worker.run_workers` does it."""
    on = TelemetrySettings(enabled=True)
    gateway, worker = (
        start_tracing(on, GATEWAY, exporter=exporter),
        start_tracing(on, WORKER, exporter=exporter),
    )
    assert gateway is not None and worker is not None
    CLIENT_HOOKS.append(worker.instrument_httpx)
    try:
        yield gateway, worker
    finally:
        CLIENT_HOOKS.remove(worker.instrument_httpx)
        gateway.shutdown()
        worker.shutdown()


def named(spans: list[ReadableSpan], prefix: str) -> ReadableSpan:
    found = [s for s in spans if s.name.startswith(prefix)]
    assert found, f"no span {prefix!r} in {[s.name for s in spans]}"
    return found[0]


async def test_a_webhook_trace_runs_through_workflow_activity_and_vendor_call(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    store: Store,
    traced: tuple[Tracing, Tracing],
    exporter: InMemorySpanExporter,
) -> None:
    gateway_tracing, worker_tracing = traced
    seen: list[dict[str, str]] = []
    async with serve(vendor_app(seen)) as vendor_url:
        vendor = VendorHttp(
            "CRM",
            SystemSettings(base_url=vendor_url, auth="bearer", token=SecretStr("vendor-token")),
            parse_error,
        )

        @activity.defn(name="call_vendor")
        async def call_vendor() -> str:
            response = await vendor.request("GET", "/ping")
            return str(response.json()["ok"])

        task_queue = f"traced-{uuid.uuid4()}"
        worker_client = worker_tracing.traced_client(dev_env.client)
        async with Worker(
            worker_client,
            task_queue=task_queue,
            workflows=[TracedStandIn],
            activities=[call_vendor],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            app = create_app(
                settings, store, dev_env.client, task_queue=task_queue, tracing=gateway_tracing
            )
            async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
                opp = new_opp()
                body = json.dumps(won_event(opp))
                resp = await http.post("/webhooks/crm", content=body, headers=sign(body))
                assert resp.status_code == 202, resp.text
                wid = opportunity_workflow_id(CRM_TENANT, opp)
                assert await worker_client.get_workflow_handle(wid).result() == "pong"
        await vendor.aclose()

    spans = list(exporter.get_finished_spans())
    request = next(s for s in spans if s.kind.name == "SERVER" and s.name.startswith("POST"))
    assert request.name == "POST /webhooks/crm"
    assert request.resource.attributes["service.name"] == GATEWAY
    trace_id = request.context.trace_id
    start = named(spans, "StartWorkflow:OpportunityToProject")
    run = named(spans, "RunWorkflow:OpportunityToProject")
    run_activity = named(spans, "RunActivity:call_vendor")
    vendor_call = next(s for s in spans if s.kind.name == "CLIENT" and s.name == "GET")
    # one trace, from the webhook to the vendor call
    for span in (start, run, run_activity, vendor_call):
        assert span.context.trace_id == trace_id, span.name
    assert run_activity.resource.attributes["service.name"] == WORKER
    # the vendor call is the activity's child, and the vendor was told so
    assert vendor_call.parent is not None
    assert vendor_call.parent.span_id == run_activity.context.span_id
    assert vendor_call.attributes is not None
    assert vendor_call.attributes.get("http.response.status_code", 200) == 200
    assert len(seen) == 1
    _version, sent_trace, sent_parent, _flags = seen[0]["traceparent"].split("-")
    assert int(sent_trace, 16) == trace_id
    assert int(sent_parent, 16) == vendor_call.context.span_id


async def test_with_telemetry_off_the_gateway_adds_no_interceptor_and_no_instrumentation(
    dev_env: WorkflowEnvironment, settings: Settings, store: Store
) -> None:
    assert not settings.telemetry.enabled  # the default
    app = create_app(settings, store, dev_env.client)
    interceptors = app.state.client.config()["interceptors"]
    assert not any(isinstance(i, TracingInterceptor) for i in interceptors)
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    assert CLIENT_HOOKS == []


def test_with_telemetry_off_no_opentelemetry_sdk_is_even_imported() -> None:
    """A fresh process builds the gateway's and worker's parts with default settings: the
    OpenTelemetry SDK (tracer providers, processors, exporters) is never loaded."""
    code = """
import sys
from contracts.settings import load_settings
from plumbing.telemetry import GATEWAY, WORKER, start_tracing
import worker, gateway
settings = load_settings()
assert start_tracing(settings.telemetry, GATEWAY) is None
assert start_tracing(settings.telemetry, WORKER) is None
crm = worker.SalesforceCrm(settings.crm)  # a vendor client, made as the worker makes it
tracing_parts = ("opentelemetry.sdk", "opentelemetry.instrumentation",
    "temporalio.contrib.opentelemetry")
loaded = sorted(m for m in sys.modules if m.startswith(tracing_parts))
print(",".join(loaded))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


async def test_a_sandboxed_workflow_of_the_worker_is_traced_and_still_completes(
    dev_env: WorkflowEnvironment, traced: tuple[Tracing, Tracing], exporter: InMemorySpanExporter
) -> None:
    """The real worker's workflows run in the sandbox: the interceptor works there, the run
    completes, and the client's start, the workflow and its activity are one trace."""
    _, worker_tracing = traced
    client = worker_tracing.traced_client(dev_env.client)
    task_queue = f"doctor-{uuid.uuid4()}"
    async with Worker(client, task_queue=task_queue, workflows=[DoctorWorkflow], activities=[ping]):
        result = await client.execute_workflow(
            DoctorWorkflow.run,
            PingInput(message="traced"),
            id=f"doctor-{uuid.uuid4()}",
            task_queue=task_queue,
        )
    assert result.message == "traced"
    spans = list(exporter.get_finished_spans())
    start = named(spans, "StartWorkflow:Doctor")
    for name in ("RunWorkflow:Doctor", "StartActivity:doctor.ping", "RunActivity:doctor.ping"):
        assert named(spans, name).context.trace_id == start.context.trace_id, name
