"""What every twin shares: fault injection (including lost responses), request stats, OAuth2
client credentials, vendor-shaped errors, signed outbound webhooks, and the FastAPI app factory.

A twin package (`crm/`, `psa/`, `erp/`, `hcm/`) defines its own sqlmodel tables
(table names prefixed with the system, e.g. `erp_job`), an `APIRouter` of vendor-shaped
endpoints, and an `error_body(status, code, message, field)` that renders the vendor's error
shape; `create_twin_app` wraps them with everything below (`twin_state` and `seed_session`
serve each twin's `load_firm`). Twins never import pssync's contracts: they imitate the
vendors, not us.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine, Table, event, inspect, text
from sqlmodel import Session, SQLModel, create_engine
from standardwebhooks import Webhook
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("pssync.sandbox")

TOKEN_TTL_S = 3600


class ErrorBody(Protocol):
    def __call__(
        self, status: int, code: str, message: str, field: str | None = None
    ) -> dict[str, Any]: ...


class TwinError(Exception):
    """Raise from a handler to answer in the vendor's error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


# --------------------------------------------------------------------------- faults & stats


class FaultConfig(BaseModel):
    """What `POST /<system>/_admin/faults` sets. Replaces the whole config each time."""

    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_statuses: list[int] = Field(default_factory=lambda: [500, 502, 503])
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1)
    """Fraction of requests answered 429 at random (on top of quotas)."""
    latency_ms: float = Field(default=0, ge=0)
    latency_jitter_ms: float = Field(default=0, ge=0)
    outage: bool = False
    """Every request answered 503 (the vendor is down)."""
    quota_rps: float | None = Field(default=None, gt=0)
    """Requests per second admitted; the rest answered 429."""
    quota_concurrency: int | None = Field(default=None, ge=1)
    """Requests in flight admitted; the rest answered 429 (NetSuite's governance style)."""
    retry_after_s: float | None = Field(default=None, ge=0)
    """Send `Retry-After` with 429s (only where the vendor does)."""
    hang_ms: float = Field(default=0, ge=0)
    """Delay before answering *every* request (to test client timeouts)."""
    limit_errors: int = Field(default=0, ge=0)
    """Answer the next this many vendor requests with the vendor's own limit error
    (`limit_status`, `limit_code`): an exhausted allocation the way the vendor reports it, e.g.
    Salesforce's `403 REQUEST_LIMIT_EXCEEDED` or a NetSuite RESTlet's `400
    SSS_REQUEST_LIMIT_EXCEEDED`, then serve normally."""
    limit_status: int = Field(default=429, ge=400, le=599)
    limit_code: str = Field(default="REQUEST_LIMIT_EXCEEDED", min_length=1, max_length=100)
    seed: int | None = None


class LostResponseConfig(BaseModel):
    """What `POST /_admin/lost-responses` (also `/_admin/<system>/lost-responses`) sets: this
    fraction of vendor requests is processed — the write is applied and committed — and then
    answered 504, as if the response had been lost on its way back. It is the one failure where
    a client cannot tell whether its request took effect: the case idempotency keys, external-ID
    upserts and find-before-create exist for. A blind retry of a create turns it into a
    duplicate. Replaces the whole config each time (`{}` turns it off)."""

    rate: float = Field(default=0.0, ge=0, le=1)
    seed: int | None = None


@dataclass
class LostResponseControl:
    """The lost-response fault of one twin: its config, its own random stream (so turning it on
    does not shift the other faults' seeded rolls) and how many answers it has dropped."""

    config: LostResponseConfig = field(default_factory=LostResponseConfig)
    rng: random.Random = field(default_factory=random.Random)
    dropped: int = 0

    def configure(self, config: LostResponseConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)

    def roll(self) -> bool:
        """Lose this response? (Draws only while the fault is on.)"""
        return bool(self.config.rate) and self.rng.random() < self.config.rate

    def report(self) -> dict[str, Any]:
        return self.config.model_dump() | {"dropped": self.dropped}


class TwinStats(BaseModel):
    requests: int = 0
    served: int = 0
    throttled_429: int = 0
    errors_5xx: int = 0
    injected_errors: int = 0
    lost_responses: int = 0
    """Requests processed whose answer was then replaced by a 504 (not in `by_status`, which
    counts what the handler answered)."""
    by_status: dict[str, int] = Field(default_factory=dict)
    in_flight_max: int = 0


