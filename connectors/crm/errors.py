"""Salesforce REST error codes -> pssync's error kinds (consulted before the HTTP status).

Salesforce errors are a JSON array `[{"message", "errorCode", "fields"?}]`; the code says more
than the status: `403 REQUEST_LIMIT_EXCEEDED` is an exhausted API allocation or too many
concurrent long requests (back off), not refused credentials; `UNABLE_TO_LOCK_ROW` is another
transaction holding the record (retry). Codes not listed fall back to the status.
Source: Salesforce REST API Developer Guide, "Status Codes and Error Responses"
(developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm).
"""

from __future__ import annotations

import re

import httpx

from connectors._vendor_errors import CodeRule, ErrorTable
from contracts.errors import ErrorKind

ERROR_CODES: ErrorTable = {
    # quotas and contention: wait, then try again
    # Salesforce sends no Retry-After: the usual backoff, then the activity's retry policy
    "REQUEST_LIMIT_EXCEEDED": CodeRule(
        ErrorKind.RATE_LIMITED, None, "API allocation or concurrent request limit exhausted"
    ),
    "UNABLE_TO_LOCK_ROW": CodeRule(ErrorKind.TRANSIENT, None, "record locked by another update"),
    "SERVER_UNAVAILABLE": CodeRule(ErrorKind.TRANSIENT, None, "server busy"),
    "QUERY_TIMEOUT": CodeRule(ErrorKind.TRANSIENT, None, "query took too long"),
    # credentials and permissions: an operator must act
    "INVALID_SESSION_ID": CodeRule(ErrorKind.AUTH, None, "session expired or invalid"),
    "API_DISABLED_FOR_ORG": CodeRule(ErrorKind.AUTH, None, "the org has no API access"),
    "API_CURRENTLY_DISABLED": CodeRule(ErrorKind.AUTH, None, "API disabled for the user"),
    "INSUFFICIENT_ACCESS": CodeRule(ErrorKind.AUTH, None, "the integration user lacks access"),
    "INSUFFICIENT_ACCESS_OR_READONLY": CodeRule(
        ErrorKind.AUTH, None, "the integration user may not edit the record"
    ),
    # the record is gone
    "NOT_FOUND": CodeRule(ErrorKind.NOT_FOUND, None, "no such record or resource"),
    "ENTITY_IS_DELETED": CodeRule(ErrorKind.NOT_FOUND, None, "the record was deleted"),
    # the data: a person fixes it
    "MALFORMED_ID": CodeRule(ErrorKind.BUSINESS_RULE, None, "not a Salesforce id"),
    "INVALID_FIELD": CodeRule(ErrorKind.BUSINESS_RULE, None, "no such field"),
    "REQUIRED_FIELD_MISSING": CodeRule(ErrorKind.BUSINESS_RULE, None, "a required field"),
    "FIELD_CUSTOM_VALIDATION_EXCEPTION": CodeRule(
        ErrorKind.BUSINESS_RULE, None, "a validation rule refused the write"
    ),
    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST": CodeRule(
        ErrorKind.BUSINESS_RULE, None, "a value outside a restricted picklist"
    ),
    "STRING_TOO_LONG": CodeRule(ErrorKind.BUSINESS_RULE, None, "a value too long"),
    "INVALID_CROSS_REFERENCE_KEY": CodeRule(
        ErrorKind.BUSINESS_RULE, None, "a reference to a record that does not exist"
    ),
    "DUPLICATE_VALUE": CodeRule(ErrorKind.BUSINESS_RULE, None, "a unique field already taken"),
}

_API_USAGE = re.compile(r"(?:^|[;\s])api-usage=(\d+)/(\d+)")


def parse_limit_info(headers: httpx.Headers) -> tuple[int, int] | None:
    """`(used, limit)` of the org's API allocation from `Sforce-Limit-Info`, which Salesforce
    sends on REST responses: `api-usage=18/5000`, possibly followed by more `;`-separated parts
    (`per-app-api-usage=17/250(appName=...)`, `api-bursts=1/750`). None when absent."""
    found = _API_USAGE.search(headers.get("sforce-limit-info", ""))
    if found is None:
        return None
    used, limit = int(found.group(1)), int(found.group(2))
    return (used, limit) if limit > 0 else None
