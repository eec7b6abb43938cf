"""ChangeOrder: a change submitted in the PSA is priced, approved by the right people, then
applied to the ERP budget, the PSA budget and staffing demand — or, if applying fails part-way,
undone. Rejection or expiry applies nothing.

Messages it accepts:
- update `decide` (`ChangeOrderDecision` -> `DecisionAccepted`): an approver approves or
  rejects. The validator refuses, before anything reaches history: a decision when the run is
  not waiting for one (`NotWaiting`: still reading, already decided, expired); an actor holding
  none of the required roles (`NotAuthorized`); an actor whose scopes name neither "*", the
  project's enterprise ID, its PSA workspace nor its practice (`NotInScope`); an actor who
  already decided, or whose roles are all decided already (`AlreadyDecided`).
- query `status` (`ChangeOrderProgress`): the step, the impact, required roles, decisions,
  escalation and expiry times, what was applied.

Deterministic: no I/O; IDs from uuid5 of the workflow id and the step.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.exceptions import ActivityError, ApplicationError

from workflows._common import BUSINESS_PROCESS, CHANGE_ORDER_ID, ENTERPRISE_PROJECT_ID, RETRY
from workflows._saga import Saga, reason_of

with workflow.unsafe.imports_passed_through():
    from activities.change_order import (
        ChangeDemand,
        ChangeOrderActivities,
        ChangeOrderContext,
        ChangeOrderErpActivities,
        NotifyPeople,
        PsaBudget,
        ReadChangeOrder,
        ReadErpBudget,
        ReadPsaBudget,
        RevertErpBudget,
        RevertPsaBudget,
        ReviseErpBudget,
        SetChangeOrderState,
        UpdatePsaBudget,
    )
    from activities.store import OutboxEvent, StoreActivities
    from contracts.money import Money
    from contracts.naming import erp_task_queue
    from contracts.systems import System
    from contracts.v1.change_orders import (
        APPROVER_ROLES,
        CHANGE_ORDER,
        CHANGE_ORDER_STATUS_QUERY,
        DECIDE_UPDATE,
        PROCESS_CHANGE_ORDER,
        ChangeOrderDecision,
        ChangeOrderImpact,
        ChangeOrderInput,
        ChangeOrderOutcome,
        ChangeOrderProgress,
        ChangeOrderResult,
        ChangeOrderStep,
        DecisionAccepted,
        ErpBudget,
        RecordedDecision,
        compute_impact,
        required_approvals,
    )
    from contracts.v1.models import Assignment, AssignmentKind, ChangeOrderStatus
    from contracts.v1.notifications import Notification


CONCURRENCY_ATTEMPTS = 3
"""Re-read and recompute a budget revision this often when someone else revised it between
our read and our write (optimistic concurrency)."""


@workflow.defn(name=CHANGE_ORDER)
class ChangeOrderWorkflow:
    @workflow.init
    def __init__(self, request: ChangeOrderInput) -> None:
        self._request = request
        self._status = ChangeOrderProgress(
            step=ChangeOrderStep.READING, change_order_id=request.change_order_id
        )
        self._scope_keys: set[str] = {"*"}
        self._erp_queue = erp_task_queue(workflow.info().task_queue)
        self._timeout = timedelta(seconds=request.activity_timeout_s)

    # ----------------------------------------------------------------------- messages

    @workflow.query(name=CHANGE_ORDER_STATUS_QUERY)
    def status(self) -> ChangeOrderProgress:
        return self._status

    @workflow.update(name=DECIDE_UPDATE)
    def decide(self, decision: ChangeOrderDecision) -> DecisionAccepted:
        # Two updates validated in the same task both pass the validator; the handler checks
        # again so only the first of two decisions for one role counts.
        role = self._check(decision)
        self._status.decisions.append(
            RecordedDecision(
                actor=decision.actor,
                role=role,
                approve=decision.approve,
                note=decision.note,
                at=workflow.now(),
            )
        )
        verb = "approved" if decision.approve else "rejected"
        self._details(f"{verb} by {decision.actor} as {role}")
        return DecisionAccepted(
            actor=decision.actor,
            role=role,
            approve=decision.approve,
            remaining_roles=[] if not decision.approve else self._status.missing_roles(),
            accepted_at=workflow.now(),
        )

    @decide.validator
    def _validate_decision(self, decision: ChangeOrderDecision) -> None:
        self._check(decision)

    def _check(self, decision: ChangeOrderDecision) -> str:
        """The role this decision counts for, or a typed refusal."""
        if self._status.step is not ChangeOrderStep.WAITING_FOR_APPROVAL or self._decided():
            raise ApplicationError(
                f"change order {self._request.change_order_id} is not waiting for a decision "
                f"({self._status.step.value})",
                type="NotWaiting",
            )
        required = self._status.required_roles
        held = [r for r in APPROVER_ROLES if r in required and r in decision.roles]
        if decision.as_role is not None:
            held = [r for r in held if r == decision.as_role]
        if not held:
            raise ApplicationError(
                f"{decision.actor} may not decide this change order: needs one of "
                f"{', '.join(required)}",
                type="NotAuthorized",
            )
        if not self._scope_keys.intersection(decision.scopes):
            raise ApplicationError(
                f"{decision.actor} has no scope over project {self._status.enterprise_id}",
                type="NotInScope",
            )
        if any(d.actor == decision.actor for d in self._status.decisions):
            raise ApplicationError(
                f"{decision.actor} has already decided this change order", type="AlreadyDecided"
            )
        missing = self._status.missing_roles()
        for role in held:
            if role in missing:
                return role
        raise ApplicationError(
            f"{', '.join(held)} already decided this change order", type="AlreadyDecided"
        )

    # ----------------------------------------------------------------------- the saga

    @workflow.run
    async def run(self, request: ChangeOrderInput) -> ChangeOrderResult:
        workflow.upsert_search_attributes(
            [
                CHANGE_ORDER_ID.value_set(request.change_order_id),
                BUSINESS_PROCESS.value_set(PROCESS_CHANGE_ORDER),
            ]
        )
        self._details("reading the change order, its project and rate card from the PSA")
        ctx: ChangeOrderContext = await workflow.execute_activity_method(
            ChangeOrderActivities.read_change_order,
            ReadChangeOrder(
                psa_tenant=request.psa_tenant,
                change_order_id=request.change_order_id,
                psa_project_id=request.psa_project_id,
                enterprise_id=request.enterprise_id,
            ),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary=f"read change order {request.change_order_id}",
        )
        self._status.enterprise_id = ctx.enterprise_id
        self._status.psa_project_id = ctx.psa_project_id
        self._scope_keys |= {ctx.enterprise_id, ctx.psa_project_id}
        if ctx.project.practice:
            self._scope_keys.add(ctx.project.practice)
        workflow.upsert_search_attributes([ENTERPRISE_PROJECT_ID.value_set(ctx.enterprise_id)])

        impact = compute_impact(
            ctx.change_order,
            ctx.rate_card,
            standard_cost_rates=request.standard_cost_rates,
            standard_cost_ratio=request.standard_cost_ratio,
        )
        needed = required_approvals(impact, request.policy)
        self._status.impact = impact
        self._status.required_roles = needed.roles
        self._status.finance_reasons = needed.reasons

        outcome = await self._await_decisions()
        if outcome is not ChangeOrderOutcome.APPLIED:
            state = (
                ChangeOrderStatus.REJECTED
                if outcome is ChangeOrderOutcome.REJECTED
                else ChangeOrderStatus.EXPIRED
            )
            await self._set_state(state)
            self._step(ChangeOrderStep(outcome.value), f"{outcome.value}: nothing applied")
            await workflow.wait_condition(workflow.all_handlers_finished)
            return self._result(outcome)

        await self._set_state(ChangeOrderStatus.APPROVED)
        saga = Saga()
        try:
            result = await self._apply(ctx, impact, saga)
        except (ActivityError, ApplicationError, asyncio.CancelledError) as err:
            reason = reason_of(err)
            self._step(ChangeOrderStep.COMPENSATING, f"undoing: {reason}")
            failed = await saga.compensate()
            self._step(
                ChangeOrderStep.FAILED,
                f"failed and compensated: {reason}"
                + (f"; compensation failed: {'; '.join(map(str, failed))}" if failed else ""),
            )
            if isinstance(err, asyncio.CancelledError):
                raise
            raise saga.failure(
                err,
                f"change order {request.change_order_id} could not be applied",
                type="ChangeOrderFailed",
            ) from err
        await self._set_state(ChangeOrderStatus.APPLIED)
        self._step(ChangeOrderStep.APPLIED, "applied to ERP and PSA")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _await_decisions(self) -> ChangeOrderOutcome:
        """Wait for every required approval or one rejection; escalate, then expire."""
        now = workflow.now()
        escalate_after = timedelta(seconds=self._request.escalation_after_s)
        expire_after = timedelta(seconds=self._request.expires_after_s)
        self._status.waiting_since = now
        self._status.expires_at = now + expire_after
        if escalate_after < expire_after:
            self._status.escalates_at = now + escalate_after
        self._step(ChangeOrderStep.WAITING_FOR_APPROVAL, self._waiting_text())
        try:
            if self._status.escalates_at is not None:
                try:
                    await workflow.wait_condition(self._decided, timeout=escalate_after)
                except TimeoutError:
                    await self._escalate()
                    await workflow.wait_condition(
                        self._decided, timeout=expire_after - escalate_after
                    )
            else:
                await workflow.wait_condition(self._decided, timeout=expire_after)
        except TimeoutError:
            return ChangeOrderOutcome.EXPIRED
        await workflow.wait_condition(workflow.all_handlers_finished)
        if any(not d.approve for d in self._status.decisions):
            return ChangeOrderOutcome.REJECTED
        return ChangeOrderOutcome.APPLIED

    def _decided(self) -> bool:
        if any(not d.approve for d in self._status.decisions):
            return True
        return bool(self._status.required_roles) and not self._status.missing_roles()

    async def _escalate(self) -> None:
        self._status.escalated = True
        missing = self._status.missing_roles()
        await self._notify(
            "escalation",
            audience="approvers_managers",
            subject=f"Change order {self._request.change_order_id} awaits "
            f"{', '.join(missing)} — escalated",
            body=self._waiting_text(),
        )
        self._step(ChangeOrderStep.WAITING_FOR_APPROVAL, "ESCALATED — " + self._waiting_text())

    async def _apply(
        self, ctx: ChangeOrderContext, impact: ChangeOrderImpact, saga: Saga
    ) -> ChangeOrderResult:
        delta = impact.budget_delta
        erp_project = f"eid:{ctx.enterprise_id}"
        # 1. ERP budget revision, under optimistic concurrency on the budget version.
        self._step(ChangeOrderStep.REVISING_ERP_BUDGET, f"revising the ERP budget by {delta}")
        erp_after = await self._revise_erp(erp_project, delta, saga)
        self._status.ids["erp_budget_version"] = erp_after.version
        # 2. PSA budget.
        self._step(ChangeOrderStep.UPDATING_PSA_BUDGET, "PSA project budget")
        psa_after = await self._revise_psa(ctx.psa_project_id, delta, saga)
        self._status.ids["psa_budget_version"] = psa_after.version
        # 3. Staffing demand: one resource request per role with added hours.
        demands = self._demands(ctx, impact)
        request_ids: list[str] = []
        if demands:
            saga.add("cancel staffing demand", lambda: self._cancel_demand(ctx, demands))
            self._step(ChangeOrderStep.RAISING_DEMAND, f"{len(demands)} resource requests")
            request_ids = await workflow.execute_activity_method(
                ChangeOrderActivities.raise_demand,
                ChangeDemand(psa_project_id=ctx.psa_project_id, demands=demands),
                start_to_close_timeout=self._timeout,
                retry_policy=RETRY,
                summary=f"{len(demands)} resource requests",
            )
            self._status.ids["resource_request_ids"] = request_ids
        # 4. Tell resource managers (nothing to undo after this point).
        self._step(ChangeOrderStep.NOTIFYING, "notifying resource managers")
        await self._notify(
            "resource_managers",
            audience="resource_managers",
            subject=f"Change order {ctx.change_order.title!r} approved: staffing demand",
            body=", ".join(f"{d.role} {d.allocated_minutes / 60:g} h" for d in demands)
            or "no added demand",
            context={
                "enterprise_id": ctx.enterprise_id,
                "psa_project_id": ctx.psa_project_id,
                "resource_request_ids": request_ids,
            },
        )
        # 5. The forecast adjustment, for the forecast owners downstream.
        self._step(ChangeOrderStep.RECORDING_FORECAST, "forecast adjustment -> outbox")
        await workflow.execute_activity_method(
            StoreActivities.add_outbox,
            OutboxEvent(
                event_type="forecast.adjustment",
                key=f"change_order:{self._request.psa_tenant}:{self._request.change_order_id}",
                payload={
                    "enterprise_id": ctx.enterprise_id,
                    "psa_project_id": ctx.psa_project_id,
                    "change_order_id": self._request.change_order_id,
                    "impact": impact.model_dump(mode="json"),
                    "approved_by": [d.actor for d in self._status.decisions],
                    "applied_at": workflow.now().isoformat(),
                },
            ),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
        )
        return self._result(
            ChangeOrderOutcome.APPLIED,
            erp_budget_version=erp_after.version,
            psa_budget_version=psa_after.version,
            resource_request_ids=request_ids,
        )

    # ----------------------------------------------------------------------- steps

    async def _revise_erp(self, project: str, delta: Money, saga: Saga) -> ErpBudget:
        undo: dict[str, RevertErpBudget] = {}

        async def revert() -> None:
            if "request" in undo:
                await workflow.execute_activity_method(
                    ChangeOrderErpActivities.revert_erp_budget,
                    undo["request"],
                    task_queue=self._erp_queue,
                    start_to_close_timeout=self._timeout,
                    retry_policy=RETRY,
                    summary="compensate: revert ERP budget",
                )
                self._status.completed.append("compensated: ERP budget reverted")

        # Registered before the write: a revision whose answer was lost is still reverted.
        saga.add("revert ERP budget", revert)
        for attempt in range(1, CONCURRENCY_ATTEMPTS + 1):
            before: ErpBudget = await workflow.execute_activity_method(
                ChangeOrderErpActivities.read_erp_budget,
                ReadErpBudget(project=project),
                task_queue=self._erp_queue,
                start_to_close_timeout=self._timeout,
                retry_policy=RETRY,
            )
            target = before.amount + delta
            undo["request"] = RevertErpBudget(project=project, before=before, target=target)
            try:
                after: ErpBudget = await workflow.execute_activity_method(
                    ChangeOrderErpActivities.revise_erp_budget,
                    ReviseErpBudget(
                        project=project, amount=target, expected_version=before.version
                    ),
                    task_queue=self._erp_queue,
                    start_to_close_timeout=self._timeout,
                    retry_policy=RETRY,
                    summary=f"ERP budget {before.amount} -> {target} (v{before.version})",
                )
                return after
            except ActivityError as err:
                if not _is_conflict(err) or attempt == CONCURRENCY_ATTEMPTS:
                    raise
                workflow.logger.info("ERP budget moved under us; re-reading (%d)", attempt)
        raise AssertionError("unreachable")

    async def _revise_psa(self, psa_project_id: str, delta: Money, saga: Saga) -> PsaBudget:
        undo: dict[str, RevertPsaBudget] = {}

        async def revert() -> None:
            if "request" in undo:
                await workflow.execute_activity_method(
                    ChangeOrderActivities.revert_psa_budget,
                    undo["request"],
                    start_to_close_timeout=self._timeout,
                    retry_policy=RETRY,
                    summary="compensate: revert PSA budget",
                )
                self._status.completed.append("compensated: PSA budget reverted")

        saga.add("revert PSA budget", revert)
        for attempt in range(1, CONCURRENCY_ATTEMPTS + 1):
            before: PsaBudget = await workflow.execute_activity_method(
                ChangeOrderActivities.read_psa_budget,
                ReadPsaBudget(psa_project_id=psa_project_id, currency=delta.currency),
                start_to_close_timeout=self._timeout,
                retry_policy=RETRY,
            )
            target = before.amount + delta
            undo["request"] = RevertPsaBudget(before=before, target=target)
            try:
                after: PsaBudget = await workflow.execute_activity_method(
                    ChangeOrderActivities.update_psa_budget,
                    UpdatePsaBudget(
                        psa_project_id=psa_project_id,
                        amount=target,
                        expected_version=before.version,
                    ),
                    start_to_close_timeout=self._timeout,
                    retry_policy=RETRY,
                    summary=f"PSA budget {before.amount} -> {target}",
                )
                return after
            except ActivityError as err:
                if not _is_conflict(err) or attempt == CONCURRENCY_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _demands(self, ctx: ChangeOrderContext, impact: ChangeOrderImpact) -> list[Assignment]:
        """One resource request per role whose hours grow (reductions are not cancelled
        here: they reach the forecast through the outbox adjustment)."""
        co = ctx.change_order
        by_role: dict[str, tuple[Decimal, date | None, date | None]] = {}
        for line in co.lines:
            hours, start, end = by_role.get(line.role, (Decimal(0), None, None))
            starts = [d for d in (start, line.start_date) if d is not None]
            ends = [d for d in (end, line.end_date) if d is not None]
            by_role[line.role] = (
                hours + line.hours_delta,
                min(starts) if starts else None,
                max(ends) if ends else None,
            )
        demands: list[Assignment] = []
        default_start = max(ctx.project.start_date, co.submitted_at.date())
        for role, (hours, start, end) in sorted(by_role.items()):
            if hours <= 0:
                continue
            first = start or default_start
            last = end or ctx.project.end_date
            if last is None or last < first:
                last = first + timedelta(days=self._request.demand_days_default)
            demands.append(
                Assignment(
                    external_id=f"co:{co.external_id}:{role}",
                    project_id=ctx.psa_project_id,
                    role=role,
                    kind=AssignmentKind.ROLE_DEMAND,
                    start_date=first,
                    end_date=last,
                    allocated_minutes=int(hours * 60),
                    source_system=System.PSSYNC,
                    updated_at=workflow.now(),
                )
            )
        return demands

    async def _cancel_demand(self, ctx: ChangeOrderContext, demands: list[Assignment]) -> None:
        await workflow.execute_activity_method(
            ChangeOrderActivities.cancel_demand,
            ChangeDemand(psa_project_id=ctx.psa_project_id, demands=demands),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary="compensate: cancel resource requests",
        )
        self._status.completed.append("compensated: staffing demand cancelled")

    async def _notify(
        self,
        purpose: str,
        *,
        audience: str,
        subject: str,
        body: str,
        context: dict[str, Any] | None = None,
    ) -> None:
        notification_id = (
            "ntf_" + uuid.uuid5(uuid.NAMESPACE_URL, f"{workflow.info().workflow_id}/{purpose}").hex
        )
        await workflow.execute_activity_method(
            ChangeOrderActivities.notify,
            NotifyPeople(
                notification=Notification(
                    notification_id=notification_id,
                    audience=audience,
                    subject=subject,
                    body=body,
                    context={
                        "change_order_id": self._request.change_order_id,
                        "process": PROCESS_CHANGE_ORDER,
                    }
                    | (context or {}),
                    psa_project_id=self._status.psa_project_id,
                )
            ),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary=f"notify {audience}",
        )

    async def _set_state(self, state: ChangeOrderStatus) -> None:
        await workflow.execute_activity_method(
            ChangeOrderActivities.set_state,
            SetChangeOrderState(change_order_id=self._request.change_order_id, state=state),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary=f"PSA change order -> {state.value}",
        )

    def _result(self, outcome: ChangeOrderOutcome, **kw: Any) -> ChangeOrderResult:
        return ChangeOrderResult(
            change_order_id=self._request.change_order_id,
            outcome=outcome,
            decisions=self._status.decisions,
            impact=self._status.impact,
            **kw,
        )

    def _waiting_text(self) -> str:
        impact = self._status.impact
        missing = ", ".join(self._status.missing_roles())
        text = f"waiting for {missing}"
        if impact is not None:
            margin = (
                f"{impact.projected_margin:.1%}" if impact.projected_margin is not None else "n/a"
            )
            text += f" — budget {impact.budget_delta}, {impact.hours_delta:g} h, margin {margin}"
        if self._status.finance_reasons:
            text += f" (finance: {'; '.join(self._status.finance_reasons)})"
        return text

    def _step(self, step: ChangeOrderStep, details: str) -> None:
        if self._status.step is not step and self._status.step not in (
            ChangeOrderStep.COMPENSATING,
        ):
            self._status.completed.append(self._status.step.value)
        self._status.step = step
        self._details(details)

    def _details(self, details: str) -> None:
        workflow.set_current_details(f"**{self._status.step.value}** — {details}")


def _is_conflict(err: ActivityError) -> bool:
    cause = err.cause
    return isinstance(cause, ApplicationError) and cause.type in (
        "StaleVersionError",
        "ConflictError",
    )


WORKFLOWS: list[type] = [ChangeOrderWorkflow]


async def decide_change_order(
    client: Client, workflow_id: str, decision: ChangeOrderDecision
) -> DecisionAccepted:
    """Send an approver's decision to a change order's run (the gateway's
    `POST /api/change-orders/{id}/decision` and `pssync approve|reject`). Addresses the workflow
    by id and update name only; refusals surface as `WorkflowUpdateFailedError` whose cause is
    an `ApplicationError` of type NotWaiting, NotAuthorized, NotInScope or AlreadyDecided."""
    handle = client.get_workflow_handle(workflow_id)
    result: DecisionAccepted = await handle.execute_update(
        DECIDE_UPDATE, decision, result_type=DecisionAccepted
    )
    return result
