"""Async job bodies: a write run as a task, a batch upsert (one task per record), and the
job and task JSON that the async service answers with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlmodel import Session

from sandbox._twin import TwinError
from sandbox.erp.common import ASYNC, Url, _stamp, error_body
from sandbox.erp.lookups import _BATCH, _Batch, _before_query, _prefetch, _write_inserts
from sandbox.erp.records import RecordType
from sandbox.erp.records.base import _base
from sandbox.erp.tables import ErpAsyncJob
from sandbox.erp.write import write_record


def _record_task(
    s: Session, kind: RecordType, url: Url, run: Callable[[], tuple[Any, bool]]
) -> dict[str, Any]:
    """Run one write as an async task: commit nothing here, report success or the error."""
    try:
        row, _created = run()
    except TwinError as exc:
        return _failed_task(exc)
    return _succeeded_task(kind, row, url)


def _failed_task(exc: TwinError) -> dict[str, Any]:
    return {
        "progress": "failed",
        "status": exc.status,
        "result": error_body(exc.status, exc.code, exc.message, exc.field),
    }


def _succeeded_task(kind: RecordType, row: Any, url: Url) -> dict[str, Any]:
    return {"progress": "succeeded", "status": 204, "result": _base(row, kind.name, url)}


def _job_json(
    job: ErpAsyncJob, tasks: list[dict[str, Any]], url: Url, *, completed: bool
) -> dict[str, Any]:
    href = url(f"{ASYNC}/job/{job.id}")
    if not completed:
        progress = "pending"
    elif all(t["progress"] == "succeeded" for t in tasks):
        progress = "succeeded"
    elif all(t["progress"] == "failed" for t in tasks):
        progress = "failed"
    else:
        progress = "partiallySucceeded"
    out: dict[str, Any] = {
        "links": [{"rel": "self", "href": href}],
        "completed": completed,
        "id": str(job.id),
        "progress": progress,
        "startTime": _stamp(job.start_time),
        "task": {"links": [{"rel": "self", "href": f"{href}/task"}]},
    }
    if completed:
        out["endTime"] = _stamp(job.end_time)
    return out


def _task_json(
    job: ErpAsyncJob,
    task: dict[str, Any],
    url: Url,
    *,
    completed: bool,
    expand: bool,
    stamps: tuple[str, str] | None = None,
) -> dict[str, Any]:
    href = url(f"{ASYNC}/job/{job.id}/task/{task['id']}")
    start, end = stamps or (_stamp(job.start_time), _stamp(job.end_time))
    out: dict[str, Any] = {
        "links": [{"rel": "related", "href": f"{href}/result"}, {"rel": "self", "href": href}],
        "id": str(task["id"]),
        "completed": completed,
        "progress": task["progress"] if completed else "pending",
        "startTime": start,
    }
    if completed:
        out["endTime"] = end
        if expand:
            out["result"] = task["result"]
    return out


def _batch_external_id(item: Any) -> str | None:
    external_id = item.get("externalId") if isinstance(item, dict) else None
    return external_id if isinstance(external_id, str) and external_id else None


def _run_batch(s: Session, kind: RecordType, items: list[Any], url: Url) -> list[dict[str, Any]]:
    """Upsert each record by its externalId, one task per record, in one transaction: the
    same rules as one write at a time, with lookups memoised and one flush for the batch."""
    s.info[_BATCH] = _Batch()
    event.listen(s, "do_orm_execute", _before_query)
    try:
        _prefetch(s, kind.table, [e for e in map(_batch_external_id, items) if e is not None])
        outcomes: list[Any] = []
        for item in items:
            external_id = _batch_external_id(item)
            if external_id is None:
                outcomes.append(
                    TwinError(
                        400,
                        "USER_ERROR",
                        "Every record of a batch needs an externalId.",
                        "externalId",
                    )
                )
                continue
            try:
                row, _ = write_record(s, kind, item, external_id=external_id, upsert=True)
            except TwinError as exc:
                outcomes.append(exc)
            else:
                outcomes.append(row)
        _write_inserts(s)
        s.flush()
    finally:
        event.remove(s, "do_orm_execute", _before_query)
        s.info.pop(_BATCH, None)
    return [
        _failed_task(o) if isinstance(o, TwinError) else _succeeded_task(kind, o, url)
        for o in outcomes
    ]
