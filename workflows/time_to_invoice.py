"""`TimeToInvoice`: one long-lived run per PSA project posts its approved time and expense to
the ERP in batches, holds invalid entries as exception items for people, and bills the project.

    signal  entries_changed(EntriesChanged)   webhooks, the sweep
    signal  billing_requested(BillingRequest) a completed milestone, a closed T&M period
    update  resolve_exception(ExceptionResolution) -> TimeResolutionResult
    query   status() -> PipelineStatus

No workflow per entry: entries wait in `pending` (keyed by entry: a burst for one entry is one
reconciliation), go in batches of up to `batch_size`, `max_batches_in_flight` at most, to the
ERP-bound `time.process_batch`: at once if none is out, else when full, when the one out is back
or after `linger_ms` (group commit). An entry is never in two batches at once. A failing ERP
(outage, 429s) only slows the batches out, which retry without limit; new entries wait in
`pending` and drain when it returns. An exception item does not hold back its batch's others.

A person's `retry` / `retry_with_data` puts the entry back into `pending` (master data read
afresh, corrections applied) and the update returns what happened to it; `reject` unapproves it
in the PSA with the reason. Billing waits for the entries in hand to be posted, then creates the
ERP invoice and marks the entries invoiced in the PSA; if the PSA refuses, the invoice is voided
(compensation) and an exception item asks a person to retry.

History stays small: the run continues as new when the server suggests it, carrying pending
entries, open items and counters.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.workflow import ActivityCancellationType

from workflows._desk import ExceptionDesk
from workflows._time_to_invoice_state import MAX_CARRIED_REFS as MAX_CARRIED_REFS
from workflows._time_to_invoice_state import (
    billing_outcome,
    build_status,
    cause_text,
    compact_pending,
    details_text,
    entry_item,
    held_billing_item,
    opened_items,
    pending_from_carry,
    queued,
    superseded_resolution,
)

with workflow.unsafe.imports_passed_through():
    from activities._errors import error_evidence
    from activities.time_to_invoice import (
        InvoicePlan,
        InvoiceRef,
        PrepareInvoice,
        ResolvedRow,
        VoidInvoice,
    )
    from contracts.naming import erp_task_queue
    from contracts.v1.processes import (
        RESOLVE_EXCEPTION_UPDATE,
        ExceptionResolution,
        ResolutionAction,
    )
    from contracts.v1.time_to_invoice import (
        BILLING_SIGNAL,
        ENTRIES_CHANGED_SIGNAL,
        PROCESS_TIME_TO_INVOICE,
        STATUS_QUERY,
        TIME_RESOLVER_ROLES,
        TIME_SWEEP,
        TIME_TO_INVOICE,
        BatchEntry,
        BatchResult,
        BillingOutcome,
        BillingRequest,
        EntriesChanged,
        EntryOutcomeKind,
        OpenTimeItem,
        PipelineCarry,
        PipelineStatus,
        ProcessBatch,
        RejectEntry,
        SweepInput,
        SweepResult,
        TimeExceptionCause,
        TimePipelineInput,
        TimeResolutionResult,
    )
    from workflows._common import BUSINESS_PROCESS

# Transient failures retry without limit (an ERP outage must not fail the pipeline), but come
# back quickly once the ERP does: the longest wait between attempts is 10 s.
PIPELINE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=["BusinessRuleViolation", "AuthError", "NotFoundError"],
)
BATCH_TIMEOUT = timedelta(minutes=10)
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
STEP_TIMEOUT = timedelta(minutes=2)
FAILED_BATCH_BACKOFF = timedelta(seconds=60)
PATCH_DISPATCH_WHEN_IDLE = "time-dispatch-when-idle"
"""Part-full batches go when none is out; before, a `linger_ms` timer (Temporal's: >= ~1 s)."""
REFUSALS = frozenset({"BusinessRuleViolation", "NotFoundError"})
"""Failure types that mean the PSA refused to mark an invoice (void it), as opposed to not
answering (keep it and wait)."""


@workflow.defn(name=TIME_TO_INVOICE)
class TimeToInvoiceWorkflow:
    @workflow.init
    def __init__(self, request: TimePipelineInput) -> None:
        carry = request.carry or PipelineCarry()
        self._input = request
        self._erp_queue = erp_task_queue(workflow.info().task_queue)
        self._pending: dict[str, BatchEntry] = pending_from_carry(carry)
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._items: dict[str, OpenTimeItem] = {i.item_id: i for i in carry.open_items}
        """Entry items' data (what to retry); their lifecycle is the desk's."""
        self._billing: list[BillingRequest] = list(carry.billing)
        self._billing_held: dict[str, BillingRequest] = dict(carry.billing_held)
        self._marks_held: dict[str, InvoiceRef] = {
            k: InvoiceRef.model_validate(v) for k, v in carry.marks_held.items()
        }
        self._remarks: list[tuple[str, InvoiceRef]] = [
            (k, InvoiceRef.model_validate(v)) for k, v in carry.remarks.items()
        ]
        """Re-marks a person asked for (item id -> the marking), done by the main loop."""
        self._billing_attempts: dict[str, int] = dict(carry.billing_attempts)
        self._billed: list[BillingOutcome] = list(carry.billed)
        self._counters: dict[str, int] = dict(carry.counters)
        self._results: dict[str, TimeResolutionResult | None] = {}
        self._tick = 0
        self._draining = False
        self._desk = ExceptionDesk(
            process=PROCESS_TIME_TO_INVOICE,
            roles=TIME_RESOLVER_ROLES,
            escalate_to="finance_controller",
            escalation_after=timedelta(seconds=request.escalation_after_s),
            activity_timeout=STEP_TIMEOUT,
            retry_policy=PIPELINE_RETRY,
            state=carry.desk,
        )
        if carry.desk is None:  # carried by a run from before the desk
            for item in carry.open_items:
                self._desk.adopt(entry_item(item), flag=False)
            for item_id, held in carry.billing_held.items():
                self._desk.adopt(held_billing_item(item_id, held), flag=False)

    # ------------------------------------------------------------------ messages

    @workflow.signal(name=ENTRIES_CHANGED_SIGNAL)
    def entries_changed(self, change: EntriesChanged) -> None:
        for ref in change.refs:
            held = self._pending.get(ref.key)
            if held is not None and held.item_id is not None:
                # Keep a person's retry (and its corrections); read the entry as it is now.
                self._pending[ref.key] = held.model_copy(update={"ref": ref})
            else:
                self._pending[ref.key] = BatchEntry(ref=ref)
        self._bump("events", len(change.refs))

    @workflow.signal(name=BILLING_SIGNAL)
    def billing_requested(self, request: BillingRequest) -> None:
        waiting = {b.key for b in self._billing} | {b.key for b in self._billing_held.values()}
        waiting |= {r.plan.request.key for r in self._marks_held.values()}
        waiting |= {b.key for b in self._billed if b.status == "not_applicable"}
        if request.key not in waiting:
            self._billing.append(request)
        self._tick += 1

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> PipelineStatus:
        return build_status(
            self._input.psa_project_id,
            pending=len(self._pending),
            in_flight=len(self._in_flight),
            counters=self._counters,
            items=self._items,
            desk_open=self._desk.open_items,
            billed=self._billed,
        )

    @workflow.update(name=RESOLVE_EXCEPTION_UPDATE)
    async def resolve_exception(self, resolution: ExceptionResolution) -> TimeResolutionResult:
        item_id = resolution.item_id
        if item_id in self._billing_held or item_id in self._marks_held:
            return await self._resolve_billing(resolution)
        # Claimed before any await: of two resolutions validated together, one wins and the
        # other is refused (AlreadyResolved) instead of failing the workflow task.
        claimed = self._desk.claim(resolution)
        item = self._items.pop(item_id, None)
        if item is None:  # not an entry item (nothing else is resolved here)
            self._desk.release(claimed)
            raise ApplicationError(
                f"exception item {item_id} is not open in this run", type="NoOpenException"
            )
        if resolution.action is ResolutionAction.REJECT:
            try:
                rejected: ResolvedRow = await workflow.execute_activity(
                    "time.reject_entry",
                    RejectEntry(
                        psa_project_id=self._input.psa_project_id,
                        ref=item.ref,
                        item_id=item_id,
                        reason=resolution.note or f"{item.cause.value}: {item.detail}",
                    ),
                    start_to_close_timeout=STEP_TIMEOUT,
                    retry_policy=PIPELINE_RETRY,
                    result_type=ResolvedRow,
                    summary=f"reject {item.key} back to the PSA",
                )
            except ActivityError as err:
                # The item stays open: the person learns why and can choose again.
                self._desk.release(claimed)
                self._items[item_id] = item
                raise ApplicationError(
                    f"the PSA refused to take {item.key} back: {cause_text(err)}",
                    type="RejectRefused",
                ) from err
            await self._desk.record(resolution)
            self._bump(EntryOutcomeKind.REJECTED.value)
            self._desk.flag()
            return TimeResolutionResult(
                item_id=item_id,
                action=resolution.action,
                outcome=rejected.outcome,
                detail=rejected.detail,
            )
        self._tick += 1
        await self._desk.record(resolution)
        corrections = (
            resolution.corrections if resolution.action is ResolutionAction.RETRY_WITH_DATA else {}
        )
        self._results[item_id] = None
        self._pending[item.key] = BatchEntry(
            ref=item.ref, corrections=dict(corrections), fresh=True, item_id=item_id
        )
        self._tick += 1
        await workflow.wait_condition(
            lambda: self._results.get(item_id) is not None or self._draining
        )
        result = self._results.pop(item_id, None) or queued(item_id)
        return result.model_copy(update={"action": resolution.action})

    @resolve_exception.validator
    def _validate_resolution(self, resolution: ExceptionResolution) -> None:
        self._desk.validate(resolution)

    # ------------------------------------------------------------------ the run

    @workflow.run
    async def run(self, request: TimePipelineInput) -> PipelineStatus:
        workflow.upsert_search_attributes([BUSINESS_PROCESS.value_set(PROCESS_TIME_TO_INVOICE)])
        self._desk.flag()
        while True:
            self._details()
            if self._should_continue_as_new():
                await self._drain_and_continue_as_new()
            if self._dispatch():
                continue
            if self._remarks and not self._tasks:
                item_id, ref = self._remarks.pop(0)
                await self._mark(ref, item_id=item_id)
                continue
            if self._billing and not self._pending and not self._tasks:
                await self._bill(self._billing.pop(0))
                continue
            if self._ready() and len(self._tasks) < request.max_batches_in_flight:
                if not self._tasks and workflow.patched(PATCH_DISPATCH_WHEN_IDLE):
                    # None at the ERP: waiting would only add latency (what arrives meanwhile
                    # forms the next batch).
                    self._dispatch(force=True)
                    continue
                # One is out: a part-full batch waits for it, to fill, or `linger_ms`.
                idle = workflow.patched(PATCH_DISPATCH_WHEN_IDLE)
                try:
                    await workflow.wait_condition(
                        functools.partial(self._may_go, idle),
                        timeout=timedelta(milliseconds=request.linger_ms),
                    )
                except TimeoutError:
                    pass
                self._dispatch(force=True)
                continue
            if self._idle():
                try:
                    await workflow.wait_condition(
                        lambda: not self._idle(), timeout=timedelta(seconds=request.idle_close_s)
                    )
                except TimeoutError:
                    if self._idle() and workflow.all_handlers_finished():
                        return self.status()
                continue
            await self._next_change()

    async def _drain_and_continue_as_new(self) -> NoReturn:
        """Continue as new with a bounded carry, also while the ERP is down.

        Nothing new goes out. Batches in flight get `drain_grace_s` to finish, then are
        cancelled (each is idempotent by its posting keys and the ledger, so the continuation
        sends its entries again safely). People waiting on a retry are answered `queued`."""
        self._draining = True
        self._details("continuing as new: draining")
        if self._tasks:
            try:
                await workflow.wait_condition(
                    lambda: not self._tasks,
                    timeout=timedelta(seconds=self._input.drain_grace_s),
                )
            except TimeoutError:
                for task in list(self._tasks):
                    task.cancel()
                await workflow.wait_condition(lambda: not self._tasks)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(self._carry())

    async def _next_change(self) -> None:
        """Wait for a signal, an update or a batch; escalate items left open too long."""
        seen = self._tick
        due = self._desk.next_escalation()
        if due is None:
            await workflow.wait_condition(lambda: self._tick != seen)
            return
        wait = max(due - workflow.now(), timedelta(seconds=1))
        try:
            await workflow.wait_condition(lambda: self._tick != seen, timeout=wait)
        except TimeoutError:
            await self._desk.escalate_due()
            self._bump("escalations")

    def _ready(self) -> list[str]:
        return [k for k in self._pending if k not in self._in_flight]

    def _may_go(self, when_idle: bool) -> bool:
        """A part-full batch may go: full, a person waits on a retry, or (patched) none out."""
        full = len(self._ready()) >= self._input.batch_size
        return full or self._urgent() or (when_idle and not self._tasks)

    def _urgent(self) -> bool:
        """A person is waiting on a retry: do not linger."""
        return any(self._pending[k].item_id for k in self._ready())

    def _idle(self) -> bool:
        return not (
            self._pending or self._tasks or self._billing or self._remarks or self._desk.has_open
        )

    def _dispatch(self, *, force: bool = False) -> bool:
        """Start every batch that is full (or, with `force`, any batch) while slots are free."""
        started = False
        size = self._input.batch_size
        while not self._draining and len(self._tasks) < self._input.max_batches_in_flight:
            ready = self._ready()
            if not ready or (len(ready) < size and not force and not self._urgent()):
                break
            keys = ready[:size]
            entries = [self._pending.pop(k) for k in keys]
            self._in_flight.update(keys)
            task = asyncio.create_task(self._run_batch(entries))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started = True
        return started

    async def _run_batch(self, entries: list[BatchEntry]) -> None:
        seq = self._bump("batches")
        batch_id = f"b{seq}"
        keys = [e.ref.key for e in entries]
        try:
            result: BatchResult = await workflow.execute_activity(
                "time.process_batch",
                ProcessBatch(
                    psa_tenant=self._input.psa_tenant,
                    psa_project_id=self._input.psa_project_id,
                    batch_id=batch_id,
                    entries=entries,
                ),
                task_queue=self._erp_queue,
                start_to_close_timeout=BATCH_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=PIPELINE_RETRY,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                result_type=BatchResult,
                summary=f"batch {batch_id}: {len(entries)} entries",
            )
        except asyncio.CancelledError:
            # Cancelled to continue as new (the ERP kept it too long): carry the entries.
            self._requeue(entries, keys)
            return
        except ActivityError as err:
            if self._draining or isinstance(err.cause, CancelledError):
                self._requeue(entries, keys)
                return
            # Only a non-retryable failure lands here (e.g. the ERP refused our credentials):
            # keep the entries and try again later rather than lose them.
            workflow.logger.warning("batch %s failed: %s; retrying later", batch_id, err)
            self._bump("batches_failed")
            self._in_flight.difference_update(keys)
            try:
                await workflow.sleep(FAILED_BATCH_BACKOFF)
            finally:
                for e in entries:
                    self._pending.setdefault(e.ref.key, e)
                self._tick += 1
            return
        await self._apply_result(entries, keys, result)

    async def _apply_result(
        self, entries: list[BatchEntry], keys: list[str], result: BatchResult
    ) -> None:
        """Take in a finished batch: count its outcomes, hold its new exception items, close
        the items its entries' changes superseded, answer the people waiting on a retry."""
        by_key = {e.ref.key: e for e in entries}
        for outcome in result.outcomes.values():
            self._bump(outcome.value)
        for item in opened_items(result, by_key):
            self._items[item.item_id] = item
            self._desk.adopt(entry_item(item), flag=False)
        new_items = {exc.key: exc.item_id for exc in result.exceptions}
        retried = {e.item_id for e in entries if e.item_id}
        superseded = [
            item
            for item in self._items.values()
            if item.key in result.outcomes
            and item.item_id != new_items.get(item.key)
            and item.item_id not in retried
            and self._desk.is_open(item.item_id)
        ]
        for item in superseded:
            # The entry changed in the PSA and was reconciled anew: the old item is moot.
            del self._items[item.item_id]
            await self._desk.close(
                item.item_id,
                actor="pssync",
                resolution=superseded_resolution(item, result.outcomes[item.key]).model_dump(
                    mode="json"
                ),
            )
        for entry in entries:
            if entry.item_id is not None and entry.item_id in self._results:
                key = entry.ref.key
                self._results[entry.item_id] = TimeResolutionResult(
                    item_id=entry.item_id,
                    action=ResolutionAction.RETRY,
                    outcome=result.outcomes.get(key, EntryOutcomeKind.NOT_FOUND),
                    new_item_id=new_items.get(key),
                )
        self._in_flight.difference_update(keys)
        self._desk.flag()
        self._tick += 1

    def _requeue(self, entries: list[BatchEntry], keys: list[str]) -> None:
        """A batch that did not finish: its entries wait again (a newer event for the same
        entry, already pending, wins); a person waiting on one of them hears `queued`."""
        self._in_flight.difference_update(keys)
        for e in entries:
            self._pending.setdefault(e.ref.key, e)
            if e.item_id is not None and self._results.get(e.item_id, 0) is None:
                self._results[e.item_id] = queued(e.item_id)
        self._bump("batches_requeued")

    # ------------------------------------------------------------------ billing

    async def _bill(self, request: BillingRequest) -> None:
        try:
            await self._bill_once(request)
        except ActivityError as err:
            # E.g. the milestone does not exist, or the ERP refused the invoice: a person
            # decides (retry once fixed, or abandon); the pipeline goes on posting.
            attempt = self._billing_attempts.get(request.key, 0)
            detail = f"billing {request.key} failed: {cause_text(err)}"
            item_id = f"tti.{self._input.psa_project_id}.billing-{request.key}.f{attempt}"
            self._billing_attempts[request.key] = attempt + 1
            await self._open_item(item_id, TimeExceptionCause.BILLING_FAILED, detail, request, err)
            self._billing_held[item_id] = request
            self._billed.append(BillingOutcome(key=request.key, status="failed", detail=detail))
            self._desk.flag()

    async def _bill_once(self, request: BillingRequest) -> None:
        attempt = self._billing_attempts.get(request.key, 0)
        project = self._input.psa_project_id
        plan: InvoicePlan = await workflow.execute_activity(
            "time.prepare_invoice",
            PrepareInvoice(psa_project_id=project, request=request, attempt=attempt),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=PIPELINE_RETRY,
            result_type=InvoicePlan,
            summary=f"what to bill for {request.key}",
        )
        if plan.status != "ready" or plan.invoice is None:
            self._billed.append(
                BillingOutcome(key=request.key, status=plan.status, detail=plan.detail)
            )
            return
        invoice = plan.invoice
        erp_id: str = await workflow.execute_activity(
            "time.create_invoice",
            plan,
            task_queue=self._erp_queue,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=PIPELINE_RETRY,
            result_type=str,
            summary=f"ERP invoice {invoice.idempotency_key}",
        )
        await self._mark(InvoiceRef(plan=plan, invoice_erp_id=erp_id))

    async def _mark(self, ref: InvoiceRef, *, item_id: str | None = None) -> None:
        """Mark the invoice's entries invoiced in the PSA. A PSA that does not answer is
        waited for (`billing_psa_wait_s`), then a person is asked and the invoice stands; only
        a refusal voids the ERP invoice (the compensation)."""
        plan = ref.plan
        request = plan.request
        invoice = plan.invoice
        assert invoice is not None
        attempt = self._billing_attempts.get(request.key, 0)
        project = self._input.psa_project_id
        try:
            psa_invoice: str = await workflow.execute_activity(
                "time.mark_invoiced",
                ref,
                start_to_close_timeout=STEP_TIMEOUT,
                schedule_to_close_timeout=timedelta(seconds=self._input.billing_psa_wait_s),
                retry_policy=PIPELINE_RETRY,
                result_type=str,
                summary=f"mark {len(plan.entry_keys)} entries invoiced in the PSA",
            )
        except ActivityError as err:
            cause = err.cause
            refused = isinstance(cause, ApplicationError) and cause.type in REFUSALS
            if not refused:
                reason = (
                    f"the PSA did not mark the entries of invoice {invoice.idempotency_key} "
                    f"invoiced: {cause_text(err)}; the ERP invoice stands"
                )
                # A person's retry that stalled again asks again, under a new item.
                stalled_id = (
                    f"{item_id}.r{self._bump('billing_remarks')}"
                    if item_id
                    else f"tti.{project}.billing-{request.key}.s{attempt}"
                )
                await self._open_item(
                    stalled_id, TimeExceptionCause.BILLING_STALLED, reason, request, err
                )
                self._marks_held[stalled_id] = ref
                self._billed.append(billing_outcome(ref, "stalled", detail=reason))
                self._desk.flag()
                return
            reason = f"the PSA did not mark the entries invoiced: {cause_text(err)}"
            await self._void(ref, reason, "compensation")
            self._billing_attempts[request.key] = attempt + 1
            failed_id = f"tti.{project}.billing-{request.key}.a{attempt}"
            await self._open_item(
                failed_id, TimeExceptionCause.BILLING_FAILED, reason, request, err
            )
            self._billing_held[failed_id] = request
            self._billed.append(billing_outcome(ref, "voided", detail=reason))
            self._desk.flag()
            return
        self._billed.append(billing_outcome(ref, "invoiced", psa_invoice_id=psa_invoice))
        # A later billing of the same key (late entries of a closed period) is a new invoice.
        self._billing_attempts[request.key] = attempt + 1
        self._bump("invoices")

    async def _void(self, ref: InvoiceRef, reason: str, why: str) -> None:
        await workflow.execute_activity(
            "time.void_invoice",
            VoidInvoice(plan=ref.plan, invoice_erp_id=ref.invoice_erp_id, reason=reason),
            task_queue=self._erp_queue,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=PIPELINE_RETRY,
            summary=f"void ERP invoice {ref.invoice_erp_id} ({why})",
        )

    async def _resolve_billing(self, resolution: ExceptionResolution) -> TimeResolutionResult:
        self._desk.claim(resolution)
        item_id = resolution.item_id
        request = self._billing_held.pop(item_id, None)
        ref = self._marks_held.pop(item_id, None)
        await self._desk.record(resolution)
        retry = resolution.action is ResolutionAction.RETRY
        if ref is not None:
            # The invoice stands in the ERP: a retry marks it again; abandoning voids it.
            if retry:
                self._remarks.append((item_id, ref))
            else:
                await self._void(ref, f"billing abandoned by {resolution.actor}", "abandoned")
                key = ref.plan.request.key
                self._billing_attempts[key] = self._billing_attempts.get(key, 0) + 1
        elif request is not None and retry:
            self._billing.append(request)
        self._desk.flag()
        self._tick += 1
        return TimeResolutionResult(
            item_id=resolution.item_id,
            action=resolution.action,
            outcome=EntryOutcomeKind.NOT_APPROVED,
            detail="billing queued again" if retry else "billing abandoned",
        )

    async def _open_item(
        self,
        item_id: str,
        cause: TimeExceptionCause,
        detail: str,
        request: BillingRequest,
        err: ActivityError,
    ) -> None:
        context = {"billing": request.model_dump(mode="json"), "actions": ["retry", "abandon"]}
        if (evidence := error_evidence(err)) is not None:
            context["evidence"] = evidence
        await self._desk.open(
            item_id=item_id,
            cause_code=cause.value,
            field="invoice",
            detail=detail,
            owner="finance_controller",
            actions=[ResolutionAction.RETRY, ResolutionAction.ABANDON],
            context=context,
            flag=False,
        )

    # ------------------------------------------------------------------ bookkeeping

    def _bump(self, name: str, by: int = 1) -> int:
        self._counters[name] = self._counters.get(name, 0) + by
        self._tick += 1
        return self._counters[name]

    def _details(self, headline: str | None = None) -> None:
        workflow.set_current_details(
            details_text(
                headline,
                pending=len(self._pending),
                in_flight=len(self._in_flight),
                counters=self._counters,
                open_items=len(self._desk.open_items),
            )
        )

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > (
            self._input.max_history_events
        )

    def _carry(self) -> TimePipelineInput:
        """What the continuation needs, bounded: entries with a person's retry in full, the
        rest as compact refs (up to `MAX_CARRIED_REFS`; the sweep finds any beyond)."""
        full, plain, counters = compact_pending(self._pending, self._counters)
        open_ids = {i.item_id for i in self._desk.open_items}
        carry = PipelineCarry(
            pending=full,
            pending_refs=plain,
            open_items=[i for i in self._items.values() if i.item_id in open_ids],
            billing=list(self._billing),
            billing_attempts=dict(self._billing_attempts),
            billing_held=dict(self._billing_held),
            marks_held={k: v.model_dump(mode="json") for k, v in self._marks_held.items()},
            remarks={k: v.model_dump(mode="json") for k, v in self._remarks},
            counters=counters,
            billed=self._billed[-20:],
            desk=self._desk.snapshot(),
        )
        return self._input.model_copy(update={"carry": carry})


@workflow.defn(name=TIME_SWEEP)
class TimeSweepWorkflow:
    """Run by a Schedule: hands approved entries that webhooks missed to their projects'
    pipelines and asks them to bill closed T&M periods (the work is one activity)."""

    @workflow.run
    async def run(self, request: SweepInput) -> SweepResult:
        workflow.upsert_search_attributes([BUSINESS_PROCESS.value_set(PROCESS_TIME_TO_INVOICE)])
        result: SweepResult = await workflow.execute_activity(
            "time.sweep",
            request,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=5),
            result_type=SweepResult,
            summary="sweep the PSA for approved, unposted entries",
        )
        workflow.set_current_details(
            f"seen {result.seen}, handed on {result.signalled} "
            f"to {len(result.projects)} projects; billing asked for "
            f"{', '.join(result.billing_requested) or 'nothing'}"
        )
        return result


WORKFLOWS: list[type] = [TimeToInvoiceWorkflow, TimeSweepWorkflow]
