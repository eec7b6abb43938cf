"""OAuth 2.0 client credentials with a JWT client assertion (RFC 7523 §2.2): the way NetSuite's
machine-to-machine (M2M) flow authenticates a client, with the private key of a certificate
instead of a client secret (`SystemSettings.auth = "oauth2_jwt"`).

Each token request posts `grant_type=client_credentials`,
`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and a fresh
`client_assertion`: a JWT with the header `{typ: JWT, alg, kid: <certificate ID>}` and the
claims `iss` (client ID), `scope`, `aud` (the token endpoint), `iat`, `exp` (a few minutes on;
NetSuite takes at most an hour) and a new `jti`. The endpoint answers `{access_token,
expires_in, token_type}` and no refresh token, so a token is used until shortly before it
lapses, then a new assertion fetches the next; a 401 from the API fetches one at once (once).

Token endpoint failures are classified for an operator: an OAuth refusal (`{"error":
"invalid_client" | "invalid_grant" | ...}`, 400/401/403, or any other 4xx: a wrong URL) is an
`AuthError` — pssync cannot fix a key, certificate or mapping; 408, 429 and 5xx are retried.

No import from `connectors._http`: it builds on this module, not the other way round.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from contracts.errors import AuthError, PssyncError, RateLimitedError, TransientError
from contracts.settings import SystemSettings

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 300
"""How long an assertion is valid (`exp - iat`): it is used once, at once."""
REFRESH_MARGIN_S = 300.0
"""A cached access token is replaced this long before it lapses (at most a tenth of its life),
so a request never leaves with a token about to expire."""

_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


def load_private_key(settings: SystemSettings) -> PrivateKeyTypes:
    """The PEM private key of `settings` (`private_key`, else the file `private_key_path`)."""
    if settings.private_key is not None:
        pem = settings.private_key.get_secret_value().encode()
    elif settings.private_key_path is not None:
        pem = settings.private_key_path.read_bytes()
    else:
        raise ValueError("oauth2_jwt needs private_key or private_key_path")
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:  # malformed, or encrypted with a passphrase
        raise ValueError(f"the private key is not an unencrypted PEM private key: {exc}") from None


def check_key(key: PrivateKeyTypes, algorithm: str) -> None:
    """Refuse a key that cannot make `algorithm`'s signatures (at start-up, not at the first
    token request): PS*/RS* need an RSA key, ES256/384/512 an EC key on P-256/384/521."""
    if algorithm.startswith(("PS", "RS")):
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{algorithm} needs an RSA private key, not {type(key).__name__}")
        return
    curve = _CURVES.get(algorithm)
    if curve is None:
        raise ValueError(f"unsupported assertion algorithm {algorithm!r}")
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != curve:
        raise ValueError(f"{algorithm} needs an EC private key on {curve}")


class ClientAssertion:
    """Signs one RFC 7523 client assertion per call to `sign`."""

    def __init__(
        self,
        *,
        client_id: str,
        audience: str,
        key_id: str,
        private_key: PrivateKeyTypes,
        algorithm: str = "PS256",
        scope: str | None = None,
        lifetime_s: int = ASSERTION_LIFETIME_S,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        check_key(private_key, algorithm)
        self.client_id = client_id
        self.audience = audience
        self.key_id = key_id
        self.algorithm = algorithm
        self.scope = scope
        self.lifetime_s = lifetime_s
        self._key = private_key
        self._wall_clock = wall_clock

    def claims(self) -> dict[str, Any]:
        now = int(self._wall_clock())
        claims: dict[str, Any] = {
            "iss": self.client_id,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.lifetime_s,
            "jti": uuid.uuid4().hex,
        }
        if self.scope:
            claims["scope"] = self.scope
        return claims

    def sign(self) -> str:
        return jwt.encode(
            self.claims(),
            self._key,  # type: ignore[arg-type]  # checked against the algorithm at start
            algorithm=self.algorithm,
            headers={"kid": self.key_id, "typ": "JWT"},
        )


def token_error(system: str, response: httpx.Response) -> PssyncError:
    """What a failed token request means: retry (408, 429, 5xx) or an operator (the rest)."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    code = body.get("error") if isinstance(body, dict) else None
    said = body.get("error_description") if isinstance(body, dict) else None
    detail = " ".join(str(part) for part in (code, said) if part) or response.text[:200]
    message = f"{system} token endpoint answered {status}: {detail}"
    if status == 429:
        return RateLimitedError(
            message, system=system, retry_after_s=_seconds(response.headers.get("retry-after"))
        )
    if status == 408 or status >= 500:
        return TransientError(message, system=system)
    return AuthError(
        f"{message} (check the client ID, key, certificate ID and scope)", system=system
    )


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the usual backoff instead


