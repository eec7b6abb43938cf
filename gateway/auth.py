"""Who is calling, and what they may reach: the actor behind a bearer token.

Two kinds of token, tried in this order:

- **JWTs from an OIDC provider** (`settings.oidc`; production's only kind). Verified with
  PyJWT against the provider's JWKS: signature, `iss`, `aud`, `exp` (`nbf`, `iat` when
  present), with `leeway_s`. The key set is cached (`jwks_cache_s`) and refetched when a token
  names a key id not yet seen — key rotation without a restart — at most once per
  `jwks_refresh_min_s`, so garbage key ids cannot make the gateway hammer the provider.
  Name, roles and scopes come from claims (`name_claim`, `roles_claim`, `scopes_claim`).
- **Static dev tokens** (`settings.actors`, dev profile only): kept as SHA-256 hashes and
  compared in constant time.

Answers: 401 `unauthorized` (+ `WWW-Authenticate: Bearer`) for a missing, malformed, unknown,
expired, wrongly signed or wrong-audience token; 503 when the provider's keys cannot be fetched
and none are cached; 403 is for valid tokens without the role or scope (`require_roles`, and the
routes' scope checks). Must never: import workflows, activities or connectors.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

import httpx
import jwt
from fastapi import Header, Request

from contracts.scopes import MAX_SCOPES, is_valid_scope
from contracts.settings import Actor, OidcSettings, Settings, hash_token
from contracts.v1.processes import RESOLVER_ROLES
from contracts.v1.worker_termination import RESCIND_ROLES
from gateway.errors import GatewayError
from gateway.metrics import GatewayMetrics

log = logging.getLogger("pssync.gateway.auth")

READ_ROLES = frozenset(
    {"ops", "auditor", "hr"}.union(*RESOLVER_ROLES.values()).union(RESCIND_ROLES)
)
"""Who may read exception items, projects and pipelines (within their scopes): everyone who
resolves or decides something, and auditors."""
OPS_ROLES = frozenset({"ops"})
METRICS_ROLES = frozenset({"ops", "metrics"})

MAX_TOKEN_LENGTH = 16_384
"""A bearer token longer than this is refused unread."""


class IdentityProviderUnavailable(Exception):
    """The provider's signing keys could not be fetched (and none are cached)."""


class InvalidToken(Exception):
    """The token is not one pssync accepts (the message says why, for the log only)."""


