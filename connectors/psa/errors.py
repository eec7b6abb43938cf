"""Kantata error types -> pssync's error kinds (consulted before the HTTP status).

Kantata answers `{"errors": [{"type", "message"}]}`; the connector reads `type` (upper-cased)
as the code. `oauth` is refused credentials; `validation` a business rule on the data. Other
types (`system`, `syntax`) fall back to the status (404 not found, 5xx transient, other 4xx a
business rule). Source: Kantata OX API documentation, "Errors"; recorded responses in the
vendor's own client (mavenlink/mavenlink_ruby spec fixtures).
"""

from __future__ import annotations

from connectors._vendor_errors import CodeRule, ErrorTable
from contracts.errors import ErrorKind

ERROR_CODES: ErrorTable = {
    "OAUTH": CodeRule(ErrorKind.AUTH, None, "token refused or expired"),
    "VALIDATION": CodeRule(ErrorKind.BUSINESS_RULE, None, "a value Kantata refused"),
}
