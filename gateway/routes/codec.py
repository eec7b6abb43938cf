"""The codec server: the Temporal UI (and `temporal ... --codec-endpoint`) decode pssync's
encrypted payloads here, with the keys of the gateway's own Temporal client (`plumbing.codec`).

- `POST /codec/decode`, `POST /codec/encode` — Temporal's codec server protocol: a JSON body
  `{"payloads": [...]}` of `Payload` protos in proto3 JSON (metadata values and data base64),
  answered in the same shape, decoded or encoded (`X-Namespace` is accepted and not needed:
  pssync's keys serve its one namespace). A bearer actor with role `ops` (401 without one, 403
  without the role); an encrypted payload whose key is unknown or whose bytes were altered is
  422 `payload_undecodable` naming the key id. Payloads that are not encrypted pass through.
- `POST /codec/session` (bearer, `ops`) — sets an HttpOnly, SameSite=Strict cookie holding that
  bearer token for `/codec`, and `DELETE /codec/session` clears it; `GET /codec/login` is a page
  (not in the OpenAPI document) that does it from a browser. The dev server's Temporal UI can
  neither log in nor pass an access token over http: with "include cross-origin credentials"
  ticked in its Codec Server settings, its requests carry this cookie, which stands for the
  `Authorization` header on `/codec/decode`, `/codec/encode` and `DELETE /codec/session` (only
  there, only when no header is sent).
- CORS (`CodecCors`, `install_codec_server`): the Temporal UI's origins
  (`settings.payloads.codec_cors_origins`, default `http://127.0.0.1:<ui_port>` and
  `http://localhost:<ui_port>`) may call `/codec/...` with credentials; preflights (`OPTIONS`)
  are answered before authentication, allowing `Authorization, Content-Type, X-Namespace`; a
  preflight from another origin is 403.

Must never: log or return key material or decoded payloads anywhere but the response.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Request, Response
from fastapi.responses import HTMLResponse
from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client

from contracts.settings import Settings
from gateway.auth import require_roles
from gateway.errors import GatewayError, error_response
from gateway.routes._deps import ActorDep
from plumbing.codec import PayloadDecryptionError

PREFIX = "/codec"
COOKIE_ROUTES = frozenset(
    {("POST", f"{PREFIX}/decode"), ("POST", f"{PREFIX}/encode"), ("DELETE", f"{PREFIX}/session")}
)
"""Where the session cookie stands for a missing `Authorization` header."""
SESSION_COOKIE = "pssync_codec_session"
SESSION_MAX_AGE_S = 8 * 3600
CODEC_ROLES = ("ops",)
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"
MAX_PAYLOADS = 10_000

router = APIRouter(prefix=PREFIX, tags=["codec"])


BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
"""Standard base64, padded: how proto3 JSON writes bytes."""
Base64 = Annotated[str, Field(pattern=BASE64, max_length=4 << 20)]


class ExternalPayloadJson(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sizeBytes: int = Field(default=0, ge=0, le=2**53 - 1)  # proto3 JSON name; exact in JSON


class PayloadJson(BaseModel):
    """A Temporal `Payload` in proto3 JSON: metadata values and data are base64."""

    model_config = ConfigDict(extra="forbid")
    metadata: dict[str, Base64] = Field(default_factory=dict)
    data: Base64 = ""
    externalPayloads: list[ExternalPayloadJson] | None = None  # proto3 JSON name


class CodecPayloads(BaseModel):
    """The codec server protocol's body and answer."""

    payloads: list[PayloadJson] = Field(max_length=MAX_PAYLOADS)


def _to_protos(body: CodecPayloads) -> list[Payload]:
    try:
        wrapper = json_format.ParseDict(
            {"payloads": [p.model_dump(exclude_none=True) for p in body.payloads]}, Payloads()
        )
    except json_format.ParseError as err:
        raise GatewayError(422, "invalid_payload", f"not a Temporal payload: {err}") from None
    return list(wrapper.payloads)


def _to_json(payloads: Iterable[Payload]) -> CodecPayloads:
    wrapper = Payloads(payloads=list(payloads))
    as_dict: dict[str, Any] = json_format.MessageToDict(wrapper)
    return CodecPayloads.model_validate({"payloads": as_dict.get("payloads", [])})


async def _transform(request: Request, body: CodecPayloads, *, decode: bool) -> CodecPayloads:
    client: Client = request.app.state.client
    codec = client.data_converter.payload_codec
    payloads = _to_protos(body)
    if codec is None:  # encryption off: payloads are what they are
        return _to_json(payloads)
    try:
        done = await (codec.decode(payloads) if decode else codec.encode(payloads))
    except PayloadDecryptionError as err:
        raise GatewayError(422, "payload_undecodable", str(err)) from None
    return _to_json(done)


_CODEC_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid bearer token (or session cookie)"},
    403: {"description": "the actor lacks role ops"},
    422: {"description": "not payloads, or a payload that does not decrypt"},
}


