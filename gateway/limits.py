"""Bounded requests: body bytes counted while they stream in, JSON depth, path length, rates.

    limits = install_limits(app, settings.limits)   # before the routers are included
    limits.clock = fake_clock                       # tests: the token buckets' time source

One pure-ASGI middleware (`RequestLimitMiddleware`) sits in front of every route and, in this
order, answers in the gateway's error shape (`gateway.errors`) without calling the app:

1. **429 `rate_limited`** + `Retry-After` (integer seconds) when the caller's token bucket is
   empty. `/webhooks/<source>` deliveries are counted per endpoint and sender address; every
   other request per actor: a hash of the `Authorization` header (so no token is kept), or the
   client address when there is none. `/healthz` and `/metrics` are never limited (probes).
   The buckets live in this process's memory: N gateway processes admit N times the rate.
2. **414 `uri_too_long`** for a URL path over `max_path_bytes`.
3. **413 `body_too_large`** at once for a declared `Content-Length` over the limit
   (`webhook_max_body_bytes` for webhooks, `api_max_body_bytes` for the rest).

Then the app runs with a `receive` that counts the body's bytes as they arrive: past the limit
(a chunked body declares no length), or nested deeper than `max_json_depth` (scanned
incrementally, before anything parses it), the next `receive` raises `RequestRefused` — 413
`body_too_large` or 400 `json_too_deep` — which FastAPI's body parsing and the webhook receiver
let through to the error handlers. Nothing here buffers the body: the gateway holds at most
the limit plus one chunk of any request. What the client still sends after the refusal is
read and dropped by the server (uvicorn discards body data once the response is complete);
the connection is not closed on it, because closing a socket with unread data resets it and a
client still uploading would see a reset instead of the 413 (and a webhook sender would retry).

Path parameters are bounded by a dependency every route gets (`bounded_path_params`): longer
than `max_path_param_chars`, or holding control characters, is 422 `invalid_id` naming the
parameter, before any store or Temporal call sees the id.

Must never: import workflows, activities or connectors.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from itertools import accumulate

from fastapi import Depends, FastAPI, Request
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.settings import LimitSettings
from gateway.errors import GatewayError, RequestRefused, error_response

WEBHOOK_PREFIX = "/webhooks/"
UNLIMITED_PATHS = frozenset({"/healthz", "/metrics"})
"""Probes: never rate-limited (they read no body)."""

Clock = Callable[[], float]


# --------------------------------------------------------------------------- JSON depth

_STRING_END = rb'[^"\\]*+(?:\\.[^"\\]*+)*+(?P<end>"|\\?\Z)'
"""The rest of a JSON string: up to its closing quote, or to the end of the chunk (`end` is
then empty, or a backslash whose escaped character is in the next chunk). Possessive, so
linear whatever the input."""
_STRING = re.compile(b'"' + _STRING_END, re.DOTALL)
_STRING_REST = re.compile(_STRING_END, re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


class JsonDepth:
    """The nesting depth of JSON text fed in chunks, without parsing it (and without
    recursion): brackets inside strings (escapes included) do not count.

        scan = JsonDepth(limit=64)
        ok = scan.feed(chunk)   # False once the text has nested deeper than `limit`

    Only the depth is checked; whether the text is valid JSON is the parser's business. The
    work is done by regular expressions and `bytes.translate` (linear, in C), not a loop per
    character."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        """The nesting level at the end of what was fed."""
        self._too_deep = False
        self._in_string = False
        self._escaped = False

    def feed(self, chunk: bytes) -> bool:
        if self._too_deep:
            return False
        pos = 0
        if self._in_string:
            pos = self._finish_string(chunk)
            if self._in_string:
                return True
        pieces = _STRING.split(chunk[pos:] if pos else chunk)
        # [outside, end, outside, end, ..., outside]: `end` of each string in between
        if len(pieces) > 1 and pieces[-2] != b'"':
            self._in_string = True
            self._escaped = pieces[-2] == b"\\"
        outside = b"".join(pieces[0::2]).translate(None, _NOT_BRACKETS)
        opened = outside.count(b"[") + outside.count(b"{")
        if self.depth + opened > self.limit:  # it might go too deep: walk the brackets
            levels = accumulate(map(_STEP.__getitem__, outside), initial=self.depth)
            self._too_deep = max(levels) > self.limit
        self.depth += 2 * opened - len(outside)
        return not self._too_deep

    def _finish_string(self, chunk: bytes) -> int:
        """Where the string this chunk starts inside ends (the chunk's length if it does not)."""
        start = 0
        if self._escaped:
            if not chunk:
                return 0
            start, self._escaped = 1, False  # the escaped character itself
        m = _STRING_REST.match(chunk, start)
        assert m is not None  # the pattern matches anything
        end = m.group("end")
        if end == b'"':
            self._in_string = False
        else:
            self._escaped = end == b"\\"
        return m.end()


def json_too_deep(body: bytes, limit: int) -> bool:
    """Whether `body` nests JSON arrays/objects deeper than `limit`."""
    return not JsonDepth(limit).feed(body)


def too_deep_error(limit: int) -> GatewayError:
    return GatewayError(400, "json_too_deep", f"the JSON body nests deeper than {limit} levels")


def too_large_error(limit: int) -> GatewayError:
    return GatewayError(413, "body_too_large", f"the body exceeds {limit} bytes")


# --------------------------------------------------------------------------- rate


class TokenBuckets:
    """Token buckets by key: `burst` tokens each, refilled at `rate_per_s`; one per request.
    At most `max_keys` buckets are kept (the least recently used is dropped: it starts full
    again next time, which only ever admits more)."""

    def __init__(self, rate_per_s: float, burst: int, max_keys: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """Take a token: 0.0 when admitted, else the seconds until one is available."""
        tokens, updated = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - updated) * self.rate_per_s)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate_per_s
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