class JwksCache:
    """The provider's signing keys by key id, fetched with httpx and kept `cache_s`."""

    def __init__(
        self,
        oidc: OidcSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._oidc = oidc
        self._client = httpx.AsyncClient(timeout=oidc.timeout_s, transport=transport)
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key for `kid` (the only key when the token names none and there is one)."""
        if self._should_refresh(kid):
            async with self._lock:
                if self._should_refresh(kid):  # not if a request before us just did
                    await self._refresh()
        found = self._lookup(kid)
        if found is None:
            raise InvalidToken(f"no signing key {kid!r} in the provider's key set")
        return found

    def _should_refresh(self, kid: str | None) -> bool:
        if self._fetched_at is None:
            return True
        age = self._clock() - self._fetched_at
        if age > self._oidc.jwks_cache_s:
            return True
        return self._lookup(kid) is None and age >= self._oidc.jwks_refresh_min_s

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        try:
            url = self._oidc.jwks_url or await self._discover()
            response = await self._client.get(url)
            response.raise_for_status()
            keyset = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError, jwt.PyJWKError) as err:
            log.warning("could not fetch the identity provider's keys: %s", err)
            if not self._keys:
                raise IdentityProviderUnavailable(str(err)) from err
            self._fetched_at = self._clock()  # keep the cached keys; retry after the min
            return
        self.fetches += 1
        self._keys = {k.key_id: k for k in keyset.keys if k.key_id and k.public_key_use != "enc"}
        if not self._keys and len(keyset.keys) == 1:
            (only,) = keyset.keys
            self._keys = {"": only}
        self._fetched_at = self._clock()

    async def _discover(self) -> str:
        issuer = self._oidc.issuer.rstrip("/")
        response = await self._client.get(f"{issuer}/.well-known/openid-configuration")
        response.raise_for_status()
        url = response.json().get("jwks_uri")
        if not isinstance(url, str) or not url:
            raise ValueError("the discovery document names no jwks_uri")
        return url

    async def aclose(self) -> None:
        await self._client.aclose()


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


class OidcVerifier:
    """Turns a JWT into an actor, or says why not."""

    def __init__(self, oidc: OidcSettings, keys: JwksCache) -> None:
        self._oidc = oidc
        self.keys = keys

    async def actor(self, token: str) -> Actor:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as err:
            raise InvalidToken(f"not a JWT: {err}") from err
        if header.get("alg") not in self._oidc.algorithms:
            raise InvalidToken(f"algorithm {header.get('alg')!r} is not accepted")
        kid = header.get("kid")
        key = await self.keys.key(kid if isinstance(kid, str) else None)
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=self._oidc.algorithms,
                audience=self._oidc.audience,
                issuer=self._oidc.issuer,
                leeway=self._oidc.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as err:
            raise InvalidToken(str(err)) from err
        return actor_from_claims(claims, self._oidc)


def actor_from_claims(claims: Mapping[str, Any], oidc: OidcSettings) -> Actor:
    """The actor a verified token's claims name; invalid scopes are dropped, not widened."""
    name = next(
        (
            str(v)
            for v in (_claim(claims, oidc.name_claim), claims.get("email"), claims.get("sub"))
            if isinstance(v, str) and v.strip()
        ),
        None,
    )
    if name is None:
        raise InvalidToken("the token names no subject")
    roles = sorted({r for r in _strings(_claim(claims, oidc.roles_claim)) if len(r) <= 100})
    scopes = [s for s in _strings(_claim(claims, oidc.scopes_claim)) if is_valid_scope(s)]
    return Actor(name=name[:200], roles=roles[:50], scopes=sorted(set(scopes))[:MAX_SCOPES])


class Authenticator:
    """The gateway's one place that says who a bearer token is (kept on `app.state`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        jwks_transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._static = dict(settings.actors) if settings.profile == "dev" else {}
        self.oidc = (
            OidcVerifier(
                settings.oidc, JwksCache(settings.oidc, transport=jwks_transport, clock=clock)
            )
            if settings.oidc
            else None
        )

    def _static_actor(self, token: str) -> Actor | None:
        digest = hash_token(token).encode()
        found: Actor | None = None
        for known, actor in self._static.items():
            if hmac.compare_digest(known.encode(), digest):
                found = actor
        return found

    async def actor(self, authorization: str | None) -> Actor:
        """The actor, or `InvalidToken` / `IdentityProviderUnavailable`."""
        if not authorization:
            raise InvalidToken("no Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("not a bearer token")
        return await self.actor_for_token(token)

    async def actor_for_token(self, token: str) -> Actor:
        """The actor a bare token stands for (the console's session keeps one), verified exactly
        as a bearer header's; `InvalidToken` / `IdentityProviderUnavailable` otherwise."""
        token = token.strip()
        if not token:
            raise InvalidToken("no token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too long")
        actor = self._static_actor(token)
        if actor is not None:
            return actor
        if self.oidc is None or token.count(".") != 2:
            raise InvalidToken("unknown token")
        return await self.oidc.actor(token)

    async def aclose(self) -> None:
        if self.oidc is not None:
            await self.oidc.keys.aclose()


def unauthorized() -> GatewayError:
    return GatewayError(
        401,
        "unauthorized",
        "a valid 'Authorization: Bearer <token>' header is required",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def current_actor(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Actor:
    """The actor named by the bearer token (401 otherwise); runs before the body is read."""
    authenticator: Authenticator = request.app.state.authenticator
    try:
        return await authenticator.actor(authorization)
    except InvalidToken as err:
        log.info("refused a bearer token on %s: %s", request.url.path, err)
        metrics: GatewayMetrics = request.app.state.metrics
        metrics.resolutions.labels(action="unknown", outcome="unauthorized").inc()
        raise unauthorized() from None
    except IdentityProviderUnavailable:
        raise GatewayError.unavailable(
            "identity_provider_unavailable",
            "the identity provider's signing keys cannot be fetched; try again shortly",
        ) from None


def require_roles(actor: Actor, roles: Iterable[str], what: str) -> None:
    """403 unless the actor holds one of `roles`."""
    allowed = frozenset(roles)
    if not allowed.intersection(actor.roles):
        raise GatewayError(
            403,
            "forbidden",
            f"{actor.name} may not {what} (needs one of: {', '.join(sorted(allowed))})",
        )
