"""One ERP idempotency key per entry and version, whichever path posts it.

The worker-termination saga posts a leaver's approved time (`activities.time_posting`) and the
time-to-invoice pipeline posts the same entries (`activities.time_to_invoice`). The ERP
deduplicates by the key; if the two derived different keys for one entry, it would be posted
twice. Both now call `contracts.v1.posting_keys`.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

import activities.time_posting as termination_path
import activities.time_to_invoice as pipeline
from contracts.money import Money
from contracts.systems import System
from contracts.v1 import TimeEntry
from contracts.v1.posting_keys import entry_posting_key, posting_key
from contracts.v1.time_to_invoice import EntryKind, entry_key
from store import TimePostingRow

entry_ids = st.text(alphabet="0123456789abcdefXYZ-", min_size=1, max_size=20)
versions = st.one_of(st.none(), st.just(""), st.integers(1, 10**6).map(str))


def _entry(entry_id: str, version: str | None) -> TimeEntry:
    return TimeEntry(
        external_id=entry_id,
        project_id="4242",
        worker_id="W-00042",
        role="Consultant",
        date_performed=date(2026, 6, 29),
        minutes=450,
        bill_rate=Money("150.00", "USD"),
        approved=True,
        source_system=System.PSA,
        source_version=version,
    )


def _ledger_row(entry: TimeEntry) -> TimePostingRow:
    """The pipeline's ledger row for a posted entry whose key was not recorded (an old row)."""
    return TimePostingRow(
        entry_key=entry_key(EntryKind.TIME, entry.external_id),
        kind=EntryKind.TIME.value,
        entry_id=entry.external_id,
        psa_project_id=entry.project_id,
        erp_project="eid:01J9Z8Y7X6W5V4T3S2R1Q0P9N8",
        worker_id=entry.worker_id,
        work_date=entry.date_performed,
        period="2026-06",
        entry_version=entry.source_version or "",
        state="posted",
        posting_key=None,
        hours=Decimal("7.5"),
        cost_amount=Decimal("600.00"),
        currency="USD",
        cost_center="CC-100",
        billable=True,
    )


@given(entry_id=entry_ids, version=versions)
def test_termination_path_and_pipeline_derive_the_same_key(
    entry_id: str, version: str | None
) -> None:
    entry = _entry(entry_id, version)
    # The termination saga's posting of the entry ...
    termination = termination_path._posting(
        entry, "eid:01J9Z8Y7X6W5V4T3S2R1Q0P9N8", Money("80.00", "USD"), "CC-100"
    )
    # ... the key the pipeline posts it under (`_facts`: kind, entry id, PSA version) ...
    posted = pipeline.posting_key(EntryKind.TIME, entry.external_id, entry.source_version)
    # ... and the key the pipeline reverses it under, rebuilt from its ledger.
    reversed_under = pipeline._posting_from_row(_ledger_row(entry)).idempotency_key
    assert termination.idempotency_key == posted == reversed_under
    assert posted == entry_posting_key(entry)


def test_the_key_format_is_what_the_erp_already_holds() -> None:
    # Changing it would re-post every entry already in the ERP.
    assert posting_key(EntryKind.TIME, "1234", "3") == "psa-time-1234-v3"
    assert posting_key("expense", "77", None) == "psa-expense-77-v1"
    assert entry_posting_key(_entry("1234", None)) == "psa-time-1234-v1"


def test_both_paths_use_the_one_function() -> None:
    assert pipeline.posting_key is posting_key
    assert not hasattr(termination_path, "posting_key")
