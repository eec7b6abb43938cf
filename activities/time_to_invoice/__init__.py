"""Activities of the time-to-invoice pipeline: reconcile a batch of PSA entries with the ERP,
reject an entry back to the PSA, bill a project, and sweep the PSA for what webhooks missed.

    acts = TimeToInvoiceActivities(psa, erp, hcm, store, client=client)
    result = await acts.process_batch(ProcessBatch(...))     # ERP queue

`process_batch` reads each entry's *current* state in the PSA and makes the ERP agree with it, so
a repeated, late or out-of-order event is harmless:

- approved, never posted -> validate (`check_entry`) -> post, or open an exception item;
- approved, posted at this version -> nothing (`unchanged`);
- approved, posted at another version (edited, re-approved) -> reverse that posting, post anew;
- no longer approved but posted -> reverse the posting (never an edit of a posted record).

Exactly once: each posting's ERP idempotency key comes from the entry's id and version (a
reversal's from the posting it reverses), so a retried batch posts nothing twice. Before the ERP
call the ledger (`time_posting` in the store) records the key as `posting`; a crash after the ERP
accepted it is repaired by the retry, which posts the same key again (an upsert) or reverses it.

Master data (HCM workers, rate cards, cost centers, ERP projects and cost rates) is cached for a
few seconds per worker process: 200 entries usually share a handful of workers and one project.
A person's retry (`fresh`) reads it afresh.

The package, by seam: `batch` (`process_batch` and its posting/reversal steps,
`reject_entry`), `billing` (invoices), `sweep` (the PSA sweep, `signal_pipeline`, the sweep's
Schedule), `caches` (master data and the ports every seam shares).
"""

from __future__ import annotations

from temporalio.client import Client

from activities.time_to_invoice._support import HEARTBEAT_EVERY_S
from activities.time_to_invoice.batch import (
    ENTRY_OUTCOMES,
    POSTING_LATENCY,
    ResolvedRow,
    _BatchMixin,
)
from activities.time_to_invoice.batch import _posting_from_row as _posting_from_row
from activities.time_to_invoice.billing import (
    InvoicePlan,
    InvoiceRef,
    PrepareInvoice,
    VoidInvoice,
    _BillingMixin,
)
from activities.time_to_invoice.caches import CACHE_TTL_S, HOURS, _TtlCache
from activities.time_to_invoice.sweep import (
    SWEEP_PAGE,
    _SweepMixin,
    ensure_time_sweep_schedule,
    signal_pipeline,
)
from connectors.erp import ErpPort
from connectors.hcm import HcmPort
from connectors.psa import PsaPort
from contracts.v1.posting_keys import posting_key
from contracts.v1.time_to_invoice import TimePipelineInput, entry_key
from store import Store


class TimeToInvoiceActivities(_BatchMixin, _BillingMixin, _SweepMixin):
    """Everything the pipeline does outside the workflow. `process_batch`, `create_invoice`
    and `void_invoice` are ERP-bound (the ERP task queue); the rest run on the main queue."""

    def __init__(
        self,
        psa: PsaPort,
        erp: ErpPort,
        hcm: HcmPort,
        store: Store,
        *,
        client: Client | None = None,
        cache_ttl_s: float = CACHE_TTL_S,
        pipeline_defaults: TimePipelineInput | None = None,
    ) -> None:
        self.psa = psa
        self.erp = erp
        self.hcm = hcm
        self.store = store
        self.client = client
        self.pipeline_defaults = pipeline_defaults
        self._workers = _TtlCache(cache_ttl_s)
        self._projects = _TtlCache(cache_ttl_s)
        self._rate_cards = _TtlCache(cache_ttl_s)
        self._cost_centers = _TtlCache(cache_ttl_s)
        self._cost_rates = _TtlCache(cache_ttl_s)


__all__ = [
    "CACHE_TTL_S",
    "ENTRY_OUTCOMES",
    "HEARTBEAT_EVERY_S",
    "HOURS",
    "POSTING_LATENCY",
    "SWEEP_PAGE",
    "InvoicePlan",
    "InvoiceRef",
    "PrepareInvoice",
    "ResolvedRow",
    "TimeToInvoiceActivities",
    "VoidInvoice",
    "ensure_time_sweep_schedule",
    "entry_key",
    "posting_key",
    "signal_pipeline",
]
