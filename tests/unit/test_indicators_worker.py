"""The worker serves pssync's own metrics (vendor quota and rate limits, posting latency, entry
outcomes: the default prometheus_client registry) on `worker_app_metrics_port`, beside the
Temporal SDK's endpoint; 0 turns it off."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from activities.time_to_invoice.batch import ENTRY_OUTCOMES, POSTING_LATENCY
from contracts.settings import Settings
from worker import serve_app_metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_app_metrics_port_serves_pssyncs_metrics() -> None:
    port = _free_port()
    stop = serve_app_metrics(port)
    assert stop is not None
    try:
        POSTING_LATENCY.observe(2.0)
        ENTRY_OUTCOMES.labels(outcome="posted").inc()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            body = answer.read().decode()
    finally:
        stop()
    assert 'pssync_time_posting_latency_seconds_bucket{le="3.0"}' in body
    assert 'pssync_time_entries_total{outcome="posted"}' in body
    assert "# TYPE pssync_vendor_quota_used gauge" in body
    assert "# TYPE pssync_vendor_rate_limited_total counter" in body
    # stopped: nothing listens there any more (SO_REUSEADDR: TIME_WAIT does not count)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_port_zero_serves_nothing() -> None:
    assert serve_app_metrics(0) is None


def test_the_default_port_is_beside_the_sdks() -> None:
    settings = Settings()
    assert settings.worker_app_metrics_port == 9465
    assert settings.worker_metrics_port == 9464
    with pytest.raises(ValueError):
        Settings(worker_app_metrics_port=70000)
