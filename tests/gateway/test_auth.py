"""Every route but /healthz and the signed webhooks wants a bearer token; reads are scoped.

JWTs are signed here with keys the test makes, and the gateway fetches the key set over an
`httpx.MockTransport` standing in for the identity provider (its requests are counted).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from temporalio.testing import WorkflowEnvironment

from contracts.naming import opportunity_workflow_id, time_pipeline_workflow_id
from contracts.settings import OidcSettings, Settings, load_settings
from contracts.systems import System
from contracts.v1.processes import PROCESS_OPPORTUNITY_TO_PROJECT
from contracts.v1.time_to_invoice import PROCESS_TIME_TO_INVOICE
from gateway import create_app
from gateway.auth import Authenticator, actor_from_claims
from store import NewExceptionItem, Store, make_engine, upgrade

ISSUER = "https://idp.test/realms/firm"
AUDIENCE = "pssync"
JWKS_URL = "https://idp.test/realms/firm/protocol/openid-connect/certs"
CRM_TENANT = "acme"

READ_ROUTES = [
    "/api/exceptions",
    "/api/exceptions/exc-any",
    "/api/projects/E-1001",
    "/api/projects/4242/time-to-invoice",
    "/api/inbox",
    "/metrics",
]


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk_of(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "use": "sig", "alg": "RS256"}


@dataclass
class Provider:
    """The identity provider: its current key set, and how often the gateway fetched it."""

    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    fetches: int = 0
    down: bool = False
    now: float = 1000.0
    """The gateway's monotonic clock (the key cache's), moved by the test."""

    async def handler(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)  # the network: concurrent requests overlap here
        if self.down:
            return httpx.Response(503)
        if str(request.url) == JWKS_URL:
            self.fetches += 1
            return httpx.Response(
                200, json={"keys": [jwk_of(k, kid) for kid, k in self.keys.items()]}
            )
        return httpx.Response(404)

    def token(
        self,
        kid: str = "k1",
        *,
        key: rsa.RSAPrivateKey | None = None,
        roles: list[str] | None = None,
        scopes: list[str] | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "u-123",
            "preferred_username": "dana.manager",
            "iat": now,
            "exp": now + 300,
            "roles": roles if roles is not None else ["delivery_manager"],
            "pssync_scopes": scopes if scopes is not None else ["*"],
            **claims,
        }
        signer = key or self.keys[kid]
        return jwt.encode(payload, signer, algorithm="RS256", headers={"kid": kid})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Api:
    http: httpx.AsyncClient
    store: Store
    provider: Provider
    settings: Settings


def oidc_settings(tmp_path: Path) -> Settings:
    settings = load_settings(home=tmp_path / ".pssync")
    settings.crm.tenants = [CRM_TENANT]
    settings.oidc = OidcSettings(
        issuer=ISSUER, audience=AUDIENCE, jwks_url=JWKS_URL, jwks_refresh_min_s=60
    )
    return settings


@pytest.fixture
async def api(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Api]:
    url = f"sqlite:///{tmp_path}/auth.db"
    upgrade(url)
    store = Store(make_engine(url))
    provider = Provider(keys={"k1": new_key()})
    settings = oidc_settings(tmp_path)
    authenticator = Authenticator(
        settings,
        jwks_transport=httpx.MockTransport(provider.handler),
        clock=lambda: provider.now,
    )
    app = create_app(settings, store, dev_env.client, authenticator=authenticator)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        yield Api(http, store, provider, settings)
    await authenticator.aclose()


def open_item(store: Store, workflow_id: str, process: str, **context: Any) -> str:
    item = NewExceptionItem(
        id=f"exc-{uuid.uuid4().hex[:10]}",
        workflow_id=workflow_id,
        process=process,
        cause_code="COST_CENTER_INVALID",
        field="cost_center",
        detail="cost center CC-999 is not open in the ERP",
        owner="ops",
        context=context,
    )
    return store.open_exception(item).id


def opp_item(store: Store, opp: str = "006000000000001AAA", **context: Any) -> str:
    return open_item(
        store,
        opportunity_workflow_id(CRM_TENANT, opp),
        PROCESS_OPPORTUNITY_TO_PROJECT,
        **context,
    )


# --------------------------------------------------------------------------- no token


@pytest.mark.parametrize("path", READ_ROUTES)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer", "Bearer nope", "Basic ZGV2OmRldg==", "Bearer a.b.c"]
)
async def test_read_routes_refuse_a_missing_or_invalid_token(
    api: Api, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = await api.http.get(path, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_healthz_needs_no_token(api: Api) -> None:
    response = await api.http.get("/healthz")
    assert response.status_code in (200, 503)  # its checks, not a 401


# --------------------------------------------------------------------------- JWTs


async def test_a_valid_jwt_reads_and_its_claims_name_the_actor(api: Api) -> None:
    item = opp_item(api.store)
    response = await api.http.get(f"/api/exceptions/{item}", headers=bearer(api.provider.token()))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == item


def _expired(p: Provider) -> str:
    return p.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)


BAD_TOKENS: dict[str, Callable[[Provider], str]] = {
    "expired": _expired,
    "wrong audience": lambda p: p.token(aud="someone-else"),
    "wrong issuer": lambda p: p.token(iss="https://evil.test"),
    "wrongly signed": lambda p: p.token(key=new_key()),  # kid k1, another key
    "no expiry": lambda p: jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "roles": ["ops"], "pssync_scopes": ["*"]},
        p.keys["k1"],
        algorithm="RS256",
        headers={"kid": "k1"},
    ),
    "alg none": lambda p: jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60},
        None,
        algorithm="none",
    ),
    "HS256 keyed with the public key": lambda p: _hs256_with_public_key(p),
}


def _hs256_with_public_key(p: Provider) -> str:
    import base64

    header = base64.urlsafe_b64encode(b'{"alg":"HS256","kid":"k1","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(
        json.dumps(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60}
        ).encode()
    ).rstrip(b"=")
    return f"{header.decode()}.{body.decode()}.c2lnbmF0dXJl"


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_a_bad_jwt_is_refused(api: Api, case: str) -> None:
    opp_item(api.store)
    token = BAD_TOKENS[case](api.provider)
    response = await api.http.get("/api/exceptions", headers=bearer(token))
    assert response.status_code == 401, (case, response.text)
    assert "items" not in response.json()


async def test_a_rotated_key_is_fetched_once_and_garbage_key_ids_do_not_flood_the_provider(
    api: Api,
) -> None:
    ok = await api.http.get("/api/exceptions", headers=bearer(api.provider.token()))
    assert ok.status_code == 200 and api.provider.fetches == 1
    api.provider.keys["k2"] = new_key()  # the provider rotates: a new key id signs
    api.provider.now += 61  # past jwks_refresh_min_s since the first fetch
    rotated = await api.http.get("/api/exceptions", headers=bearer(api.provider.token("k2")))
    assert rotated.status_code == 200, rotated.text
    assert api.provider.fetches == 2
    intruder = new_key()
    for n in range(20):  # unknown key ids within the refresh interval: no refetch
        api.provider.keys[f"junk-{n}"] = intruder  # (signs, but is not published)
        forged = api.provider.token(f"junk-{n}")
        del api.provider.keys[f"junk-{n}"]
        refused = await api.http.get("/api/exceptions", headers=bearer(forged))
        assert refused.status_code == 401
    assert api.provider.fetches == 2


async def test_concurrent_tokens_with_unknown_key_ids_fetch_the_keys_once(api: Api) -> None:
    assert (await api.http.get("/api/exceptions", headers=bearer(api.provider.token()))).is_success
    api.provider.now += 61  # a refetch is allowed again: exactly one, however many ask at once
    intruder = new_key()
    forged = []
    for n in range(10):
        api.provider.keys[f"junk-{n}"] = intruder
        forged.append(api.provider.token(f"junk-{n}"))
        del api.provider.keys[f"junk-{n}"]
    answers = await asyncio.gather(
        *(api.http.get("/api/exceptions", headers=bearer(t)) for t in forged)
    )
    assert {a.status_code for a in answers} == {401}
    assert api.provider.fetches == 2


async def test_an_unreachable_provider_is_503_not_401(api: Api) -> None:
    api.provider.down = True
    response = await api.http.get("/api/exceptions", headers=bearer(api.provider.token()))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "identity_provider_unavailable"
    assert "Retry-After" in response.headers


# --------------------------------------------------------------------------- roles and scopes


async def test_a_valid_token_without_a_reader_role_is_403(api: Api) -> None:
    token = api.provider.token(roles=["someone"])
    for path in READ_ROUTES:
        response = await api.http.get(path, headers=bearer(token))
        assert response.status_code == 403, (path, response.text)


async def test_an_actor_without_scopes_reaches_nothing(api: Api) -> None:
    item = opp_item(api.store)
    token = api.provider.token(scopes=[])
    listed = await api.http.get("/api/exceptions", headers=bearer(token))
    assert listed.status_code == 200 and listed.json()["items"] == []
    one = await api.http.get(f"/api/exceptions/{item}", headers=bearer(token))
    assert one.status_code == 404


async def test_out_of_scope_reads_look_exactly_like_missing_ones(api: Api) -> None:
    mine = opp_item(api.store, "006000000000001AAA")
    theirs = opp_item(api.store, "006000000000002AAA")
    token = api.provider.token(scopes=["opportunity:006000000000001AAA"])
    listed = await api.http.get("/api/exceptions", headers=bearer(token))
    assert [i["id"] for i in listed.json()["items"]] == [mine]
    hidden = await api.http.get(f"/api/exceptions/{theirs}", headers=bearer(token))
    missing = await api.http.get("/api/exceptions/exc-nonexistent", headers=bearer(token))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["code"] == missing.json()["error"]["code"]
    assert theirs not in hidden.text.replace(f"{theirs!r}", "")  # only the asked-for id


async def test_a_project_scope_reaches_that_projects_runs_in_every_process(api: Api) -> None:
    """`project:E-1001` reaches the PSA workspace linked to E-1001 (the time pipeline's item)
    and not another workspace's."""
    psa = api.settings.psa.tenant
    api.store.link_xref("E-1001", "project", System.PSA.value, psa, "workspace", "4242")
    ours = open_item(api.store, time_pipeline_workflow_id(psa, "4242"), PROCESS_TIME_TO_INVOICE)
    other = open_item(api.store, time_pipeline_workflow_id(psa, "5151"), PROCESS_TIME_TO_INVOICE)
    token = api.provider.token(roles=["finance_controller"], scopes=["project:E-1001"])
    listed = await api.http.get("/api/exceptions", headers=bearer(token))
    assert [i["id"] for i in listed.json()["items"]] == [ours]
    assert (
        await api.http.get(f"/api/exceptions/{other}", headers=bearer(token))
    ).status_code == 404
    project = await api.http.get("/api/projects/E-1001", headers=bearer(token))
    assert project.status_code == 200, project.text
    elsewhere = api.provider.token(roles=["finance_controller"], scopes=["project:E-9"])
    assert (
        await api.http.get("/api/projects/E-1001", headers=bearer(elsewhere))
    ).status_code == 404
    billing = await api.http.post(
        "/api/projects/5151/billing", json={"period": "2026-10"}, headers=bearer(token)
    )
    assert billing.status_code == 404  # as for a project pssync does not know


async def test_an_out_of_scope_resolution_is_refused_and_the_item_stays_open(api: Api) -> None:
    theirs = opp_item(api.store, "006000000000002AAA")
    token = api.provider.token(roles=["ops"], scopes=["opportunity:006000000000001AAA"])
    response = await api.http.post(
        f"/api/exceptions/{theirs}/resolution", json={"action": "skip"}, headers=bearer(token)
    )
    assert response.status_code == 404
    row = api.store.get_exception(theirs)
    assert row is not None and row.status == "open"


async def test_tenant_scopes_are_case_insensitive(api: Api) -> None:
    item = opp_item(api.store)
    token = api.provider.token(scopes=[f"tenant:{CRM_TENANT.upper()}"])
    response = await api.http.get(f"/api/exceptions/{item}", headers=bearer(token))
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------- static tokens


def test_static_tokens_are_kept_hashed_and_only_in_the_dev_profile(tmp_path: Path) -> None:
    dev = load_settings(home=tmp_path)
    assert all(k.startswith("sha256:") for k in dev.actors)
    assert "dev-ops-token" not in json.dumps(dev.model_dump(mode="json"))
    configured = load_settings(
        home=tmp_path, actors={"s3cret-token": {"name": "x", "roles": ["ops"]}}
    )
    (only,) = configured.actors.values()
    assert only.scopes == []  # no scopes given: none granted
    assert "s3cret-token" not in configured.actors


def test_claims_make_an_actor_and_bad_scopes_are_dropped_not_widened() -> None:
    oidc = OidcSettings(issuer=ISSUER, audience=AUDIENCE, roles_claim="realm_access.roles")
    actor = actor_from_claims(
        {
            "sub": "u-1",
            "email": "d@firm.test",
            "realm_access": {"roles": ["delivery_manager", "ops"]},
            "pssync_scopes": "project:E-1 bogus:thing tenant:",
        },
        oidc,
    )
    assert actor.name == "d@firm.test"
    assert actor.roles == ["delivery_manager", "ops"]
    assert actor.scopes == ["project:E-1"]


@pytest.mark.parametrize("algorithms", [["HS256"], ["none"], [], ["RS256", "HS512"]])
def test_symmetric_or_no_signature_algorithms_cannot_be_configured(algorithms: list[str]) -> None:
    with pytest.raises(ValueError, match="not accepted"):
        OidcSettings(issuer=ISSUER, audience=AUDIENCE, algorithms=algorithms)
