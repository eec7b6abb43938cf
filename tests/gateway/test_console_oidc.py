"""Signing in to the console through the OIDC provider (authorization code + PKCE), over the
gateway's real routes with an `httpx.MockTransport` playing the provider: its discovery
document, its authorization endpoint (the test plays the browser going there) and its token
endpoint, which checks the PKCE verifier, the redirect URI and the client's secret like a real
provider would, and issues a JWT access token signed with the key the API trusts.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from gateway import create_app
from gateway.auth import Authenticator
from gateway.console.oidc import OidcLogin, pkce_pair
from store import Store, make_engine, upgrade
from tests.gateway.test_auth import (
    ISSUER,
    JWKS_URL,
    Provider,
    new_key,
    oidc_settings,
)

CLIENT_ID = "pssync-console"
CLIENT_SECRET = "console-client-secret"
AUTHORIZE = f"{ISSUER}/protocol/openid-connect/auth"
TOKEN = f"{ISSUER}/protocol/openid-connect/token"
CALLBACK = "http://gw/console/sign-in/callback"


@dataclass
class LoginProvider:
    """The provider's login side: codes it issued (code -> challenge, redirect, claims)."""

    keys: Provider
    codes: dict[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    claims: dict[str, Any] = field(default_factory=dict)
    down: bool = False

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503)
        url = str(request.url)
        if url == f"{ISSUER}/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "authorization_endpoint": AUTHORIZE,
                    "token_endpoint": TOKEN,
                    "jwks_uri": JWKS_URL,
                },
            )
        if url == TOKEN and request.method == "POST":
            return self._token(request)
        return await self.keys.handler(request)

    def authorize(self, location: str, **claims: Any) -> str:
        """The browser at the authorization endpoint: the person signs in; the code."""
        query = parse_qs(urlsplit(location).query)
        assert location.startswith(AUTHORIZE + "?")
        assert query["response_type"] == ["code"] and query["client_id"] == [CLIENT_ID]
        assert query["code_challenge_method"] == ["S256"]
        code = secrets.token_urlsafe(16)
        self.codes[code] = (query["code_challenge"][0], query["redirect_uri"][0], claims)
        return code

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        self.token_requests.append(form)
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {basic}":
            return httpx.Response(401, json={"error": "invalid_client"})
        code = form.get("code", [""])[0]
        if code not in self.codes:
            return httpx.Response(400, json={"error": "invalid_grant"})
        challenge, redirect_uri, claims = self.codes.pop(code)  # a code is used once
        verifier = form.get("code_verifier", [""])[0]
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != challenge:
            return httpx.Response(400, json={"error": "invalid_grant", "detail": "pkce"})
        if form.get("redirect_uri") != [redirect_uri]:
            return httpx.Response(400, json={"error": "invalid_grant", "detail": "redirect"})
        token = self.keys.token(**claims)
        return httpx.Response(
            200, json={"access_token": token, "token_type": "Bearer", "expires_in": 300}
        )


