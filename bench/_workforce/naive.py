"""The naive baseline's workflow: one short run per HCM change, applying it at once (no
entity per worker, no order, no duplicate check)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from bench._workforce.naive_apply import NAIVE_APPLY
    from contracts.v1.workforce import WorkerChange


@workflow.defn(name="BenchNaiveWorkerChange")
class BenchNaiveWorkerChange:
    @workflow.run
    async def run(self, change: WorkerChange) -> None:
        await workflow.execute_activity(
            NAIVE_APPLY,
            change,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=5)),
        )
