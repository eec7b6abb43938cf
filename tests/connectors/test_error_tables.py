"""Vendor error codes decide the error kind before the HTTP status (issue 13).

Every row of every connector's `ERROR_CODES` table is checked through `classify` with a body in
that vendor's own error format and a status that would, read alone, say something else; the
published error bodies are checked in `test_published_errors` below.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors._http import VendorError, classify
from connectors._vendor_errors import ErrorTable
from connectors.crm.errors import ERROR_CODES as CRM_CODES
from connectors.crm.mapping import parse_error as parse_salesforce
from connectors.erp.errors import ERROR_CODES as ERP_CODES
from connectors.erp.mapping import parse_netsuite_error
from connectors.hcm.errors import ERROR_CODES as HCM_CODES
from connectors.hcm.mapping import parse_error as parse_workday
from connectors.psa.errors import ERROR_CODES as PSA_CODES
from connectors.psa.kantata import parse_error as parse_kantata
from contracts.errors import (
    AuthError,
    BusinessRuleViolation,
    ConflictError,
    ErrorKind,
    NotFoundError,
    PssyncError,
    RateLimitedError,
    TransientError,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vendors"

KIND_TYPES: dict[ErrorKind, type[PssyncError]] = {
    ErrorKind.TRANSIENT: TransientError,
    ErrorKind.RATE_LIMITED: RateLimitedError,
    ErrorKind.BUSINESS_RULE: BusinessRuleViolation,
    ErrorKind.CONFLICT: ConflictError,
    ErrorKind.NOT_FOUND: NotFoundError,
    ErrorKind.AUTH: AuthError,
}


def salesforce_body(code: str) -> Any:
    return [{"message": f"a {code}", "errorCode": code, "fields": []}]


def netsuite_body(code: str) -> Any:
    return {
        "type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1",
        "title": "Bad Request",
        "status": 400,
        "o:errorDetails": [{"detail": f"a {code}", "o:errorCode": code}],
    }


def kantata_body(code: str) -> Any:
    return {"errors": [{"type": code.lower(), "message": f"a {code}"}]}


def workday_body(code: str) -> Any:
    return {"error": f"a {code}", "code": code}


Parser = Callable[[httpx.Response], VendorError]
VENDORS: list[tuple[str, ErrorTable, Parser, Callable[[str], Any]]] = [
    ("CRM", CRM_CODES, parse_salesforce, salesforce_body),
    ("ERP", ERP_CODES, parse_netsuite_error, netsuite_body),
    ("PSA", PSA_CODES, parse_kantata, kantata_body),
    ("HCM", HCM_CODES, parse_workday, workday_body),
]
ROWS = [
    pytest.param(system, table, parse, body, code, id=f"{system}-{code}")
    for system, table, parse, body in VENDORS
    for code in table
]


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers)


@pytest.mark.parametrize(("system", "table", "parse", "body", "code"), ROWS)
def test_every_code_in_a_table_decides_the_kind_whatever_the_status(
    system: str, table: ErrorTable, parse: Parser, body: Callable[[str], Any], code: str
) -> None:
    expected = KIND_TYPES[table[code].kind]
    for status in (400, 403, 500):
        error = classify(system, response(status, body(code)), parse, table)
        assert type(error) is expected, (code, status, error)


def test_a_quota_error_waits_as_the_vendor_says_or_as_the_table_says() -> None:
    told = classify(
        "ERP",
        response(400, netsuite_body("SSS_REQUEST_LIMIT_EXCEEDED"), {"Retry-After": "7"}),
        parse_netsuite_error,
        ERP_CODES,
    )
    assert isinstance(told, RateLimitedError) and told.retry_after_s == 7
    untold = classify(
        "ERP",
        response(400, netsuite_body("SSS_REQUEST_LIMIT_EXCEEDED")),
        parse_netsuite_error,
        ERP_CODES,
    )
    assert isinstance(untold, RateLimitedError)
    assert untold.retry_after_s == ERP_CODES["SSS_REQUEST_LIMIT_EXCEEDED"].retry_after_s


def test_the_specific_netsuite_detail_code_wins_over_the_generic_top_level_one() -> None:
    body = {
        "title": "Bad Request",
        "status": 429,
        "o:errorCode": "USER_ERROR",
        "o:errorDetails": [{"detail": "Too many", "o:errorCode": "CONCURRENCY_LIMIT_EXCEEDED"}],
    }
    parsed = parse_netsuite_error(response(400, body))
    assert parsed.codes == ("CONCURRENCY_LIMIT_EXCEEDED", "USER_ERROR")
    error = classify("ERP", response(400, body), parse_netsuite_error, ERP_CODES)
    assert isinstance(error, RateLimitedError)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, BusinessRuleViolation),  # shown to a person, never retried blindly
        (403, AuthError),
        (404, NotFoundError),
        (409, ConflictError),
        (429, RateLimitedError),
        (503, TransientError),
    ],
)
def test_an_unknown_code_falls_back_to_the_status(status: int, expected: type[PssyncError]) -> None:
    for system, table, parse, body in VENDORS:
        error = classify(system, response(status, body("NEVER_SEEN_BEFORE")), parse, table)
        assert type(error) is expected, (system, status)


def test_a_body_that_is_not_json_falls_back_to_the_status() -> None:
    error = classify("ERP", response(429, b"<html>busy</html>"), parse_netsuite_error, ERP_CODES)
    assert isinstance(error, RateLimitedError)
    error = classify("CRM", response(400, b"not json"), parse_salesforce, CRM_CODES)
    assert isinstance(error, BusinessRuleViolation)


def test_a_business_rule_keeps_the_vendor_code_and_field() -> None:
    body = [{"message": "Id: malformed", "errorCode": "MALFORMED_ID", "fields": ["Id"]}]
    error = classify("CRM", response(400, body), parse_salesforce, CRM_CODES)
    assert isinstance(error, BusinessRuleViolation)
    assert (error.code, error.field) == ("MALFORMED_ID", "Id")


PUBLISHED_ERRORS = [
    # vendor, fixture (tests/fixtures/vendors/, sources in each MANIFEST.md), status, expected
    ("salesforce", "error_request_limit_exceeded_403.json", 403, RateLimitedError),
    ("salesforce", "error_invalid_session_id_401.json", 401, AuthError),
    ("salesforce", "error_malformed_id_400.json", 400, BusinessRuleViolation),
    ("salesforce", "error_invalid_field_400.json", 400, BusinessRuleViolation),
    ("salesforce", "error_not_found_resource_404.json", 404, NotFoundError),
    ("salesforce", "upsert_bad_external_id_field_404.json", 404, NotFoundError),
    ("netsuite", "error_concurrency_limit_exceeded_429.json", 429, RateLimitedError),
    ("netsuite", "error_concurrency_limit_exceeded_429.published.txt", 429, RateLimitedError),
    ("netsuite", "error_invalid_login_401.json", 401, AuthError),
    ("netsuite", "error_nonexistent_id_404.json", 404, NotFoundError),
    ("netsuite", "error_invalid_content_400.json", 400, BusinessRuleViolation),
    ("netsuite", "error_invalid_request_400.json", 400, BusinessRuleViolation),
    ("netsuite", "error_unexpected_error_500.json", 500, TransientError),
    ("kantata", "error_not_found_404.json", 404, NotFoundError),
    ("kantata", "error_oauth_401.json", 401, AuthError),
]
PARSERS: dict[str, tuple[str, Parser, ErrorTable]] = {
    "salesforce": ("CRM", parse_salesforce, CRM_CODES),
    "netsuite": ("ERP", parse_netsuite_error, ERP_CODES),
    "kantata": ("PSA", parse_kantata, PSA_CODES),
}


@pytest.mark.parametrize(("vendor", "name", "status", "expected"), PUBLISHED_ERRORS)
def test_published_errors(vendor: str, name: str, status: int, expected: type[PssyncError]) -> None:
    """The vendors' own published error bodies, with the status they are documented with
    (the NetSuite 429 as published is not even valid JSON: the status decides then)."""
    system, parse, table = PARSERS[vendor]
    body = (FIXTURES / vendor / name).read_bytes()
    error = classify(system, response(status, body), parse, table)
    assert type(error) is expected, error
