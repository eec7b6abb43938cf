"""The ``Store``: synchronous, race-safe operations on the integration layer's own state.

    store = Store(make_engine(url))
    ok = await asyncio.to_thread(store.inbox_accept, "crm", event_id, payload_hash)

Every method is one short transaction and returns rows detached from any session (plain
sqlmodel objects, safe to read after the call and from other threads). Uniqueness is enforced by
the database (``INSERT ... ON CONFLICT DO NOTHING`` then re-select, conditional ``UPDATE``s), never
by a read-then-write check in Python, so concurrent callers cannot create duplicates.

Must never: import Temporal, call connectors, generate idempotency keys (callers derive them from
business identity), or decide retries (it raises the typed errors of ``store.errors``).
"""

from store.repository._base import StoreBase
from store.repository.audit import AuditOps
from store.repository.exceptions import ExceptionOps
from store.repository.inbox import InboxOps
from store.repository.reconciliation import ReconciliationOps
from store.repository.records import RecordOps
from store.repository.retention import RetentionOps
from store.repository.time_postings import TimePostingOps
from store.repository.xref import XrefOps

__all__ = ["Store"]


class Store(
    XrefOps,
    InboxOps,
    ExceptionOps,
    RecordOps,
    TimePostingOps,
    AuditOps,
    RetentionOps,
    ReconciliationOps,
    StoreBase,
):
    """The store's operations over one engine (SQLite or PostgreSQL), one module per table
    family: `xref`, `inbox`, `exceptions`, `records` (lineage, outbox, sync state),
    `time_postings` and `audit` (people's decisions), plus `retention` (the batched purge of
    aged inbox, lineage, outbox and audit rows); `_base` holds the engine and transaction
    plumbing.

    ``clock`` returns the time written into timestamps; it must return aware datetimes.
    """
