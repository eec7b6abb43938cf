"""`GET|PATCH /services/rest/record/v1/job/{id}/budget`: the project budget, revised under
`If-Match` (its `budgetVersion`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from sandbox._twin import TwinError
from sandbox.erp.bodies import BudgetBody
from sandbox.erp.common import JOB_STATUS_CLOSED, RECORD, Url, _dec, _now, _num, _stamp
from sandbox.erp.context import ErpContext
from sandbox.erp.records import RECORD_TYPES, _find
from sandbox.erp.records.base import _currency, _ref
from sandbox.erp.tables import ErpJob, ErpJobBudget
from sandbox.erp.web import _Ids, _read_body, located


def register(router: APIRouter, ctx: ErpContext) -> None:
    """The job's budget routes (before the generic record routes)."""

    @router.get(f"{RECORD}/job/{{ident}}/budget", summary="Project budget with its version")
    async def get_budget(ident: str, request: Request) -> JSONResponse:
        with ctx.state.session() as s:
            job = _find(s, RECORD_TYPES["job"], ident)
            budget = s.get(ErpJobBudget, job.id) or ErpJobBudget(job_id=job.id)
            return JSONResponse(
                _budget_json(job, budget, _Ids(request)),
                headers={"ETag": f'"{budget.budget_version}"'},
            )

    @router.patch(
        f"{RECORD}/job/{{ident}}/budget",
        summary="Revise the project budget (If-Match: the budgetVersion read)",
    )
    async def patch_budget(ident: str, request: Request) -> Response:
        body = await _read_body(request, BudgetBody)
        with ctx.state.session() as s:
            job = _find(s, RECORD_TYPES["job"], ident)
            budget = s.get(ErpJobBudget, job.id)
            if budget is None:
                budget = ErpJobBudget(job_id=job.id, currency=job.currency)
                s.add(budget)
            expected = _expected_version(request, body.budgetVersion)
            if expected != budget.budget_version:
                raise TwinError(
                    412,
                    "RCRD_HAS_BEEN_CHANGED",
                    f"Record has been changed: budgetVersion is {budget.budget_version}, "
                    f"the request expected {expected}.",
                    "budgetVersion",
                )
            if job.status == JOB_STATUS_CLOSED:
                raise TwinError(400, "PROJECT_CLOSED", f"Project {job.id} is closed.", "job")
            budget.amount = _dec(body.amount) or "0"
            if body.currency is not None:
                budget.currency = _currency(body.currency, "currency") or budget.currency
            budget.budget_version += 1
            budget.last_modified = _now()
            s.add(budget)
            s.commit()
            etag = {"ETag": f'"{budget.budget_version}"'}
            return located(request, f"{RECORD}/job/{job.id}/budget", etag)


def _expected_version(request: Request, in_body: int | None) -> int:
    header = request.headers.get("if-match")
    if header is not None:
        text = header.strip().removeprefix("W/").strip('"')
        if not text.isdigit():
            raise TwinError(412, "RCRD_HAS_BEEN_CHANGED", f"If-Match {header!r} does not match")
        return int(text)
    if in_body is not None:
        return in_body
    raise TwinError(
        428,
        "PRECONDITION_REQUIRED",
        "A budget revision needs If-Match (or budgetVersion) with the version read.",
        "budgetVersion",
    )


def _budget_json(job: ErpJob, budget: ErpJobBudget, url: Url) -> dict[str, Any]:
    return {
        "links": [{"rel": "self", "href": url(f"{RECORD}/job/{job.id}/budget")}],
        "job": _ref(job.id, job.company_name),
        "amount": _num(budget.amount),
        "currency": _ref(budget.currency, budget.currency),
        "budgetVersion": budget.budget_version,
        "lastModifiedDate": _stamp(budget.last_modified),
    }
