"""The retention purge: `RetentionPurge` on the time-skipping server with the real workers over a
SQLite store (aged rows go, young and unfinished ones stay, a backlog takes several activity
calls, 0 days keeps a table), and its Schedule on the dev server (created, then triggered)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from temporalio.client import ScheduleActionStartWorkflow, ScheduleHandle, ScheduleIntervalSpec
from temporalio.testing import WorkflowEnvironment

import store
from activities.retention import (
    RETENTION_PURGE,
    PurgeReport,
    RetentionPolicy,
    ensure_retention_schedule,
)
from connectors.erp import FakeErp
from connectors.psa import FakePsa
from contracts.settings import RetentionSettings, Settings
from store import NewAuditEntry
from tests.workflows._worlds import fake_deployment, running_workers, sqlite_store

AUDIT = NewAuditEntry(actor="ops", action="exception.resolve", subject_kind="x", subject_id="1")


def fill(url: str, old: datetime, young: datetime) -> None:
    """Rows written 60 days and one day before `now` (the store's clock set back)."""
    engine = store.make_engine(url)
    try:
        then, lately = (store.Store(engine, clock=lambda t=t: t) for t in (old, young))
        for n in range(4):
            then.inbox_accept("psa", f"done-{n}", "h")
            then.inbox_mark_processed("psa", f"done-{n}", "wf")
        then.inbox_accept("psa", "pending", "h")
        then.inbox_accept("psa", "failed", "h")
        then.inbox_record_failure("psa", "failed", "refused", permanent=True)
        lately.inbox_accept("crm", "young", "h")
        lately.inbox_mark_processed("crm", "young")
        for key in ("a", "b", "unsent"):
            then.add_outbox("project.provisioned", key, {})
        then.mark_published([row.id for row in then.pending_outbox() if row.key != "unsent"])
        for n in range(7):
            then.record_lineage("project", f"P{n}", ["name"], "CRM", None, "wf", None, "a")
        lately.record_lineage("project", "P-young", ["name"], "CRM", None, "wf", None, "a")
        then.audit_begin(AUDIT)
    finally:
        engine.dispose()


def remaining(url: str) -> dict[str, list[str]]:
    engine = store.make_engine(url)
    queries = {
        "inbox": "SELECT event_id FROM inbox ORDER BY event_id",
        "outbox": "SELECT key FROM outbox ORDER BY key",
        "lineage": "SELECT entity_key FROM lineage ORDER BY entity_key",
        "audit": "SELECT subject_id FROM audit",
    }
    try:
        with engine.connect() as conn:
            return {t: [str(v) for v in conn.scalars(text(q))] for t, q in queries.items()}
    finally:
        engine.dispose()


async def test_the_purge_deletes_aged_rows_and_keeps_the_rest(
    ts_env: WorkflowEnvironment, tmp_path: Path, settings: Settings
) -> None:
    now = await ts_env.get_current_time()
    queue = f"retention-{uuid.uuid4()}"
    with sqlite_store(tmp_path) as (url, st):
        await asyncio.to_thread(fill, url, now - timedelta(days=60), now - timedelta(days=1))
        deployment = fake_deployment(settings=settings, store=st, psa=FakePsa(), erp=FakeErp())
        policy = RetentionPolicy(
            inbox_days=30, outbox_days=30, lineage_days=30, audit_days=0,
            batch_size=3, max_batches_per_call=1,
        )  # fmt: skip
        async with running_workers(ts_env.client, deployment, queue):
            handle = await ts_env.client.start_workflow(
                RETENTION_PURGE,
                policy,
                id=f"retention-{uuid.uuid4()}",
                task_queue=queue,
                result_type=PurgeReport,
            )
            report = await handle.result()
            history = await handle.fetch_history()

        assert report.deleted == {"inbox": 4, "outbox": 2, "lineage": 7}
        assert report.kept_forever == ["audit"] and report.unfinished == []
        assert report.cutoffs["lineage"] == report.cutoffs["inbox"]
        assert now - timedelta(days=30) <= report.cutoffs["lineage"] <= now - timedelta(days=29)
        assert await asyncio.to_thread(remaining, url) == {
            "inbox": ["failed", "pending", "young"],
            "outbox": ["unsent"],
            "lineage": ["P-young"],
            "audit": ["1"],
        }
        # inbox: 4 rows in batches of 3, one batch per call -> 2 calls; outbox 1; lineage 3
        scheduled = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]
        assert scheduled == ["store.purge_expired"] * 6


async def test_the_schedule_runs_the_purge(
    dev_env: WorkflowEnvironment, tmp_path: Path, settings: Settings
) -> None:
    client = dev_env.client
    queue = f"retention-{uuid.uuid4()}"
    schedule_id = f"retention-purge-{uuid.uuid4()}"
    retention = RetentionSettings(inbox_days=7, lineage_days=30, audit_days=0, interval_s=86_400)
    with sqlite_store(tmp_path) as (url, st):
        old = datetime.now().astimezone() - timedelta(days=60)
        await asyncio.to_thread(fill, url, old, old)
        await ensure_retention_schedule(
            client, retention, task_queue=queue, schedule_id=schedule_id
        )
        handle = client.get_schedule_handle(schedule_id)
        try:
            desc = await handle.describe()
            assert desc.schedule.spec.intervals == [ScheduleIntervalSpec(every=timedelta(days=1))]
            action = desc.schedule.action
            assert isinstance(action, ScheduleActionStartWorkflow)
            assert action.workflow == RETENTION_PURGE
            deployment = fake_deployment(settings=settings, store=st, psa=FakePsa(), erp=FakeErp())
            async with running_workers(client, deployment, queue):
                await handle.trigger()
                run_id = await first_action(handle)
                run = client.get_workflow_handle(run_id, result_type=PurgeReport)
                report = await run.result()
        finally:
            await handle.delete()
    assert report.deleted == {"inbox": 5, "outbox": 2, "lineage": 8}
    assert report.kept_forever == ["audit"]


async def first_action(handle: ScheduleHandle) -> str:
    """The workflow id of the Schedule's first action (visible a moment after the trigger)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        info = (await handle.describe()).info
        if info.recent_actions:
            return str(getattr(info.recent_actions[0].action, "workflow_id", ""))
        if info.running_actions:
            return info.running_actions[0].workflow_id
        assert loop.time() < deadline, "the Schedule started no run"
        await asyncio.sleep(0.1)
