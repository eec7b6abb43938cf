"""OpportunityToProject: a won deal becomes a PSA project and an ERP financial project, linked
by one enterprise ID, with compensations that undo partial work.

Messages it accepts:
- update `resolve_exception` (`ExceptionResolution` -> `ResolutionAccepted`): a person's
  decision on the open exception item — retry, retry with corrected data, or abandon. The
  validator refuses, before anything reaches history, an actor without a resolver role or
  outside the deal's scope, an unknown or already-resolved item, and corrections to fields that
  cannot be corrected.
- query `status` (`ProvisioningStatus`): the current step, IDs so far, the open exception.

Round trips (issue 19): the short store steps — reserving the enterprise IDs, linking the
xrefs, queueing `project.provisioned` in the outbox — run as local activities (patch
`o2p-local-store-steps`): in the worker that runs the workflow, recorded as markers in the same
workflow task, 5 of the 14 server round trips saved. Each is one transaction in pssync's own
store and idempotent by business key (reserve: the source record's existing ID wins; link: the
same pair is a no-op; outbox: insert-if-absent on (event_type, key)), so the re-run a worker
crash causes — a local activity is at-least-once, like any activity — changes nothing.
The vendor calls (CRM, PSA, ERP) stay regular activities: their retries must outlive a worker
restart with server-side timeouts (an outage lasts minutes to hours, and a local activity's
retries live in one worker's memory past a few seconds); the ERP's calls must go through the
ERP task queue, whose activities-per-second limit the server enforces (a local activity
bypasses task queues and their limits); and a slow vendor call would hold the workflow task open
instead of the activity's own timeout and heartbeats. The exception desk's store steps stay
regular for now (shared with the other sagas, each would need its own patch).

Deterministic: no I/O; IDs are minted from `workflow.now()` and `workflow.random()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows._common import (
    CUSTOMER_NAME,
    ENTERPRISE_PROJECT_ID,
    LOCAL_RETRY_THRESHOLD,
    LOCAL_STORE_TIMEOUT,
    RETRY,
)
from workflows._desk import ExceptionDesk
from workflows._saga import Saga, reason_of

with workflow.unsafe.imports_passed_through():
    from activities._errors import business_error_info
    from activities.crm import (
        CrmActivities,
        MarkProvisioning,
        OpportunitySnapshot,
        ReadOpportunity,
        WriteBackEnterpriseId,
    )
    from activities.erp import (
        CheckCostCenter,
        CloseProject,
        ErpActivities,
        UpsertCustomer,
        UpsertProject,
    )
    from activities.psa import (
        ArchiveProject,
        CancelStaffingDemand,
        CheckRateCard,
        CreateProjectShell,
        PsaActivities,
        SeedStaffingDemand,
    )
    from activities.store import (
        LinkXrefs,
        OutboxEvent,
        ReserveEnterpriseId,
        StoreActivities,
        XrefLink,
    )
    from contracts.ids import mint_ulid
    from contracts.naming import erp_task_queue
    from contracts.v1 import Customer, Opportunity, Project
    from contracts.v1.processes import (
        OPPORTUNITY_TO_PROJECT,
        PROCESS_OPPORTUNITY_TO_PROJECT,
        RESOLVE_EXCEPTION_UPDATE,
        RESOLVER_ROLES,
        STATUS_QUERY,
        ExceptionResolution,
        ProvisioningStatus,
        ProvisioningStep,
        ProvisionProjectInput,
        ProvisionProjectResult,
        ResolutionAccepted,
        ResolutionAction,
    )
    from contracts.v1.provisioning import (
        CORRECTABLE_FIELDS,
        RuleViolation,
        apply_corrections,
        budget_for,
        project_from_opportunity,
        staffing_demand,
        validate_commercial_structure,
    )

T = TypeVar("T")
A = TypeVar("A")

LOCAL_STORE_STEPS = "o2p-local-store-steps"
"""Patch: the store steps run as local activities (histories recorded before it replay with
them as regular activities)."""


class Abandoned(Exception):
    """A person chose to abandon provisioning."""


@workflow.defn(name=OPPORTUNITY_TO_PROJECT)
class OpportunityToProjectWorkflow:
    @workflow.init
    def __init__(self, request: ProvisionProjectInput) -> None:
        self._request = request
        self._status = ProvisioningStatus(step=ProvisioningStep.READING_CRM)
        self._corrections: dict[str, str] = {}
        self._scope_keys: set[str] = {"*", request.opportunity_id}
        self._erp_queue = erp_task_queue(workflow.info().task_queue)
        self._timeout = timedelta(seconds=request.activity_timeout_s)
        self._desk = ExceptionDesk(
            process=PROCESS_OPPORTUNITY_TO_PROJECT,
            roles=RESOLVER_ROLES[PROCESS_OPPORTUNITY_TO_PROJECT],
            escalate_to="ops",
            escalation_after=timedelta(seconds=request.escalation_after_s),
            activity_timeout=self._timeout,
        )

    # ----------------------------------------------------------------------- messages

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> ProvisioningStatus:
        return self._status

    @workflow.update(name=RESOLVE_EXCEPTION_UPDATE)
    async def resolve_exception(self, resolution: ExceptionResolution) -> ResolutionAccepted:
        return await self._desk.accept(resolution)

    @resolve_exception.validator
    def _validate_resolution(self, resolution: ExceptionResolution) -> None:
        # Typed refusals: the gateway answers NotAuthorized/NotInScope with 403,
        # NoOpenException/AlreadyResolved with 409, the rest with 422.
        self._desk.validate(resolution, scope_keys=self._scope_keys)

    # ----------------------------------------------------------------------- the saga

    @workflow.run
    async def run(self, request: ProvisionProjectInput) -> ProvisionProjectResult:
        saga = Saga()
        try:
            result = await self._provision(request, saga)
        except (ActivityError, ApplicationError, Abandoned, asyncio.CancelledError) as err:
            reason = reason_of(err)
            self._step(ProvisioningStep.COMPENSATING, f"undoing: {reason}")
            failures = await saga.compensate()
            await self._desk.withdraw_all(f"provisioning failed: {reason}")
            await self._mark_crm(request.opportunity_id, "Failed", reason)
            self._step(
                ProvisioningStep.FAILED,
                f"failed and compensated: {reason}"
                + (f"; compensation failed: {'; '.join(map(str, failures))}" if failures else ""),
            )
            if isinstance(err, asyncio.CancelledError):
                raise
            raise saga.failure(
                err, f"provisioning {request.opportunity_id} failed", type="ProvisioningFailed"
            ) from err
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _provision(
        self, request: ProvisionProjectInput, saga: Saga
    ) -> ProvisionProjectResult:
        # 1. Re-read the deal and validate it; a person fixes what is wrong.
        opportunity, customer = await self._valid_deal(request)
        # 2. Master data the ERP and PSA hold.
        await self._master_data_ok(request)
        opportunity = apply_corrections(opportunity, self._corrections)
        project = project_from_opportunity(opportunity, customer)
        # 3. Enterprise IDs: minted here, kept if the source record already has one.
        enterprise_id, customer_eid = await self._mint_ids(request, opportunity, customer)
        # 4. ERP customer (an upsert: nothing to compensate, it may serve other projects).
        customer_erp_id = await self._erp_customer(customer, customer_eid)
        # 5. PSA shell; its compensation is registered first, since a crash after the PSA
        # created it but before we heard back still leaves a shell to archive.
        psa_id = await self._psa_shell(saga, project, enterprise_id)
        # 6. ERP financial project with its budget.
        erp_id = await self._erp_project(saga, project, enterprise_id, customer_erp_id)
        # 7. Link every system's ID and write the enterprise ID back to the CRM.
        self._step(ProvisioningStep.LINKING, "linking IDs and writing the enterprise ID back")
        await self._link_project(request, opportunity, enterprise_id, psa_id, erp_id)
        await self._link_customer(request, customer, customer_eid, customer_erp_id)
        await workflow.execute_activity_method(
            CrmActivities.write_back_enterprise_id,
            WriteBackEnterpriseId(
                opportunity_id=opportunity.external_id, enterprise_id=enterprise_id
            ),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary="enterprise ID -> CRM",
        )
        # 8. Staffing demand: one resource request per role.
        request_ids = await self._staffing_demand(saga, project, enterprise_id, psa_id)
        # 9. Publish and tell the CRM.
        self._step(ProvisioningStep.PUBLISHING, "publishing project.provisioned")
        result = ProvisionProjectResult(
            enterprise_id=enterprise_id,
            opportunity_id=opportunity.external_id,
            customer_enterprise_id=customer_eid,
            erp_customer_id=customer_erp_id,
            psa_project_id=psa_id,
            erp_project_id=erp_id,
            resource_request_ids=request_ids,
        )
        await self._publish(request, result)
        await self._mark_crm(opportunity.external_id, "Provisioned", None)
        self._step(ProvisioningStep.DONE, f"project {enterprise_id} provisioned")
        return result

    # ----------------------------------------------------------------------- provisioning steps

    async def _mint_ids(
        self, request: ProvisionProjectInput, opportunity: Opportunity, customer: Customer
    ) -> tuple[str, str]:
        """The project's and the customer's enterprise IDs, recorded on the run."""
        self._step(ProvisioningStep.MINTING_ID, "minting the enterprise project ID")
        enterprise_id = await self._reserve_id(
            "project", "CRM", request.crm_tenant, "Opportunity", opportunity.external_id
        )
        customer_eid = await self._reserve_id(
            "customer", "CRM", request.crm_tenant, "Account", customer.external_id
        )
        self._status.enterprise_id = enterprise_id
        self._scope_keys.add(enterprise_id)
        workflow.upsert_search_attributes(
            [
                ENTERPRISE_PROJECT_ID.value_set(enterprise_id),
                CUSTOMER_NAME.value_set(customer.name),
            ]
        )
        return enterprise_id, customer_eid

    async def _erp_customer(self, customer: Customer, customer_eid: str) -> str:
        self._step(ProvisioningStep.ERP_CUSTOMER, f"upserting ERP customer {customer.name}")
        customer_erp_id: str = await self._business_step(
            ProvisioningStep.ERP_CUSTOMER,
            lambda: workflow.execute_activity_method(
                ErpActivities.upsert_customer,
                UpsertCustomer(customer=customer, enterprise_id=customer_eid),
                task_queue=self._erp_queue,
                start_to_close_timeout=self._timeout,
                retry_policy=RETRY,
                summary=f"ERP customer {customer.name}",
            ),
        )
        self._status.ids["erp_customer_id"] = customer_erp_id
        return customer_erp_id

    async def _psa_shell(self, saga: Saga, project: Project, enterprise_id: str) -> str:
        saga.add("archive PSA project", lambda: self._compensate_psa(enterprise_id))
        self._step(ProvisioningStep.PSA_PROJECT, "creating the PSA project shell")
        psa_id: str = await self._business_step(
            ProvisioningStep.PSA_PROJECT,
            lambda: workflow.execute_activity_method(
                PsaActivities.create_project_shell,
                CreateProjectShell(project=self._project(project), enterprise_id=enterprise_id),
                start_to_close_timeout=self._timeout,
                retry_policy=RETRY,
                summary="PSA workspace, WBS, milestones",
            ),
        )
        self._status.ids["psa_project_id"] = psa_id
        return psa_id

    async def _erp_project(
        self, saga: Saga, project: Project, enterprise_id: str, customer_erp_id: str
    ) -> str:
        saga.add("close ERP project", lambda: self._compensate_erp(enterprise_id))
        self._step(ProvisioningStep.ERP_PROJECT, "creating the ERP financial project")
        erp_id: str = await self._business_step(
            ProvisioningStep.ERP_PROJECT,
            lambda: workflow.execute_activity_method(
                ErpActivities.upsert_project,
                UpsertProject(
                    project=self._project(project),
                    enterprise_id=enterprise_id,
                    customer_erp_id=customer_erp_id,
                    budget=budget_for(project),
                ),
                task_queue=self._erp_queue,
                start_to_close_timeout=self._timeout,
                retry_policy=RETRY,
                summary=f"ERP job, budget {budget_for(project)}",
            ),
        )
        self._status.ids["erp_project_id"] = erp_id
        return erp_id

    async def _link_project(
        self,
        request: ProvisionProjectInput,
        opportunity: Opportunity,
        enterprise_id: str,
        psa_id: str,
        erp_id: str,
    ) -> None:
        await self._store_step(
            StoreActivities.link_xrefs,
            LinkXrefs(
                enterprise_id=enterprise_id,
                entity_type="project",
                links=[
                    XrefLink(
                        system="CRM",
                        tenant=request.crm_tenant,
                        object_type="Opportunity",
                        external_id=opportunity.external_id,
                    ),
                    XrefLink(system="PSA", object_type="workspace", external_id=psa_id),
                    XrefLink(system="ERP", object_type="job", external_id=erp_id),
                ],
            ),
        )

    async def _link_customer(
        self,
        request: ProvisionProjectInput,
        customer: Customer,
        customer_eid: str,
        customer_erp_id: str,
    ) -> None:
        await self._store_step(
            StoreActivities.link_xrefs,
            LinkXrefs(
                enterprise_id=customer_eid,
                entity_type="customer",
                links=[
                    XrefLink(
                        system="CRM",
                        tenant=request.crm_tenant,
                        object_type="Account",
                        external_id=customer.external_id,
                    ),
                    XrefLink(system="ERP", object_type="customer", external_id=customer_erp_id),
                ],
            ),
        )

    async def _staffing_demand(
        self, saga: Saga, project: Project, enterprise_id: str, psa_id: str
    ) -> list[str]:
        saga.add("cancel staffing demand", lambda: self._compensate_demand(enterprise_id))
        self._step(ProvisioningStep.STAFFING_DEMAND, "raising staffing demand per role")
        demands = staffing_demand(self._project(project), enterprise_id)
        request_ids: list[str] = await workflow.execute_activity_method(
            PsaActivities.seed_staffing_demand,
            SeedStaffingDemand(psa_project_id=psa_id, demands=demands),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary=f"{len(demands)} resource requests",
        )
        return request_ids

    async def _publish(
        self, request: ProvisionProjectInput, result: ProvisionProjectResult
    ) -> None:
        # A re-run after a crash carries a later `provisioned_at`; the first row queued stays.
        await self._store_step(
            StoreActivities.add_outbox,
            OutboxEvent(
                event_type="project.provisioned",
                key=result.enterprise_id,
                payload=result.model_dump(mode="json")
                | {"crm_tenant": request.crm_tenant, "provisioned_at": workflow.now().isoformat()},
            ),
        )

    # ----------------------------------------------------------------------- steps

    async def _valid_deal(self, request: ProvisionProjectInput) -> tuple[Opportunity, Customer]:
        while True:
            self._step(ProvisioningStep.READING_CRM, "re-reading the opportunity from the CRM")
            snapshot: OpportunitySnapshot = await workflow.execute_activity_method(
                CrmActivities.read_opportunity,
                ReadOpportunity(opportunity_id=request.opportunity_id),
                start_to_close_timeout=self._timeout,
                retry_policy=RETRY,
                summary=f"read opportunity {request.opportunity_id}",
            )
            self._step(ProvisioningStep.VALIDATING, "validating the commercial structure")
            opportunity = apply_corrections(snapshot.opportunity, self._corrections)
            self._status.opportunity = opportunity
            if opportunity.practice:
                self._scope_keys.add(opportunity.practice)
            violations = validate_commercial_structure(opportunity)
            if not violations:
                return snapshot.opportunity, snapshot.customer
            await self._await_resolution(ProvisioningStep.VALIDATING, violations[0])

    async def _master_data_ok(self, request: ProvisionProjectInput) -> None:
        while True:
            self._step(ProvisioningStep.CHECKING_MASTER_DATA, "checking ERP and PSA master data")
            opportunity = self._status.opportunity
            assert opportunity is not None
            opportunity = apply_corrections(opportunity, self._corrections)
            cost_center, rate_card = await asyncio.gather(
                workflow.execute_activity_method(
                    ErpActivities.check_cost_center,
                    CheckCostCenter(cost_center=opportunity.cost_center or ""),
                    task_queue=self._erp_queue,
                    start_to_close_timeout=self._timeout,
                    retry_policy=RETRY,
                    summary=f"cost center {opportunity.cost_center}",
                ),
                workflow.execute_activity_method(
                    PsaActivities.check_rate_card,
                    CheckRateCard(rate_card_id=opportunity.rate_card_id or ""),
                    start_to_close_timeout=self._timeout,
                    retry_policy=RETRY,
                    summary=f"rate card {opportunity.rate_card_id}",
                ),
            )
            violation = cost_center or rate_card
            if violation is None:
                return
            await self._await_resolution(ProvisioningStep.CHECKING_MASTER_DATA, violation)

    async def _business_step(self, step: ProvisioningStep, call: Callable[[], Awaitable[T]]) -> T:
        """Run a forward step; a business refusal becomes an exception item and the step is
        tried again once a person has resolved it (abandon raises)."""
        while True:
            try:
                return await call()
            except ActivityError as err:
                info = business_error_info(err)
                if info is None:
                    raise
                violation = RuleViolation(
                    code=info.code or "BUSINESS_RULE",
                    field=info.field,
                    detail=info.detail or info.message,
                    evidence=info.evidence,
                )
                await self._await_resolution(step, violation)
                self._step(step, f"retrying after {violation.code} was resolved")

    def _project(self, project: Project) -> Project:
        """The project with any corrections a person made since it was built."""
        updates = {k: v for k, v in self._corrections.items() if k in Project.model_fields}
        return project.model_copy(update=updates) if updates else project

    async def _reserve_id(
        self, entity_type: str, system: str, tenant: str, object_type: str, external_id: str
    ) -> str:
        candidate = mint_ulid(
            int(workflow.now().timestamp() * 1000), workflow.random().getrandbits(80)
        )
        # A re-run after a crash mints another candidate; the store returns the first one.
        enterprise_id: str = await self._store_step(
            StoreActivities.reserve_enterprise_id,
            ReserveEnterpriseId(
                entity_type=entity_type,
                system=system,
                tenant=tenant,
                object_type=object_type,
                external_id=external_id,
                candidate=candidate,
            ),
        )
        return enterprise_id

    async def _store_step(
        self, activity: Callable[[StoreActivities, A], Awaitable[T]], arg: A
    ) -> T:
        """A short, idempotent store step: a local activity since `LOCAL_STORE_STEPS`, a
        regular one in histories recorded before it."""
        if workflow.patched(LOCAL_STORE_STEPS):
            return await workflow.execute_local_activity_method(
                activity,
                arg,
                start_to_close_timeout=min(self._timeout, LOCAL_STORE_TIMEOUT),
                retry_policy=RETRY,
                local_retry_threshold=LOCAL_RETRY_THRESHOLD,
            )
        return await workflow.execute_activity_method(
            activity, arg, start_to_close_timeout=self._timeout, retry_policy=RETRY
        )

    # ----------------------------------------------------------------------- exceptions

    async def _await_resolution(self, step: ProvisioningStep, violation: RuleViolation) -> None:
        """Open an exception item, wait for a person (escalating on time), apply the decision."""
        actions = [ResolutionAction.RETRY, ResolutionAction.ABANDON]
        if violation.field in CORRECTABLE_FIELDS:
            actions.insert(1, ResolutionAction.RETRY_WITH_DATA)
        item = await self._desk.open(
            scope=step.value,
            cause_code=violation.code,
            field=violation.field,
            detail=violation.detail,
            owner="delivery_manager",
            actions=actions,
            correctable=CORRECTABLE_FIELDS,
            context=self._item_context(step, violation),
        )
        self._status.open_exception = item
        self._step(
            ProvisioningStep.WAITING_FOR_RESOLUTION,
            f"exception {violation.code} on {violation.field or step.value}: {violation.detail}"
            f" — waiting for {' / '.join(a.value for a in actions)}",
        )
        resolution = await self._desk.wait(item.item_id)
        self._status.open_exception = None
        assert resolution is not None
        if resolution.action is ResolutionAction.ABANDON:
            raise Abandoned(
                f"abandoned by {resolution.actor} on {violation.code}: {violation.detail}"
                + (f" ({resolution.note})" if resolution.note else "")
            )
        if resolution.action is ResolutionAction.RETRY_WITH_DATA:
            self._corrections.update(resolution.corrections)

    def _item_context(self, step: ProvisioningStep, violation: RuleViolation) -> dict[str, Any]:
        """What the item records for a person: where it arose, the deal's master data (as
        corrected so far), and the vendor's request and answer when a system refused."""
        context: dict[str, Any] = {
            "step": step.value,
            "opportunity_id": self._request.opportunity_id,
            "enterprise_id": self._status.enterprise_id,
        }
        opportunity = self._status.opportunity
        if opportunity is not None:
            context["master_data"] = {
                name: self._corrections.get(name, getattr(opportunity, name, None))
                for name in sorted(CORRECTABLE_FIELDS)
            }
        if violation.evidence is not None:
            context["evidence"] = violation.evidence
        return context

    # ----------------------------------------------------------------------- compensations

    async def _compensate_psa(self, enterprise_id: str) -> None:
        await workflow.execute_activity_method(
            PsaActivities.archive_project,
            ArchiveProject(enterprise_id=enterprise_id, reason="provisioning failed"),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary="compensate: archive PSA project",
        )
        self._status.completed.append("compensated: PSA project archived")

    async def _compensate_erp(self, enterprise_id: str) -> None:
        await workflow.execute_activity_method(
            ErpActivities.close_project,
            CloseProject(enterprise_id=enterprise_id, reason="provisioning failed"),
            task_queue=self._erp_queue,
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary="compensate: close ERP project",
        )
        self._status.completed.append("compensated: ERP project closed")

    async def _compensate_demand(self, enterprise_id: str) -> None:
        await workflow.execute_activity_method(
            PsaActivities.cancel_staffing_demand,
            CancelStaffingDemand(enterprise_id=enterprise_id),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary="compensate: cancel resource requests",
        )
        self._status.completed.append("compensated: staffing demand cancelled")

    async def _mark_crm(self, opportunity_id: str, status: str, error: str | None) -> None:
        try:
            await workflow.execute_activity_method(
                CrmActivities.mark_provisioning,
                MarkProvisioning(opportunity_id=opportunity_id, status=status, error=error),
                start_to_close_timeout=self._timeout,
                retry_policy=RetryPolicy(
                    maximum_attempts=5, maximum_interval=timedelta(seconds=10)
                ),
                summary=f"CRM provisioning status: {status}",
            )
        except ActivityError:
            # The CRM status is a courtesy; the saga's outcome does not depend on it.
            workflow.logger.warning("could not mark %s %s in the CRM", opportunity_id, status)

    def _step(self, step: ProvisioningStep, details: str) -> None:
        if self._status.step is not step and self._status.step not in (
            ProvisioningStep.WAITING_FOR_RESOLUTION,
            ProvisioningStep.COMPENSATING,
        ):
            self._status.completed.append(self._status.step.value)
        self._status.step = step
        workflow.set_current_details(f"**{step.value}** — {details}")
