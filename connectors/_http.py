"""The HTTP machinery every connector shares; vendor specifics stay in each system's module.

- one `httpx.AsyncClient` per connector (connection reuse);
- OAuth2 client credentials with a cached token, refreshed on expiry and once on a 401, the
  client authenticated by its secret or by a signed JWT assertion (`connectors._oauth`); or a
  static bearer token;
- tenacity retries for 429, 500/502/503/504 and timeouts: `Retry-After` honoured when the vendor
  sends it, otherwise exponential backoff with full jitter, bounded by a time budget;
- `VendorHttp.create` for writes that are not idempotent (a POST that makes a record): never
  re-sent blindly — after a failure that may have been applied (5xx, timeout, dropped
  connection) it looks for what the request would have made, and sends again only when that
  is not there;
- a per-tenant concurrency limit (NetSuite-style governance is account-wide);
- optionally a request-rate limit (`SystemSettings.rate_limit_rps`): smooth client-side pacing,
  so bulk work runs at the vendor's quota instead of bouncing off it with 429s;
- responses mapped to the `contracts.errors` taxonomy;
- every HTTP request counted by system, method and outcome, and timed
  (`pssync_vendor_requests_total`, `pssync_vendor_request_duration_seconds`), with the
  vendor's quota readings and rate limits (default prometheus_client registry);
- `VendorClient`, the base of every vendor client: its `VendorHttp` and its lifecycle.

No Temporal imports here: activities decide what a failure means for a workflow.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Self, TypedDict, TypeVar

import httpx
from prometheus_client import Counter, Gauge, Histogram
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from connectors import _evidence
from connectors._oauth import CachedTokenAuth, ClientAssertionAuth
from connectors._vendor_errors import CodeRule, ErrorTable
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
from contracts.settings import SystemSettings

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

T = TypeVar("T")

_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport failures before the request left: the vendor cannot have seen it."""
_MAYBE_IN_FLIGHT = (httpx.ReadTimeout, httpx.WriteTimeout)
"""We stopped waiting, the vendor may not have: the request may still be applied later."""


@dataclass(frozen=True)
class VendorError:
    """What a vendor's error body says, parsed by the connector that knows its shape."""

    code: str
    message: str
    field: str | None = None
    more_codes: tuple[str, ...] = ()
    """Further codes the body carries, less specific than `code` (NetSuite: the top-level
    `o:errorCode` beside each `o:errorDetails[].o:errorCode`); an error table is consulted on
    `code` first, then on these."""

    @property
    def codes(self) -> tuple[str, ...]:
        """Every code, the most specific first."""
        return (self.code, *self.more_codes)


ErrorParser = Callable[[httpx.Response], VendorError]


@dataclass(frozen=True)
class QuotaReading:
    """What the vendor last said about its API allocation: `used` of `limit` requests."""

    used: int
    limit: int
    read_at: float
    """`time.monotonic()` when it was read."""

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


QuotaParser = Callable[[httpx.Headers], tuple[int, int] | None]
"""Reads `(used, limit)` from a vendor response's headers, or None when it does not say."""

CLIENT_HOOKS: list[Callable[[httpx.AsyncClient], None]] = []
"""Called with every `VendorHttp`'s client as it is made: the composition root adds tracing
here when telemetry is on (`worker.run_workers`); empty otherwise."""

VENDOR_QUOTA_USED = Gauge(
    "pssync_vendor_quota_used",
    "API requests used of the vendor's allocation, as the vendor last reported it.",
    ["system"],
)
VENDOR_QUOTA_LIMIT = Gauge(
    "pssync_vendor_quota_limit",
    "The vendor's API allocation (requests per its window), as the vendor last reported it.",
    ["system"],
)
VENDOR_RATE_LIMITED = Counter(
    "pssync_vendor_rate_limited_total",
    "Vendor answers that said a quota or concurrency limit was reached, by vendor code; and "
    "requests pssync held back because its share of the allocation was used (code "
    "PSSYNC_QUOTA_SHARE).",
    ["system", "code"],
)

