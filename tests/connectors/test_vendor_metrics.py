"""Per-system vendor calls and errors (issue 17): every HTTP request a connector sends is
counted once by system, method and outcome, and timed, in the default registry the worker
serves on `worker_app_metrics_port` — retries included, so the counts agree with what the
vendor itself saw."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY, generate_latest

from connectors._http import VendorError, VendorHttp
from connectors.crm.errors import ERROR_CODES as CRM_ERROR_CODES
from connectors.crm.mapping import parse_error as parse_crm_error
from connectors.psa import parse_error as parse_psa_error
from contracts.errors import (
    BusinessRuleViolation,
    NotFoundError,
    PssyncError,
    RateLimitedError,
    TransientError,
)
from contracts.settings import SystemSettings
from sandbox import psa as psa_twin
from sandbox._twin import FaultConfig, TwinState
from tests._servers import free_port, serve

OUTCOMES = ("ok", "client_error", "server_error", "rate_limited", "timeout", "connection_error")


def requests_of(system: str, method: str = "GET") -> dict[str, float]:
    """The counter's value per outcome for one system and method."""
    return {
        outcome: REGISTRY.get_sample_value(
            "pssync_vendor_requests_total",
            {"system": system, "method": method, "outcome": outcome},
        )
        or 0.0
        for outcome in OUTCOMES
    }


def timed(system: str) -> tuple[float, float]:
    """(requests timed, seconds in all) for one system."""
    labels = {"system": system}
    count = REGISTRY.get_sample_value("pssync_vendor_request_duration_seconds_count", labels)
    total = REGISTRY.get_sample_value("pssync_vendor_request_duration_seconds_sum", labels)
    return count or 0.0, total or 0.0


def since(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in OUTCOMES if after[k] != before[k]}


def settings(base_url: str, **overrides: Any) -> SystemSettings:
    values: dict[str, Any] = {
        "base_url": base_url,
        "auth": "bearer",
        "token": "dev-static-token",
        "retry_budget_s": 5.0,
        "timeout_s": 5.0,
    }
    return SystemSettings.model_validate(values | overrides)


def _no_body(response: httpx.Response) -> VendorError:
    return VendorError(code=f"HTTP_{response.status_code}", message=response.text)


async def test_each_attempt_is_counted_by_its_outcome() -> None:
    """A scripted vendor: a request retried after a 503 and a 429 is three requests (one of
    each outcome); a refusal, a timeout and a dropped connection are one each."""
    script: dict[str, list[int | type[Exception]]] = {
        "/flaky": [503, 429, 200],
        "/refused": [422],
        "/slow": [httpx.ReadTimeout],
        "/gone": [httpx.ConnectError],
    }

    def vendor(request: httpx.Request) -> httpx.Response:
        step = script[request.url.path].pop(0)
        if isinstance(step, type):
            raise step("scripted", request=request)
        headers = {"Retry-After": "0"} if step == 429 else {}
        return httpx.Response(step, json={}, headers=headers)

    system = "METRICS-SCRIPT"
    http = VendorHttp(
        system,
        settings("http://vendor.test"),
        _no_body,
        transport=httpx.MockTransport(vendor),
        backoff_base_s=0.001,
        backoff_cap_s=0.002,
    )
    before, (timed_before, _) = requests_of(system), timed(system)
    try:
        assert (await http.request("GET", "/flaky")).status_code == 200
        assert since(before, requests_of(system)) == {
            "server_error": 1,
            "rate_limited": 1,
            "ok": 1,
        }
        with pytest.raises(BusinessRuleViolation):
            await http.request("GET", "/refused")
        for path in ("/slow", "/gone"):
            with pytest.raises(TransientError):
                await http.request("get", path, retry=False)
    finally:
        await http.aclose()
    assert since(before, requests_of(system)) == {
        "ok": 1,
        "client_error": 1,
        "server_error": 1,
        "rate_limited": 1,
        "timeout": 1,
        "connection_error": 1,
    }
    assert http.retries == 2 and http.calls == 6
    assert timed(system)[0] - timed_before == 6


