"""A run's bookkeeping, whatever its domain: its record (`recon.begin`, `recon.finish`), its
scope of projects page by page (`recon.plan`), and a person's decision on an escalated drift
(`recon.acknowledge`; `recon.force_repair` on the ERP queue)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from temporalio import activity

from activities._errors import translate_errors
from activities.reconciliation._base import _ReconBase
from contracts.errors import BusinessRuleViolation
from contracts.ids import canonical_psa_id
from contracts.v1.processes import ResolutionAction
from contracts.v1.reconciliation import (
    BeginRun,
    Domain,
    DriftDecision,
    DriftResolutionResult,
    DriftState,
    FinishRun,
    PlanPage,
    PlanRequest,
    ProjectUnit,
    ReconciliationReport,
)
from contracts.v1.time_to_invoice import period_of


class _RunsMixin(_ReconBase):
    # Set by each domain's mixin: domain -> its "repair anyway".
    labor_force: Callable[[DriftDecision], Awaitable[str]]
    project_force: Callable[[DriftDecision], Awaitable[str]]
    billing_force: Callable[[DriftDecision], Awaitable[str]]

    @activity.defn(name="recon.begin")
    @translate_errors
    async def begin(self, request: BeginRun) -> None:
        await asyncio.to_thread(
            lambda: self.store.start_reconciliation_run(
                request.run_id,
                domain=request.domain.value,
                tenant=request.tenant,
                started_at=request.started_at,
                project=request.project,
                since=request.since,
                dry_run=request.dry_run,
                requested_by=request.requested_by,
            )
        )

    @activity.defn(name="recon.plan")
    @translate_errors
    async def plan(self, request: PlanRequest) -> PlanPage:
        """The next page of the scope's projects (one project, or every project pssync knows
        for the tenant, in id order after `after`). Project master (won deals) and workforce
        (leavers) compare no projects: one unit, the whole scope (`*`, or the project)."""
        if request.domain in (Domain.PROJECT_MASTER, Domain.WORKFORCE):
            if request.after is not None:
                return PlanPage()
            return PlanPage(units=[ProjectUnit(psa_project_id=request.project or "*")])
        if request.project is not None:
            if request.after is not None:
                return PlanPage()
            project = canonical_psa_id(request.project)
            known = dict(
                await asyncio.to_thread(
                    self.store.reconciliation_projects, request.tenant, after=None, limit=1000
                )
            )
            return PlanPage(
                units=[ProjectUnit(psa_project_id=project, erp_project=known.get(project))],
                cursor=None,
            )
        found = await asyncio.to_thread(
            self.store.reconciliation_projects,
            request.tenant,
            after=request.after,
            limit=request.limit,
        )
        units = [ProjectUnit(psa_project_id=p, erp_project=e) for p, e in found]
        cursor = units[-1].psa_project_id if len(units) == request.limit else None
        return PlanPage(units=units, cursor=cursor)

    @activity.defn(name="recon.finish")
    @translate_errors
    async def finish(self, request: FinishRun) -> ReconciliationReport:
        """Close the drifts of the scope this run did not find again (verified), withdraw their
        items from the desk, and record the run's totals. A dry run closes nothing."""
        since = period_of(request.since) if request.since else None
        project = canonical_psa_id(request.project) if request.project else None
        domain, tenant = request.domain.value, request.tenant
        gone = []
        if not request.dry_run:
            gone = await asyncio.to_thread(
                lambda: self.store.close_gone_drifts(
                    request.run_id,
                    domain=domain,
                    tenant=tenant,
                    at=request.finished_at,
                    project=project,
                    since_period=since,
                )
            )
            withdrawn = [d.fingerprint for d in gone if d.state == DriftState.ESCALATED.value]
            if withdrawn:
                await self._to_desk(
                    request.tenant,
                    request.escalation_after_s,
                    request.task_queue,
                    gone=withdrawn,
                    run_id=request.run_id,
                )
        unrepaired = await asyncio.to_thread(
            lambda: self.store.count_standing_drifts(
                domain=domain,
                tenant=tenant,
                project=project,
                since_period=since,
                states=(DriftState.OPEN.value, DriftState.ESCALATED.value),
            )
        )
        t = request.totals
        seconds = max(0.0, (request.finished_at - request.started_at).total_seconds())
        report = ReconciliationReport(
            **request.scope(),
            run_id=request.run_id,
            by_kind=dict(sorted(t.by_kind.items())),
            found=t.found,
            new=t.new,
            repaired=t.repaired,
            escalated=t.escalated,
            reported=t.reported,
            kept=t.kept,
            gone=len(gone),
            unrepaired=unrepaired,
            records=t.records,
            projects=t.projects,
            vendor_calls=t.vendor_calls,
            seconds=round(seconds, 3),
            started_at=request.started_at,
            finished_at=request.finished_at,
            finished=True,
        )
        numbers = report.model_dump(
            include={
                "by_kind", "found", "new", "repaired", "escalated", "reported", "kept", "gone",
                "unrepaired", "records", "projects", "vendor_calls", "seconds",
            }
        )  # fmt: skip
        await asyncio.to_thread(
            lambda: self.store.finish_reconciliation_run(
                request.run_id, finished_at=request.finished_at, **numbers
            )
        )
        return report

    # ------------------------------------------------------------------ a person's decision

    @activity.defn(name="recon.acknowledge")
    @translate_errors
    async def acknowledge(self, decision: DriftDecision) -> DriftResolutionResult:
        """The person accepts the drift as it is: it stays recorded, acknowledged, and is
        raised again only if its values change."""
        fingerprint = decision.drift.drift.fingerprint
        await asyncio.to_thread(
            lambda: self.store.set_drift_state(
                fingerprint,
                DriftState.ACKNOWLEDGED.value,
                actor=decision.actor,
                only_from=(DriftState.ESCALATED.value, DriftState.OPEN.value),
            )
        )
        return DriftResolutionResult(
            item_id=decision.item_id,
            action=decision.action,
            outcome="acknowledged",
            detail=f"{decision.drift.drift.kind.value} acknowledged by {decision.actor}",
        )

    @activity.defn(name="recon.force_repair")
    @translate_errors
    async def force_repair(self, decision: DriftDecision) -> DriftResolutionResult:
        """The person asks for the repair anyway (ERP queue: it may reverse postings). The
        drift is marked repaired; the next run verifies it."""
        drift = decision.drift.drift
        if decision.action is not ResolutionAction.RETRY:
            raise BusinessRuleViolation("INVALID_ACTION", f"{decision.action} is not a repair")
        forced = {
            Domain.LABOR_ACTUALS: self.labor_force,
            Domain.PROJECT_MASTER: self.project_force,
            Domain.BILLING_STATUS: self.billing_force,
        }.get(drift.domain)
        if forced is None:
            raise BusinessRuleViolation(
                "NOT_REPAIRABLE", f"pssync cannot repair {drift.domain.value} drifts"
            )
        detail = await forced(decision)
        await asyncio.to_thread(
            lambda: self.store.set_drift_state(
                drift.fingerprint, DriftState.REPAIRED.value, actor=decision.actor
            )
        )
        return DriftResolutionResult(
            item_id=decision.item_id, action=decision.action, outcome="repaired", detail=detail
        )
