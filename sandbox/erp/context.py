"""`ErpContext`: what the route modules share (the twin's state, the async-job settings and
the parsed tasks of recent jobs), and submitting work as an async job."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import Request, Response
from sqlmodel import Session

from sandbox._twin import TwinError, TwinState
from sandbox.erp.common import ASYNC, ISO_DATES
from sandbox.erp.tables import ErpAsyncJob, ErpIdempotencyKey
from sandbox.erp.web import _idempotency_key, _Ids


@dataclass
class ErpContext:
    """Shared by one app's routes (each `create_app` builds its own)."""

    state: TwinState
    pending_polls: int
    """An async job reports `pending` on its first `pending_polls` status polls."""
    date_format: str = ISO_DATES
    """The account's date format preference: how SuiteQL writes dates (`M/D/YYYY`, ...)."""
    # A job's tasks never change once it has run: keep the latest jobs' tasks parsed for their
    # status polls and task reads (the database copy is read only after a restart).
    parsed: dict[tuple[int | None, datetime], list[dict[str, Any]]] = field(default_factory=dict)

    def keep_tasks(self, job: ErpAsyncJob, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        parsed = self.parsed
        if len(parsed) >= 32:
            parsed.pop(next(iter(parsed)))
        parsed[(job.id, job.start_time)] = tasks
        return tasks

    def job_tasks(self, job: ErpAsyncJob) -> list[dict[str, Any]]:
        found = self.parsed.get((job.id, job.start_time))
        return found if found is not None else self.keep_tasks(job, json.loads(job.tasks_json))

    def submit_async(
        self, request: Request, s: Session, tasks: Callable[[], list[dict[str, Any]]]
    ) -> Response:
        """Run the work as an async job (one transaction with its idempotency key)."""
        url = _Ids(request)
        key = _idempotency_key(request)
        if key is not None:
            seen = s.get(ErpIdempotencyKey, key)
            if seen is not None:
                raise TwinError(
                    400,
                    "IDEMPOTENCY_ERROR",
                    "A request with the same idempotency key is already submitted. See the "
                    '"Location" header for a link to the previously submitted job.',
                    headers={
                        "Location": url(f"{ASYNC}/job/{seen.job_id}"),
                        "Preference-Applied": "respond-async",
                    },
                )
        done = tasks()
        for i, task in enumerate(done, start=1):
            task["id"] = i
        job = ErpAsyncJob(
            method=request.method,
            path=request.url.path,
            pending_polls=self.pending_polls,
            tasks_json=json.dumps(done),
        )
        s.add(job)
        s.flush()
        if key is not None:
            s.add(ErpIdempotencyKey(key=key, job_id=job.id))
        s.commit()
        self.keep_tasks(job, done)
        return Response(
            status_code=202,
            headers={
                "Location": url(f"{ASYNC}/job/{job.id}"),
                "Preference-Applied": "respond-async",
            },
        )
