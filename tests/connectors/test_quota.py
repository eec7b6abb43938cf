"""Quota awareness (issue 13): pssync reads what the vendor says of its allocation, exports it,
and stops at its share instead of eating what the firm's other tools need."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from connectors._http import VENDOR_QUOTA_LIMIT, VENDOR_QUOTA_USED, VendorHttp
from connectors.crm.errors import ERROR_CODES, parse_limit_info
from connectors.crm.mapping import parse_error
from contracts.errors import RateLimitedError
from contracts.settings import SystemSettings


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("api-usage=18/5000", (18, 5000)),  # Salesforce REST API Developer Guide, Limit Info
        ("api-usage=25/5000; per-app-api-usage=17/250(appName=sample-connected-app)", (25, 5000)),
        ("api-usage=10018/100000; api-bursts=1/750", (10018, 100000)),
        ("per-app-api-usage=17/250(appName=x)", None),
        ("", None),
        ("api-usage=garbage", None),
    ],
)
def test_the_salesforce_limit_header_is_read_as_published(
    header: str, expected: tuple[int, int] | None
) -> None:
    headers = httpx.Headers({"Sforce-Limit-Info": header} if header else {})
    assert parse_limit_info(headers) == expected


def client(used: list[int], *, share: float, wait_s: float = 60.0) -> VendorHttp:
    """A CRM client whose vendor reports `used[0]` of 1,000 requests, one more per request."""

    def answer(request: httpx.Request) -> httpx.Response:
        used[0] += 1
        return httpx.Response(
            200, json={"ok": True}, headers={"Sforce-Limit-Info": f"api-usage={used[0]}/1000"}
        )

    settings = SystemSettings(
        base_url="http://crm.test",
        auth="bearer",
        quota_share=share,
        quota_wait_s=wait_s,
    )
    return VendorHttp(
        "CRM",
        settings,
        parse_error,
        transport=httpx.MockTransport(answer),
        error_codes=ERROR_CODES,
        quota_header=parse_limit_info,
    )


async def test_requests_stop_at_pssyncs_share_of_the_allocation() -> None:
    used = [897]
    http = client(used, share=0.9)
    try:
        await http.request("GET", "/a", retry=False)  # the vendor now says 898/1000
        await http.request("GET", "/b", retry=False)  # 899/1000
        await http.request("GET", "/c", retry=False)  # 900/1000: the share is used
        with pytest.raises(RateLimitedError) as refused:
            await http.request("GET", "/d", retry=False)
        assert used[0] == 900, "the held request never reached the vendor"
        assert "share" in str(refused.value)
        assert refused.value.retry_after_s is not None and refused.value.retry_after_s > 0
        assert http.quota is not None and http.quota.remaining == 100
        assert VENDOR_QUOTA_USED.labels(system="CRM")._value.get() == 900
        assert VENDOR_QUOTA_LIMIT.labels(system="CRM")._value.get() == 1000
    finally:
        await http.aclose()


async def test_once_the_reading_is_old_one_request_reads_the_use_afresh() -> None:
    used = [950]
    http = client(used, share=0.9, wait_s=0.01)
    try:
        await http.request("GET", "/a", retry=False)  # 951/1000, above the share
        assert http.quota is not None
        http.quota = dataclasses.replace(http.quota, read_at=http.quota.read_at - 1)
        await http.request("GET", "/b", retry=False)  # the old reading no longer holds it
        assert used[0] == 952
    finally:
        await http.aclose()


async def test_a_vendor_that_reports_no_use_is_never_held() -> None:
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={})

    settings = SystemSettings(base_url="http://x.test", auth="bearer", quota_share=0.1)
    http = VendorHttp("CRM", settings, parse_error, transport=httpx.MockTransport(answer))
    try:
        for _ in range(5):
            await http.request("GET", "/a", retry=False)
        assert len(calls) == 5 and http.quota is None
    finally:
        await http.aclose()


async def test_the_salesforce_connector_reads_the_allocation_it_is_told() -> None:
    from connectors.crm import SalesforceCrm

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={"totalSize": 0, "done": True, "records": []},
            headers={"Sforce-Limit-Info": "api-usage=4990/5000"},
        )

    settings = SystemSettings(base_url="http://crm.test", auth="bearer", quota_share=0.9)
    crm = SalesforceCrm(settings, transport=httpx.MockTransport(answer))
    try:
        with pytest.raises(RateLimitedError):
            for _ in range(3):  # the first answer says 4,990 of 5,000: the next is held
                await crm.http.request("GET", "/services/data/v59.0/query", retry=False)
        assert crm.http.quota is not None and crm.http.quota.used == 4990
    finally:
        await crm.aclose()
