"""OpenTelemetry tracing for one pssync process: a webhook's trace runs on through the workflow
it starts, the workflow's activities and their vendor calls (docs/observability.md "Tracing and
logs").

    tracing = start_tracing(settings.telemetry, WORKER)   # None when telemetry is off
    if tracing is not None:
        client = tracing.traced_client(client)             # Temporal's TracingInterceptor
        tracing.instrument_app(app)                        # FastAPI server spans
        tracing.instrument_httpx(http_client)              # vendor call spans + traceparent

Off by default, and then nothing is made: no tracer provider, no interceptor, not even an
import of the OpenTelemetry SDK. On, each process has its own tracer provider (service name
`pssync-gateway` or `pssync-worker`, parent-based ratio sampling) — never the global one, so
two processes sharing one Python process (`pssync up`) keep their names. Spans go to an OTLP/HTTP
collector when `otlp_endpoint` is set; otherwise they are made (the logs carry their ids) and
dropped.

Workflows stay deterministic: Temporal's interceptor is the only tracing inside them (its
workflow spans are made outside the sandbox from replay-safe data); nothing here is imported by
a workflow.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from temporalio.client import Client

from contracts.settings import TelemetrySettings

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from temporalio.contrib.opentelemetry import TracingInterceptor

GATEWAY = "pssync-gateway"
WORKER = "pssync-worker"
"""The service names of pssync's processes (`TelemetrySettings.service_name` overrides)."""

OTLP_TRACES_PATH = "/v1/traces"


@dataclass
class Tracing:
    """One process's tracer provider and what it instruments."""

    provider: TracerProvider
    service: str
    _interceptor: TracingInterceptor | None = field(default=None, repr=False)

    @property
    def interceptor(self) -> TracingInterceptor:
        """Temporal's OpenTelemetry interceptor over this provider's tracer (one per process:
        client calls, workflow and activity spans, and the context carried in headers)."""
        if self._interceptor is None:
            from temporalio.contrib.opentelemetry import TracingInterceptor

            self._interceptor = TracingInterceptor(self.provider.get_tracer("temporalio"))
        return self._interceptor

    def traced_client(self, client: Client) -> Client:
        """`client` with the interceptor (same connection, namespace and converter). Workers
        built on it trace workflows and activities; its own calls (start, signal, update)
        carry the caller's trace into the workflow's headers."""
        from temporalio.contrib.opentelemetry import TracingInterceptor

        config: dict[str, Any] = dict(client.config())
        config.pop("plugins", None)  # already applied to `client`'s configuration
        others = [i for i in config["interceptors"] if not isinstance(i, TracingInterceptor)]
        config["interceptors"] = [*others, self.interceptor]
        return Client(**config)

    def instrument_app(self, app: FastAPI) -> None:
        """Server spans for the app's requests; a `traceparent` from the caller is honoured."""
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=self.provider, excluded_urls="healthz,metrics"
        )

    def instrument_httpx(self, client: httpx.AsyncClient) -> None:
        """Client spans for the requests `client` sends, each carrying `traceparent` (this
        client only: httpx is not patched globally)."""
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=self.provider)

    def shutdown(self) -> None:
        """Export what is pending and stop (the process is ending)."""
        with contextlib.suppress(Exception):
            self.provider.shutdown()


def start_tracing(
    settings: TelemetrySettings, service: str, *, exporter: SpanExporter | None = None
) -> Tracing | None:
    """The process's tracing, or None when `settings.enabled` is false (nothing is created).

    `exporter` (tests: an in-memory one) receives every span as it ends; otherwise spans go
    in batches to `settings.otlp_endpoint` over OTLP/HTTP, or nowhere when it is unset."""
    if not settings.enabled:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    name = settings.service_name or service
    provider = TracerProvider(
        resource=Resource.create({"service.name": name}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_url(settings)))
        )
    return Tracing(provider, name)


def otlp_url(settings: TelemetrySettings) -> str:
    """The collector's traces URL: the endpoint as configured, `/v1/traces` added unless it
    is there already."""
    endpoint = (settings.otlp_endpoint or "").rstrip("/")
    return endpoint if endpoint.endswith(OTLP_TRACES_PATH) else endpoint + OTLP_TRACES_PATH
