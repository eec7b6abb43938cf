"""Settings of `auth = "oauth2_jwt"` (NetSuite M2M): a process configured for it without its
key, certificate ID or token endpoint stops at start-up naming the variables; production also
wants the client ID set (not the dev default)."""

from __future__ import annotations

import pytest

from contracts.settings import SettingsError, load_settings

NETSUITE = "https://1234567.suitetalk.api.netsuite.com"
TOKEN_URL = f"{NETSUITE}/services/rest/auth/oauth2/v1/token"
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n"


def erp_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    monkeypatch.setenv("PSSYNC_ERP__BASE_URL", NETSUITE)
    monkeypatch.setenv("PSSYNC_ERP__AUTH", "oauth2_jwt")
    for name, value in values.items():
        monkeypatch.setenv(f"PSSYNC_ERP__{name.upper()}", value)


def production_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything else production asks for, so only the ERP's settings are missing."""
    monkeypatch.setenv("PSSYNC_PROFILE", "production")
    monkeypatch.setenv("PSSYNC_WEBHOOK_SECRET_CRM", "whsec_" + "c" * 32)
    monkeypatch.setenv("PSSYNC_WEBHOOK_SECRET_PSA", "whsec_" + "p" * 32)
    monkeypatch.setenv("PSSYNC_OIDC__ISSUER", "https://login.example.com/realms/firm")
    monkeypatch.setenv("PSSYNC_OIDC__AUDIENCE", "pssync")
    monkeypatch.setenv("PSSYNC_TEMPORAL__EMBEDDED", "false")
    monkeypatch.setenv("PSSYNC_PAYLOADS__KEYS", '{"2026-01": "' + "A" * 43 + '="}')


def test_production_refuses_oauth2_jwt_without_key_certificate_or_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    production_env(monkeypatch)
    erp_env(monkeypatch)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    for variable in (
        "PSSYNC_ERP__PRIVATE_KEY or PSSYNC_ERP__PRIVATE_KEY_PATH",
        "PSSYNC_ERP__CERTIFICATE_ID",
        "PSSYNC_ERP__TOKEN_URL",
        "PSSYNC_ERP__CLIENT_ID",
    ):
        assert variable in message
    assert "PSSYNC_WEBHOOK" not in message  # only what is missing is named


def test_production_takes_a_complete_oauth2_jwt_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    production_env(monkeypatch)
    erp_env(
        monkeypatch,
        client_id="9c2f" * 16,
        token_url=TOKEN_URL,
        certificate_id="pvHJZk-siL5h1bm1pqypdH7dblr_ZYCE8gfODaKqAC4",
        private_key_path="/run/secrets/netsuite-m2m.pem",
    )
    erp = load_settings().erp
    assert erp.auth == "oauth2_jwt" and erp.jwt_algorithm == "PS256"
    assert erp.scope == "rest_webservices"


def test_the_dev_profile_refuses_an_incomplete_oauth2_jwt_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    erp_env(monkeypatch, token_url=TOKEN_URL, private_key=PRIVATE_KEY)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "PSSYNC_ERP__CERTIFICATE_ID" in str(refused.value)
    assert "PSSYNC_ERP__CLIENT_ID" not in str(refused.value)  # the dev default is fine here
    # one key, not two
    erp_env(monkeypatch, certificate_id="c", private_key_path="/tmp/key.pem")
    with pytest.raises(SettingsError, match="one of them"):
        load_settings()


def test_rs256_and_unknown_algorithms_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    erp_env(
        monkeypatch,
        token_url=TOKEN_URL,
        private_key=PRIVATE_KEY,
        certificate_id="c",
        jwt_algorithm="RS256",
    )
    with pytest.raises(SettingsError, match="PSSYNC_ERP__JWT_ALGORITHM"):
        load_settings()


def test_the_dev_profile_still_needs_no_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PSSYNC_PROFILE", "PSSYNC_ERP__AUTH", "PSSYNC_ERP__BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    erp = load_settings().erp
    assert erp.auth == "oauth2" and erp.private_key is None and erp.certificate_id is None