class CachedTokenAuth(httpx.Auth):
    """An OAuth 2.0 access token cached until shortly before it lapses, fetched again once on
    a 401; subclasses say how to ask for one (`_token_request`) and how to take the answer
    (`_accept`, which sets `_token` and `_expires_at` on `_clock`).

    One request fetches a token while the others wait for it (no stampede of token requests
    when many requests start at once, nor when they all meet the same 401)."""

    requires_response_body = True

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    def _stale(self) -> bool:
        return self._token is None or self._clock() >= self._expires_at

    def _token_request(self, request: httpx.Request) -> httpx.Request:
        raise NotImplementedError

    def _accept(self, response: httpx.Response) -> None:
        raise NotImplementedError

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        # Overriding async_auth_flow skips httpx's own `requires_response_body` read, so the
        # token response is read here before its JSON is used.
        if self._stale():
            async with self._lock:
                if self._stale():
                    token_response = yield self._token_request(request)
                    await token_response.aread()
                    self._accept(token_response)
        used = self._token
        request.headers["Authorization"] = f"Bearer {used}"
        response = yield request
        if response.status_code == 401:
            async with self._lock:
                if self._token == used:  # else another request has fetched a new one already
                    token_response = yield self._token_request(request)
                    await token_response.aread()
                    self._accept(token_response)
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request


class ClientAssertionAuth(CachedTokenAuth):
    """httpx auth for `auth = "oauth2_jwt"`: a cached access token, fetched with a fresh client
    assertion when there is none, shortly before it lapses, and once on a 401.

    One request fetches a token while the others wait for it (no stampede of token requests
    when many requests start at once, nor when they all meet the same 401)."""

    requires_response_body = True

    def __init__(
        self,
        system: str,
        token_url: str,
        assertion: ClientAssertion,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.system = system
        self.token_url = token_url
        self.assertion = assertion
        self.fetched = 0
        """Access tokens obtained so far."""

    @classmethod
    def from_settings(cls, system: str, settings: SystemSettings) -> ClientAssertionAuth:
        problems = settings.assertion_problems(f"PSSYNC_{system.upper()}")
        if problems or settings.certificate_id is None or settings.token_url is None:
            raise ValueError("; ".join(problems) or "oauth2_jwt is not configured")
        assertion = ClientAssertion(
            client_id=settings.client_id,
            audience=settings.token_url,
            key_id=settings.certificate_id,
            private_key=load_private_key(settings),
            algorithm=settings.jwt_algorithm,
            scope=settings.scope,
        )
        return cls(system, settings.token_url, assertion)

    def _token_request(self, request: httpx.Request) -> httpx.Request:
        # Carry the client's timeout: a hung token endpoint must not block past timeout_s.
        return httpx.Request(
            "POST",
            self.token_url,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": JWT_BEARER,
                "client_assertion": self.assertion.sign(),
            },
            headers={"Accept": "application/json"},
            extensions={"timeout": request.extensions.get("timeout", {})},
        )

    def _accept(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            raise token_error(self.system, response)
        try:
            body = response.json()
            token = body["access_token"]
            lifetime = float(body.get("expires_in", 3600))  # NetSuite: 3600 (60 minutes)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TransientError(
                f"{self.system} token endpoint answered 200 without a token: {exc!r}",
                system=self.system,
            ) from None
        self._token = str(token)
        self._expires_at = self._clock() + lifetime - min(REFRESH_MARGIN_S, lifetime / 10)
        self.fetched += 1