@router.post("/decode", responses=_CODEC_RESPONSES)
async def decode_payloads(
    request: Request,
    actor: ActorDep,
    body: CodecPayloads,
    x_namespace: Annotated[str | None, Header()] = None,  # sent by the UI; one namespace here
) -> CodecPayloads:
    """Decode (decrypt) payloads for the Temporal UI or CLI."""
    require_roles(actor, CODEC_ROLES, "decode payloads")
    return await _transform(request, body, decode=True)


@router.post("/encode", responses=_CODEC_RESPONSES)
async def encode_payloads(
    request: Request,
    actor: ActorDep,
    body: CodecPayloads,
    x_namespace: Annotated[str | None, Header()] = None,  # sent by the UI; one namespace here
) -> CodecPayloads:
    """Encode (encrypt) payloads, e.g. a workflow input typed into the Temporal UI."""
    require_roles(actor, CODEC_ROLES, "encode payloads")
    return await _transform(request, body, decode=False)


@router.post(
    "/session",
    status_code=204,
    responses={401: {"description": "no valid bearer token"}, 403: {"description": "not ops"}},
)
async def open_session(request: Request, actor: ActorDep) -> Response:
    """Keep this bearer token in an HttpOnly cookie for the Temporal UI's codec requests."""
    require_roles(actor, CODEC_ROLES, "decode payloads")
    token = request.headers["authorization"].partition(" ")[2].strip()
    response = Response(status_code=204)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_MAX_AGE_S,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.delete("/session", status_code=204, responses={401: {"description": "no session"}})
async def close_session(actor: ActorDep) -> Response:
    """Forget the codec session cookie (the caller's own: its bearer token or the cookie)."""
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pssync codec server</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>pssync codec server</h1>
<p>Sign in with a bearer token of an actor with role <code>ops</code>. The Temporal UI on this
machine then decodes payloads through this server, once "Include cross-origin credentials" is
ticked in its Codec Server settings (endpoint <code id="endpoint"></code>).</p>
<form id="login"><label>Bearer token
<input id="token" type="password" autocomplete="off" required></label>
<button type="submit">Sign in</button></form>
<p id="status" role="status"></p>
<script>
const endpoint = new URL(".", location.href).href.replace(/\\/$/, "");
document.getElementById("endpoint").textContent = endpoint;
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = document.getElementById("token").value.trim();
  const answer = await fetch("session", {
    method: "POST", headers: { Authorization: "Bearer " + token }, credentials: "same-origin",
  });
  document.getElementById("status").textContent = answer.ok
    ? "Signed in for 8 hours."
    : "Refused: HTTP " + answer.status;
});
</script>
</body></html>
"""


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_page() -> HTMLResponse:
    """A page to open a codec session from a browser."""
    return HTMLResponse(_LOGIN_PAGE)


# --------------------------------------------------------------------------- CORS, cookie


def ui_origins(settings: Settings) -> frozenset[str]:
    """The browser origins allowed to call the codec server."""
    configured = settings.payloads.codec_cors_origins
    if configured:
        return frozenset(o.rstrip("/") for o in configured)
    port = settings.temporal.ui_port
    return frozenset({f"http://127.0.0.1:{port}", f"http://localhost:{port}"})


class CodecCors:
    """Pure ASGI, for `/codec/...` only: CORS for the Temporal UI's origins (preflights answered
    here, before authentication), and the session cookie standing for a missing
    `Authorization` header on the codec routes."""

    def __init__(self, app: ASGIApp, origins: Iterable[str]) -> None:
        self.app = app
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(f"{PREFIX}/"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(origin, scope, receive, send)
            return
        if (scope["method"], scope["path"]) in COOKIE_ROUTES and "authorization" not in headers:
            scope = _cookie_as_bearer(scope, headers)
        if origin is None or origin not in self.origins:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["Access-Control-Allow-Origin"] = origin
                out["Access-Control-Allow-Credentials"] = "true"
                out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(
        self, origin: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if origin is None or origin not in self.origins:
            refused = GatewayError(
                403, "origin_not_allowed", f"origin {origin!r} may not call the codec server"
            )
            await error_response(refused)(scope, receive, send)
            return
        response = Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )
        await response(scope, receive, send)


def _cookie_as_bearer(scope: Scope, headers: Headers) -> Scope:
    """`scope` with `Authorization: Bearer <session cookie>` when the cookie is there."""
    from http.cookies import CookieError, SimpleCookie

    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except CookieError:
        return scope
    morsel = cookie.get(SESSION_COOKIE)
    if morsel is None or not morsel.value:
        return scope
    try:
        value = f"Bearer {morsel.value}".encode("latin-1")
    except UnicodeEncodeError:
        return scope
    return {**scope, "headers": [*scope["headers"], (b"authorization", value)]}


def install_codec_server(app: FastAPI, settings: Settings) -> None:
    """The codec routes and their CORS on `app` (the gateway)."""
    app.include_router(router)
    app.add_middleware(CodecCors, origins=ui_origins(settings))