def _client_host(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class Limits:
    """The settings and the token buckets one app's middleware uses (`app.state.limits`)."""

    def __init__(self, settings: LimitSettings, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.api = TokenBuckets(
            settings.api_rate_per_s, settings.api_burst, settings.max_tracked_clients
        )
        self.webhooks = TokenBuckets(
            settings.webhook_rate_per_s, settings.webhook_burst, settings.max_tracked_clients
        )

    def wait_s(self, scope: Scope) -> float:
        """Take a token for this request: 0.0 when admitted, else the seconds to wait."""
        path: str = scope["path"]
        if not self.settings.rate_limit or path in UNLIMITED_PATHS:
            return 0.0
        if path.startswith(WEBHOOK_PREFIX):
            endpoint = path[len(WEBHOOK_PREFIX) :].partition("/")[0][:64]
            return self.webhooks.take(f"{endpoint}|{_client_host(scope)}", self.clock())
        return self.api.take(actor_key(scope), self.clock())


def actor_key(scope: Scope) -> str:
    """Who a request counts against: a hash of its Authorization header (the token itself is
    not kept), else its client address."""
    authorization = Headers(scope=scope).get("authorization")
    if authorization:
        return "auth:" + hashlib.sha256(authorization.encode("utf-8", "replace")).hexdigest()
    return "addr:" + _client_host(scope)


# --------------------------------------------------------------------------- the middleware


def _scans_json(headers: Headers, webhook: bool) -> bool:
    """Webhook bodies are always JSON; other bodies when they say so (or say nothing)."""
    if webhook:
        return True
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    return not content_type or content_type.endswith("/json") or content_type.endswith("+json")


class RequestLimitMiddleware:
    """See the module docstring. Pure ASGI: it wraps `receive`, it never reads ahead."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.limits.settings
        headers = Headers(scope=scope)
        path: str = scope["path"]
        webhook = path.startswith(WEBHOOK_PREFIX)
        max_bytes = settings.webhook_max_body_bytes if webhook else settings.api_max_body_bytes
        early = _refuse_early(self.limits, scope, _declared_length(headers), max_bytes)
        if early is not None:
            await _respond(early, scope, receive, send)
            return
        guard = _BodyGuard(
            receive,
            max_bytes,
            JsonDepth(settings.max_json_depth) if _scans_json(headers, webhook) else None,
        )
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guard.receive, send_tracking)
        except RequestRefused as exc:  # raised where no error handler answered it
            if started:
                raise
            await _respond(exc.error, scope, receive, send)


def _declared_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _refuse_early(
    limits: Limits, scope: Scope, declared: int | None, max_bytes: int
) -> GatewayError | None:
    """429, 414 or 413 before the app runs; None to go on."""
    wait = limits.wait_s(scope)
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        return GatewayError(
            429,
            "rate_limited",
            f"too many requests; try again in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
    if len(raw_path) > limits.settings.max_path_bytes:
        return GatewayError(
            414,
            "uri_too_long",
            f"the URL path exceeds {limits.settings.max_path_bytes} bytes",
        )
    if declared is not None and declared > max_bytes:
        return too_large_error(max_bytes)
    return None


async def _respond(error: GatewayError, scope: Scope, receive: Receive, send: Send) -> None:
    response: JSONResponse = error_response(error)
    await response(scope, receive, send)


class _BodyGuard:
    """`receive` that counts body bytes and scans JSON depth as chunks arrive; once over a
    bound every further call raises the same `RequestRefused`."""

    def __init__(self, receive: Receive, max_bytes: int, depth: JsonDepth | None) -> None:
        self._receive = receive
        self._max_bytes = max_bytes
        self._depth = depth
        self._seen = 0
        self._refused: GatewayError | None = None

    async def receive(self) -> Message:
        if self._refused is not None:
            raise RequestRefused(self._refused)
        message = await self._receive()
        if message["type"] == "http.request":
            chunk: bytes = message.get("body", b"")
            self._seen += len(chunk)
            if self._seen > self._max_bytes:
                self._refused = too_large_error(self._max_bytes)
            elif self._depth is not None and not self._depth.feed(chunk):
                self._refused = too_deep_error(self._depth.limit)
            if self._refused is not None:
                raise RequestRefused(self._refused)
        return message


# --------------------------------------------------------------------------- path parameters


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in value)


async def bounded_path_params(request: Request) -> None:
    """422 `invalid_id` for a path parameter over `max_path_param_chars` or with control
    characters (NUL included), naming the parameter."""
    limits: Limits = request.app.state.limits
    max_chars = limits.settings.max_path_param_chars
    for name, value in request.path_params.items():
        if not isinstance(value, str):
            continue
        if len(value) > max_chars:
            raise GatewayError(
                422,
                "invalid_id",
                f"{name} is longer than {max_chars} characters",
                field=name,
            )
        if _has_control(value):
            raise GatewayError(422, "invalid_id", f"{name} contains control characters", field=name)


def install_limits(app: FastAPI, settings: LimitSettings, clock: Clock = time.monotonic) -> Limits:
    """Put the limits in front of `app` and give every route included afterwards the path
    parameter bound; the `Limits` (settings, buckets, clock) are `app.state.limits`."""
    limits = Limits(settings, clock)
    app.state.limits = limits
    app.add_middleware(RequestLimitMiddleware, limits=limits)
    app.router.dependencies.append(Depends(bounded_path_params))
    return limits
