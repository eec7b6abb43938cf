"""Workday REST error codes -> pssync's error kinds (consulted before the HTTP status).

Workday publishes no list of REST error codes; its errors are `{"error", "errors": [{"error",
"field"?}]}` and the status decides. The table is kept (empty but for what Workday's OAuth layer
is documented to send) so that codes observed on a real tenant are added here, next to the
other systems', rather than as special cases in the client.
"""

from __future__ import annotations

from connectors._vendor_errors import CodeRule, ErrorTable
from contracts.errors import ErrorKind

ERROR_CODES: ErrorTable = {
    "invalid_token": CodeRule(ErrorKind.AUTH, None, "OAuth token refused"),
    "invalid_client": CodeRule(ErrorKind.AUTH, None, "OAuth client refused"),
}
