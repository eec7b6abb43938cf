"""The ERP idempotency key of an entry's cost posting — one function for every path that posts.

    posting_key(EntryKind.TIME, "1234", "3")      # 'psa-time-1234-v3'
    entry_posting_key(time_entry)                 # the same, from the canonical entry

The time-to-invoice pipeline and the worker-termination saga (which makes sure approved time up
to the last day is posted before payroll) both post approved PSA time to the ERP. The ERP
deduplicates by this key, so the two paths must derive the *same* key for the same entry and
version, or the ledger gets the hours twice. Business identity only (kind, entry id, version),
never a value generated at posting time. The format is what the ERP already holds: changing it
would re-post every entry. Pure; no I/O.
"""

from __future__ import annotations

from contracts.v1.models import ExpenseEntry, TimeEntry
from contracts.v1.time_to_invoice import EntryKind


def posting_key(kind: EntryKind | str, entry_id: str, version: str | None) -> str:
    """`psa-<kind>-<entry id>-v<version>`; an entry without a version is version 1."""
    return f"psa-{EntryKind(kind).value}-{entry_id}-v{version or '1'}"


def entry_posting_key(entry: TimeEntry | ExpenseEntry) -> str:
    """The posting key of a canonical PSA time or expense entry at its current version."""
    kind = EntryKind.TIME if isinstance(entry, TimeEntry) else EntryKind.EXPENSE
    return posting_key(kind, entry.external_id, entry.source_version)
