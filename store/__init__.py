"""store: the integration layer's own state — xref (ID map), webhook inbox, exception items,
lineage, outbox, sync state, the time-posting ledger and the audit trail of people's decisions
(with the retention purge of what has aged out) — on SQLite by default and PostgreSQL
in production, migrated by Alembic.

    from store import Store, make_engine, upgrade

    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    store = Store(engine)
    store.link_xref(enterprise_id, "project", "PSA", tenant, "workspace", workspace_id)

May import only ``contracts`` and third-party libraries; never Temporal, connectors, activities
or workflows. Holds no business rules: it records what the workflows decided.
"""

from store.database import (
    current_revision,
    make_engine,
    normalize_url,
    upgrade,
)
from store.errors import AlreadyResolved, NotFound, StoreError, XrefConflict
from store.models import (
    AuditOutcome,
    AuditPage,
    AuditRow,
    DriftGauges,
    DriftRow,
    ExceptionItemRow,
    ExceptionStatus,
    InboxBacklog,
    InboxRow,
    InboxState,
    LineageRow,
    NewAuditEntry,
    NewExceptionItem,
    OutboxRow,
    ReconciliationRunRow,
    SyncStateRow,
    TimePostingRow,
    TimePostingState,
    TimeTotal,
    XrefRow,
    XrefStatus,
    metadata,
)
from store.repository import Store
from store.repository.audit import AUDIT_PAGE_MAX
from store.repository.exceptions import (
    EXCEPTION_PAGE_MAX,
    PROJECT_CONTEXT_KEYS,
    ExceptionFilter,
    ExceptionPage,
)
from store.repository.inbox import InboxEvent, InboxProcessed
from store.repository.retention import RetentionTable

__all__ = [
    "AUDIT_PAGE_MAX",
    "EXCEPTION_PAGE_MAX",
    "PROJECT_CONTEXT_KEYS",
    "AlreadyResolved",
    "AuditOutcome",
    "AuditPage",
    "AuditRow",
    "DriftGauges",
    "DriftRow",
    "ExceptionFilter",
    "ExceptionItemRow",
    "ExceptionPage",
    "ExceptionStatus",
    "InboxBacklog",
    "InboxEvent",
    "InboxProcessed",
    "InboxRow",
    "InboxState",
    "LineageRow",
    "NewAuditEntry",
    "NewExceptionItem",
    "NotFound",
    "OutboxRow",
    "ReconciliationRunRow",
    "RetentionTable",
    "Store",
    "StoreError",
    "SyncStateRow",
    "TimePostingRow",
    "TimePostingState",
    "TimeTotal",
    "XrefConflict",
    "XrefRow",
    "XrefStatus",
    "current_revision",
    "make_engine",
    "metadata",
    "normalize_url",
    "upgrade",
]
