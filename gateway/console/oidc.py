"""Signing in to the console through the firm's OIDC provider: the authorization code flow
with PKCE (RFC 7636, S256), for people who have no bearer token to paste.

    login = oidc_login(request.app)            # None: no console client configured
    url, state, verifier = await login.start(redirect_uri)
    token = await login.finish(code, verifier, redirect_uri)

`start` sends the browser to the provider's authorization endpoint with a fresh `state` and
the challenge of a fresh PKCE verifier; both are kept in the browser's own (encrypted) session
cookie, so a callback is accepted only in the browser that started it (no login CSRF, no code
injection). `finish` trades the code for tokens at the token endpoint (HTTP Basic when the
client has a secret) and returns the access token, which the console then verifies exactly as
the API verifies a bearer token (issuer, audience, signature, expiry, roles and scopes from its
claims). The endpoints come from settings or the issuer's discovery document (fetched once).

Errors are `OidcLoginFailed` (the person sees "sign-in failed", the log says why);
`IdentityProviderUnavailable` when the provider cannot be reached.
Must never: log a code, a verifier or a token.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI

from contracts.settings import OidcSettings
from gateway.auth import IdentityProviderUnavailable

log = logging.getLogger("pssync.gateway.console")

MAX_TOKEN_RESPONSE_BYTES = 64 * 1024


class OidcLoginFailed(Exception):
    """The provider refused the code, or answered something that is not a token response."""


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier (43+ characters of the unreserved set) and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


class OidcLogin:
    """The console's OAuth 2.0 client at the provider (one per app, on `app.state`)."""

    def __init__(
        self, oidc: OidcSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if not oidc.console_client_id:
            raise ValueError("no console client id")
        self._oidc = oidc
        self.client_id: str = oidc.console_client_id
        self._http = httpx.AsyncClient(timeout=oidc.timeout_s, transport=transport)
        self._endpoints: tuple[str, str] | None = None

    async def _discovered(self) -> tuple[str, str]:
        if self._endpoints is not None:
            return self._endpoints
        authorize, token = self._oidc.authorization_url, self._oidc.token_url
        if not (authorize and token):
            url = f"{self._oidc.issuer.rstrip('/')}/.well-known/openid-configuration"
            try:
                response = await self._http.get(url)
                response.raise_for_status()
                document = response.json()
            except (httpx.HTTPError, ValueError) as err:
                raise IdentityProviderUnavailable(f"discovery failed: {err}") from err
            authorize = authorize or document.get("authorization_endpoint")
            token = token or document.get("token_endpoint")
            if not (isinstance(authorize, str) and isinstance(token, str)):
                raise IdentityProviderUnavailable("the discovery document names no endpoints")
        for endpoint in (authorize, token):
            if not endpoint.startswith(("https://", "http://127.0.0.1", "http://localhost")):
                raise IdentityProviderUnavailable(f"refusing a non-https endpoint {endpoint!r}")
        self._endpoints = (authorize, token)
        return self._endpoints

    async def start(self, redirect_uri: str) -> tuple[str, str, str]:
        """The provider's authorization URL to send the browser to, its state and verifier."""
        authorize, _ = await self._discovered()
        state = secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": self._oidc.console_scope,
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in authorize else "?"
        return f"{authorize}{separator}{query}", state, verifier

    async def finish(self, code: str, verifier: str, redirect_uri: str) -> str:
        """The access token the code stands for."""
        _, token_url = await self._discovered()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "code_verifier": verifier,
        }
        secret = self._oidc.console_client_secret
        try:
            if secret is not None:
                basic = httpx.BasicAuth(self.client_id, secret.get_secret_value())
                response = await self._http.post(token_url, data=form, auth=basic)
            else:
                response = await self._http.post(token_url, data=form)
        except httpx.HTTPError as err:
            raise IdentityProviderUnavailable(f"token endpoint unreachable: {err}") from err
        if response.status_code >= 500:
            raise IdentityProviderUnavailable(f"token endpoint answered {response.status_code}")
        if len(response.content) > MAX_TOKEN_RESPONSE_BYTES:
            raise OidcLoginFailed("the token response is too large")
        try:
            body: Any = response.json()
        except ValueError:
            raise OidcLoginFailed(
                f"token endpoint answered {response.status_code}, not JSON"
            ) from None
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            reason = str(error or response.status_code)[:100]
            raise OidcLoginFailed(f"token endpoint refused the code ({reason})")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise OidcLoginFailed("the token response holds no access token")
        if str(body.get("token_type", "bearer")).lower() != "bearer":
            raise OidcLoginFailed(f"token type {body.get('token_type')!r} is not bearer")
        return token

    async def aclose(self) -> None:
        await self._http.aclose()


def oidc_login(app: FastAPI) -> OidcLogin | None:
    """The app's console client, made on first use (None: none is configured)."""
    found: OidcLogin | None = getattr(app.state, "console_oidc", None)
    if found is not None:
        return found
    oidc = app.state.settings.oidc
    if oidc is None or not oidc.console_client_id:
        return None
    app.state.console_oidc = OidcLogin(oidc)
    return app.state.console_oidc  # type: ignore[no-any-return]
