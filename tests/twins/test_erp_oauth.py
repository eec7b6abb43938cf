"""The ERP twin's NetSuite machine-to-machine token endpoint over real HTTP: a certificate
mapped in the twin's M2M setup, an assertion signed with its key gets a token the connector
reads records with, and the assertions NetSuite would refuse are refused in its shape."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from connectors._oauth import JWT_BEARER, ClientAssertion
from connectors.erp.netsuite import NetSuiteErp
from connectors.erp.port import CostCenterStatus
from contracts.settings import SystemSettings
from sandbox.erp.m2m import TOKEN_PATH
from tests._twins import CLIENT_CREDENTIALS
from tests.twins._erp_fixtures import ACTIVE_CC, RECORD, ErpTwin, erp_twin

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=3072)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=3072)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def pem(key: PrivateKeyTypes) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def certificate(key: Any, days: int = 730) -> str:
    """A self-signed x.509 certificate of `key`, as `openssl req -x509` makes one."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pssync-netsuite-m2m")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
async def twin() -> AsyncIterator[ErpTwin]:
    async with erp_twin() as t:
        yield t


async def map_certificate(twin: ErpTwin, key: Any, client_id: str = "pssync") -> str:
    response = await twin.client.post(
        "/_admin/erp/m2m", json={"client_id": client_id, "certificate": certificate(key)}
    )
    assert response.status_code == 201, response.text
    cid: str = response.json()["certificate_id"]
    return cid


def assertion(twin: ErpTwin, kid: str, key: Any = RSA_KEY, **options: Any) -> str:
    return ClientAssertion(
        client_id=options.pop("client_id", "pssync"),
        audience=options.pop("audience", f"{twin.base_url}{TOKEN_PATH}"),
        key_id=kid,
        private_key=key,
        algorithm=options.pop("algorithm", "PS256"),
        scope=options.pop("scope", "rest_webservices"),
        **options,
    ).sign()


async def ask_token(twin: ErpTwin, client_assertion: str, **form: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=twin.base_url) as anonymous:
        data = {
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": client_assertion,
        }
        return await anonymous.post(TOKEN_PATH, data=data | form)


async def test_a_signed_assertion_gets_a_token_the_connector_reads_records_with(
    twin: ErpTwin,
) -> None:
    kid = await map_certificate(twin, RSA_KEY)
    config = SystemSettings(
        base_url=twin.base_url,
        auth="oauth2_jwt",
        client_id="pssync",
        token_url=f"{twin.base_url}{TOKEN_PATH}",
        certificate_id=kid,
        private_key=pem(RSA_KEY),  # type: ignore[arg-type]
        retry_budget_s=5,
        timeout_s=5,
    )
    async with NetSuiteErp(config) as erp:
        assert await erp.cost_center_status(ACTIVE_CC) is CostCenterStatus.ACTIVE
    audit = (await twin.client.get("/_admin/erp/m2m/audit")).json()
    assert [(a["status"], a["certificate_id"], a["client_id"]) for a in audit] == [
        ("Success", kid, "pssync")
    ]

    # An EC certificate and ES256 do too; the answer is NetSuite's, without a refresh token.
    ec_kid = await map_certificate(twin, EC_KEY)
    token = await ask_token(twin, assertion(twin, ec_kid, EC_KEY, algorithm="ES256"))
    assert token.status_code == 200, token.text
    assert set(token.json()) == {"access_token", "expires_in", "token_type"}
    assert token.json()["expires_in"] == 3600 and token.json()["token_type"] == "Bearer"
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    async with httpx.AsyncClient(base_url=twin.base_url, headers=bearer) as client:
        assert (await client.get(f"{RECORD}/department/eid:{ACTIVE_CC}")).status_code == 200

    # The dev profile's client-secret flow is unchanged.
    async with httpx.AsyncClient(base_url=twin.base_url) as anonymous:
        dev = await anonymous.post("/oauth2/token", data=CLIENT_CREDENTIALS)
    assert dev.status_code == 200 and dev.json()["access_token"]


