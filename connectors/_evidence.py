"""The evidence a person needs when a vendor refuses a request: what pssync sent and what the
vendor answered, redacted of credentials and bounded in size.

It travels with the typed error (`PssyncError.evidence`, `ErrorInfo.evidence`) into the
activity failure and on into the exception item, so it must stay small (well under Temporal's
payload limits) and must never carry a secret:

- the request's method and path with its query string, never the host or any header
  (Authorization, cookies); query parameters named like a credential have their value
  replaced;
- the request and response bodies: JSON parsed when it is JSON, the values of keys named like
  a credential (token, secret, password, authorization, api_key, client_secret, assertion,
  cookie, signature, ...) replaced at any depth, bearer strings and JWTs too; a form body by
  its field names; other text by the same names as they appear in it; each cut to
  `MAX_BODY_CHARS`;
- the response's status and the vendor's request id when it sends one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

REDACTED = "[redacted]"
MAX_BODY_CHARS = 4096
"""Characters kept of a body (after redaction, as JSON text when it is JSON)."""
MAX_PATH_CHARS = 1024
MAX_PARSE_BYTES = 256 * 1024
"""A body larger than this is not parsed: its start is redacted as text and kept."""
_MAX_DEPTH = 24

SECRET_KEY = re.compile(
    r"token|secret|passw(or)?d|pwd|authori[sz]ation|api[_-]?key|apikey|assertion|cookie"
    r"|signature|credential|private[_-]?key|session|bearer",
    re.IGNORECASE,
)
"""Names whose values are credentials, wherever they appear in a body."""
SECRET_PARAM = re.compile(
    r"token|secret|signature|^sig$|key|passw(or)?d|pwd|code|assertion|credential|auth",
    re.IGNORECASE,
)
"""Query parameter names whose values never leave: wider than `SECRET_KEY` (an OAuth `code`,
a signed URL's `sig`, any `...key`)."""
_SECRET_VALUE = re.compile(r"^\s*(bearer|basic)\s+\S|^eyJ[\w-]{4,}\.[\w-]{4,}\.", re.IGNORECASE)
"""A value that is a credential whatever its key: an Authorization value or a JWT."""
_TEXT_PAIR = re.compile(
    r"""(?P<key>["']?[\w.-]*(?:token|secret|passw(?:or)?d|pwd|authori[sz]ation|api[_-]?key"""
    r"""|apikey|assertion|cookie|signature|credential|private[_-]?key|session)[\w.-]*["']?)"""
    r"""(?P<sep>\s*[:=]\s*)(?P<value>"[^"]*"?|'[^']*'?|[^\s&,;<"']+)""",
    re.IGNORECASE,
)
_TEXT_ELEMENT = re.compile(
    r"(<(?P<tag>[\w:.-]*(?:token|secret|passw(?:or)?d|assertion|signature|credential)"
    r"[\w:.-]*)[^>]*>)[^<]*",
    re.IGNORECASE,
)
_TEXT_BEARER = re.compile(r"\b(bearer|basic)\s+[\w.~+/=-]+", re.IGNORECASE)
_TEXT_JWT = re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*")
REQUEST_ID_HEADERS = (
    "x-request-id",
    "request-id",
    "x-correlation-id",
    "x-amzn-requestid",
    "x-ms-request-id",
    "x-netsuite-request-id",
    "sforce-request-id",
)
"""Headers a vendor names its request by (the one header kept, as a value)."""


def redact(value: Any, depth: int = 0) -> Any:
    """`value` with credentials replaced at any depth (by key name, or by the value's shape)."""
    if depth > _MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if SECRET_KEY.search(str(k)) else redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, depth + 1) for v in value]
    if isinstance(value, str):
        return REDACTED if _SECRET_VALUE.match(value) else redact_text(value)
    return value


def redact_text(text: str) -> str:
    """Free text (a form, XML, a log line) with credential-named values, bearer strings and
    JWTs replaced."""
    text = _TEXT_PAIR.sub(lambda m: f"{m['key']}{m['sep']}{REDACTED}", text)
    text = _TEXT_ELEMENT.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _TEXT_BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _TEXT_JWT.sub(REDACTED, text)


def _cut(text: str, size: int, limit: int = MAX_BODY_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [cut: {size} bytes in all]"


def body(content: bytes, content_type: str = "") -> Any:
    """A body as evidence: redacted JSON (kept as JSON when it fits `MAX_BODY_CHARS`, else as
    cut text), a redacted form, or redacted, cut text. None when empty."""
    if not content:
        return None
    size = len(content)
    if size <= MAX_PARSE_BYTES:
        text = content.decode("utf-8", errors="replace")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        else:
            clean = redact(parsed)
            dumped = json.dumps(clean, ensure_ascii=False, default=str)
            return clean if len(dumped) <= MAX_BODY_CHARS else _cut(dumped, size)
        if "x-www-form-urlencoded" in content_type.lower():
            pairs = parse_qsl(text, keep_blank_values=True)
            form = urlencode(
                [(k, REDACTED if SECRET_KEY.search(k) else redact_text(v)) for k, v in pairs]
            )
            return _cut(form, size)
    else:
        # Only the start is read (and a little more, so a secret cut at the edge is seen whole).
        text = content[: MAX_BODY_CHARS + 512].decode("utf-8", errors="replace")
    return _cut(redact_text(text), size)


def path(url: httpx.URL) -> str:
    """The path and query of `url`, never the host or user info; credential-named query
    parameters with their value replaced."""
    params = [
        (k, REDACTED if SECRET_PARAM.search(k) else redact_text(v))
        for k, v in url.params.multi_items()
    ]
    query = urlencode(params, safe="[]/:,")
    text = url.path + (f"?{query}" if query else "")
    return _cut(text, len(text), MAX_PATH_CHARS)


def of_response(response: httpx.Response, system: str | None = None) -> dict[str, Any]:
    """What was sent to `system` and what it answered, as evidence (no header but the
    request id)."""
    sent: dict[str, Any] = {}
    try:
        request = response.request
    except RuntimeError:  # a response built without its request (tests)
        request = None
    if request is not None:
        try:
            content = request.content
        except httpx.RequestNotRead:  # a streamed upload: not kept
            content = b""
        sent = {
            "method": request.method,
            "path": path(request.url),
            "body": body(content, request.headers.get("content-type", "")),
        }
    try:
        answered_body = body(response.content, response.headers.get("content-type", ""))
    except httpx.ResponseNotRead:
        answered_body = None
    answered: dict[str, Any] = {"status": response.status_code, "body": answered_body}
    request_id = next(
        (response.headers[h] for h in REQUEST_ID_HEADERS if h in response.headers), None
    )
    if request_id:
        answered["request_id"] = redact_text(request_id[:200])
    return {"system": system, "request": sent, "response": answered}
