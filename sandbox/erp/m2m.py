"""NetSuite's OAuth 2.0 client credentials (machine-to-machine) flow on the ERP twin.

- `POST /services/rest/auth/oauth2/v1/token`, form-encoded: `grant_type=client_credentials`,
  `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
  `client_assertion=<JWT>`. The JWT's header must carry `typ: JWT`, `alg` (PS256/384/512 or
  ES256/384/512; NetSuite no longer accepts RS256) and `kid`, the certificate ID of a mapping;
  it must be signed by that certificate's key, and its claims must carry `iss` (the mapping's
  client ID), `aud` (this endpoint's URL, as the client reached it), `iat`, `exp` (in the
  future, at most 60 minutes after `iat`) and `scope` (comma-separated, or a list as in
  Oracle's example, of `restlets`, `rest_webservices`, `suite_analytics`). Answers
  `{"access_token", "expires_in": 3600, "token_type": "Bearer"}` and no refresh token.
- Refusals are OAuth-shaped, `{"error": ...}` and nothing else, as NetSuite's are (it keeps the
  reason for its Login Audit Trail): 400 `invalid_request` (a parameter missing or malformed,
  an algorithm not accepted), 400 `unsupported_grant_type`, 401 `invalid_client` (unknown,
  revoked or expired certificate ID, wrong signature, `iss` not the mapping's client), 400
  `invalid_grant` (wrong `aud`, expired, `iat` in the future, a lifetime over 60 minutes), 400
  `invalid_scope`. Which code NetSuite gives for each failure is not documented; these follow
  RFC 6749 §5.2 and RFC 7523 §3.
- The M2M setup (NetSuite: Setup > Integration > Manage Authentication > OAuth 2.0 Client
  Credentials (M2M) Setup): `POST /_admin/erp/m2m {"client_id", "certificate": "<x.509
  PEM>"}` maps a certificate to an application (one of the twin's OAuth clients, `pssync` in
  the dev profile) and answers its `certificate_id` (the base64url SHA-256 of the certificate:
  the same certificate always gets the same ID). As NetSuite requires: RSA keys of 3072 or 4096
  bits, EC keys on P-256/384/521; validity cut to two years from the upload; one certificate
  for one application. `GET /_admin/erp/m2m` lists the mappings, `POST
  /_admin/erp/m2m/{certificate_id}/revoke` revokes one. Mappings live in the twin's database.
- `GET /_admin/erp/m2m/audit`: the latest token requests with their outcome and the reason of
  a refusal (NetSuite's Login Audit Trail).

Simplification: the twin serves REST web services only, so a scope without
`rest_webservices` is refused (`invalid_scope`) instead of making a token REST would refuse.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlmodel import select

from sandbox._twin import TOKEN_TTL_S, TwinState
from sandbox.erp.tables import ErpM2MCertificate

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPES = frozenset({"restlets", "rest_webservices", "suite_analytics"})
MAX_ASSERTION_LIFETIME_S = 3600
MAX_CERTIFICATE_VALIDITY_S = 730 * 86400
CLOCK_SKEW_S = 60
"""How far in the future an assertion's `iat` may be (the client's clock may run ahead)."""
_RSA_BITS = (3072, 4096)
_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_ALGORITHMS = frozenset({"PS256", "PS384", "PS512", *_CURVES})


class Refused(Exception):
    """A token request refused with an OAuth error code; `reason` goes to the audit trail."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.status = 401 if error == "invalid_client" else 400


class MappingBody(BaseModel):
    client_id: str
    certificate: str
    """The public certificate, x.509 PEM."""


