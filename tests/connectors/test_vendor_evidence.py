"""The evidence a vendor refusal carries to the person who resolves it: what pssync sent and
what the vendor answered, with every credential redacted and the size bounded — over hostile
bodies, and over the ERP twin's real refusal."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from activities._errors import business_error_info, to_application_error
from connectors import _evidence
from connectors._http import VendorError, classify
from connectors.erp import NetSuiteErp
from contracts.errors import BusinessRuleViolation, ErrorInfo, ErrorKind, RateLimitedError
from contracts.money import Money
from tests.connectors.test_erp import customer, project, settings
from tests.twins._erp_fixtures import HOLD_CUSTOMER, ErpTwin, erp_twin

SECRETS = ("tok-123", "s3cr3t", "hunter2", "jwt-assert", "ck-9", "sig-77", "api-k", "the-code")


def refusal(request: httpx.Request, status: int = 400, **answer: object) -> BusinessRuleViolation:
    response = httpx.Response(status, request=request, **answer)  # type: ignore[arg-type]
    error = classify("ERP", response, lambda r: VendorError("PERIOD_CLOSED", "period closed"))
    assert isinstance(error, BusinessRuleViolation)
    return error


def text_of(info: ErrorInfo) -> str:
    return json.dumps(info.model_dump(mode="json"))


def test_nested_secrets_and_query_secrets_are_redacted_and_headers_never_kept() -> None:
    request = httpx.Request(
        "POST",
        "https://user:hunter2@erp.example/services/rest/record/v1/timebill"
        "?access_token=tok-123&sig=sig-77&api_key=api-k&code=the-code&expand=true",
        headers={"Authorization": "Bearer tok-123", "Cookie": "sid=ck-9"},
        json={
            "hours": "7.5",
            "tranDate": "2026-04-03",
            "auth": {"client_secret": "s3cr3t", "deep": [{"password": "hunter2"}]},
            "client_assertion": "jwt-assert",
            "note": "Bearer tok-123",
            "signature": "sig-77",
        },
    )
    error = refusal(
        request,
        json={"o:errorCode": "PERIOD_CLOSED", "echo": {"apiKey": "api-k", "cookie": "ck-9"}},
        headers={"X-Request-Id": "req-42", "Set-Cookie": "sid=ck-9"},
    )
    info = error.info()
    assert info.evidence is not None
    sent, answered = info.evidence["request"], info.evidence["response"]
    assert sent["method"] == "POST"
    assert sent["path"].startswith("/services/rest/record/v1/timebill?")
    assert "expand=true" in sent["path"] and "erp.example" not in sent["path"]
    assert sent["body"]["hours"] == "7.5" and sent["body"]["tranDate"] == "2026-04-03"
    assert sent["body"]["auth"]["deep"][0]["password"] == "[redacted]"
    assert answered == {
        "status": 400,
        "body": {
            "o:errorCode": "PERIOD_CLOSED",
            "echo": {"apiKey": "[redacted]", "cookie": "[redacted]"},
        },
        "request_id": "req-42",
    }
    assert info.evidence["system"] == "ERP"
    whole = text_of(info)
    for secret in SECRETS:
        assert secret not in whole, secret
    assert "authorization" not in whole.lower() and "set-cookie" not in whole.lower()


def test_a_megabyte_body_is_cut_and_the_failure_stays_small() -> None:
    huge = {"rows": [{"n": i, "password": "hunter2", "text": "x" * 50} for i in range(15_000)]}
    request = httpx.Request("POST", "https://erp.example/batch", json=huge)
    assert len(request.content) > 1_000_000
    error = refusal(request, content=b"E" * 2_000_000, headers={"content-type": "text/plain"})
    evidence = error.info().evidence
    assert evidence is not None
    sent_body, answered_body = evidence["request"]["body"], evidence["response"]["body"]
    assert isinstance(sent_body, str) and "hunter2" not in sent_body
    assert len(sent_body) < _evidence.MAX_BODY_CHARS + 100 and "[cut:" in sent_body
    assert len(answered_body) < _evidence.MAX_BODY_CHARS + 100
    failure = to_application_error(error)
    assert len(json.dumps(failure.details[0])) < 12_000
    again = business_error_info(failure)
    assert again is not None and again.evidence == evidence


def test_non_json_bodies_are_redacted_as_text() -> None:
    form = httpx.Request(
        "POST",
        "https://erp.example/oauth2/token",
        data={"grant_type": "client_credentials", "client_secret": "s3cr3t", "user": "ann"},
    )
    xml = "<fault><code>E1</code><sessionToken>tok-123</sessionToken> password=hunter2</fault>"
    error = refusal(form, content=xml.encode(), headers={"content-type": "application/xml"})
    evidence = error.info().evidence
    assert evidence is not None
    assert "grant_type=client_credentials" in evidence["request"]["body"]
    assert "user=ann" in evidence["request"]["body"]
    assert "<code>E1</code>" in evidence["response"]["body"]
    for secret in SECRETS:
        assert secret not in json.dumps(evidence), secret
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    assert _evidence.redact({"note": jwt, "list": [f"token is {jwt}"]}) == {
        "note": "[redacted]",
        "list": ["token is [redacted]"],
    }


def test_a_refusal_without_a_body_or_a_rate_limit_keeps_no_noise() -> None:
    request = httpx.Request("DELETE", "https://erp.example/record/v1/job/7")
    error = refusal(request)
    assert error.info().evidence == {
        "system": "ERP",
        "request": {"method": "DELETE", "path": "/record/v1/job/7", "body": None},
        "response": {"status": 400, "body": None},
    }
    limited = classify(
        "ERP",
        httpx.Response(429, request=request),
        lambda r: VendorError("LIMIT", "slow down"),
    )
    assert isinstance(limited, RateLimitedError) and limited.info().evidence is None


def test_an_old_failure_without_evidence_still_reads() -> None:
    old = {"kind": "business_rule", "message": "m", "code": "PERIOD_CLOSED", "detail": "d"}
    info = ErrorInfo.model_validate(old)
    assert info.kind is ErrorKind.BUSINESS_RULE and info.evidence is None


# --------------------------------------------------------------------------- over the twin


@pytest.fixture
async def twin() -> AsyncIterator[ErpTwin]:
    async with erp_twin() as t:
        yield t


async def test_the_erp_twins_refusal_carries_what_was_sent_and_answered(twin: ErpTwin) -> None:
    erp_settings = settings(twin.base_url)
    async with NetSuiteErp(erp_settings, backoff_base_s=0.01, backoff_cap_s=0.2) as erp:
        held = await erp.upsert_customer(customer(HOLD_CUSTOMER, "Holdco"), enterprise_id="X")
        with pytest.raises(BusinessRuleViolation) as refused:
            await erp.upsert_project(
                project(),
                enterprise_id="01J000000000000000000HOLD1",
                customer_erp_id=held,
                budget=Money("1", "USD"),
            )
        token = getattr(erp.http.client.auth, "_token", None)
    info = refused.value.info()
    assert info.code == "CUSTOMER_CREDIT_HOLD"
    evidence = info.evidence
    assert evidence is not None and evidence["system"] == "ERP"
    sent, answered = evidence["request"], evidence["response"]
    assert sent["method"] in ("POST", "PATCH", "PUT")
    assert sent["path"].startswith("/services/rest/record/v1/job")
    assert "Acme rollout" in json.dumps(sent["body"])
    assert answered["status"] == 400
    assert "CUSTOMER_CREDIT_HOLD" in json.dumps(answered["body"])
    whole = json.dumps(evidence)
    assert token and token not in whole
    assert erp_settings.client_secret.get_secret_value() not in whole
    assert "Bearer" not in whole