async def test_assertions_netsuite_would_refuse_are_refused(twin: ErpTwin) -> None:
    kid = await map_certificate(twin, RSA_KEY)
    ec_kid = await map_certificate(twin, EC_KEY)
    revoked = await map_certificate(twin, OTHER_RSA_KEY)
    revoking = await twin.client.post(f"/_admin/erp/m2m/{revoked}/revoke")
    assert revoking.json()["revoked"] is True
    now = time.time()
    expired = assertion(twin, kid, wall_clock=lambda: now - 600)  # exp 5 minutes ago
    two_hours = assertion(twin, kid, lifetime_s=7200)
    claims = {"iss": "pssync", "aud": f"{twin.base_url}{TOKEN_PATH}", "scope": "rest_webservices"}
    claims |= {"iat": int(now), "exp": int(now) + 300}
    rs256 = jwt.encode(claims, RSA_KEY, algorithm="RS256", headers={"kid": kid})
    no_scope = jwt.encode(
        {k: v for k, v in claims.items() if k != "scope"}, RSA_KEY, "PS256", {"kid": kid}
    )
    client = "invalid_client"
    cases: list[tuple[str, str, int, str]] = [
        ("signed with another key", assertion(twin, kid, OTHER_RSA_KEY), 401, client),
        ("an unknown certificate ID", assertion(twin, "no-such-id"), 401, client),
        ("a revoked certificate", assertion(twin, revoked, OTHER_RSA_KEY), 401, client),
        ("iss: not the mapping's client", assertion(twin, kid, client_id="x"), 401, client),
        ("ES256, an RSA certificate", assertion(twin, kid, EC_KEY, algorithm="ES256"), 401, client),
        ("expired", expired, 400, "invalid_grant"),
        ("exp more than an hour after iat", two_hours, 400, "invalid_grant"),
        ("aud: not the endpoint", assertion(twin, kid, audience="https://x"), 400, "invalid_grant"),
        ("RS256 (no longer accepted)", rs256, 400, "invalid_request"),
        ("no scope claim", no_scope, 400, "invalid_request"),
        ("no rest_webservices", assertion(twin, kid, scope="restlets"), 400, "invalid_scope"),
        ("unknown scope", assertion(twin, kid, scope="restlets,admin"), 400, "invalid_scope"),
        ("not a JWT", "not-a-jwt", 400, "invalid_request"),
    ]
    for what, client_assertion, status, error in cases:
        refused = await ask_token(twin, client_assertion)
        assert (refused.status_code, refused.json()) == (status, {"error": error}), what
    es256 = assertion(twin, ec_kid, EC_KEY, algorithm="ES256")
    wrong_grant = await ask_token(twin, es256, grant_type="authorization_code")
    assert wrong_grant.status_code == 400
    assert wrong_grant.json() == {"error": "unsupported_grant_type"}
    secret = await ask_token(twin, "", client_assertion_type="", client_secret="dev-secret")
    assert (secret.status_code, secret.json()) == (400, {"error": "invalid_request"})

    assert not twin.state.tokens  # nothing was issued
    audit = (await twin.client.get("/_admin/erp/m2m/audit")).json()
    assert len(audit) == len(cases) + 2 and {a["status"] for a in audit} == {"Failure"}
    assert "signature does not verify" in audit[0]["detail"]
    assert "revoked" in audit[2]["detail"]


async def test_the_m2m_setup_takes_the_certificates_netsuite_takes(twin: ErpTwin) -> None:
    async def upload(key: Any, client_id: str = "pssync", **options: Any) -> httpx.Response:
        body = {"client_id": client_id, "certificate": certificate(key, **options)}
        return await twin.client.post("/_admin/erp/m2m", json=body)

    short_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert (await upload(short_rsa)).status_code == 400  # RSA keys of 3072 or 4096 bits
    assert (await upload(RSA_KEY, client_id="unknown-integration")).status_code == 400
    garbage = {"client_id": "pssync", "certificate": "nope"}
    assert (await twin.client.post("/_admin/erp/m2m", json=garbage)).status_code == 400

    five_years = await upload(RSA_KEY, days=5 * 365)
    assert five_years.status_code == 201
    valid_until = datetime.fromisoformat(five_years.json()["valid_until"])
    assert valid_until - datetime.now(UTC) <= timedelta(days=730)  # cut to two years
    again = await upload(RSA_KEY)  # the same key, a new certificate: a new ID
    assert again.json()["certificate_id"] != five_years.json()["certificate_id"]

    twin.state.clients["other-integration"] = "secret"
    same = {"client_id": "pssync", "certificate": certificate(EC_KEY)}
    first = await twin.client.post("/_admin/erp/m2m", json=same)
    repeat = await twin.client.post("/_admin/erp/m2m", json=same)
    assert first.json()["certificate_id"] == repeat.json()["certificate_id"]
    elsewhere = await twin.client.post(
        "/_admin/erp/m2m", json=same | {"client_id": "other-integration"}
    )
    assert elsewhere.status_code == 400  # one certificate, one application
    listed = (await twin.client.get("/_admin/erp/m2m")).json()
    assert len(listed) == 3
