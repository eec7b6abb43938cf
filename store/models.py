"""Tables of the integration layer's own state: xref, inbox, exception items, lineage, outbox,
sync state, the time-posting ledger and the audit trail of people's decisions.

Each table is a sqlmodel class on the store's own metadata (not the global ``SQLModel.metadata``,
which the sandbox twins share), so migrations and model comparisons see only the store's tables.
Every timestamp is stored and returned as a timezone-aware UTC ``datetime``; every decimal (hours,
money) as an exact ``Decimal`` (``ExactDecimal``: NUMERIC on PostgreSQL, scaled integers on SQLite).

Must never: import Temporal, connectors, activities or workflows; do I/O; hold business rules.
Changing a table here needs a new migration in ``store/migrations/versions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    Numeric,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlmodel import Field, SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only auto-increments an INTEGER PRIMARY KEY, so BIGINT is used on every other backend.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that refuses naive values and always comes back timezone-aware in UTC.

    SQLite has no time zones: values are written there as naive UTC so that they sort correctly.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store only accepts aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """A ``Decimal`` of at most ``precision`` digits, ``scale`` of them after the point, that
    round-trips exactly on every backend and comes back at the column's scale (``8`` is read
    back as ``Decimal("8.000000")`` on a scale-6 column, as PostgreSQL's NUMERIC does).

    PostgreSQL: ``NUMERIC(precision, scale)``. SQLite has no decimal type (its NUMERIC is a
    float), so the value is stored there as an integer count of ``10**-scale`` units: exact, and
    ``SUM``/comparisons in SQL stay exact too. Floats are refused, identically on both backends.

    A value with more digits after the point than ``scale`` is refused (``ValueError``) unless
    ``round_excess``: money must come rounded by the caller (``Money.rounded()``), never
    silently here; hours (minutes / 60) are rounded half-up to ``scale``, as PostgreSQL's
    NUMERIC would.
    """

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int, round_excess: bool = False) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale
        self.round_excess = round_excess
        self._quantum = Decimal(1).scaleb(-scale)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def coerce(self, value: Any) -> Decimal | None:
        """``value`` as a ``Decimal`` this column holds exactly; raises ``TypeError`` for a
        float (or any non-number) and ``ValueError`` for a value that does not fit."""
        if value is None:
            return None
        if isinstance(value, bool | float) or not isinstance(value, Decimal | int):
            raise TypeError(
                f"{value!r}: decimal columns take a Decimal or an int, never a float or "
                f"{type(value).__name__}"
            )
        number = Decimal(value)
        if not number.is_finite():
            raise ValueError(f"{value!r}: decimal columns take finite values only")
        if number and number.adjusted() >= self.precision - self.scale:
            raise ValueError(f"{value!r} does not fit NUMERIC({self.precision}, {self.scale})")
        scaled = number.scaleb(self.scale)
        if scaled != scaled.to_integral_value():
            if self.round_excess:
                number = number.quantize(self._quantum, rounding=ROUND_HALF_UP)
                scaled = number.scaleb(self.scale)
            else:
                raise ValueError(
                    f"{value!r} has more than {self.scale} digits after the decimal point; "
                    "round it before storing"
                )
        if abs(scaled) >= 10**self.precision:
            raise ValueError(f"{value!r} does not fit NUMERIC({self.precision}, {self.scale})")
        return number

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        number = self.coerce(value)
        if number is None or dialect.name != "sqlite":
            return number
        return int(number.scaleb(self.scale))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-self.scale)
        return Decimal(value).quantize(self._quantum)


class StoreModel(SQLModel, registry=registry(metadata=metadata)):
    """Base of the store's tables; carries the store's own metadata."""


class XrefStatus(StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"
    CLOSED = "closed"


class ExceptionStatus(StrEnum):
    OPEN = "open"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


class TimePostingState(StrEnum):
    """What pssync last did with a PSA time entry or expense in the ERP."""

    POSTING = "posting"
    """An ERP posting is under way (its idempotency key is in ``posting_key``)."""
    POSTED = "posted"
    EXCEPTION = "exception"
    """Waiting for a person: an exception item (``item_id``) with a cause (``cause``)."""
    REJECTED = "rejected"
    """A person rejected the entry; nothing was posted."""
    REVERSED = "reversed"
    """Unapproved after posting: the reversal is posted, nothing is live in the ERP."""


class XrefRow(StoreModel, table=True):
    """One system's object linked to one enterprise entity (the ID map)."""

    __tablename__ = "xref"
    __table_args__ = (
        UniqueConstraint(
            "system", "tenant", "object_type", "external_id", name="uq_xref_external_key"
        ),
        UniqueConstraint("enterprise_id", "system", "object_type", name="uq_xref_enterprise_key"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    enterprise_id: str
    entity_type: str
    system: str
    tenant: str
    object_type: str
    external_id: str
    status: str = XrefStatus.ACTIVE.value
    remote_version: str | None = None
    last_synced_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class InboxState(StrEnum):
    """Where a verified webhook event stands: ``pending`` until its action has taken effect
    (started, joined or signalled its run), then ``processed``; ``failed`` when the action
    refused it for good (a business refusal), so nothing retries it forever."""

    PENDING = "pending"
    PROCESSED = "processed"
    FAILED = "failed"


class InboxRow(StoreModel, table=True):
    """A webhook event already received; the primary key is the dedupe key.

    It keeps what replaying the event needs: the verified raw body (``body``, the bytes the
    signature covered, as UTF-8 text) and its ``event_type``, so the gateway's relay can run the
    same route action the webhook would have run once Temporal is reachable again. Rows written
    before the inbox kept bodies have ``body`` None and cannot be replayed.
    """

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_state_received", "state", "received_at"),)

    source: str = Field(primary_key=True)
    event_id: str = Field(primary_key=True)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    payload_hash: str
    workflow_id: str | None = None
    event_type: str | None = None
    body: str | None = Field(default=None, sa_type=Text)
    state: str = InboxState.PENDING.value
    """An ``InboxState`` value."""
    attempts: int = 0
    """Replays that did not take effect (Temporal refused or the action failed)."""
    last_error: str | None = Field(default=None, sa_type=Text)
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


@dataclass(frozen=True, slots=True)
class InboxBacklog:
    """Verified events whose action has not taken effect yet, and those refused for good."""

    pending: int
    oldest_pending_at: datetime | None
    """``received_at`` of the oldest pending event (None when there is none)."""
    failed: int


class NewExceptionItem(StoreModel):
    """What a workflow reports when it hits an exception; ``id`` is the caller's idempotency key."""

    id: str = Field(primary_key=True)
    workflow_id: str
    run_id: str | None = None
    process: str
    cause_code: str
    field: str | None = None
    detail: str
    owner: str
    context: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class ExceptionItemRow(NewExceptionItem, table=True):
    """An exception item with its lifecycle: open -> (escalated ->) resolved."""

    __tablename__ = "exception_item"
    __table_args__ = (
        Index("ix_exception_item_status", "status"),
        Index("ix_exception_item_workflow_id", "workflow_id"),
    )

    status: str = ExceptionStatus.OPEN.value
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolution: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class LineageRow(StoreModel, table=True):
    """Which run and activity wrote which fields of an entity, from which source version."""

    __tablename__ = "lineage"
    __table_args__ = (
        Index("ix_lineage_entity", "entity_type", "entity_key"),
        Index("ix_lineage_recorded_at", "recorded_at"),  # the retention purge's scan
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    entity_type: str
    entity_key: str
    fields: list[str] = Field(default_factory=list, sa_type=JSON)
    source_system: str
    source_version: str | None = None
    workflow_id: str
    run_id: str | None = None
    activity: str
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class OutboxRow(StoreModel, table=True):
    """A business event waiting to be published; (event_type, key) makes recording idempotent."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("event_type", "key", name="uq_outbox_event_key"),
        Index("ix_outbox_published_at", "published_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    event_type: str
    key: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SyncStateRow(StoreModel, table=True):
    """A named value an integration keeps between runs: a poll cursor (the end of the last
    window read), or which run currently owns a business key."""

    __tablename__ = "sync_state"

    name: str = Field(primary_key=True)
    value: str
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AuditOutcome(StrEnum):
    """How a person's decision through the gateway ended, as the gateway answered it."""

    ATTEMPTED = "attempted"
    """Recorded before the decision was sent on; a row still so means the gateway stopped
    before it answered (the decision may or may not have taken effect: look at the subject)."""
    ACCEPTED = "accepted"
    REFUSED = "refused"
    """A 4xx: not found, role or scope refused, already decided, the run's validator refused."""
    FAILED = "failed"
    """A 5xx: Temporal unreachable or too slow; a 504 decision may still take effect."""


class NewAuditEntry(StoreModel):
    """A person's decision as the gateway received it, before its outcome is known."""

    actor: str
    actor_roles: list[str] = Field(default_factory=list, sa_type=JSON)
    action: str
    """e.g. ``resolution``, ``change_order.approve``, ``termination.rescind``."""
    subject_kind: str
    """What was decided on: ``exception_item``, ``change_order``, ``termination``, ``project``."""
    subject_id: str
    tenant: str | None = None
    request: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    """What the person sent (bounded in size; never a token or a secret)."""
    request_id: str | None = None
    """The caller's correlation id (``X-Request-ID``), when it sent one."""


class AuditRow(NewAuditEntry, table=True):
    """One decision and its outcome; written ``attempted`` before the decision is sent on and
    completed once the gateway has its answer."""

    __tablename__ = "audit"
    __table_args__ = (
        Index("ix_audit_at", "at"),
        Index("ix_audit_actor", "actor"),
        Index("ix_audit_action", "action"),
        Index("ix_audit_subject", "subject_kind", "subject_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    outcome: str = AuditOutcome.ATTEMPTED.value
    """An ``AuditOutcome`` value."""
    status_code: int | None = None
    """The HTTP status the gateway answered (None while ``attempted``)."""
    result: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    """What came back: the run's result, or the error's code and message (bounded in size)."""
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Audit rows newest first, and the cursor of the next (older) page when there is one."""

    rows: list[AuditRow]
    next_cursor: int | None


HOURS_TYPE = ExactDecimal(18, 6, round_excess=True)
AMOUNT_TYPE = ExactDecimal(18, 2)


class TimePostingRow(StoreModel, table=True):
    """The ledger of the time-to-invoice pipeline: one row per PSA time entry or expense,
    saying what pssync last did with it in the ERP (at which PSA version, under which ERP
    idempotency key) and on which invoice it was billed."""

    __tablename__ = "time_posting"
    __table_args__ = (
        Index("ix_time_posting_project_period", "psa_project_id", "period"),
        Index("ix_time_posting_invoice_ref", "invoice_ref"),
        Index("ix_time_posting_fingerprint", "fingerprint"),
        Index("ix_time_posting_state_kind", "state", "kind"),
    )

    entry_key: str = Field(primary_key=True)
    """``"time:<id>"`` or ``"expense:<id>"`` (``contracts.v1.time_to_invoice.entry_key``)."""
    kind: str
    """``"time"`` or ``"expense"``."""
    entry_id: str
    psa_project_id: str
    erp_project: str | None = None
    worker_id: str | None = None
    work_date: date | None = None
    period: str | None = None
    """The entry's month, ``"YYYY-MM"``."""
    entry_version: str
    """The PSA version of the entry this row describes."""
    state: str
    """A ``TimePostingState`` value."""
    posting_key: str | None = None
    """Idempotency key of the live (or under-way) ERP posting."""
    erp_id: str | None = None
    hours: Decimal = Field(sa_type=HOURS_TYPE)
    """Rounded half-up to 6 places when stored (PSA minutes / 60 rarely terminate)."""
    cost_amount: Decimal | None = Field(default=None, sa_type=AMOUNT_TYPE)
    bill_amount: Decimal | None = Field(default=None, sa_type=AMOUNT_TYPE)
    currency: str | None = None
    cost_center: str | None = None
    """The ERP cost center the posting went to (needed to reverse it)."""
    billable: bool
    cause: str | None = None
    """The exception's cause code while in state ``exception``."""
    item_id: str | None = None
    """The exception item's id while in state ``exception``."""
    invoice_ref: str | None = None
    """The invoice this entry was billed on; None while unbilled."""
    fingerprint: str | None = None
    """What the entry looks like (``duplicate_fingerprint``): same work entered twice shares it."""
    workflow_id: str | None = None
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class InvoiceRow(StoreModel, table=True):
    """An ERP invoice pssync created for a project: what triggered it (a closed period or a
    completed milestone, and when that milestone completed), its total, and whether it was
    voided. ``invoice_ref`` is the invoice's idempotency key (``contracts.v1.time_to_invoice.
    invoice_key``), also carried by the ledger rows billed on it."""

    __tablename__ = "invoice"
    __table_args__ = (Index("ix_invoice_created_at", "created_at"),)

    invoice_ref: str = Field(primary_key=True)
    psa_project_id: str
    enterprise_id: str | None = None
    erp_invoice_id: str | None = None
    trigger: str
    """``period_close`` or ``milestone`` (``BillingTrigger``)."""
    period: str | None = None
    milestone_code: str | None = None
    milestone_completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When the PSA says the milestone completed (None for a period, or when unknown)."""
    total: Decimal | None = Field(default=None, sa_type=AMOUNT_TYPE)
    currency: str | None = None
    entries: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    """When the ERP invoice was created (recorded right after the ERP answered)."""
    voided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


@dataclass(frozen=True, slots=True)
class TimeTotal:
    """Posted time or expense of one project, period, kind and currency."""

    psa_project_id: str
    period: str | None
    kind: str
    currency: str | None
    hours: Decimal
    bill_amount: Decimal
    """Sum of the bill amounts (0 when none has one)."""
    cost_amount: Decimal
    """Sum of the cost amounts (0 when none has one)."""
    entries: int


class ReconciliationRunRow(StoreModel, table=True):
    """One reconciliation run over one domain and scope: what it found and did."""

    __tablename__ = "reconciliation_run"
    __table_args__ = (Index("ix_reconciliation_run_domain_started", "domain", "started_at"),)

    id: str = Field(primary_key=True)
    """The run's workflow id (`reconcile/{domain}/{tenant}/{project|all}/{stamp}`)."""
    domain: str
    tenant: str
    project: str | None = None
    since: date | None = None
    dry_run: bool = False
    requested_by: str
    state: str = "running"
    """running | finished"""
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    by_kind: dict[str, int] = Field(default_factory=dict, sa_type=JSON)
    found: int = 0
    new: int = 0
    repaired: int = 0
    escalated: int = 0
    reported: int = 0
    kept: int = 0
    gone: int = 0
    unrepaired: int = 0
    records: int = 0
    projects: int = 0
    vendor_calls: int = 0
    seconds: float | None = None


class DriftRow(StoreModel, table=True):
    """One difference between the systems, by fingerprint (domain, kind and business keys):
    found again by a later run it is the same row, with its values and state brought up to
    date; a run that no longer finds it closes it (``gone``)."""

    __tablename__ = "drift"
    __table_args__ = (
        Index("ix_drift_domain_state", "domain", "state"),
        Index("ix_drift_scope", "tenant", "project"),
        Index("ix_drift_last_run", "last_run"),
        Index("ix_drift_closed_run", "closed_run"),
    )

    fingerprint: str = Field(primary_key=True)
    domain: str
    kind: str
    tenant: str
    project: str | None = None
    """The PSA project it is about (None for tenant-wide drifts)."""
    period: str | None = None
    keys: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    values: dict[str, str | None] = Field(default_factory=dict, sa_type=JSON)
    owner: str
    disposition: str
    detail: str = Field(default="", sa_type=Text)
    state: str
    """open | repaired | escalated | acknowledged | gone (``contracts.v1.reconciliation``)."""
    repairs: int = 0
    escalations: int = 0
    item_id: str | None = None
    resolved_by: str | None = None
    first_seen: datetime = Field(sa_type=UTCDateTime)
    last_seen: datetime = Field(sa_type=UTCDateTime)
    first_run: str
    last_run: str
    closed_run: str | None = None
    """The run that found it gone."""
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


@dataclass(frozen=True, slots=True)
class DriftGauges:
    """What the gateway's /metrics says about reconciliation, read at scrape time."""

    open: dict[tuple[str, str, str], int]
    """(domain, kind, state) -> drifts still standing (open, repaired, escalated)."""
    oldest: dict[str, datetime]
    """domain -> first_seen of its oldest standing drift."""
    last_success: dict[str, datetime]
    """domain -> when its last run finished."""