@dataclass
class _Bucket:
    """Token bucket for the requests/s quota."""

    rate: float
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class TwinState:
    """Mutable runtime state of one twin: DB engine, faults, stats, tokens, webhook target."""

    system: str
    engine: Engine
    faults: FaultConfig = field(default_factory=FaultConfig)
    statuses: Counter[int] = field(default_factory=Counter)
    requests: int = 0
    injected: int = 0
    in_flight: int = 0
    in_flight_max: int = 0
    tokens: dict[str, float] = field(default_factory=dict)
    clients: dict[str, str] = field(default_factory=lambda: {"pssync": "dev-secret"})
    static_tokens: set[str] = field(default_factory=lambda: {"dev-static-token"})
    webhooks: WebhookSender | None = None
    rng: random.Random = field(default_factory=random.Random)
    bucket: _Bucket | None = None
    lost: LostResponseControl = field(default_factory=LostResponseControl)
    lost_since_reset: int = 0
    limit_errors_left: int = 0

    def set_faults(self, faults: FaultConfig) -> None:
        self.faults = faults
        self.limit_errors_left = faults.limit_errors
        self.rng = random.Random(faults.seed)
        self.bucket = (
            _Bucket(faults.quota_rps, faults.quota_rps, time.monotonic())
            if faults.quota_rps
            else None
        )

    def stats(self) -> TwinStats:
        return TwinStats(
            requests=self.requests,
            served=sum(n for s, n in self.statuses.items() if s < 400),
            throttled_429=self.statuses[429],
            errors_5xx=sum(n for s, n in self.statuses.items() if s >= 500),
            injected_errors=self.injected,
            lost_responses=self.lost_since_reset,
            by_status={str(s): n for s, n in sorted(self.statuses.items())},
            in_flight_max=self.in_flight_max,
        )

    def reset_stats(self) -> None:
        self.statuses.clear()
        self.requests = self.injected = self.in_flight_max = self.lost_since_reset = 0

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)


def twin_state(app_or_state: FastAPI | TwinState) -> TwinState:
    """The state of a twin given as its app or as the state itself."""
    if isinstance(app_or_state, TwinState):
        return app_or_state
    state: TwinState = app_or_state.state.twin
    return state


@contextmanager
def seed_session(app_or_state: FastAPI | TwinState) -> Iterator[Session]:
    """A session on a twin (its app or its state) committed when the block ends: what each
    twin's `load_firm` writes the seeded firm in."""
    with twin_state(app_or_state).session() as session:
        yield session
        session.commit()


def table_list(*models: type[SQLModel]) -> list[Table]:
    """The tables of a twin's SQLModel table classes, in order (for `make_twin_engine`)."""
    return [model.__table__ for model in models]  # type: ignore[attr-defined]


def make_twin_engine(path: Path | str | None, tables: Iterable[Table]) -> Engine:
    """SQLite engine for one twin (a file, or in-memory shared when `path` is None)."""
    if path is None:
        from sqlalchemy.pool import StaticPool

        engine = create_engine(
            "sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool
        )
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30}
        )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    tables = list(tables)
    SQLModel.metadata.create_all(engine, tables=tables)
    _add_missing_columns(engine, tables)
    return engine


def _add_missing_columns(engine: Engine, tables: list[Table]) -> None:
    """Give a twin database made by an older version the nullable columns added since (e.g. an
    external-ID field), so a sandbox home survives an upgrade. `create_all` only makes missing
    tables; anything beyond an added nullable column needs a fresh database."""
    present = inspect(engine)
    with engine.begin() as conn:
        for table in tables:
            have = {c["name"] for c in present.get_columns(table.name)}
            for column in table.columns:
                if column.name in have or not column.nullable:
                    continue
                kind = column.type.compile(dialect=engine.dialect)
                conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'))
            for index in table.indexes:
                index.create(conn, checkfirst=True)


_EXEMPT = ("/_admin", "/docs", "/openapi.json", "/redoc")
_TOKEN_PATHS = ("/oauth2/", "/services/rest/auth/oauth2/")
"""Token endpoints: the shared one and NetSuite's (the ERP twin's `m2m`)."""