@dataclass
class Console:
    app: Any
    provider: LoginProvider

    def browser(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://gw")


@pytest.fixture
async def console(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Console]:
    url = f"sqlite:///{tmp_path}/console-oidc.db"
    upgrade(url)
    store = Store(make_engine(url))
    keys = Provider(keys={"k1": new_key()})
    provider = LoginProvider(keys)
    settings = oidc_settings(tmp_path)
    assert settings.oidc is not None
    settings.oidc.console_client_id = CLIENT_ID
    settings.oidc.console_client_secret = SecretStr(CLIENT_SECRET)
    transport = httpx.MockTransport(provider.handler)
    authenticator = Authenticator(settings, jwks_transport=transport, clock=lambda: keys.now)
    app = create_app(settings, store, dev_env.client, authenticator=authenticator)
    app.state.console_oidc = OidcLogin(settings.oidc, transport=transport)
    yield Console(app, provider)
    await app.state.console_oidc.aclose()
    await authenticator.aclose()


async def start(http: httpx.AsyncClient, next_path: str = "/console/approvals") -> str:
    """Press "Sign in with your organisation": where the browser is sent."""
    form = await http.get("/console/sign-in", params={"next": next_path})
    assert "Sign in with your organisation" in form.text
    started = await http.get("/console/sign-in/oidc", params={"next": next_path})
    assert started.status_code == 303, started.text
    location: str = started.headers["location"]
    return location


async def callback(http: httpx.AsyncClient, location: str, **params: str) -> httpx.Response:
    """The provider sends the browser back to the console, with the state of the sign-in that
    sent it to `location` and `params` (the code, or the provider's error)."""
    state = parse_qs(urlsplit(location).query)["state"][0]
    return await http.get("/console/sign-in/callback", params={**params, "state": state})


async def test_a_person_signs_in_through_the_provider_and_lands_where_they_were_going(
    console: Console,
) -> None:
    async with console.browser() as http:
        location = await start(http)
        query = parse_qs(urlsplit(location).query)
        assert query["redirect_uri"] == [CALLBACK]
        code = console.provider.authorize(location, preferred_username="olga.ops", roles=["ops"])
        back = await callback(http, location, code=code)
        assert back.status_code == 303, back.text
        assert back.headers["location"] == "/console/approvals"
        page = await http.get("/console/exceptions")
        assert page.status_code == 200 and "olga.ops" in page.text
    [request] = console.provider.token_requests
    assert request["grant_type"] == ["authorization_code"]
    assert "client_secret" not in request  # sent with HTTP Basic, never in the form


async def test_a_callback_from_another_browser_or_with_a_foreign_state_is_refused(
    console: Console,
) -> None:
    async with console.browser() as victim, console.browser() as attacker:
        # The attacker starts a sign-in and gets a code for their own account ...
        location = await start(attacker)
        code = console.provider.authorize(location, preferred_username="mallory")
        # ... and makes the victim's browser deliver it: the victim started nothing.
        injected = await callback(victim, location, code=code)
        assert injected.status_code == 400
        assert (await victim.get("/console/exceptions")).status_code == 303  # still signed out
        # The victim's own sign-in with the attacker's state is refused as well.
        mine = await start(victim)
        wrong_state = await callback(victim, location, code=code)
        assert wrong_state.status_code == 400
        assert mine and (await victim.get("/console/exceptions")).status_code == 303


async def test_a_replayed_code_or_a_token_pssync_refuses_signs_nobody_in(
    console: Console,
) -> None:
    async with console.browser() as http:
        location = await start(http)
        code = console.provider.authorize(location)
        assert (await callback(http, location, code=code)).status_code == 303
    async with console.browser() as other:
        location = await start(other)
        replay = await callback(other, location, code=code)
        assert replay.status_code == 401 and "not accepted" in replay.text
        # The state is spent: the same callback again is not a sign-in in progress.
        again = await callback(other, location, code=code)
        assert again.status_code == 400
        # A token for another audience (the provider's ID token, say) is refused by the API's
        # own checks.
        location = await start(other)
        code = console.provider.authorize(location, aud="someone-else")
        refused = await callback(other, location, code=code)
        assert refused.status_code == 401
        assert (await other.get("/console/exceptions")).status_code == 303


async def test_the_provider_saying_no_or_being_down_is_a_page_not_a_crash(
    console: Console,
) -> None:
    async with console.browser() as http:
        location = await start(http)
        denied = await callback(http, location, error="access_denied", error_description="<b>x</b>")
        assert denied.status_code == 401 and "<b>x</b>" not in denied.text
        # Down after discovery: the way out works, the code cannot be traded: 503, no session.
        location = await start(http)
        code = console.provider.authorize(location)
        console.provider.down = True
        failed = await callback(http, location, code=code)
        assert failed.status_code == 503 and "cannot be reached" in failed.text
        assert (await http.get("/console/exceptions")).status_code == 303
    # Down before discovery (a gateway just started): the button answers 503, not a crash.
    fresh = OidcLogin(
        console.app.state.settings.oidc, transport=httpx.MockTransport(console.provider.handler)
    )
    await console.app.state.console_oidc.aclose()
    console.app.state.console_oidc = fresh
    async with console.browser() as http:
        down = await http.get("/console/sign-in/oidc")
        assert down.status_code == 503


def test_the_pkce_challenge_is_the_s256_of_the_verifier() -> None:
    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert pkce_pair()[0] != verifier
