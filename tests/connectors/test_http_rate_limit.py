"""`SystemSettings.rate_limit_rps`: `VendorHttp` paces every request it sends (retries and
token requests too) so that bulk work runs at a vendor's quota instead of into its 429s."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from connectors._http import VendorError, VendorHttp
from connectors.psa import parse_error
from contracts.settings import SystemSettings
from sandbox import psa as psa_twin
from sandbox._twin import FaultConfig, TwinState
from tests._servers import serve


def _no_body(response: httpx.Response) -> VendorError:
    return VendorError(code=f"HTTP_{response.status_code}", message=response.text)


def settings(base_url: str, **overrides: Any) -> SystemSettings:
    values: dict[str, Any] = {"base_url": base_url, "retry_budget_s": 5.0, "timeout_s": 5.0}
    return SystemSettings.model_validate(values | overrides)


async def test_requests_leave_at_most_at_the_rate_retries_included() -> None:
    rate, requests = 100.0, 30
    sent: list[float] = []
    failed_once: set[str] = set()

    def vendor(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        # Every fifth request fails once: its retry must wait for a slot like any request.
        n = int(request.url.params["n"])
        if n % 5 == 0 and str(n) not in failed_once:
            failed_once.add(str(n))
            return httpx.Response(503, json={})
        return httpx.Response(200, json={})

    http = VendorHttp(
        "TEST",
        settings("http://vendor.test", auth="bearer", rate_limit_rps=rate, max_concurrency=8),
        _no_body,
        transport=httpx.MockTransport(vendor),
        backoff_base_s=0.001,
        backoff_cap_s=0.002,
    )
    start = time.monotonic()
    try:
        await asyncio.gather(*(http.request("GET", f"/x?n={n}") for n in range(requests)))
    finally:
        await http.aclose()
    assert len(sent) == requests + len(failed_once) == 36
    # The k-th request sent left no earlier than k intervals after the first could.
    interval = 1 / rate
    for k, at in enumerate(sorted(sent)):
        assert at - start >= k * interval - 0.001, (k, at - start)
    assert http.pacer is not None and http.pacer.waited_s > 0


async def test_without_a_rate_limit_nothing_is_paced() -> None:
    sent: list[float] = []

    def vendor(_request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        return httpx.Response(200, json={})

    http = VendorHttp(
        "TEST",
        settings("http://vendor.test", auth="bearer", max_concurrency=8),
        _no_body,
        transport=httpx.MockTransport(vendor),
    )
    try:
        assert http.pacer is None and not http.client.event_hooks["request"]
        await asyncio.gather(*(http.request("GET", "/x") for _ in range(50)))
    finally:
        await http.aclose()
    # 50 requests at a limit of 100/s would take 0.49 s.
    assert max(sent) - min(sent) < 0.3


async def test_without_a_limit_a_burst_past_the_quota_meets_429s() -> None:
    """The control for the test below: the twin's quota is real."""
    app = psa_twin.create_app()
    state: TwinState = app.state.twin
    async with serve(app) as url:
        burst = VendorHttp("PSA", settings(url, max_concurrency=16), parse_error)
        try:
            await burst.request("GET", "/api/v1/users.json")
            state.set_faults(FaultConfig(quota_rps=10))
            state.reset_stats()
            started = time.monotonic()
            answers = await asyncio.gather(
                *(
                    burst.request("GET", "/api/v1/users.json", ok=(200, 429), retry=False)
                    for _ in range(40)
                )
            )
            burst_s = time.monotonic() - started
        finally:
            await burst.aclose()
    assert burst_s < 3  # 40 requests in < 3 s are more than 10 + 10/s admits
    assert sum(r.status_code == 429 for r in answers) == state.stats().throttled_429 > 0


async def test_paced_at_the_quota_no_429_and_the_pacing_is_real() -> None:
    """150 requests against a twin admitting 50 requests/s: none refused, and they take the
    2.98 s that 50/s means (the OAuth token request counts too)."""
    app = psa_twin.create_app()
    state: TwinState = app.state.twin
    state.set_faults(FaultConfig(quota_rps=50))
    async with serve(app) as url:
        paced = VendorHttp("PSA", settings(url, max_concurrency=16, rate_limit_rps=50), parse_error)
        started = time.monotonic()
        try:
            done = await asyncio.gather(
                *(paced.request("GET", "/api/v1/users.json") for _ in range(150))
            )
        finally:
            await paced.aclose()
        elapsed = time.monotonic() - started
    stats = state.stats()
    assert [r.status_code for r in done] == [200] * 150
    assert stats.throttled_429 == 0 and paced.retries == 0
    assert stats.requests == 151  # 150 + the token request
    assert elapsed >= 2.5
