"""NetSuite error codes -> pssync's error kinds (consulted before the HTTP status).

NetSuite's REST errors carry a top-level `o:errorCode` and one per `o:errorDetails[]` entry;
the detail is the specific one. A governance limit comes back as `429` with a `USER_ERROR` /
`CONCURRENCY_LIMIT_EXCEEDED` pair (titled "Bad Request"), and from RESTlets as `400
SSS_REQUEST_LIMIT_EXCEEDED`: both are a wait, never a business rule. Codes not listed fall back
to the status. Sources: NetSuite Help, "REST Web Services Error Codes" and "Concurrency
Governance" (docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_156570709583.html,
bridgehead_1525252812.html).
"""

from __future__ import annotations

from connectors._vendor_errors import CodeRule, ErrorTable
from contracts.errors import ErrorKind

ERROR_CODES: ErrorTable = {
    # governance: the account's concurrency or request limit; wait and send again
    "CONCURRENCY_LIMIT_EXCEEDED": CodeRule(
        ErrorKind.RATE_LIMITED, 1.0, "account concurrency limit reached"
    ),
    "SSS_REQUEST_LIMIT_EXCEEDED": CodeRule(
        ErrorKind.RATE_LIMITED, 1.0, "request limit reached (RESTlets, SuiteScript)"
    ),
    "SSS_CONCURRENCY_LIMIT_EXCEEDED": CodeRule(
        ErrorKind.RATE_LIMITED, 1.0, "SuiteScript concurrency limit reached"
    ),
    "EXCEEDED_REQUEST_LIMIT": CodeRule(ErrorKind.RATE_LIMITED, 1.0, "request limit reached"),
    "UNEXPECTED_ERROR": CodeRule(ErrorKind.TRANSIENT, None, "NetSuite failed internally"),
    "SSS_TIME_LIMIT_EXCEEDED": CodeRule(ErrorKind.TRANSIENT, None, "script time limit"),
    # credentials and permissions
    "INVALID_LOGIN": CodeRule(ErrorKind.AUTH, None, "token refused"),
    "INVALID_LOGIN_ATTEMPT": CodeRule(ErrorKind.AUTH, None, "token refused"),
    "INSUFFICIENT_PERMISSION": CodeRule(ErrorKind.AUTH, None, "the role lacks a permission"),
    "FEATURE_DISABLED": CodeRule(ErrorKind.AUTH, None, "a feature the call needs is off"),
    # gone
    "NONEXISTENT_ID": CodeRule(ErrorKind.NOT_FOUND, None, "no record with that id"),
    "RCRD_DSNT_EXIST": CodeRule(ErrorKind.NOT_FOUND, None, "no record with that id"),
    # changed under us
    "RCRD_HAS_BEEN_CHANGED": CodeRule(ErrorKind.CONFLICT, None, "edited since it was read"),
    # the data
    "INVALID_KEY_OR_REF": CodeRule(ErrorKind.BUSINESS_RULE, None, "a reference that is invalid"),
    "INVALID_CONTENT": CodeRule(ErrorKind.BUSINESS_RULE, None, "a value NetSuite refused"),
    "INVALID_REQUEST": CodeRule(ErrorKind.BUSINESS_RULE, None, "a request NetSuite refused"),
}