def certificate_id(certificate: x509.Certificate) -> str:
    """The ID the twin gives a certificate: base64url of its SHA-256 (DER), unpadded."""
    digest = hashlib.sha256(certificate.public_bytes(Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _check_key(certificate: x509.Certificate) -> None:
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size not in _RSA_BITS:
            raise ValueError(f"an RSA key must have 3072 or 4096 bits, not {key.key_size}")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES.values():
            raise ValueError(f"an EC key must be on P-256, P-384 or P-521, not {key.curve.name}")
    else:
        raise ValueError(f"the certificate's key must be RSA or EC, not {type(key).__name__}")


def _fits(algorithm: str, key: Any) -> bool:
    if algorithm.startswith("PS"):
        return isinstance(key, rsa.RSAPublicKey)
    return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _CURVES[algorithm]


def _scopes(claim: Any) -> set[str]:
    if isinstance(claim, str):
        return {part.strip() for part in claim.split(",") if part.strip()}
    if isinstance(claim, list) and all(isinstance(part, str) for part in claim):
        return {part.strip() for part in claim}
    raise Refused("invalid_scope", f"scope must be a comma-separated string or a list: {claim!r}")


class M2MSetup:
    """The token endpoint's checks against the mappings in the twin's database."""

    def __init__(self, state: TwinState) -> None:
        self.state = state
        self.audit: deque[dict[str, Any]] = deque(maxlen=100)

    def add(self, body: MappingBody) -> ErpM2MCertificate:
        if body.client_id not in self.state.clients:
            raise ValueError(f"no integration with client ID {body.client_id!r}")
        try:
            certificate = x509.load_pem_x509_certificate(body.certificate.encode())
        except ValueError as exc:
            raise ValueError(f"not an x.509 PEM certificate: {exc}") from None
        _check_key(certificate)
        now = time.time()
        until = min(certificate.not_valid_after_utc.timestamp(), now + MAX_CERTIFICATE_VALIDITY_S)
        if until <= now:
            raise ValueError("the certificate has expired")
        cid = certificate_id(certificate)
        with self.state.session() as s:
            row = s.get(ErpM2MCertificate, cid)
            if row is not None:
                if row.client_id != body.client_id or row.revoked:
                    raise ValueError("this certificate is mapped already; use a new certificate")
                return row
            row = ErpM2MCertificate(
                certificate_id=cid,
                client_id=body.client_id,
                certificate_pem=body.certificate,
                valid_until=until,
            )
            s.add(row)
            s.commit()
            return row

    def mappings(self) -> list[ErpM2MCertificate]:
        with self.state.session() as s:
            return list(s.exec(select(ErpM2MCertificate)).all())

    def revoke(self, cid: str) -> ErpM2MCertificate | None:
        with self.state.session() as s:
            row = s.get(ErpM2MCertificate, cid)
            if row is not None:
                row.revoked = True
                s.add(row)
                s.commit()
            return row

    def verify(self, form: dict[str, Any], audience: str) -> dict[str, Any]:
        """The assertion's claims, or `Refused`."""
        grant_type = form.get("grant_type")
        if not grant_type:
            raise Refused("invalid_request", "grant_type is missing")
        if grant_type != "client_credentials":
            raise Refused("unsupported_grant_type", f"grant_type {grant_type!r}")
        if form.get("client_assertion_type") != JWT_BEARER:
            raise Refused("invalid_request", f"client_assertion_type must be {JWT_BEARER}")
        assertion = form.get("client_assertion")
        if not isinstance(assertion, str) or not assertion:
            raise Refused("invalid_request", "client_assertion is missing")
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.DecodeError as exc:
            raise Refused("invalid_request", f"client_assertion is not a JWT: {exc}") from None
        if header.get("typ") != "JWT":
            raise Refused("invalid_request", f"typ must be JWT, not {header.get('typ')!r}")
        algorithm = header.get("alg")
        if algorithm not in _ALGORITHMS:
            raise Refused("invalid_request", f"alg {algorithm!r} is not accepted")
        mapping = self._mapping(header.get("kid"))
        key = x509.load_pem_x509_certificate(mapping.certificate_pem.encode()).public_key()
        if not _fits(algorithm, key):
            raise Refused("invalid_client", f"alg {algorithm} does not fit the certificate's key")
        claims = self._decode(assertion, key, algorithm, audience)
        if claims["iss"] != mapping.client_id:
            raise Refused("invalid_client", f"iss {claims['iss']!r} is not the mapping's client")
        if claims["exp"] - claims["iat"] > MAX_ASSERTION_LIFETIME_S:
            raise Refused("invalid_grant", "exp is more than 60 minutes after iat")
        if claims["iat"] > time.time() + CLOCK_SKEW_S:
            raise Refused("invalid_grant", "iat is in the future")
        scopes = _scopes(claims["scope"])
        if not scopes or not scopes <= SCOPES:
            raise Refused("invalid_scope", f"unknown scope {sorted(scopes - SCOPES) or scopes}")
        if "rest_webservices" not in scopes:
            raise Refused("invalid_scope", "the twin serves rest_webservices only")
        return {**claims, "kid": mapping.certificate_id}

    def _mapping(self, kid: Any) -> ErpM2MCertificate:
        if not isinstance(kid, str) or not kid:
            raise Refused("invalid_request", "the JWT header has no kid")
        with self.state.session() as s:
            mapping = s.get(ErpM2MCertificate, kid)
        if mapping is None:
            raise Refused("invalid_client", f"no mapping with certificate ID {kid!r}")
        if mapping.revoked:
            raise Refused("invalid_client", f"certificate {kid} is revoked")
        if mapping.valid_until <= time.time():
            raise Refused("invalid_client", f"certificate {kid} has expired")
        return mapping

    @staticmethod
    def _decode(assertion: str, key: Any, algorithm: str, audience: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                key,
                algorithms=[algorithm],
                audience=audience,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.InvalidSignatureError:
            raise Refused("invalid_client", "the signature does not verify") from None
        except jwt.ExpiredSignatureError:
            raise Refused("invalid_grant", "the assertion has expired") from None
        except (jwt.InvalidAudienceError, jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError):
            raise Refused(
                "invalid_grant", f"aud or iat is wrong (aud must be {audience})"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise Refused("invalid_request", f"the assertion is malformed: {exc}") from None
        return claims

    def record(self, outcome: str, detail: str, claims: dict[str, Any] | None = None) -> None:
        self.audit.append(
            {
                "at": datetime.now(UTC).isoformat(),
                "status": outcome,
                "detail": detail,
                "client_id": (claims or {}).get("iss"),
                "certificate_id": (claims or {}).get("kid"),
            }
        )


def build_router(state: TwinState) -> APIRouter:
    """The token endpoint (no bearer token needed, of course) and the M2M setup's admin routes."""
    setup = M2MSetup(state)
    router = APIRouter()

    @router.post(TOKEN_PATH, tags=["auth"], summary="OAuth 2.0 client credentials (M2M) token")
    async def token(request: Request) -> JSONResponse:
        form = dict(await request.form())
        audience = str(request.url.replace(query=None, fragment=None))
        try:
            claims = setup.verify(form, audience)
        except Refused as refused:
            setup.record("Failure", f"{refused.error}: {refused.reason}")
            return JSONResponse({"error": refused.error}, status_code=refused.status)
        access = secrets.token_urlsafe(24)
        state.tokens[access] = time.time() + TOKEN_TTL_S
        setup.record("Success", "access token issued", claims)
        return JSONResponse(
            {"access_token": access, "expires_in": TOKEN_TTL_S, "token_type": "Bearer"},
            headers={"Cache-Control": "no-store"},
        )

    @router.post("/_admin/erp/m2m", tags=["admin"], status_code=201, summary="Map a certificate")
    def add_mapping(body: MappingBody) -> JSONResponse:
        try:
            row = setup.add(body)
        except ValueError as exc:
            return JSONResponse({"error": "invalid_certificate", "detail": str(exc)}, 400)
        return JSONResponse(_mapping_view(row), status_code=201)

    @router.get("/_admin/erp/m2m", tags=["admin"], summary="The M2M setup's mappings")
    def list_mappings() -> list[dict[str, Any]]:
        return [_mapping_view(row) for row in setup.mappings()]

    @router.post("/_admin/erp/m2m/{cid}/revoke", tags=["admin"], summary="Revoke a certificate")
    def revoke(cid: str) -> JSONResponse:
        row = setup.revoke(cid)
        if row is None:
            return JSONResponse({"error": "not_found", "detail": f"no mapping {cid}"}, 404)
        return JSONResponse(_mapping_view(row))

    @router.get("/_admin/erp/m2m/audit", tags=["admin"], summary="Token requests (audit trail)")
    def audit() -> list[dict[str, Any]]:
        return list(setup.audit)

    return router


def _mapping_view(row: ErpM2MCertificate) -> dict[str, Any]:
    return {
        "certificate_id": row.certificate_id,
        "client_id": row.client_id,
        "valid_until": datetime.fromtimestamp(row.valid_until, UTC).isoformat(),
        "revoked": row.revoked,
    }
