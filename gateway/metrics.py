"""The gateway's Prometheus metrics, on a registry of their own per app.

    metrics = GatewayMetrics()
    metrics.webhooks_received.labels(source="crm").inc()
    body = metrics.render()          # what GET /metrics answers

A registry per app (not the process-wide default) so several apps in one process — tests, the
embedded stack — never collide on metric names. Labels are bounded: sources, refusal reasons,
event types the gateway routes, resolution actions and outcomes; never ids.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.webhooks_received = Counter(
            "pssync_gateway_webhooks_received",
            "Webhook deliveries received, before any check.",
            ["source"],
            registry=r,
        )
        self.webhooks_refused = Counter(
            "pssync_gateway_webhooks_refused",
            "Webhook deliveries refused, by reason (bad_signature, stale_timestamp, "
            "invalid_json, invalid_payload, temporal_unavailable, ...).",
            ["source", "reason"],
            registry=r,
        )
        self.webhooks_duplicate = Counter(
            "pssync_gateway_webhooks_duplicate",
            "Deliveries of an event id already processed (replays, sender retries).",
            ["source"],
            registry=r,
        )
        self.webhooks_ignored = Counter(
            "pssync_gateway_webhooks_ignored",
            "Authentic deliveries of event types the gateway does not handle.",
            ["source"],
            registry=r,
        )
        self.webhooks_accepted = Counter(
            "pssync_gateway_webhooks_accepted",
            "Deliveries processed, by event type and result (started, joined, queued, "
            "already_completed, deferred: stored for the relay while Temporal is down).",
            ["source", "event_type", "result"],
            registry=r,
        )
        self.workflows_started = Counter(
            "pssync_gateway_workflows_started",
            "Workflow runs the gateway actually started (joins of a running run excluded).",
            ["workflow"],
            registry=r,
        )
        self.webhook_latency = Histogram(
            "pssync_gateway_webhook_seconds",
            "Time to handle one webhook delivery, whatever the answer.",
            ["source"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.resolutions = Counter(
            "pssync_gateway_resolutions",
            "Exception resolutions received, by action and outcome (accepted, rejected, "
            "unauthorized, forbidden, not_found, conflict, unavailable, error).",
            ["action", "outcome"],
            registry=r,
        )

        self.inbox_backlog = Gauge(
            "pssync_gateway_inbox_backlog",
            "Verified webhook events stored in the inbox whose action has not taken effect yet "
            "(the relay's backlog; grows while Temporal is down).",
            registry=r,
        )
        self.inbox_backlog_age = Gauge(
            "pssync_gateway_inbox_backlog_oldest_seconds",
            "Age of the oldest pending inbox event (0 when none is pending).",
            registry=r,
        )
        self.inbox_failed = Gauge(
            "pssync_gateway_inbox_failed",
            "Inbox events refused for good (not retried; listed by GET /api/inbox?state=failed).",
            registry=r,
        )
        self.relay_replays = Counter(
            "pssync_gateway_relay_replays",
            "Inbox events the relay tried to replay, by result (processed, skipped, "
            "unavailable, failed, retry).",
            ["source", "result"],
            registry=r,
        )
        self.relay_errors = Counter(
            "pssync_gateway_relay_errors",
            "Relay passes that raised (logged; the relay backs off and goes on).",
            registry=r,
        )
        self.relay_state = Gauge(
            "pssync_gateway_relay_state",
            "1 for the relay's current state (stopped, idle, draining, backing_off), else 0.",
            ["state"],
            registry=r,
        )

    def render(self) -> bytes:
        return _generate_latest(self.registry)
