"""`auth = "oauth2_jwt"`: NetSuite's OAuth 2.0 client credentials (M2M) flow from the
connector's side, over `httpx.MockTransport` — the client assertion a token request carries
(checked with the public key), the cached token, the fetch again on a 401, and what a failed
token request means."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from connectors._http import VendorError, VendorHttp
from connectors._oauth import JWT_BEARER, ClientAssertion, ClientAssertionAuth
from contracts.errors import AuthError, PssyncError, RateLimitedError, TransientError
from contracts.settings import SystemSettings

ACCOUNT = "https://1234567.suitetalk.api.netsuite.com"
TOKEN_URL = f"{ACCOUNT}/services/rest/auth/oauth2/v1/token"
RECORD = "/services/rest/record/v1/department/eid:CC-110"
CLIENT_ID = "9c2f0e1d" * 8
CERTIFICATE_ID = "pvHJZk-siL5h1bm1pqypdH7dblr_ZYCE8gfODaKqAC4"


def pem(key: PrivateKeyTypes) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=3072)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def settings(**overrides: Any) -> SystemSettings:
    values: dict[str, Any] = {
        "base_url": ACCOUNT,
        "auth": "oauth2_jwt",
        "client_id": CLIENT_ID,
        "token_url": TOKEN_URL,
        "certificate_id": CERTIFICATE_ID,
        "private_key": pem(RSA_KEY),
        "retry_budget_s": 2.0,
    }
    return SystemSettings.model_validate(values | overrides)


def _no_body(response: httpx.Response) -> VendorError:
    return VendorError(code=f"HTTP_{response.status_code}", message=response.text)


class NetSuite:
    """A token endpoint and one record, as a MockTransport handler. It records every client
    assertion it is sent and answers the API with 401 for the tokens in `refused`."""

    def __init__(self, public_key: Any, algorithm: str = "PS256") -> None:
        self.public_key = public_key
        self.algorithm = algorithm
        self.assertions: list[tuple[dict[str, Any], dict[str, Any]]] = []
        """(header, claims) of each assertion, verified with the public key."""
        self.token_answers: list[httpx.Response] = []
        """Answers to give token requests before issuing tokens (failures to inject)."""
        self.refused: set[str] = set()
        self.api_calls: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            return self.token(request)
        self.api_calls.append(request.headers.get("authorization"))
        if request.headers.get("authorization", "").removeprefix("Bearer ") in self.refused:
            return httpx.Response(401, json={"o:errorDetails": [{"o:errorCode": "INVALID_LOGIN"}]})
        return httpx.Response(200, json={"id": "7", "externalId": "CC-110"})

    def token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert form["grant_type"] == "client_credentials"
        assert form["client_assertion_type"] == JWT_BEARER
        assert "client_secret" not in form and "client_id" not in form
        assertion = form["client_assertion"]
        claims = jwt.decode(
            assertion,
            self.public_key,
            algorithms=[self.algorithm],
            audience=TOKEN_URL,
            options={"require": ["iss", "aud", "iat", "exp", "scope", "jti"]},
        )
        self.assertions.append((jwt.get_unverified_header(assertion), claims))
        if self.token_answers:
            return self.token_answers.pop(0)
        token = f"token-{len(self.assertions)}"
        return httpx.Response(
            200, json={"access_token": token, "expires_in": "3600", "token_type": "Bearer"}
        )


def vendor_http(netsuite: NetSuite, config: SystemSettings | None = None) -> VendorHttp:
    return VendorHttp(
        "ERP",
        config or settings(),
        _no_body,
        transport=httpx.MockTransport(netsuite),
        backoff_base_s=0.001,
        backoff_cap_s=0.01,
    )


@pytest.mark.parametrize(
    ("algorithm", "key"), [("PS256", RSA_KEY), ("ES256", EC_KEY), ("PS512", RSA_KEY)]
)
async def test_the_assertion_is_what_netsuite_asks_for(algorithm: str, key: Any) -> None:
    netsuite = NetSuite(key.public_key(), algorithm)
    http = vendor_http(netsuite, settings(private_key=pem(key), jwt_algorithm=algorithm))
    try:
        response = await http.request("GET", RECORD)
    finally:
        await http.aclose()
    assert response.json()["externalId"] == "CC-110"
    assert netsuite.api_calls == ["Bearer token-1"]
    [(header, claims)] = netsuite.assertions
    assert header == {"alg": algorithm, "kid": CERTIFICATE_ID, "typ": "JWT"}
    assert claims["iss"] == CLIENT_ID
    assert claims["aud"] == TOKEN_URL
    assert claims["scope"] == "rest_webservices"
    assert 0 < claims["exp"] - claims["iat"] <= 300  # short; NetSuite's limit is 3600
    assert len(claims["jti"]) >= 32


async def test_the_key_may_come_from_a_file_and_scopes_are_comma_separated(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "netsuite-m2m.pem"
    key_file.write_text(pem(EC_KEY))
    netsuite = NetSuite(EC_KEY.public_key(), "ES256")
    config = settings(
        private_key=None,
        private_key_path=key_file,
        jwt_algorithm="ES256",
        scope="rest_webservices,restlets",
    )
    http = vendor_http(netsuite, config)
    try:
        await http.request("GET", RECORD)
    finally:
        await http.aclose()
    assert netsuite.assertions[0][1]["scope"] == "rest_webservices,restlets"


async def test_one_token_serves_every_request_until_shortly_before_it_lapses() -> None:
    netsuite = NetSuite(RSA_KEY.public_key())
    now = [1000.0]
    assertion = ClientAssertion(
        client_id=CLIENT_ID,
        audience=TOKEN_URL,
        key_id=CERTIFICATE_ID,
        private_key=RSA_KEY,
        scope="rest_webservices",
    )
    auth = ClientAssertionAuth("ERP", TOKEN_URL, assertion, clock=lambda: now[0])
    async with httpx.AsyncClient(
        base_url=ACCOUNT, auth=auth, transport=httpx.MockTransport(netsuite)
    ) as client:
        # Many requests at once: one token request, the others wait for its token.
        await asyncio.gather(*(client.get(RECORD) for _ in range(20)))
        assert auth.fetched == 1 and len(netsuite.assertions) == 1
        now[0] += 3600 - 300 - 1  # an hour's token, replaced 5 minutes before it lapses
        await client.get(RECORD)
        assert auth.fetched == 1
        now[0] += 1
        await client.get(RECORD)
    assert auth.fetched == 2
    assert set(netsuite.api_calls) == {"Bearer token-1", "Bearer token-2"}
    assert netsuite.api_calls[-1] == "Bearer token-2"
    first, second = (claims for _, claims in netsuite.assertions)
    assert first["jti"] != second["jti"]  # a fresh assertion for each token


async def test_a_401_fetches_a_new_token_once() -> None:
    netsuite = NetSuite(RSA_KEY.public_key())
    http = vendor_http(netsuite)
    try:
        await http.request("GET", RECORD)
        netsuite.refused.add("token-1")  # NetSuite no longer takes it (revoked, expired early)
        response = await http.request("GET", RECORD)
        assert response.status_code == 200
        assert netsuite.api_calls == ["Bearer token-1", "Bearer token-1", "Bearer token-2"]

        netsuite.refused.add("token-2")
        netsuite.refused.add("token-3")  # the new token is refused too: an operator must act
        with pytest.raises(AuthError):
            await http.request("GET", RECORD)
    finally:
        await http.aclose()
    assert len(netsuite.assertions) == 3  # one fetch per 401, never a loop
    assert netsuite.api_calls[3:] == ["Bearer token-2", "Bearer token-3"]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": "invalid_grant"}),
        (401, {"error": "invalid_client"}),
        (400, {"error": "invalid_scope"}),
        (404, {"error": "not_found"}),  # a wrong token URL
    ],
)
async def test_a_refused_assertion_is_an_auth_error_not_retried(
    status: int, body: dict[str, str]
) -> None:
    netsuite = NetSuite(RSA_KEY.public_key())
    netsuite.token_answers = [httpx.Response(status, json=body)] * 3
    http = vendor_http(netsuite)
    try:
        with pytest.raises(AuthError) as refused:
            await http.request("GET", RECORD)
    finally:
        await http.aclose()
    assert body["error"] in str(refused.value) and str(status) in str(refused.value)
    assert len(netsuite.assertions) == 1 and not netsuite.api_calls


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (httpx.Response(503, text="Service Unavailable"), TransientError),
        (httpx.Response(500, json={"error": "server_error"}), TransientError),
        (httpx.Response(429, headers={"Retry-After": "0"}), RateLimitedError),
    ],
)
async def test_a_token_endpoint_failure_is_retried(
    answer: httpx.Response, kind: type[PssyncError]
) -> None:
    netsuite = NetSuite(RSA_KEY.public_key())
    netsuite.token_answers = [answer]
    http = vendor_http(netsuite)
    try:
        response = await http.request("GET", RECORD)
        assert response.status_code == 200
        assert http.retries == 1
    finally:
        await http.aclose()
    assert len(netsuite.assertions) == 2 and netsuite.api_calls == ["Bearer token-2"]
    # ... and without retries the failure surfaces as that kind
    netsuite.token_answers = [answer]
    http = vendor_http(netsuite)
    try:
        with pytest.raises(kind):
            await http.request("GET", RECORD, retry=False)
    finally:
        await http.aclose()


def test_a_key_that_cannot_make_the_algorithm_stops_the_start() -> None:
    netsuite = NetSuite(RSA_KEY.public_key())
    with pytest.raises(ValueError, match="ES256 needs an EC private key"):
        vendor_http(netsuite, settings(jwt_algorithm="ES256"))
    with pytest.raises(ValueError, match="PS256 needs an RSA private key"):
        vendor_http(netsuite, settings(private_key=pem(EC_KEY)))
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        vendor_http(netsuite, settings(private_key="-----BEGIN PRIVATE KEY-----\nnope"))
    with pytest.raises(ValueError, match="PSSYNC_ERP__CERTIFICATE_ID"):
        vendor_http(netsuite, settings(certificate_id=None))
