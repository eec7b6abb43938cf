"""`GET /services/rest/async/v1/job/{id}`, `.../task`, `.../task/{t}`, `.../task/{t}/result`:
the async service's job status, tasks and results."""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import defer
from sqlmodel import Session

from sandbox._twin import TwinError
from sandbox.erp.async_jobs import _job_json, _task_json
from sandbox.erp.common import ASYNC, _int_id, _stamp
from sandbox.erp.context import ErpContext
from sandbox.erp.tables import ErpAsyncJob
from sandbox.erp.web import _Ids, _paged, _paging


def register(router: APIRouter, ctx: ErpContext) -> None:
    """The async job routes."""

    def load_job(s: Session, job_id: str) -> ErpAsyncJob:
        job = s.get(ErpAsyncJob, _int_id(job_id)) if _int_id(job_id) else None
        if job is None:
            raise TwinError(404, "NONEXISTENT_ID", f"Async job {job_id} does not exist.", "id")
        return job

    @router.get(f"{ASYNC}/job/{{job_id}}", summary="Async job status")
    async def get_job(job_id: str, request: Request) -> JSONResponse:
        with ctx.state.session() as s:
            ident = _int_id(job_id)
            # A poll reads the tasks only when they are not at hand (they are, mostly).
            lazy = [defer(cast(Any, ErpAsyncJob.tasks_json))]
            job = s.get(ErpAsyncJob, ident, options=lazy) if ident is not None else None
            if job is None:
                raise TwinError(404, "NONEXISTENT_ID", f"Async job {job_id} does not exist.", "id")
            completed = job.pending_polls <= 0
            if not completed:
                job.pending_polls -= 1
                s.add(job)
                s.commit()
            return JSONResponse(
                _job_json(job, ctx.job_tasks(job), _Ids(request), completed=completed)
            )

    @router.get(f"{ASYNC}/job/{{job_id}}/task", summary="The job's tasks")
    async def list_tasks(
        job_id: str,
        request: Request,
        limit: int | None = None,
        offset: int | None = None,
        expandSubResources: bool = False,
    ) -> JSONResponse:
        limit, offset = _paging(limit, offset)
        with ctx.state.session() as s:
            job = load_job(s, job_id)
        tasks = ctx.job_tasks(job)
        completed = job.pending_polls <= 0
        url = _Ids(request)
        stamps = (_stamp(job.start_time), _stamp(job.end_time))
        page = [
            _task_json(job, t, url, completed=completed, expand=expandSubResources, stamps=stamps)
            for t in tasks[offset : offset + limit]
        ]
        if not expandSubResources:
            page = [{"links": t["links"][1:], "id": t["id"]} for t in page]
        return JSONResponse(_paged(request, page, len(tasks), limit, offset))

    def load_task(job: ErpAsyncJob, task_id: str) -> dict[str, Any]:
        tasks = ctx.job_tasks(job)
        index = int(task_id) - 1 if task_id.isdigit() else -1
        if not 0 <= index < len(tasks):
            raise TwinError(404, "NONEXISTENT_ID", f"Task {task_id} does not exist.", "id")
        task: dict[str, Any] = tasks[index]
        return task

    @router.get(f"{ASYNC}/job/{{job_id}}/task/{{task_id}}", summary="One task's status")
    async def get_task(job_id: str, task_id: str, request: Request) -> JSONResponse:
        with ctx.state.session() as s:
            job = load_job(s, job_id)
        task = load_task(job, task_id)
        completed = job.pending_polls <= 0
        return JSONResponse(_task_json(job, task, _Ids(request), completed=completed, expand=False))

    @router.get(f"{ASYNC}/job/{{job_id}}/task/{{task_id}}/result", summary="One task's result")
    async def get_task_result(job_id: str, task_id: str) -> JSONResponse:
        with ctx.state.session() as s:
            job = load_job(s, job_id)
        task = load_task(job, task_id)
        if job.pending_polls > 0:
            raise TwinError(400, "JOB_NOT_COMPLETED", "The job has not completed yet.", "id")
        status = 200 if task["progress"] == "succeeded" else int(task["status"])
        return JSONResponse(task["result"], status_code=status)
