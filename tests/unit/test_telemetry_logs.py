"""pssync's log lines (`plumbing.logs`): JSON with trace ids and business keys, no secrets, and
no per-request httpx chatter; and tracing off by default (`plumbing.telemetry`)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from contracts.settings import Settings, TelemetrySettings
from plumbing.logs import configure_logging
from plumbing.telemetry import WORKER, otlp_url, start_tracing

JSON = TelemetrySettings(log_format="json")


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """What the process would print, with the root logger and the quiet loggers restored
    afterwards (pytest's own handlers are left in place)."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    out = io.StringIO()
    yield out
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_a_json_line_holds_time_level_logger_message_and_the_active_trace(
    logs: io.StringIO,
) -> None:
    configure_logging(JSON, logs)
    tracing = start_tracing(
        TelemetrySettings(enabled=True), WORKER, exporter=InMemorySpanExporter()
    )
    assert tracing is not None
    tracer = tracing.provider.get_tracer("test")
    with tracer.start_as_current_span("posting") as span:
        logging.getLogger("pssync.test").info(
            "posted %d entries", 3, extra={"enterprise_id": "EP-000042", "business_process": "time"}
        )
    logging.getLogger("pssync.test").warning("no span now")
    tracing.shutdown()

    first, second = lines(logs)
    assert first["message"] == "posted 3 entries"
    assert first["level"] == "INFO" and first["logger"] == "pssync.test"
    assert first["time"].startswith("20") and "T" in first["time"]
    assert first["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert first["span_id"] == format(span.get_span_context().span_id, "016x")
    assert (first["enterprise_id"], first["process"]) == ("EP-000042", "time")
    assert "trace_id" not in second and second["level"] == "WARNING"


def test_hostile_records_lose_their_secrets(logs: io.StringIO) -> None:
    configure_logging(JSON, logs)
    log = logging.getLogger("pssync.test")
    request = httpx.Request(
        "POST",
        "https://erp.example.com/token?access_token=leak-1",
        headers={"Authorization": "Bearer leak-2", "Cookie": "session=leak-3"},
    )
    log.info("sending %s with %s", request, {"Authorization": "Bearer leak-4", "id": "P-1"})
    log.info(
        "config %s",
        {"erp": {"client_secret": "leak-5", "nested": [{"password": "leak-6"}]}, "tenant": "acme"},
        extra={"settings": {"api_key": "leak-7", "private_key": "leak-8"}, "token": "leak-9"},
    )
    log.warning("vendor said Authorization: Bearer leak-10abcdef and password=leak-11")
    log.error("headers %s", httpx.Headers({"authorization": "Basic leak-12abcdefgh"}))
    try:
        raise RuntimeError("token endpoint refused client_secret=leak-13")
    except RuntimeError:
        log.exception("refused")

    text = logs.getvalue()
    for n in range(1, 14):
        assert f"leak-{n}" not in text, f"leak-{n} reached the log: {text}"
    records = lines(logs)
    assert "POST https://erp.example.com/token" in records[0]["message"]
    assert "P-1" in records[0]["message"]  # what is not secret stays
    assert "acme" in records[1]["message"]
    assert records[1]["settings"] == {"api_key": "[redacted]", "private_key": "[redacted]"}
    assert records[1]["token"] == "[redacted]"
    assert "RuntimeError" in records[-1]["exc_info"]  # the traceback stays, masked


async def test_a_line_logged_in_an_activity_names_its_workflow_process_and_activity(
    logs: io.StringIO,
) -> None:
    configure_logging(JSON, logs)

    @activity.defn(name="post_approved_time")
    async def post_approved_time() -> None:
        logging.getLogger("pssync.activities").info("posting")

    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        workflow_id="time-to-invoice-P-7",
        workflow_type="TimeToInvoice",
        activity_type="post_approved_time",
    )
    await env.run(post_approved_time)
    (line,) = lines(logs)
    assert line["workflow_id"] == "time-to-invoice-P-7"
    assert line["process"] == "TimeToInvoice"
    assert line["activity_type"] == "post_approved_time"


def test_httpx_request_lines_are_not_emitted_at_default_settings(logs: io.StringIO) -> None:
    configure_logging(TelemetrySettings(), logs)  # the defaults: text, INFO
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True}))
    with httpx.Client(transport=transport) as client:
        assert client.get("https://psa.example.com/api/projects").status_code == 200
    logging.getLogger("pssync.test").info("our own line")
    text = logs.getvalue()
    assert "our own line" in text  # the handler works at INFO ...
    assert "HTTP Request" not in text and "psa.example.com" not in text  # ... httpx is quiet


def test_tracing_is_off_by_default_and_nothing_is_made() -> None:
    settings = Settings()
    assert settings.telemetry.enabled is False
    assert settings.telemetry.log_format == "text"
    assert start_tracing(settings.telemetry, WORKER) is None


def test_the_otlp_endpoint_gets_the_traces_path_once() -> None:
    base = TelemetrySettings(enabled=True, otlp_endpoint="http://collector:4318/")
    full = TelemetrySettings(enabled=True, otlp_endpoint="http://collector:4318/v1/traces")
    assert otlp_url(base) == otlp_url(full) == "http://collector:4318/v1/traces"


def test_the_cli_s_basic_handler_is_replaced_so_a_line_prints_once(logs: io.StringIO) -> None:
    cli = io.StringIO()
    logging.getLogger().addHandler(logging.StreamHandler(cli))  # what logging.basicConfig adds
    configure_logging(JSON, logs)
    logging.getLogger("pssync.test").warning("once")
    assert cli.getvalue() == ""
    assert [line["message"] for line in lines(logs)] == ["once"]
