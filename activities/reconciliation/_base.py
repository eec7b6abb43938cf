"""What every domain of reconciliation shares: the ports and the store, the heartbeat, counting
vendor calls, and `_settle` — from a chunk's findings to the store, the repairs and the desk.

A domain module (one per domain: `labor`, ...) reads its systems, compares (pure rules beside
it) and hands its findings to `_settle` with the function that repairs its safe drifts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from temporalio import activity
from temporalio.client import Client
from temporalio.common import SearchAttributePair

from activities.reconciliation.billing_rules import billing_repairable
from connectors.crm import CrmPort
from connectors.erp import ErpPort
from connectors.psa import PsaPort
from contracts.v1.processes import ResolutionAction
from contracts.v1.reconciliation import (
    DRIFTS_ESCALATED_SIGNAL,
    DRIFTS_GONE_SIGNAL,
    PROCESS_RECONCILIATION,
    RECONCILIATION_DESK,
    CompareChunk,
    DeskInput,
    Domain,
    Drift,
    DriftAction,
    DriftKind,
    DriftsEscalated,
    DriftsGone,
    DriftState,
    EscalatedDrift,
    PriorDrift,
    RunTotals,
    decide,
    desk_item_id,
    reconciliation_desk_workflow_id,
)
from contracts.v1.time_to_invoice import TimePipelineInput
from plumbing.temporal import BUSINESS_PROCESS, signal_with_start
from store import DriftRow, Store

HEARTBEAT_EVERY_S = 2.0
SIGNAL_CHUNK = 100
"""Drifts per signal to the desk (a signal's payload stays small)."""


class Found(Protocol):
    """A domain's finding: the drift and the evidence a person sees with it."""

    @property
    def drift(self) -> Drift: ...

    @property
    def evidence(self) -> Mapping[str, str | None]: ...


Repairer = Callable[[CompareChunk, Sequence[Any]], Awaitable[None]]


async def heartbeat_every(seconds: float) -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(seconds)


def prior_of(row: DriftRow | None) -> PriorDrift | None:
    if row is None:
        return None
    return PriorDrift(
        state=DriftState(row.state),
        values=dict(row.values),
        repairs=row.repairs,
        escalations=row.escalations,
    )


class _CallCounter:
    """Vendor requests made while a comparison ran: the connectors' own request counts where
    they keep one (approximate when other work shares the worker), else the port calls made
    (`note`, for the in-memory fakes)."""

    def __init__(self, *ports: Any) -> None:
        self._start = {id(p): (p, self._count(p)) for p in ports}
        self._noted = 0

    @staticmethod
    def _count(port: Any) -> int | None:
        calls = getattr(getattr(port, "http", None), "calls", None)
        return calls if isinstance(calls, int) else None

    def note(self, port: Any, calls: int = 1) -> None:
        """`calls` calls of `port`, counted when it keeps no request count of its own."""
        if self._count(port) is None:
            self._noted += calls

    def total(self) -> int:
        counted = 0
        for port, start in self._start.values():
            now = self._count(port)
            if now is not None and start is not None:
                counted += now - start
        return counted + self._noted


class _ReconBase:
    """Ports, store and client of `ReconciliationActivities` (set by its constructor)."""

    crm: CrmPort
    psa: PsaPort
    erp: ErpPort
    store: Store
    client: Client | None
    pipeline_defaults: TimePipelineInput | None
    tenants: dict[str, str]
    """System (`CRM`, `PSA`, ...) -> the tenant this deployment serves there."""

    def _client(self) -> Client:
        if self.client is None:
            raise RuntimeError("reconciliation needs a Temporal client to repair and escalate")
        return self.client

    async def _settle(
        self, request: CompareChunk, findings: Sequence[Found], repair: Repairer
    ) -> RunTotals:
        """Decide what to do with each finding (given what earlier runs did), do it — repairs
        through `repair`, escalations to the desk — then record the drifts. Recording comes
        last, so a retried activity decides the same again and acts idempotently."""
        now = datetime.now(UTC)
        priors = await asyncio.to_thread(
            self.store.drift_priors, [f.drift.fingerprint for f in findings]
        )
        totals = RunTotals()
        rows: list[dict[str, Any]] = []
        repairs: list[Any] = []
        escalations: list[EscalatedDrift] = []
        for finding in findings:
            drift = finding.drift
            row = priors.get(drift.fingerprint)
            decision = decide(
                drift, prior_of(row), dry_run=request.dry_run, max_repairs=request.max_repairs
            )
            totals.found += 1
            totals.by_kind[drift.kind.value] = totals.by_kind.get(drift.kind.value, 0) + 1
            if row is None or row.state == DriftState.GONE.value:
                totals.new += 1
            item_id = row.item_id if row is not None else None
            detail = decision.detail or drift.detail
            match decision.action:
                case DriftAction.REPAIR:
                    totals.repaired += 1
                    repairs.append(finding)
                case DriftAction.ESCALATE:
                    totals.escalated += 1
                    item_id = desk_item_id(request.tenant, drift.fingerprint, decision.escalations)
                    escalations.append(
                        EscalatedDrift(
                            drift=drift.model_copy(update={"detail": detail}),
                            generation=decision.escalations,
                            run_id=request.run_id,
                            actions=_actions(drift),
                            evidence=dict(finding.evidence),
                        )
                    )
                case DriftAction.REPORT:
                    totals.reported += 1
                case DriftAction.KEEP:
                    totals.kept += 1
            rows.append(
                {
                    "fingerprint": drift.fingerprint,
                    "domain": drift.domain.value,
                    "kind": drift.kind.value,
                    "tenant": request.tenant,
                    "project": drift.project,
                    "period": drift.period,
                    "keys": drift.keys,
                    "values": drift.values,
                    "owner": drift.owner.value,
                    "disposition": drift.disposition.value,
                    "detail": detail,
                    "state": decision.state.value,
                    "repairs": decision.repairs,
                    "escalations": decision.escalations,
                    "item_id": item_id,
                    "first_seen": now,
                    "last_seen": now,
                    "first_run": request.run_id,
                    "last_run": request.run_id,
                    "closed_run": None,
                    "closed_at": None,
                }
            )
        if repairs:
            await repair(request, repairs)
        if escalations:
            await self._to_desk(request.tenant, request.escalation_after_s, request.task_queue,
                                escalated=escalations)  # fmt: skip
        await asyncio.to_thread(self.store.record_drifts, rows)
        return totals

    async def _to_desk(
        self,
        tenant: str,
        escalation_after_s: float,
        task_queue: str,
        *,
        escalated: Sequence[EscalatedDrift] = (),
        gone: Sequence[str] = (),
        run_id: str = "",
    ) -> None:
        """Signal(-with-start) the tenant's desk: items to open, items whose drift is gone."""
        client = self._client()
        workflow_id = reconciliation_desk_workflow_id(tenant)
        batches: list[tuple[str, Any]] = [
            (DRIFTS_ESCALATED_SIGNAL, DriftsEscalated(drifts=list(escalated[i : i + SIGNAL_CHUNK])))
            for i in range(0, len(escalated), SIGNAL_CHUNK)
        ]
        batches += [
            (DRIFTS_GONE_SIGNAL, DriftsGone(fingerprints=list(gone[i : i + 500]), run_id=run_id))
            for i in range(0, len(gone), 500)
        ]
        for signal, arg in batches:
            await signal_with_start(
                client,
                RECONCILIATION_DESK,
                DeskInput(tenant=tenant, escalation_after_s=escalation_after_s),
                id=workflow_id,
                signal=signal,
                signal_arg=arg,
                task_queue=task_queue,
                search_attributes=[SearchAttributePair(BUSINESS_PROCESS, PROCESS_RECONCILIATION)],
                static_summary=f"Reconciliation drifts of {tenant} waiting for a person",
            )
            activity.heartbeat()


def _actions(drift: Drift) -> list[ResolutionAction]:
    """What a person may do with an escalated drift: acknowledge it (`skip`), and where pssync
    can act on it, ask for the repair anyway (`retry`)."""
    if drift.domain is Domain.BILLING_STATUS:  # billed again, or marked again
        repairable = billing_repairable(drift)
    elif drift.domain is Domain.LABOR_ACTUALS:
        repairable = drift.kind is not DriftKind.LABOR_PERIOD_TOTAL_MISMATCH
    elif drift.domain in (Domain.FORECAST_ALIGNMENT, Domain.WORKFORCE):
        repairable = False  # escalated only where pssync must not act: a person decides
    else:  # project master: only a deal never provisioned (its saga is started)
        repairable = (
            drift.kind is DriftKind.PROJECT_MISSING_PSA_PROJECT
            and "enterprise_id" not in drift.keys
        )
    if not repairable:
        return [ResolutionAction.SKIP]
    return [ResolutionAction.SKIP, ResolutionAction.RETRY]
