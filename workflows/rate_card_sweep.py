"""RateCardSweep: one Schedule action (`rate-card-sweep/{psa_tenant}`, every
`rate_card_sweep_interval_s`) that announces the PSA rate card revisions a lost webhook missed.

No messages. Its one activity `rate_cards.sweep` lists the versions the PSA published since the
stored cursor (less an overlap) and signal-with-starts each card's `RateCardSync` with every
revision no sweep announced before; the sync drops a revision it has decided or queued, so one
announced by both the webhook and the sweep is synced once. Overlapping runs are skipped by the
Schedule, so one sweep at a time owns the cursor; a failed run leaves the cursor where it was
and the next action reads the window again.

Deterministic: no I/O.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows._common import BUSINESS_PROCESS, POLL_RETRY, poll_heartbeat

with workflow.unsafe.imports_passed_through():
    from activities.rate_cards import RateCardSweepActivities
    from contracts.v1.rate_cards import (
        PROCESS_RATE_CARD_SYNC,
        RATE_CARD_SWEEP,
        RateCardSweepInput,
        RateCardSweepResult,
    )


@workflow.defn(name=RATE_CARD_SWEEP)
class RateCardSweepWorkflow:
    @workflow.run
    async def run(self, request: RateCardSweepInput) -> RateCardSweepResult:
        workflow.upsert_search_attributes([BUSINESS_PROCESS.value_set(PROCESS_RATE_CARD_SYNC)])
        result: RateCardSweepResult = await workflow.execute_activity_method(
            RateCardSweepActivities.sweep,
            request,
            start_to_close_timeout=timedelta(seconds=request.activity_timeout_s),
            heartbeat_timeout=poll_heartbeat(request.activity_timeout_s),
            retry_policy=POLL_RETRY,
            summary="PSA rate card versions published since the last sweep",
        )
        workflow.set_current_details(
            f"window {result.window_from.isoformat()} .. {result.window_through.isoformat()}: "
            f"{result.seen} versions, {len(result.announced)} announced, "
            f"{result.duplicates} announced before"
        )
        return result


WORKFLOWS: list[type] = [RateCardSweepWorkflow]