async def test_a_vendor_limit_code_is_a_rate_limit_and_an_accepted_answer_is_ok() -> None:
    """Salesforce says an exhausted allocation with `403 REQUEST_LIMIT_EXCEEDED`: that is a
    rate limit, not a client error. A status the caller asked for (`ok=`) is an ok answer."""
    answers = [
        httpx.Response(403, json=[{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "limit"}]),
        httpx.Response(404, json=[{"errorCode": "NOT_FOUND", "message": "gone"}]),
        httpx.Response(404, json=[{"errorCode": "NOT_FOUND", "message": "gone"}]),
    ]
    system = "METRICS-CRM"
    http = VendorHttp(
        system,
        settings("http://crm.test"),
        parse_crm_error,
        transport=httpx.MockTransport(lambda _r: answers.pop(0)),
        error_codes=CRM_ERROR_CODES,
    )
    before = requests_of(system, "POST")
    try:
        with pytest.raises(RateLimitedError):
            await http.request("POST", "/sobjects/Opportunity", retry=False, json={})
        with pytest.raises(NotFoundError):
            await http.request("POST", "/sobjects/Opportunity", retry=False, json={})
        found = await http.request("POST", "/sobjects/Opportunity", ok=(200, 404), json={})
        assert found.status_code == 404
    finally:
        await http.aclose()
    assert since(before, requests_of(system, "POST")) == {
        "rate_limited": 1,
        "client_error": 1,
        "ok": 1,
    }


async def test_the_counts_agree_with_what_the_psa_twin_saw() -> None:
    """Against the PSA twin injecting 5xx and 429 at random, plus 404s, a hang past the client's
    timeout and a port nobody listens on: pssync's counts are the twin's own, per status."""
    app = psa_twin.create_app()
    state: TwinState = app.state.twin
    before, (timed_before, _) = requests_of("PSA"), timed("PSA")
    async with serve(app) as url:
        http = VendorHttp("PSA", settings(url, timeout_s=0.3), parse_psa_error)
        try:
            state.set_faults(FaultConfig(error_rate=0.25, rate_limit_rate=0.2, seed=17))
            state.reset_stats()
            for n in range(40):
                path = "/api/v1/users.json" if n % 4 else "/api/v1/users/987654321.json"
                try:
                    await http.request("GET", path, retry=False)
                except PssyncError:
                    pass
            seen = state.stats().by_status
            state.set_faults(FaultConfig(hang_ms=1000))
            for _ in range(2):
                with pytest.raises(TransientError):
                    await http.request("GET", "/api/v1/users.json", retry=False)
        finally:
            state.set_faults(FaultConfig())
            await http.aclose()
    nobody = VendorHttp("PSA", settings(f"http://127.0.0.1:{free_port()}"), parse_psa_error)
    try:
        with pytest.raises(TransientError):
            await nobody.request("GET", "/api/v1/users.json", retry=False)
    finally:
        await nobody.aclose()

    statuses = {int(s): n for s, n in seen.items()}
    assert sum(statuses.values()) == 40
    expected = {
        "ok": sum(n for s, n in statuses.items() if s < 400),
        "client_error": sum(n for s, n in statuses.items() if 400 <= s < 500 and s != 429),
        "server_error": sum(n for s, n in statuses.items() if s >= 500),
        "rate_limited": statuses.get(429, 0),
        "timeout": 2,
        "connection_error": 1,
    }
    assert all(expected[k] > 0 for k in ("ok", "client_error", "server_error", "rate_limited"))
    assert since(before, requests_of("PSA")) == expected
    count, _ = timed("PSA")
    assert count - timed_before == 43


async def test_pssyncs_own_pacing_is_not_vendor_time() -> None:
    """Requests held back by the client-side rate limit are timed from when they leave."""
    system = "METRICS-PACED"
    http = VendorHttp(
        system,
        settings("http://vendor.test", rate_limit_rps=5, max_concurrency=4),
        _no_body,
        transport=httpx.MockTransport(lambda _r: httpx.Response(200, json={})),
    )
    _, spent_before = timed(system)
    try:
        await asyncio.gather(*(http.request("GET", "/x") for _ in range(3)))
    finally:
        await http.aclose()
    assert http.pacer is not None and http.pacer.waited_s >= 0.5  # 0.2 s + 0.4 s of pacing
    assert timed(system)[1] - spent_before < 0.3


def test_the_worker_exposition_has_the_families_with_bounded_labels() -> None:
    text = generate_latest(REGISTRY).decode()
    assert "# TYPE pssync_vendor_requests_total counter" in text
    assert "# TYPE pssync_vendor_request_duration_seconds histogram" in text
    assert "Every attempt counts" in text
    for line in text.splitlines():
        if line.startswith("pssync_vendor_requests_total{"):
            labels = line.split("{", 1)[1].split("}", 1)[0]
            assert sorted(p.split("=", 1)[0] for p in labels.split(",")) == [
                "method",
                "outcome",
                "system",
            ]
            assert "http" not in labels
