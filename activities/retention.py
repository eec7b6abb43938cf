"""Retention: the activity that deletes the store's aged rows, and the Schedule that runs the
`RetentionPurge` workflow (`workflows.retention`) every `settings.retention.interval_s` (daily).

    await ensure_retention_schedule(client, settings.retention, task_queue=TASK_QUEUE)

The workflow computes each table's cutoff from its own clock (`workflow.now()` minus the days
kept) and calls `store.purge_expired` until nothing older is left; the activity deletes in
batches of `batch_size` rows, one short transaction each (`Store.purge_batch`), heartbeating
after each. What may go is decided by the store (`store.repository.retention`): never an inbox
event not yet processed, never an outbox event not yet published.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from contracts.settings import RetentionSettings
from plumbing.temporal import ensure_interval_schedule
from store import RetentionTable, Store

RETENTION_PURGE = "RetentionPurge"
"""The workflow type the Schedule starts."""
RETENTION_SCHEDULE_ID = "retention-purge"
INVALID_PURGE = "InvalidPurge"
"""Error type of a purge request the store refuses (non-retryable)."""


class RetentionPolicy(BaseModel):
    """Days kept per table (0: forever) and the batch size: the workflow's input."""

    inbox_days: int = Field(default=30, ge=0)
    lineage_days: int = Field(default=730, ge=0)
    outbox_days: int = Field(default=30, ge=0)
    audit_days: int = Field(default=2557, ge=0)
    batch_size: int = Field(default=1000, ge=1, le=10_000)
    max_batches_per_call: int = Field(default=100, ge=1)
    """Batches one activity call deletes before it hands back (the workflow calls again)."""

    @classmethod
    def from_settings(cls, retention: RetentionSettings) -> RetentionPolicy:
        return cls(
            inbox_days=retention.inbox_days,
            lineage_days=retention.lineage_days,
            outbox_days=retention.outbox_days,
            audit_days=retention.audit_days,
            batch_size=retention.batch_size,
        )

    def days(self) -> list[tuple[str, int]]:
        """(table, days kept) for every table with a retention, in purge order."""
        return [
            (RetentionTable.INBOX.value, self.inbox_days),
            (RetentionTable.OUTBOX.value, self.outbox_days),
            (RetentionTable.LINEAGE.value, self.lineage_days),
            (RetentionTable.AUDIT.value, self.audit_days),
        ]


class PurgeRequest(BaseModel):
    table: str
    """A `store.RetentionTable` value."""
    older_than: datetime
    batch_size: int = Field(default=1000, ge=1, le=10_000)
    max_batches: int = Field(default=100, ge=1)


class PurgeResult(BaseModel):
    table: str
    deleted: int
    more: bool
    """True when the call stopped at `max_batches` with aged rows still left."""


class PurgeReport(BaseModel):
    """What one run of the purge deleted, per table, and each table's cutoff."""

    deleted: dict[str, int] = Field(default_factory=dict)
    cutoffs: dict[str, datetime] = Field(default_factory=dict)
    kept_forever: list[str] = Field(default_factory=list)
    unfinished: list[str] = Field(default_factory=list)
    """Tables with aged rows still left after this run's calls (the next run goes on)."""


class RetentionActivities:
    def __init__(self, store: Store) -> None:
        self.store = store

    @activity.defn(name="store.purge_expired")
    async def purge(self, request: PurgeRequest) -> PurgeResult:
        """Delete `request.table`'s rows past retention at `older_than`, batch by batch."""
        deleted = 0
        for _ in range(request.max_batches):
            try:
                count = await asyncio.to_thread(
                    self.store.purge_batch, request.table, request.older_than, request.batch_size
                )
            except ValueError as err:
                raise ApplicationError(str(err), type=INVALID_PURGE, non_retryable=True) from err
            deleted += count
            activity.heartbeat(deleted)
            if count < request.batch_size:
                return PurgeResult(table=request.table, deleted=deleted, more=False)
        return PurgeResult(table=request.table, deleted=deleted, more=True)


async def ensure_retention_schedule(
    client: Client,
    retention: RetentionSettings,
    *,
    task_queue: str,
    schedule_id: str = RETENTION_SCHEDULE_ID,
) -> None:
    """Create the Schedule that runs `RetentionPurge` every `retention.interval_s`, or bring
    an existing one up to date (a changed policy applies from the next run). Overlapping runs
    are skipped."""
    await ensure_interval_schedule(
        client,
        schedule_id,
        RETENTION_PURGE,
        RetentionPolicy.from_settings(retention),
        every=timedelta(seconds=retention.interval_s),
        task_queue=task_queue,
    )
