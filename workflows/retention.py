"""RetentionPurgeWorkflow: one Schedule action of the retention purge (`activities.retention`).

For each table with a retention (inbox, outbox, lineage, audit; 0 days keeps a table forever)
the cutoff is the run's start time minus the days kept; `store.purge_expired` deletes older rows
in batches and says whether any are left, and is called again until none are, at most
`MAX_CALLS_PER_TABLE` times (a larger backlog goes on at the next run). Deterministic: the
cutoffs come from `workflow.now()`. No messages; overlapping runs are skipped by the Schedule.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.retention import (
        INVALID_PURGE,
        RETENTION_PURGE,
        PurgeReport,
        PurgeRequest,
        PurgeResult,
        RetentionActivities,
        RetentionPolicy,
    )

MAX_CALLS_PER_TABLE = 20

PURGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=6,
    non_retryable_error_types=[INVALID_PURGE],
)


@workflow.defn(name=RETENTION_PURGE)
class RetentionPurgeWorkflow:
    @workflow.run
    async def run(self, policy: RetentionPolicy) -> PurgeReport:
        now = workflow.now()
        report = PurgeReport()
        for table, days in policy.days():
            if days == 0:
                report.kept_forever.append(table)
                continue
            cutoff = now - timedelta(days=days)
            report.cutoffs[table] = cutoff
            report.deleted[table] = 0
            workflow.set_current_details(f"purging {table} rows older than {cutoff:%Y-%m-%d}")
            for _ in range(MAX_CALLS_PER_TABLE):
                result: PurgeResult = await workflow.execute_activity_method(
                    RetentionActivities.purge,
                    PurgeRequest(
                        table=table,
                        older_than=cutoff,
                        batch_size=policy.batch_size,
                        max_batches=policy.max_batches_per_call,
                    ),
                    start_to_close_timeout=timedelta(minutes=15),
                    heartbeat_timeout=timedelta(minutes=2),
                    retry_policy=PURGE_RETRY,
                    summary=f"purge {table} older than {days} days",
                )
                report.deleted[table] += result.deleted
                if not result.more:
                    break
            else:
                report.unfinished.append(table)
        workflow.set_current_details(
            "purged "
            + ", ".join(f"{n} {table}" for table, n in report.deleted.items())
            + (f"; kept forever: {', '.join(report.kept_forever)}" if report.kept_forever else "")
        )
        return report


WORKFLOWS = [RetentionPurgeWorkflow]
