"""Pure bookkeeping of the `TimeToInvoice` workflow: pending entries restored from and compacted
into the continue-as-new carry, the status and details it reports, the exception items and
billing outcomes it builds. Deterministic: no I/O and no commands."""

from __future__ import annotations

from collections.abc import Iterable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.time_to_invoice import InvoiceRef
    from contracts.v1.processes import ExceptionResolution, OpenException, ResolutionAction
    from contracts.v1.time_to_invoice import (
        ALLOWED_ACTIONS,
        CORRECTABLE,
        BatchEntry,
        BatchResult,
        BillingOutcome,
        BillingRequest,
        EntryOutcomeKind,
        OpenTimeItem,
        PipelineCarry,
        PipelineStatus,
        TimeExceptionCause,
        TimeResolutionResult,
        compact_ref,
        expand_ref,
    )

MAX_CARRIED_REFS = 15_000
"""Plain pending entries a continuation carries (about 70 bytes each, well under the 2 MB
payload limit). Beyond it, approved entries are left to the sweep, which finds every approved
entry the ledger has not posted; the count is in the `deferred_to_sweep` counter."""


# --------------------------------------------------------------------------- pending entries


def pending_from_carry(carry: PipelineCarry) -> dict[str, BatchEntry]:
    """The pending entries a continuation starts with: those carried in full, then the
    compact refs (an entry carried in full wins)."""
    pending: dict[str, BatchEntry] = {e.ref.key: e for e in carry.pending}
    for text in carry.pending_refs:
        ref = expand_ref(text)
        pending.setdefault(ref.key, BatchEntry(ref=ref))
    return pending


def compact_pending(
    pending: dict[str, BatchEntry], counters: dict[str, int]
) -> tuple[list[BatchEntry], list[str], dict[str, int]]:
    """Pending entries bounded for the carry: entries with a person's retry in full, the rest
    as compact refs (up to `MAX_CARRIED_REFS`; the sweep finds any beyond), and the counters
    with the entries left to the sweep."""
    full = [e for e in pending.values() if e.item_id or e.corrections or e.fresh]
    plain = [compact_ref(e.ref) for e in pending.values() if e not in full]
    counters = dict(counters)
    if len(plain) > MAX_CARRIED_REFS:
        deferred = len(plain) - MAX_CARRIED_REFS
        counters["deferred_to_sweep"] = counters.get("deferred_to_sweep", 0) + deferred
        workflow.logger.warning("%d pending entries left to the sweep", deferred)
        plain = plain[-MAX_CARRIED_REFS:]
    return full, plain, counters


# --------------------------------------------------------------------------- exception items


def entry_item(item: OpenTimeItem) -> OpenException:
    """The desk's view of an entry's exception item."""
    return OpenException(
        item_id=item.item_id,
        cause_code=item.cause.value,
        field=item.field,
        detail=item.detail,
        opened_at=item.opened_at,
        escalated=item.escalated,
        allowed_actions=list(ALLOWED_ACTIONS),
        correctable=sorted(CORRECTABLE[item.cause]),
        owner="finance_controller",
    )


def held_billing_item(item_id: str, held: BillingRequest) -> OpenException:
    """The desk's view of a failed billing carried by a run from before the desk."""
    return OpenException(
        item_id=item_id,
        cause_code=TimeExceptionCause.BILLING_FAILED.value,
        field="invoice",
        detail=f"billing {held.key} failed",
        opened_at=workflow.now(),
        allowed_actions=[ResolutionAction.RETRY, ResolutionAction.ABANDON],
        owner="finance_controller",
    )


def opened_items(result: BatchResult, by_key: dict[str, BatchEntry]) -> list[OpenTimeItem]:
    """The exception items a batch opened, with what the pipeline needs to retry them."""
    return [
        OpenTimeItem(
            item_id=exc.item_id,
            key=exc.key,
            ref=by_key[exc.key].ref,
            cause=exc.cause,
            field=exc.field,
            detail=exc.detail,
            opened_at=workflow.now(),
        )
        for exc in result.exceptions
    ]


def superseded_resolution(item: OpenTimeItem, outcome: EntryOutcomeKind) -> ExceptionResolution:
    """How pssync closes an item whose entry changed in the PSA and was reconciled anew."""
    return ExceptionResolution(
        item_id=item.item_id,
        action=ResolutionAction.SKIP,
        actor="pssync",
        note=f"superseded: the entry was {outcome.value} after a change in the PSA",
    )


def queued(item_id: str) -> TimeResolutionResult:
    """The answer to a person whose retry waits for the ERP."""
    return TimeResolutionResult(
        item_id=item_id,
        action=ResolutionAction.RETRY,
        outcome=EntryOutcomeKind.QUEUED,
        detail="queued: the ERP is not answering now; the entry posts when it does",
    )


# --------------------------------------------------------------------------- reporting


def build_status(
    psa_project_id: str,
    *,
    pending: int,
    in_flight: int,
    counters: dict[str, int],
    items: dict[str, OpenTimeItem],
    desk_open: Iterable[OpenException],
    billed: list[BillingOutcome],
) -> PipelineStatus:
    """The `status` query's answer: open entry items as the desk has them (escalated or not)."""
    open_items = [
        items[i.item_id].model_copy(update={"escalated": i.escalated})
        for i in desk_open
        if i.item_id in items
    ]
    return PipelineStatus(
        psa_project_id=psa_project_id,
        pending=pending,
        in_flight=in_flight,
        counters=dict(counters),
        open_items=open_items,
        billed=list(billed),
    )


def details_text(
    headline: str | None, *, pending: int, in_flight: int, counters: dict[str, int], open_items: int
) -> str:
    """The run's current details, as the UI shows them."""
    c = counters
    return (
        (f"**{headline}** — " if headline else "") + f"pending {pending}, in flight {in_flight}; "
        f"posted {c.get('posted', 0) + c.get('reposted', 0)}, "
        f"reversed {c.get('reversed', 0)}, open items {open_items}, "
        f"invoices {c.get('invoices', 0)}"
    )


def billing_outcome(ref: InvoiceRef, status: str, **extra: str) -> BillingOutcome:
    invoice = ref.plan.invoice
    assert invoice is not None
    return BillingOutcome(
        key=ref.plan.request.key,
        status=status,
        invoice_key=invoice.idempotency_key,
        invoice_erp_id=ref.invoice_erp_id,
        total=invoice.total,
        entries=len(ref.plan.entry_keys),
        **extra,
    )


def cause_text(err: ActivityError) -> str:
    cause = err.cause
    return str(cause.message if isinstance(cause, ApplicationError) else cause or err)
