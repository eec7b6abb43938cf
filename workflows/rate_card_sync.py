"""RateCardSync: one entity workflow per PSA rate card (`rate-card/{psa_tenant}/{card}`) that
carries the card's revisions, effective-dated, to the ERP.

Messages it accepts:
- signal `rate_card_revised` (`RevisionSeen`): a revision the PSA holds (from the PSA webhook
  or a sweep). A revision already synced (or queued) is dropped: the sync is idempotent by
  (rate card, revision).
- query `rate_card` (`RateCardSyncView`): the revisions decided, queued and the open items.
- update `resolve_exception`: finance's decision on a revision that reaches into invoiced time.

Each revision is read from the PSA with the invoiced time it would re-rate. None: the ERP
record is written applied from the effective date. Some: the ERP record is written held (the
time pipeline does not price time with it meanwhile) and an exception item goes to finance
(owner finance_controller) with the entries, old and new rates and the difference. Finance
acknowledges (SKIP: the revision applies from the day after the last invoiced entry it would
have re-rated) or rejects (REJECT: never applied). Revisions are handled one at a time, in the
order they arrive. The run continues as new when its history grows long, carrying its state.

Deterministic: no I/O; the item id is keyed by the revision.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client

from workflows._common import BUSINESS_PROCESS, RETRY
from workflows._desk import ExceptionDesk

with workflow.unsafe.imports_passed_through():
    from activities.rate_cards import (
        RateCardActivities,
        RateCardErpActivities,
        ReadRevision,
        RevisionFacts,
    )
    from contracts.naming import TASK_QUEUE, erp_task_queue
    from contracts.v1.processes import (
        RESOLVE_EXCEPTION_UPDATE,
        ExceptionResolution,
        ResolutionAccepted,
        ResolutionAction,
    )
    from contracts.v1.rate_cards import (
        INVOICED_TIME_REVISED,
        PROCESS_RATE_CARD_SYNC,
        RATE_CARD_QUERY,
        RATE_CARD_RESOLVER_ROLES,
        RATE_CARD_SYNC,
        REVISION_SIGNAL,
        ErpRateCardRevision,
        RateCardSyncInput,
        RateCardSyncView,
        RevisionSeen,
        RevisionStatus,
        difference_of,
        first_uninvoiced_day,
        rate_card_sync_workflow_id,
    )

MAX_HISTORY_EVENTS = 10_000


@workflow.defn(name=RATE_CARD_SYNC)
class RateCardSyncWorkflow:
    @workflow.init
    def __init__(self, request: RateCardSyncInput) -> None:
        self._input = request
        self._pending: list[str] = list(request.pending)
        self._done: dict[str, RevisionStatus] = dict(request.done)
        self._erp_queue = erp_task_queue(workflow.info().task_queue)
        self._timeout = timedelta(seconds=request.settings.activity_timeout_s)
        self._desk = ExceptionDesk(
            process=PROCESS_RATE_CARD_SYNC,
            roles=RATE_CARD_RESOLVER_ROLES,
            escalate_to="ops",
            escalation_after=timedelta(seconds=request.settings.escalation_after_s),
            activity_timeout=self._timeout,
        )

    @workflow.signal(name=REVISION_SIGNAL)
    def revised(self, seen: RevisionSeen) -> None:
        rid = seen.revision_id
        if rid in self._pending or self._done.get(rid) in (
            RevisionStatus.APPLIED,
            RevisionStatus.REJECTED,
        ):
            return
        self._pending.append(rid)

    @workflow.query(name=RATE_CARD_QUERY)
    def rate_card(self) -> RateCardSyncView:
        return RateCardSyncView(
            rate_card_id=self._input.rate_card_id,
            done=dict(self._done),
            pending=list(self._pending),
            open_items=[i.item_id for i in self._desk.open_items],
        )

    @workflow.update(name=RESOLVE_EXCEPTION_UPDATE)
    async def resolve_exception(self, resolution: ExceptionResolution) -> ResolutionAccepted:
        return await self._desk.accept(resolution)

    @resolve_exception.validator
    def _validate_resolution(self, resolution: ExceptionResolution) -> None:
        self._desk.validate(resolution)

    @workflow.run
    async def run(self, request: RateCardSyncInput) -> None:
        if not request.pending and not request.done:
            workflow.upsert_search_attributes([BUSINESS_PROCESS.value_set(PROCESS_RATE_CARD_SYNC)])
        while True:
            workflow.set_current_details(
                f"**idle** — {len(self._done)} revisions decided, {len(self._pending)} queued"
            )
            await workflow.wait_condition(lambda: bool(self._pending) or self._history_long())
            if self._pending:
                await self._sync(self._pending[0])
                self._pending.pop(0)
            if self._history_long() and not self._desk.open_items:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    request.model_copy(update={"pending": self._pending, "done": self._done})
                )

    def _history_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= MAX_HISTORY_EVENTS
        )

    async def _write(self, revision: ErpRateCardRevision) -> None:
        await workflow.execute_activity_method(
            RateCardErpActivities.write_erp_revision,
            revision,
            task_queue=self._erp_queue,
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary=f"ERP rate card revision {revision.revision_id}: {revision.status}",
        )
        self._done[revision.revision_id] = revision.status

    async def _sync(self, revision_id: str) -> None:
        if self._done.get(revision_id) in (RevisionStatus.APPLIED, RevisionStatus.REJECTED):
            return
        workflow.set_current_details(f"**syncing revision {revision_id}**")
        facts: RevisionFacts = await workflow.execute_activity_method(
            RateCardActivities.read_revision,
            ReadRevision(
                psa_tenant=self._input.psa_tenant,
                rate_card_id=self._input.rate_card_id,
                revision_id=revision_id,
            ),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
        )
        rev = facts.revision
        erp = ErpRateCardRevision(
            rate_card_id=rev.rate_card_id,
            revision_id=rev.revision_id,
            effective_from=rev.effective_from,
            applied_from=rev.effective_from,
            status=RevisionStatus.APPLIED,
            currency=rev.currency,
            rates=rev.rates,
        )
        if not facts.conflicts:
            await self._write(erp)
            return
        await self._write(
            erp.model_copy(update={"status": RevisionStatus.HELD, "applied_from": None})
        )
        difference = difference_of(facts.conflicts, rev.currency)
        apply_from = first_uninvoiced_day(rev, facts.conflicts)
        item = await self._desk.open(
            item_id=self._desk.content_item_id(f"revision/{revision_id}"),
            cause_code=INVOICED_TIME_REVISED,
            field="rate_card",
            detail=(
                f"rate card {rev.rate_card_id} revision {revision_id} takes effect on "
                f"{rev.effective_from}, before time already invoiced at the old rates: "
                f"{len(facts.conflicts)} entries, a difference of {difference}. Acknowledge "
                f"(skip) to apply it from {apply_from}, or reject it."
            ),
            owner="finance_controller",
            actions=[ResolutionAction.SKIP, ResolutionAction.REJECT],
            context={
                "rate_card_id": rev.rate_card_id,
                "revision_id": revision_id,
                "effective_from": rev.effective_from.isoformat(),
                "apply_from_if_acknowledged": apply_from.isoformat(),
                "difference": difference.model_dump(mode="json"),
                "entries": [
                    {
                        "entry_id": e.entry_id,
                        "project_id": e.project_id,
                        "role": e.role,
                        "date_performed": e.date_performed.isoformat(),
                        "hours": str(e.hours),
                        "old_rate": e.old_rate.model_dump(mode="json"),
                        "new_rate": e.new_rate.model_dump(mode="json"),
                        "difference": e.difference.model_dump(mode="json"),
                    }
                    for e in facts.conflicts
                ],
            },
        )
        resolution = await self._desk.wait(item.item_id)
        if resolution is not None and resolution.action is ResolutionAction.SKIP:
            await self._write(erp.model_copy(update={"applied_from": apply_from}))
        else:
            await self._write(
                erp.model_copy(update={"status": RevisionStatus.REJECTED, "applied_from": None})
            )


WORKFLOWS: list[type] = [RateCardSyncWorkflow]


async def route_rate_card_revised(
    client: Client,
    tenant: str,
    rate_card_id: str,
    revision_id: str,
    *,
    task_queue: str = TASK_QUEUE,
) -> str:
    """Signal-with-start the card's sync for a PSA rate card revision. Returns the workflow
    id. Addresses the workflow by name, so the gateway needs no workflow code beyond this."""
    workflow_id = rate_card_sync_workflow_id(tenant, rate_card_id)
    await client.start_workflow(
        RATE_CARD_SYNC,
        RateCardSyncInput(psa_tenant=tenant, rate_card_id=rate_card_id),
        id=workflow_id,
        task_queue=task_queue,
        start_signal=REVISION_SIGNAL,
        start_signal_args=[RevisionSeen(revision_id=revision_id)],
    )
    return workflow_id
