"""The PSA sweep of the time-to-invoice pipeline (`time.sweep`, run by a Schedule): approved
entries webhooks missed go to their projects' pipelines, closed T&M periods are billed. Also
`signal_pipeline` (signal a project's pipeline, starting it if need be) and
`ensure_time_sweep_schedule`."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.common import SearchAttributePair

from activities._errors import translate_errors
from activities.time_to_invoice._support import HEARTBEAT_EVERY_S, _heartbeat_every, _today
from activities.time_to_invoice.caches import _Base
from contracts.naming import time_pipeline_workflow_id, time_sweep_schedule_id
from contracts.v1.time_to_invoice import (
    BILLING_SIGNAL,
    ENTRIES_CHANGED_SIGNAL,
    PROCESS_TIME_TO_INVOICE,
    SWEEP_CURSOR,
    TIME_SWEEP,
    TIME_TO_INVOICE,
    BillingRequest,
    BillingTrigger,
    EntriesChanged,
    EntryKind,
    EntryRef,
    SweepInput,
    SweepResult,
    TimePipelineInput,
    period_of,
)
from plumbing.temporal import BUSINESS_PROCESS, ensure_interval_schedule, signal_or_start
from store import TimePostingState

SWEEP_PAGE = 1000
"""Entries signalled to one project's pipeline per signal by the sweep."""


class _SweepMixin(_Base):
    # ------------------------------------------------------------------ the sweep

    @activity.defn(name="time.sweep")
    @translate_errors
    async def sweep(self, request: SweepInput) -> SweepResult:
        """Approved, not invoiced entries changed since the cursor whose version the ledger
        has not seen go to their project's pipeline (signalled, started if not running). The
        cursor moves only after every signal went out, so a crash re-reads the window."""
        ticker = asyncio.create_task(_heartbeat_every(HEARTBEAT_EVERY_S))
        try:
            return await self._sweep(request)
        finally:
            ticker.cancel()

    async def _sweep(self, request: SweepInput) -> SweepResult:
        if self.client is None:
            raise RuntimeError("the sweep needs a Temporal client")
        defaults = self.pipeline_defaults or TimePipelineInput(
            psa_tenant=request.psa_tenant, psa_project_id="-"
        )
        defaults = defaults.model_copy(update={"psa_tenant": request.psa_tenant})
        cursor_name = f"{SWEEP_CURSOR}/{request.psa_tenant}"
        stored = await asyncio.to_thread(self.store.get_state, cursor_name)
        since = (
            datetime.fromisoformat(stored) - timedelta(seconds=request.overlap_s)
            if stored
            else None
        )
        result = SweepResult()
        by_project: dict[str, list[EntryRef]] = {}
        refs, newest = await self._approved_since(since)
        result.seen = len(refs)
        ledger = await asyncio.to_thread(self.store.time_postings, [r.key for _, r in refs])
        for project_id, ref in refs:
            row = ledger.get(ref.key)
            if (
                row is not None
                and row.entry_version == ref.version
                and row.state != (TimePostingState.POSTING.value)
            ):
                continue  # the pipeline has seen this version (posted, held, or rejected)
            by_project.setdefault(project_id, []).append(ref)
        task_queue = activity.info().task_queue
        for project_id, project_refs in by_project.items():
            for i in range(0, len(project_refs), SWEEP_PAGE):
                await signal_pipeline(
                    self.client,
                    defaults,
                    project_id,
                    ENTRIES_CHANGED_SIGNAL,
                    EntriesChanged(refs=project_refs[i : i + SWEEP_PAGE], source="sweep"),
                    task_queue=task_queue,
                )
                activity.heartbeat()
            result.signalled += len(project_refs)
            result.projects.append(project_id)
        # T&M periods that have closed (a month before this one) with unbilled entries.
        this_period = period_of(_today())
        for project_id, period in await asyncio.to_thread(self.store.unbilled_periods, this_period):
            await signal_pipeline(
                self.client,
                defaults,
                project_id,
                BILLING_SIGNAL,
                BillingRequest(
                    trigger=BillingTrigger.PERIOD_CLOSE, period=period, requested_by="sweep"
                ),
                task_queue=task_queue,
            )
            result.billing_requested.append(f"{project_id}/{period}")
        if newest is not None:
            await asyncio.to_thread(self.store.put_state, cursor_name, newest.isoformat())
            result.cursor = newest.isoformat()
        return result

    async def _approved_since(
        self, since: datetime | None
    ) -> tuple[list[tuple[str, EntryRef]], datetime | None]:
        """Approved, not invoiced entries changed since `since` (by PSA project), and the
        newest change among them."""
        newest: datetime | None = None
        refs: list[tuple[str, EntryRef]] = []
        async for t in self.psa.list_approved_time(since, invoiced=False):
            refs.append(
                (
                    t.project_id,
                    EntryRef(kind=EntryKind.TIME, entry_id=t.external_id, version=t.source_version),
                )
            )
            newest = (
                max(newest, t.updated_at) if newest and t.updated_at else (t.updated_at or newest)
            )
        async for x in self.psa.list_approved_expenses(since, invoiced=False):
            refs.append(
                (
                    x.project_id,
                    EntryRef(
                        kind=EntryKind.EXPENSE, entry_id=x.external_id, version=x.source_version
                    ),
                )
            )
            newest = (
                max(newest, x.updated_at) if newest and x.updated_at else (x.updated_at or newest)
            )
        return refs, newest


async def signal_pipeline(
    client: Client,
    defaults: TimePipelineInput,
    psa_project_id: str,
    signal: str,
    arg: EntriesChanged | BillingRequest,
    *,
    task_queue: str,
) -> str:
    """Signal the project's pipeline, starting it if it is not running; its workflow id.
    Pipelines run for an hour past their last entry, so this is nearly always a plain signal
    (half the server's work of a signal-with-start, `plumbing.temporal.signal_or_start`).
    `defaults` carries the deployment's batch settings (see
    `contracts.v1.time_to_invoice.pipeline_input`)."""
    workflow_id = time_pipeline_workflow_id(defaults.psa_tenant, psa_project_id)
    await signal_or_start(
        client,
        TIME_TO_INVOICE,
        defaults.model_copy(update={"psa_project_id": psa_project_id, "carry": None}),
        id=workflow_id,
        signal=signal,
        signal_arg=arg,
        task_queue=task_queue,
        search_attributes=[SearchAttributePair(BUSINESS_PROCESS, PROCESS_TIME_TO_INVOICE)],
        static_summary=f"Time and expense of PSA project {psa_project_id} -> ERP and invoices",
    )
    return workflow_id


async def ensure_time_sweep_schedule(
    client: Client, *, every: timedelta, task_queue: str, psa_tenant: str
) -> None:
    """Create (or bring up to date) the Schedule that sweeps the PSA every `every` for
    approved entries webhooks missed, and bills closed T&M periods. Overlaps are skipped."""
    await ensure_interval_schedule(
        client,
        time_sweep_schedule_id(psa_tenant),
        TIME_SWEEP,
        SweepInput(psa_tenant=psa_tenant),
        every=every,
        task_queue=task_queue,
    )
