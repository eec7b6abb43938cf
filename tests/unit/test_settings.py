"""Settings: defaults are the embedded profile; bad or missing settings fail naming them."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.settings import SettingsError, load_settings


def test_defaults_are_the_embedded_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PSSYNC_DATABASE_URL", raising=False)
    settings = load_settings()
    assert settings.temporal.embedded
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.erp.base_url.endswith("/erp")


def test_environment_overrides_nested_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSSYNC_ERP__BASE_URL", "https://123456.suitetalk.api.netsuite.com")
    monkeypatch.setenv("PSSYNC_ERP__MAX_CONCURRENCY", "15")
    settings = load_settings()
    assert settings.erp.base_url == "https://123456.suitetalk.api.netsuite.com"
    assert settings.erp.max_concurrency == 15


def test_malformed_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSSYNC_GATEWAY_PORT", "eighty")
    monkeypatch.setenv("PSSYNC_ERP__MAX_CONCURRENCY", "0")
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert "PSSYNC_GATEWAY_PORT" in str(exc.value)
    assert "PSSYNC_ERP__MAX_CONCURRENCY" in str(exc.value)


def test_production_refuses_dev_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSSYNC_PROFILE", "production")
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert "PSSYNC_WEBHOOK_SECRET_CRM must be set in production" in str(exc.value)


def test_toml_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "pssync.toml"
    config.write_text('gateway_port = 9001\n[erp]\nbase_url = "https://erp.example"\n')
    monkeypatch.setenv("PSSYNC_CONFIG", str(config))
    settings = load_settings()
    assert settings.gateway_port == 9001
    assert settings.erp.base_url == "https://erp.example"


def test_known_tenants_are_the_tenant_and_the_list_case_folded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PSSYNC_CRM__BASE_URL", "https://acme.my.salesforce.com")
    monkeypatch.setenv("PSSYNC_CRM__TENANT", "Acme")
    monkeypatch.setenv("PSSYNC_CRM__TENANTS", '["ACME-EMEA", "globex"]')
    crm = load_settings().crm
    assert crm.tenant == "Acme"  # as configured: connectors may need its spelling
    assert crm.known_tenants == {"acme", "acme-emea", "globex"}
    assert crm.known_tenant("ACME") == "acme"
    assert crm.known_tenant("Globex") == "globex"
    assert crm.known_tenant("initech") is None
    assert crm.known_tenant("acme\x00") is None
    assert load_settings().psa.known_tenants == {"default"}


def test_a_malformed_tenant_stops_the_process_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSSYNC_HCM__BASE_URL", "https://wd5-services1.myworkday.com")
    monkeypatch.setenv("PSSYNC_HCM__TENANTS", '["ok", "bad tenant"]')
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert "PSSYNC_HCM" in str(exc.value) and "bad tenant" in str(exc.value)
