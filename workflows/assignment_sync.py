"""AssignmentSync: one long-lived entity workflow per PSA project that keeps the ERP labor-cost
forecast in step with the project's staffing.

Messages it accepts:
- signal `assignment_changed` (`AssignmentChange`): a PSA assignment changed or was deleted at
  a PSA record version. A version at or below the one already known is dropped (duplicates and
  out-of-order deliveries change nothing); a thin change (no data) is re-read from the PSA
  before the next forecast.
- query `staffing` (`Staffing`): the assignments as the sync knows them, whether a forecast
  update is pending, the last forecast, refusals, counters and the run number.

Changes arriving within `debounce_s` of the first one are coalesced into one ERP forecast
update. A period finance approved or locked is never overwritten: the refused change becomes an
exception item (owner finance_controller) and the search attribute `ExceptionOpen` is set.
The run continues as new, carrying its whole state, when the server suggests it or its history
reaches `max_history_events` — well under Temporal's limit.

Deterministic: no I/O; exception item IDs are uuid5 of the workflow id, period and numbers.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.exceptions import ActivityError

from workflows._common import BUSINESS_PROCESS, RETRY
from workflows._desk import ExceptionDesk

with workflow.unsafe.imports_passed_through():
    from activities._errors import business_error_info
    from activities.assignment_sync import (
        AssignmentForecastActivities,
        AssignmentSyncActivities,
        ForecastSyncResult,
        ReadAssignments,
        ReadAssignmentsResult,
        ResolveErpProject,
        SyncForecast,
    )
    from contracts.money import Money
    from contracts.naming import TASK_QUEUE, assignment_sync_workflow_id, erp_task_queue
    from contracts.v1.assignment_sync import (
        ASSIGNMENT_CHANGED_SIGNAL,
        ASSIGNMENT_SYNC,
        PROCESS_ASSIGNMENT_SYNC,
        STAFFING_QUERY,
        AssignmentChange,
        AssignmentSyncInput,
        AssignmentSyncState,
        ForecastRefusal,
        Staffing,
        SyncSettings,
        apply_change,
        apply_reread,
        staffing_view,
    )
    from contracts.v1.processes import (
        RESOLVE_EXCEPTION_UPDATE,
        RESOLVER_ROLES,
        ExceptionResolution,
        ResolutionAccepted,
        ResolutionAction,
    )


@workflow.defn(name=ASSIGNMENT_SYNC)
class AssignmentSyncWorkflow:
    @workflow.init
    def __init__(self, request: AssignmentSyncInput) -> None:
        self._flushing = False
        self._state = request.state or AssignmentSyncState(
            psa_tenant=request.psa_tenant,
            psa_project_id=request.psa_project_id,
            erp_project=request.erp_project,
            settings=request.settings,
        )
        self._erp_queue = erp_task_queue(workflow.info().task_queue)
        self._timeout = timedelta(seconds=self._state.settings.activity_timeout_s)
        self._desk = ExceptionDesk(
            process=PROCESS_ASSIGNMENT_SYNC,
            roles=RESOLVER_ROLES[PROCESS_ASSIGNMENT_SYNC],
            escalate_to="ops",
            escalation_after=timedelta(days=1),
            activity_timeout=self._timeout,
            state=self._state.desk,
        )

    # ----------------------------------------------------------------------- messages

    @workflow.signal(name=ASSIGNMENT_CHANGED_SIGNAL)
    def assignment_changed(self, change: AssignmentChange) -> None:
        # A signal, not an update: the PSA webhook needs no answer, and a burst of thousands
        # must cost one history event each, not a round trip each.
        apply_change(self._state, change)

    @workflow.query(name=STAFFING_QUERY)
    def staffing(self) -> Staffing:
        view = staffing_view(self._state)
        # changes taken for the flush in flight are not in the ERP yet: still pending
        return view.model_copy(update={"pending": True}) if self._flushing else view

    @workflow.update(name=RESOLVE_EXCEPTION_UPDATE)
    async def resolve_exception(self, resolution: ExceptionResolution) -> ResolutionAccepted:
        """Finance acknowledges a refused forecast (skip): the run goes on, and the next
        staffing change tries the forecast again."""
        accepted = await self._desk.accept(resolution, flag=True)
        self._state.open_refusals = [
            r for r in self._state.open_refusals if r.item_id != resolution.item_id
        ]
        return accepted

    @resolve_exception.validator
    def _validate_resolution(self, resolution: ExceptionResolution) -> None:
        self._desk.validate(resolution)

    # ----------------------------------------------------------------------- the loop

    @workflow.run
    async def run(self, request: AssignmentSyncInput) -> None:
        if request.state is None:
            workflow.upsert_search_attributes([BUSINESS_PROCESS.value_set(PROCESS_ASSIGNMENT_SYNC)])
        debounce = timedelta(seconds=self._state.settings.debounce_s)
        while True:
            self._details("idle")
            await workflow.wait_condition(lambda: self._state.dirty or self._history_long())
            if self._state.dirty:
                self._details(f"coalescing changes for {debounce}")
                await workflow.sleep(debounce)
                await self._flush()
            if self._history_long():
                # Signals delivered with the last task are already in the state: carry it.
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._state.runs += 1
                self._state.desk = self._desk.snapshot()
                workflow.continue_as_new(
                    AssignmentSyncInput(
                        psa_tenant=self._state.psa_tenant,
                        psa_project_id=self._state.psa_project_id,
                        erp_project=self._state.erp_project,
                        settings=self._state.settings,
                        state=self._state,
                    )
                )

    def _history_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._state.settings.max_history_events
        )

    async def _flush(self) -> None:
        self._flushing = True
        try:
            await self._flush_changes()
        finally:
            self._flushing = False

    async def _flush_changes(self) -> None:
        state = self._state
        state.dirty = False  # changes arriving from here on make the next flush
        if state.reread:
            asked = dict(state.reread)
            read: ReadAssignmentsResult = await workflow.execute_activity_method(
                AssignmentSyncActivities.read_assignments,
                ReadAssignments(assignment_ids=sorted(asked)),
                start_to_close_timeout=self._timeout,
                retry_policy=RETRY,
                summary=f"re-read {len(asked)} assignments",
            )
            for aid, version in asked.items():
                apply_reread(state, aid, version, read.found.get(aid))
        if state.erp_project is None:
            state.erp_project = await workflow.execute_activity_method(
                AssignmentSyncActivities.resolve_erp_project,
                ResolveErpProject(psa_tenant=state.psa_tenant, psa_project_id=state.psa_project_id),
                start_to_close_timeout=self._timeout,
                retry_policy=RETRY,
            )
            if state.erp_project is None:
                # Not provisioned through pssync (yet): the state keeps every change; the
                # next change tries again.
                self._details("project has no enterprise ID yet: forecast waits")
                return
        self._details(f"writing the ERP forecast ({len(state.assignments)} assignments)")
        try:
            result: ForecastSyncResult = await workflow.execute_activity_method(
                AssignmentForecastActivities.sync_forecast,
                SyncForecast(
                    erp_project=state.erp_project,
                    assignments=[state.assignments[k] for k in sorted(state.assignments)],
                    periods=state.periods,
                    settings=state.settings,
                ),
                task_queue=self._erp_queue,
                start_to_close_timeout=self._timeout,
                retry_policy=RETRY,
                summary="ERP labor forecast",
            )
        except ActivityError as err:
            info = business_error_info(err)
            if info is None:
                raise
            await self._open_refusals(
                [
                    ForecastRefusal(
                        period="*",
                        code=info.code or "BUSINESS_RULE",
                        detail=info.detail or info.message,
                        wanted_hours=Decimal(0),
                        wanted_cost=Money.zero(state.settings.currency),
                    )
                ],
                evidence=info.evidence,
            )
            return
        state.periods = sorted(set(state.periods) | {f.period for f in result.forecast})
        state.last_forecast = result.forecast
        if result.written:
            state.forecast_version += 1
        await self._open_refusals(result.refused)

    async def _open_refusals(
        self, refusals: list[ForecastRefusal], *, evidence: dict[str, Any] | None = None
    ) -> None:
        """Each refusal is one item, keyed by what was refused (the same refusal again is the
        same item); an item whose refusal is gone (the forecast went through) is closed.
        `evidence`: the ERP's request and answer when it refused the whole write."""
        opened: list[ForecastRefusal] = []
        for refusal in refusals:
            scope = (
                f"forecast/{refusal.period}/{refusal.code}/"
                f"{refusal.wanted_hours}/{refusal.wanted_cost}"
            )
            item = await self._desk.open(
                item_id=self._desk.content_item_id(scope),
                cause_code=refusal.code,
                field="forecast",
                detail=refusal.detail
                + f" — staffing now wants {refusal.wanted_hours} h, {refusal.wanted_cost}",
                owner="finance_controller",
                actions=[ResolutionAction.SKIP],
                context={
                    "psa_project_id": self._state.psa_project_id,
                    "erp_project": self._state.erp_project,
                    "period": refusal.period,
                    "wanted_hours": str(refusal.wanted_hours),
                    "wanted_cost": refusal.wanted_cost.model_dump(mode="json"),
                    "step": "forecast",
                }
                | ({"evidence": evidence} if evidence is not None else {}),
                flag=False,
            )
            opened.append(refusal.model_copy(update={"item_id": item.item_id}))
        current = {r.item_id for r in opened}
        for stale in self._desk.open_items:
            if stale.item_id not in current:
                await self._desk.close(
                    stale.item_id,
                    actor="pssync",
                    resolution={"action": "superseded", "reason": "the forecast went through"},
                )
        self._state.open_refusals = opened
        self._desk.flag(force=True)

    def _details(self, text: str) -> None:
        s = self._state
        workflow.set_current_details(
            f"**{text}** — {len(s.assignments)} assignments, forecast v{s.forecast_version}, "
            f"{s.changes_applied} applied / {s.changes_dropped} stale of {s.changes_received}, "
            f"run {s.runs}" + (f", {len(s.open_refusals)} refused" if s.open_refusals else "")
        )


WORKFLOWS: list[type] = [AssignmentSyncWorkflow]


async def route_assignment_changed(
    client: Client,
    tenant: str,
    workspace_id: str,
    assignment_id: str,
    version: int,
    *,
    deleted: bool = False,
    task_queue: str = TASK_QUEUE,
    settings: SyncSettings | None = None,
) -> str:
    """Signal-with-start the project's sync for a PSA `assignment.changed` webhook (thin: the
    workflow re-reads the assignment). Returns the workflow id. Addresses the workflow by
    name, so the gateway needs no import of workflow code beyond this function."""
    workflow_id = assignment_sync_workflow_id(tenant, workspace_id)
    await client.start_workflow(
        ASSIGNMENT_SYNC,
        AssignmentSyncInput(
            psa_tenant=tenant,
            psa_project_id=workspace_id,
            settings=settings or SyncSettings(),
        ),
        id=workflow_id,
        task_queue=task_queue,
        start_signal=ASSIGNMENT_CHANGED_SIGNAL,
        start_signal_args=[
            AssignmentChange(assignment_id=assignment_id, version=version, deleted=deleted)
        ],
    )
    return workflow_id