VENDOR_REQUESTS = Counter(
    "pssync_vendor_requests_total",
    "HTTP requests pssync sent to a vendor API, by outcome: ok (an answer the caller accepts), "
    "client_error (a 4xx it refused), server_error (a 5xx), rate_limited (429 or the vendor's "
    "own limit code), timeout, connection_error. Every attempt counts: a request retried "
    "twice is three requests. OAuth token requests are not counted on their own.",
    ["system", "method", "outcome"],
)
VENDOR_REQUEST_DURATION = Histogram(
    "pssync_vendor_request_duration_seconds",
    "Time of one HTTP request to a vendor API, every attempt (retries included), from leaving "
    "pssync (after its pacing) to the whole answer or the failure.",
    ["system"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_SENT_AT = "pssync_sent_at"
"""`request.extensions` key: `time.perf_counter()` when the request left its pacer."""


def _sent_at(request: httpx.Request | None, default: float) -> float:
    if request is None:
        return default
    return float(request.extensions.get(_SENT_AT, default))


def _request_of(exc: httpx.RequestError) -> httpx.Request | None:
    try:
        return exc.request
    except RuntimeError:  # httpx raises when the request was never attached
        return None


def _record(system: str, method: str, outcome: str, seconds: float) -> None:
    """Count one HTTP request to a vendor and its time (bounded labels: no URL, no tenant)."""
    verb = method.upper()
    VENDOR_REQUESTS.labels(
        system=system, method=verb if verb in _METHODS else "OTHER", outcome=outcome
    ).inc()
    VENDOR_REQUEST_DURATION.labels(system=system).observe(max(0.0, seconds))


def _outcome_of(error: BaseException, status: int | None = None) -> str:
    """The outcome of a request that ended in a `contracts.errors` error."""
    if isinstance(error, RateLimitedError):
        return "rate_limited"
    if isinstance(error, AuthError) or (status is not None and status < 500):
        return "client_error"
    return "server_error"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def classify(
    system: str,
    response: httpx.Response,
    parse: ErrorParser,
    codes: ErrorTable | None = None,
) -> PssyncError:
    """Map an HTTP error response to the contracts taxonomy: by the vendor's error code when
    `codes` (the connector's table, `connectors/<system>/errors.py`) knows one of the codes
    the body carries, else by the status. An unknown 4xx is a business-rule violation: it is
    shown to a person, never retried blindly."""
    return classified(system, response, parse, codes)[0]


def classified(
    system: str,
    response: httpx.Response,
    parse: ErrorParser,
    codes: ErrorTable | None = None,
) -> tuple[PssyncError, VendorError]:
    """`classify`, with the vendor error it read. The error carries the evidence (what was
    sent, what was answered; redacted and bounded: `connectors._evidence`), except a rate
    limit's, whose answer says nothing a person needs."""
    status = response.status_code
    try:
        err = parse(response)
    except Exception:
        err = VendorError(code=f"HTTP_{status}", message=response.text[:500])
    error = _classify(system, status, response, err, codes)
    if not isinstance(error, RateLimitedError):
        error.evidence = _evidence_of(system, response)
    return error, err


def _evidence_of(system: str, response: httpx.Response) -> dict[str, Any] | None:
    try:
        return _evidence.of_response(response, system)
    except Exception:  # evidence helps a person; it never changes what the error is
        return None


def _classify(
    system: str,
    status: int,
    response: httpx.Response,
    err: VendorError,
    codes: ErrorTable | None,
) -> PssyncError:
    message = f"{system} {status} {err.code}: {err.message}"
    retry_after_s = parse_retry_after(response.headers.get("retry-after"))
    rule = next((codes[code] for code in err.codes if codes and code in codes), None)
    if rule is not None:
        return from_rule(rule, system, err, message, retry_after_s)
    if status == 429:
        return RateLimitedError(message, system=system, retry_after_s=retry_after_s)
    if status in RETRYABLE_STATUSES or status >= 500:
        return TransientError(message, system=system)
    if status in (401, 403):
        return AuthError(message, system=system)
    if status == 404:
        return NotFoundError(message, system=system)
    if status in (409, 412):
        return ConflictError(message, system=system)
    return BusinessRuleViolation(err.code, err.message, field=err.field, system=system)


def from_rule(
    rule: CodeRule,
    system: str,
    err: VendorError,
    message: str,
    retry_after_s: float | None = None,
) -> PssyncError:
    """The error a table's rule says `err` is (Retry-After from the vendor wins over the
    rule's own wait)."""
    kind = rule.kind
    if kind is ErrorKind.RATE_LIMITED:
        wait = retry_after_s if retry_after_s is not None else rule.retry_after_s
        return RateLimitedError(message, system=system, retry_after_s=wait)
    if kind is ErrorKind.TRANSIENT:
        return TransientError(message, system=system)
    if kind is ErrorKind.AUTH:
        return AuthError(message, system=system)
    if kind is ErrorKind.NOT_FOUND:
        return NotFoundError(message, system=system)
    if kind is ErrorKind.CONFLICT:
        return ConflictError(message, system=system)
    return BusinessRuleViolation(err.code, err.message, field=err.field, system=system)


class ClientCredentials(CachedTokenAuth):
    """OAuth2 client credentials with a client secret: the token cached, refreshed before
    expiry and once on a 401 (`CachedTokenAuth`)."""

    def __init__(self, token_url: str, client_id: str, client_secret: str) -> None:
        super().__init__()
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.refreshes = 0

    def _token_request(self, request: httpx.Request) -> httpx.Request:
        # Carry the client's timeout: a hung token endpoint must not block past timeout_s.
        return httpx.Request(
            "POST",
            self.token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            },
            extensions={"timeout": request.extensions.get("timeout", {})},
        )

    def _accept(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            # A token endpoint failure is transient unless the credentials were refused.
            if response.status_code in (400, 401, 403):
                raise AuthError(f"token endpoint refused credentials: {response.status_code}")
            raise TransientError(f"token endpoint answered {response.status_code}")
        body = response.json()
        self._token = body["access_token"]
        # Refresh a little early so a request never leaves with a token about to lapse.
        self._expires_at = self._clock() + float(body.get("expires_in", 3600)) * 0.9
        self.refreshes += 1


class _WaitRetryAfterOrJitter:
    """Honour a vendor's Retry-After; otherwise full-jitter exponential backoff."""

    def __init__(self, base_s: float, cap_s: float) -> None:
        self.jitter = wait_random_exponential(multiplier=base_s, max=cap_s)
        self.cap_s = cap_s

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.retry_after_s is not None:
            return min(exc.retry_after_s, self.cap_s)
        return float(self.jitter(state))


class RequestPacer:
    """A token bucket holding at most one token, refilled at `rate` per second: requests leave
    no closer together than 1/rate seconds (smooth pacing, no bursts).

    Each request reserves the next free send slot and sleeps until it. The reservation is made
    without awaiting, so requests sharing one pacer on one event loop queue in arrival order
    and none can take another's slot. An idle pacer lets the next request go at once.
    """

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate
        self._next_slot = 0.0
        self.waited_s = 0.0
        """Time requests spent waiting for their slot (how hard the limit binds)."""

    async def wait(self, request: httpx.Request | None = None) -> None:
        now = time.monotonic()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self.interval
        if slot > now:
            self.waited_s += slot - now
            await asyncio.sleep(slot - now)
        if request is not None:
            request.extensions[_SENT_AT] = time.perf_counter()


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransientError | RateLimitedError)


def may_have_been_applied(exc: BaseException) -> bool:
    """Could the request that failed with `exc` have taken effect at the vendor?

    A 429 is a refusal (the vendor did nothing), and so is a connection that was never made.
    Any other transient failure — a 5xx (a gateway may answer 502/504 while the backend
    completes the write), a timeout, a dropped connection — leaves the outcome unknown."""
    if isinstance(exc, RateLimitedError):
        return False
    if isinstance(exc, TransientError):
        return not isinstance(exc.__cause__, _NEVER_SENT)
    return False


def _may_still_be_in_flight(exc: BaseException) -> bool:
    return isinstance(exc.__cause__, _MAYBE_IN_FLIGHT)


class VendorHttp:
    """An authenticated, retrying, concurrency- and optionally rate-limited HTTP client for one
    vendor tenant. Requests wait for a concurrency slot first, then for their send slot."""

    def __init__(
        self,
        system: str,
        settings: SystemSettings,
        parse_error: ErrorParser,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff_base_s: float = 0.05,
        backoff_cap_s: float = 5.0,
        error_codes: ErrorTable | None = None,
        quota_header: QuotaParser | None = None,
    ) -> None:
        self.system = system
        self.settings = settings
        self.parse_error = parse_error
        self.error_codes = error_codes
        self.quota_header = quota_header
        self.quota: QuotaReading | None = None
        """The vendor's last word on its API allocation (None until it says)."""
        base = settings.base_url.rstrip("/")
        auth: httpx.Auth | None
        if settings.auth == "bearer":
            token = settings.token.get_secret_value() if settings.token else ""
            auth = None
            headers = {"Authorization": f"Bearer {token}"}
        elif settings.auth == "oauth2_jwt":
            auth = ClientAssertionAuth.from_settings(system, settings)
            headers = {}
        else:
            auth = ClientCredentials(
                settings.token_url or f"{base}/oauth2/token",
                settings.client_id,
                settings.client_secret.get_secret_value(),
            )
            headers = {}
        # The pacer is an httpx request hook: every request the client sends passes it, so
        # retries and OAuth token requests count against the rate as the vendor counts them.
        # It notes when a request leaves, so that its duration leaves the pacing out.
        self.pacer = RequestPacer(settings.rate_limit_rps) if settings.rate_limit_rps else None
        self.client = httpx.AsyncClient(
            base_url=base,
            auth=auth,
            headers=headers,
            timeout=settings.timeout_s,
            transport=transport,
            limits=httpx.Limits(
                max_connections=settings.max_concurrency * 2,
                max_keepalive_connections=settings.max_concurrency,
            ),
            event_hooks={"request": [self.pacer.wait]} if self.pacer else None,
        )
        for hook in CLIENT_HOOKS:
            hook(self.client)
        self._limit = asyncio.Semaphore(settings.max_concurrency)
        self._wait = _WaitRetryAfterOrJitter(backoff_base_s, backoff_cap_s)
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.retries = 0
        self.calls = 0
        self.recovered = 0
        """Creates whose answer was lost and that were found again instead of re-sent."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        ok: Collection[int] = (200, 201, 202, 204),
        retry: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request; retry transient failures; return the response or raise a
        `contracts.errors` type. Statuses in `ok` are returned as they are."""
        if not retry:
            return await self._once(method, url, ok, kwargs)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_retryable),
            wait=self._wait,
            stop=stop_after_delay(self.settings.retry_budget_s),
            reraise=True,
            before_sleep=self._count_retry,
        ):
            with attempt:
                return await self._once(method, url, ok, kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    def _count_retry(self, _state: RetryCallState) -> None:
        self.retries += 1

    async def create(
        self,
        send: Callable[[], Awaitable[T]],
        find: Callable[[], Awaitable[T | None]] | None,
    ) -> T:
        """Run a create that is not idempotent (the vendor has no idempotency key for it)
        without ever re-sending it blindly.

        `send` makes one request with `request(..., retry=False)` and returns what was made;
        `find` looks up what that request would have made — by a marker or external id the
        request carried — and returns it, or None when it is not there.

        - A refusal the vendor certainly did not apply (429, no connection) is sent again after
          the usual backoff, within the retry budget.
        - After a failure that may have been applied (5xx, a lost answer, a dropped
          connection), `find` runs before anything else: what it finds is returned; only when
          it finds nothing is the request sent again. If `find` itself fails it is retried;
          the create is not re-sent until a look-up has come back empty.
        - After a timeout the request may still be running at the vendor, so an empty look-up
          proves nothing: the error is raised instead of a second send. The caller's retry (a
          Temporal activity retry, later) looks first and finds it then.
        - Without `find` (nothing to look up by) an uncertain failure is raised, never re-sent.

        When the budget runs out the last error is raised; the next call must look first too,
        which every create path in the connectors does.
        """
        deadline = time.monotonic() + self.settings.retry_budget_s
        attempt = 0
        unsure = False
        """The last send failed in a way that may have been applied: look before sending."""
        while True:
            try:
                if unsure:
                    assert find is not None
                    found = await find()
                    if found is not None:
                        self.recovered += 1
                        return found
                    unsure = False
                return await send()
            except PssyncError as exc:
                if not _retryable(exc):
                    raise
                if not unsure and may_have_been_applied(exc):
                    if find is None:
                        raise
                    if _may_still_be_in_flight(exc):
                        # It may be there already; if not, it may still come: do not re-send.
                        found = await find()
                        if found is None:
                            raise
                        self.recovered += 1
                        return found
                    unsure = True
                delay = self._backoff(exc, attempt)
                if time.monotonic() + delay > deadline:
                    raise
                attempt += 1
                self.retries += 1
                await asyncio.sleep(delay)

    def _backoff(self, exc: PssyncError, attempt: int) -> float:
        """The same policy as `request`'s: Retry-After when given, else full jitter."""
        if isinstance(exc, RateLimitedError) and exc.retry_after_s is not None:
            return min(exc.retry_after_s, self.backoff_cap_s)
        return random.uniform(0, min(self.backoff_cap_s, self.backoff_base_s * 2**attempt))

    def _hold_for_quota(self) -> None:
        """Refuse to send while pssync's share of the allocation is used and the reading is
        fresh: the caller backs off (RateLimitedError) and the other tools keep their part.
        Once the reading is `quota_wait_s` old, one request goes and reads it afresh."""
        quota = self.quota
        if quota is None:
            return
        share = self.settings.quota_share
        age = time.monotonic() - quota.read_at
        if quota.used < quota.limit * share or age >= self.settings.quota_wait_s:
            return
        VENDOR_RATE_LIMITED.labels(system=self.system, code="PSSYNC_QUOTA_SHARE").inc()
        raise RateLimitedError(
            f"{self.system}: pssync's share ({share:.0%}) of the API allocation is used "
            f"({quota.used}/{quota.limit})",
            system=self.system,
            retry_after_s=max(0.0, self.settings.quota_wait_s - age),
        )

    def _read_quota(self, response: httpx.Response) -> None:
        if self.quota_header is None:
            return
        reading = self.quota_header(response.headers)
        if reading is None:
            return
        used, limit = reading
        self.quota = QuotaReading(used=used, limit=limit, read_at=time.monotonic())
        VENDOR_QUOTA_USED.labels(system=self.system).set(used)
        VENDOR_QUOTA_LIMIT.labels(system=self.system).set(limit)

    async def _once(
        self, method: str, url: str, ok: Collection[int], kwargs: dict[str, Any]
    ) -> httpx.Response:
        self._hold_for_quota()
        async with self._limit:
            self.calls += 1
            started = time.perf_counter()
            try:
                response = await self.client.request(method, url, **kwargs)
            except httpx.TimeoutException as exc:
                sent = _sent_at(_request_of(exc), started)
                _record(self.system, method, "timeout", time.perf_counter() - sent)
                raise TransientError(
                    f"{self.system} timed out: {exc!r}", system=self.system
                ) from exc
            except httpx.TransportError as exc:
                sent = _sent_at(_request_of(exc), started)
                _record(self.system, method, "connection_error", time.perf_counter() - sent)
                raise TransientError(
                    f"{self.system} unreachable: {exc!r}", system=self.system
                ) from exc
            except PssyncError as exc:  # the OAuth token endpoint refused or failed
                _record(self.system, method, _outcome_of(exc), time.perf_counter() - started)
                raise
        took = time.perf_counter() - _sent_at(response.request, started)
        self._read_quota(response)
        if response.status_code in ok:
            _record(self.system, method, "ok", took)
            return response
        error, said = classified(self.system, response, self.parse_error, self.error_codes)
        _record(self.system, method, _outcome_of(error, response.status_code), took)
        if isinstance(error, RateLimitedError):
            VENDOR_RATE_LIMITED.labels(system=self.system, code=said.code[:64]).inc()
        raise error

    async def aclose(self) -> None:
        await self.client.aclose()


class Backoff(TypedDict, total=False):
    """The retry backoff a vendor client passes on to its `VendorHttp` (defaults there)."""

    backoff_base_s: float
    backoff_cap_s: float


class VendorClient:
    """The base of every vendor client: its `VendorHttp` for the tenant (`self.http`), closed
    by `aclose` or on leaving `async with client:`."""

    def __init__(self, http: VendorHttp) -> None:
        self.http = http

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()