def _relative_path(scope: Scope) -> str:
    """The request's path below the twin's mount point (`root_path`)."""
    path: str = scope.get("path", "")
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def _send_error(
    send: Callable[[Any], Awaitable[None]],
    body: Any,
    status: int,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer with a vendor-shaped error `body` straight from an ASGI middleware."""
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class FaultMiddleware:
    """Pure ASGI middleware: counts every request and injects the configured faults."""

    def __init__(self, app: ASGIApp, state: TwinState, error_body: ErrorBody) -> None:
        self.app = app
        self.state = state
        self.error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _relative_path(scope).startswith(_EXEMPT):
            await self.app(scope, receive, send)
            return
        st = self.state
        f = st.faults
        st.requests += 1
        status_seen: list[int] = []

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status_seen.append(message["status"])
            await send(message)

        if f.hang_ms:
            await asyncio.sleep(f.hang_ms / 1000)
        refusal = self._refusal(f, vendor_api=_vendor_path(scope))
        if refusal is not None:
            status, code, msg, headers = refusal
            await _send_error(counting_send, self.error_body(status, code, msg), status, headers)
        else:
            st.in_flight += 1
            st.in_flight_max = max(st.in_flight_max, st.in_flight)
            try:
                if f.latency_ms or f.latency_jitter_ms:
                    delay = f.latency_ms + st.rng.random() * f.latency_jitter_ms
                    await asyncio.sleep(delay / 1000)
                await self.app(scope, receive, counting_send)
            finally:
                st.in_flight -= 1
        st.statuses[status_seen[0] if status_seen else 500] += 1

    def _refusal(
        self, f: FaultConfig, *, vendor_api: bool = True
    ) -> tuple[int, str, str, dict[str, str]] | None:
        st = self.state
        retry = {"Retry-After": f"{f.retry_after_s:g}"} if f.retry_after_s is not None else {}
        if f.outage:
            st.injected += 1
            return 503, "SERVICE_UNAVAILABLE", f"{st.system} is unavailable (outage)", {}
        if st.limit_errors_left > 0 and vendor_api:  # a quota never stops the token endpoint
            st.limit_errors_left -= 1
            st.injected += 1
            return f.limit_status, f.limit_code, f"{st.system} request limit exceeded", retry
        if f.quota_concurrency is not None and st.in_flight >= f.quota_concurrency:
            return 429, "CONCURRENCY_LIMIT_EXCEEDED", "concurrent request limit exceeded", retry
        if st.bucket is not None and not st.bucket.take(time.monotonic()):
            return 429, "REQUEST_LIMIT_EXCEEDED", "request rate limit exceeded", retry
        roll = st.rng.random()
        if roll < f.error_rate and f.error_statuses:
            st.injected += 1
            status = st.rng.choice(f.error_statuses)
            return status, "UNEXPECTED_ERROR", f"injected fault {status}", {}
        if roll < f.error_rate + f.rate_limit_rate:
            st.injected += 1
            return 429, "REQUEST_LIMIT_EXCEEDED", "request rate limit exceeded", retry
        return None


def _vendor_path(scope: Scope) -> bool:
    """Is this an HTTP request to the twin's vendor API (not admin, docs or the token)?"""
    if scope["type"] != "http":
        return False
    return not _relative_path(scope).startswith((*_EXEMPT, *_TOKEN_PATHS))


class LostResponses:
    """Pure ASGI middleware applying `LostResponseConfig` to vendor requests. It sits outside
    `FaultMiddleware`, so the request is handled (and counted in the twin's stats as what the
    handler answered) before its answer is swallowed and replaced by a 504 in the vendor's
    error shape. Admin, docs and token requests are never lost."""

    def __init__(self, app: ASGIApp, state: TwinState, error_body: ErrorBody) -> None:
        self.app = app
        self.state = state
        self.error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _vendor_path(scope) or not self.state.lost.roll():
            await self.app(scope, receive, send)
            return

        async def swallow(_message: Any) -> None:
            return None

        await self.app(scope, receive, swallow)
        self.state.lost.dropped += 1
        self.state.lost_since_reset += 1
        lost = self.error_body(504, "GATEWAY_TIMEOUT", "The response was lost (injected fault).")
        await _send_error(send, lost, 504)


# --------------------------------------------------------------------------- outbound webhooks


class WebhookDelivery(BaseModel):
    event_id: str
    event_type: str
    url: str
    attempts: int = 0
    delivered: bool = False
    last_status: int | None = None
    last_error: str | None = None


class WebhookSender:
    """Signs thin events with Standard Webhooks and delivers them with retries and backoff,
    the way the vendors do (at least once; a slow or failing receiver is retried)."""

    def __init__(
        self,
        url: str | None,
        secret: str,
        *,
        max_attempts: int = 8,
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        max_in_flight: int = 64,
    ) -> None:
        self.url = url
        self.secret = secret
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.deliveries: dict[str, WebhookDelivery] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        # Deliveries wait here, not in the HTTP client's pool: with more requests queued than
        # connections, httpcore's pool does work proportional to the queue on every request,
        # and a slow receiver then starves everything else this process serves.
        self._in_flight = asyncio.Semaphore(max_in_flight)

    def configure(self, url: str | None, secret: str | None = None) -> None:
        self.url = url
        if secret:
            self.secret = secret

    def emit(self, event_type: str, data: dict[str, Any], event_id: str | None = None) -> str:
        """Queue a signed event for delivery; returns its id. No-op delivery without a URL."""
        event_id = event_id or f"evt_{secrets.token_hex(12)}"
        payload = {
            "type": event_type,
            "timestamp": datetime.now(UTC).isoformat(),
            "data": data,
        }
        if not self.url:
            self.deliveries[event_id] = WebhookDelivery(
                event_id=event_id, event_type=event_type, url="", last_error="no webhook url"
            )
            return event_id
        delivery = WebhookDelivery(event_id=event_id, event_type=event_type, url=self.url)
        self.deliveries[event_id] = delivery
        task = asyncio.get_running_loop().create_task(self._deliver(delivery, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return event_id

    def signed_request(
        self, event_id: str, payload: dict[str, Any], when: datetime | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one signed delivery (also used by tests and the demo)."""
        body = json.dumps(payload, separators=(",", ":"))
        when = when or datetime.now(UTC)
        signature = Webhook(self.secret).sign(event_id, when, body)
        headers = {
            "content-type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": signature,
        }
        return body.encode(), headers

    async def _deliver(self, delivery: WebhookDelivery, payload: dict[str, Any]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10.0)
        for attempt in range(1, self.max_attempts + 1):
            delivery.attempts = attempt
            try:
                async with self._in_flight:
                    # Sign each attempt as it leaves: the receiver checks the timestamp.
                    body, headers = self.signed_request(delivery.event_id, payload)
                    resp = await self._client.post(delivery.url, content=body, headers=headers)
                delivery.last_status = resp.status_code
                if resp.status_code < 300:
                    delivery.delivered = True
                    return
                if 400 <= resp.status_code < 500 and resp.status_code not in (408, 409, 429):
                    delivery.last_error = f"refused: {resp.status_code} {resp.text[:200]}"
                    return
            except httpx.HTTPError as exc:
                delivery.last_error = f"{type(exc).__name__}: {exc}"
            delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
            await asyncio.sleep(random.uniform(0, delay))
        log.warning("webhook %s gave up after %d attempts", delivery.event_id, delivery.attempts)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait for deliveries in flight (tests and shutdown)."""
        if self._tasks:
            await asyncio.wait_for(asyncio.gather(*list(self._tasks)), timeout_s)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class WebhookTarget(BaseModel):
    url: str | None
    secret: str | None = None


# --------------------------------------------------------------------------- auth


def bearer_dependency(state: TwinState) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency refusing requests without a valid bearer token (401). It is a
    coroutine so that FastAPI runs it on the event loop, not with a thread hop per request."""

    async def require(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise TwinError(401, "INVALID_LOGIN", "missing bearer token")
        if token in state.static_tokens:
            return
        expiry = state.tokens.get(token)
        if expiry is None or expiry < time.time():
            raise TwinError(401, "INVALID_SESSION_ID", "session expired or invalid")

    return require


def _token_router(state: TwinState) -> APIRouter:
    router = APIRouter(tags=["auth"])

    @router.post("/oauth2/token", summary="OAuth2 client-credentials token")
    def token(
        grant_type: str = Form(...),
        client_id: str = Form(...),
        client_secret: str = Form(...),
    ) -> dict[str, Any]:
        if grant_type != "client_credentials":
            raise TwinError(400, "unsupported_grant_type", "only client_credentials")
        if state.clients.get(client_id) != client_secret:
            raise TwinError(401, "invalid_client", "unknown client or wrong secret")
        access = secrets.token_urlsafe(24)
        state.tokens[access] = time.time() + TOKEN_TTL_S
        return {"access_token": access, "token_type": "Bearer", "expires_in": TOKEN_TTL_S}

    return router


def _admin_router(state: TwinState) -> APIRouter:
    router = APIRouter(prefix="/_admin", tags=["admin"])

    @router.post("/faults", summary="Set fault injection (replaces the whole config)")
    def set_faults(config: FaultConfig) -> FaultConfig:
        state.set_faults(config)
        return state.faults

    @router.get("/faults")
    def get_faults() -> FaultConfig:
        return state.faults

    def set_lost(config: LostResponseConfig) -> dict[str, Any]:
        state.lost.configure(config)
        return state.lost.report()

    def get_lost() -> dict[str, Any]:
        return state.lost.report()

    # One implementation, two paths: the shared one and `/_admin/<system>/lost-responses`
    # (the ERP's historical path, now on every twin).
    for path in ("/lost-responses", f"/{state.system}/lost-responses"):
        router.add_api_route(
            path,
            set_lost,
            methods=["POST"],
            summary="Process, then lose, a fraction of responses (answered 504)",
        )
        router.add_api_route(path, get_lost, methods=["GET"], summary="Lost-response config")

    @router.get("/stats", summary="Requests served, 429s, 5xx")
    def get_stats() -> TwinStats:
        return state.stats()

    @router.post("/stats/reset")
    def reset_stats() -> TwinStats:
        state.reset_stats()
        return state.stats()

    @router.post("/tokens/revoke", summary="Expire every issued OAuth2 token")
    def revoke_tokens() -> dict[str, int]:
        n = len(state.tokens)
        state.tokens.clear()
        return {"revoked": n}

    @router.post("/webhooks", summary="Point outbound webhooks at a URL")
    def set_webhooks(target: WebhookTarget) -> dict[str, Any]:
        if state.webhooks is None:
            raise HTTPException(404, "this twin sends no webhooks")
        state.webhooks.configure(target.url, target.secret)
        return {"url": state.webhooks.url}

    @router.get("/webhooks/deliveries")
    def deliveries() -> list[WebhookDelivery]:
        return list(state.webhooks.deliveries.values()) if state.webhooks else []

    return router


# --------------------------------------------------------------------------- app factory


def create_twin_app(
    *,
    state: TwinState,
    title: str,
    description: str,
    router: APIRouter,
    error_body: ErrorBody,
    extra_routers: Iterable[APIRouter] = (),
) -> FastAPI:
    """A FastAPI app for one twin: vendor router behind bearer auth, plus token, admin,
    fault injection and vendor-shaped errors for bad input (never a 500)."""
    app = FastAPI(title=title, description=description, version="sandbox")
    app.state.twin = state
    app.include_router(_token_router(state))
    app.include_router(_admin_router(state))
    app.include_router(router, dependencies=[Depends(bearer_dependency(state))])
    for extra in extra_routers:
        app.include_router(extra)

    @app.exception_handler(TwinError)
    async def _twin_error(_: Request, exc: TwinError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.status, exc.code, exc.message, exc.field),
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        fld = ".".join(loc) or None
        return JSONResponse(
            error_body(400, "INVALID_FIELD", f"{fld or 'request'}: {first.get('msg')}", fld),
            status_code=400,
        )

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(exc.status_code, "HTTP_ERROR", str(exc.detail)), status_code=exc.status_code
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("twin %s failed", state.system)
        return JSONResponse(error_body(500, "UNEXPECTED_ERROR", str(exc)), status_code=500)

    app.add_middleware(FaultMiddleware, state=state, error_body=error_body)
    # Added last, so outermost: the request is processed before its answer is lost.
    app.add_middleware(LostResponses, state=state, error_body=error_body)
    app.state.lost_responses = state.lost
    return app
