"""Twin admin, not NetSuite endpoints (no auth): what people do in the ERP by hand, behind
pssync's back, so tests and the reconciliation bench can inject drift. Afterwards the record
reads (GET, list, SuiteQL) exactly as NetSuite shows such an edit: the changed fields and a
new `lastModifiedDate`, nothing else.

- `POST /_admin/tamper/timebill/{id}/edit` `{"hours"?, "rate"?, "costAmount"?,
  "billAmount"?}` — a person edits a posting. Fields given are set; a changed `hours` or
  `rate` recomputes `costAmount` (hours x rate, to the cent) unless it is given, and a
  changed `hours` scales `billAmount` unless it is given. Refused in a closed or locked
  period (`PERIOD_CLOSED`, as NetSuite refuses it).
- `POST /_admin/tamper/timebill/{id}/delete` — the posting is gone. Refused in a closed
  period, and for a posting a reversal points at
  (`THIS_RECORD_CANNOT_BE_DELETED_BECAUSE_IT_HAS_DEPENDENT_RECORDS`).
- `POST /_admin/tamper/job/{id}/edit` `{"name"?, "currency"?, "department"?, "status"?}` —
  the project's `companyName`, currency (ISO code), department (cost-center code, i.e. its
  externalId, or internal id) or `entityStatus` (id `1`-`5` or its name, e.g. `Closed`),
  with the same rules as a PATCH (an inactive department is refused).
- `POST /_admin/tamper/accountingPeriod/{id}/close` `{"allLocked"?: bool}` and
  `.../reopen` — close (optionally lock) or reopen a period. `{id}` may also be the period
  name `YYYY-MM`.
- `POST /_admin/tamper/invoice/{id}/void` `{"memo"?}` — voids the invoice as the void
  transform does (status `Voided`, `Voided: <memo>` added to its memo); a paid one is
  refused.

`{id}` is an internal id or `eid:VALUE`. Each answers the record as its GET does; the delete
answers `{"deleted": "<id>"}`. Errors are NetSuite-shaped.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, select

from sandbox._twin import TwinError, TwinState
from sandbox.erp.common import INVOICE_PAID, INVOICE_VOIDED, JOB_STATUSES, _dec, _now
from sandbox.erp.records import RECORD_TYPES, _find
from sandbox.erp.tables import ErpAccountingPeriod, ErpTimebill
from sandbox.erp.web import _Ids
from sandbox.erp.write import write_record

_CENT = Decimal("0.01")


class _Tamper(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EditTimebill(_Tamper):
    hours: Decimal | None = None
    rate: Decimal | None = None
    costAmount: Decimal | None = None
    billAmount: Decimal | None = None


class EditJob(_Tamper):
    name: str | None = Field(default=None, min_length=1, max_length=83)
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$")
    department: str | None = Field(default=None, min_length=1)
    status: str | None = Field(default=None, min_length=1)


class ClosePeriod(_Tamper):
    allLocked: bool = False


class VoidInvoice(_Tamper):
    memo: str | None = None


def _open_for_edit(s: Session, row: ErpTimebill) -> None:
    period = s.get(ErpAccountingPeriod, row.period_id) if row.period_id is not None else None
    if period is not None and (period.closed or period.all_locked):
        raise TwinError(
            400,
            "PERIOD_CLOSED",
            f"The accounting period {period.period_name} is closed; timebill {row.id} "
            "cannot be changed.",
            "postingPeriod",
        )


def _edit_timebill(row: ErpTimebill, body: EditTimebill) -> None:
    given = body.model_fields_set
    if not given:
        raise TwinError(400, "USER_ERROR", "Nothing to change.")
    for name in ("hours", "costAmount"):
        if name in given and getattr(body, name) is None:
            raise TwinError(400, "USER_ERROR", f"Please enter a value for {name}.", name)
    old_hours = Decimal(row.hours)
    hours = body.hours if body.hours is not None else old_hours
    if "rate" in given:
        row.rate = _dec(body.rate)
    row.hours = _dec(hours) or "0"
    if "costAmount" in given:
        row.cost_amount = _dec(body.costAmount) or "0"
    elif given & {"hours", "rate"} and row.rate is not None:
        row.cost_amount = _dec((hours * Decimal(row.rate)).quantize(_CENT)) or "0"
    if "billAmount" in given:
        row.bill_amount = _dec(body.billAmount)
    elif "hours" in given and row.bill_amount is not None and old_hours:
        row.bill_amount = _dec((Decimal(row.bill_amount) * hours / old_hours).quantize(_CENT))
    row.last_modified = _now()


def _job_body(body: EditJob) -> dict[str, Any]:
    """The NetSuite PATCH body of a job edit."""
    raw: dict[str, Any] = {}
    if body.name is not None:
        raw["companyName"] = body.name
    if body.currency is not None:
        raw["currency"] = {"id": body.currency.upper()}
    if body.department is not None:
        key = "id" if body.department.isdigit() else "externalId"
        raw["department"] = {key: body.department}
    if body.status is not None:
        by_name = {name.lower(): ident for ident, name in JOB_STATUSES.items()}
        status = body.status if body.status in JOB_STATUSES else by_name.get(body.status.lower())
        if status is None:
            raise TwinError(
                400, "INVALID_KEY_OR_REF", f"Invalid entityStatus {body.status}", "status"
            )
        raw["entityStatus"] = {"id": status}
    if not raw:
        raise TwinError(400, "USER_ERROR", "Nothing to change.")
    return raw


def _period(s: Session, ident: str) -> ErpAccountingPeriod:
    if re.fullmatch(r"\d{4}-\d{2}", ident):
        row = s.exec(
            select(ErpAccountingPeriod).where(ErpAccountingPeriod.period_name == ident)
        ).first()
        if row is not None:
            return row
    found: ErpAccountingPeriod = _find(s, RECORD_TYPES["accountingPeriod"], ident)
    return found


def build_router(state: TwinState) -> APIRouter:
    router = APIRouter(prefix="/_admin/tamper", tags=["tamper"])
    timebill, job = RECORD_TYPES["timebill"], RECORD_TYPES["job"]
    period_type, invoice = RECORD_TYPES["accountingPeriod"], RECORD_TYPES["invoice"]

    @router.post("/timebill/{ident}/edit", summary="Edit a posting's hours/rate/amounts by hand")
    async def edit_timebill(ident: str, body: EditTimebill, request: Request) -> dict[str, Any]:
        with state.session() as s:
            row = _find(s, timebill, ident)
            _open_for_edit(s, row)
            _edit_timebill(row, body)
            s.add(row)
            s.commit()
            return timebill.render(s, row, _Ids(request))

    @router.post("/timebill/{ident}/delete", summary="Delete a posting by hand")
    async def delete_timebill(ident: str) -> dict[str, str]:
        with state.session() as s:
            row = _find(s, timebill, ident)
            _open_for_edit(s, row)
            reversal = s.exec(select(ErpTimebill).where(ErpTimebill.reverses_id == row.id)).first()
            if reversal is not None:
                raise TwinError(
                    400,
                    "THIS_RECORD_CANNOT_BE_DELETED_BECAUSE_IT_HAS_DEPENDENT_RECORDS",
                    f"Timebill {row.id} is reversed by timebill {reversal.id}.",
                )
            deleted = str(row.id)
            s.delete(row)
            s.commit()
        return {"deleted": deleted}

    @router.post("/job/{ident}/edit", summary="Edit a project's name/currency/department/status")
    async def edit_job(ident: str, body: EditJob, request: Request) -> dict[str, Any]:
        raw = _job_body(body)
        with state.session() as s:
            row, _ = write_record(s, job, raw, row=_find(s, job, ident))
            s.commit()
            return job.render(s, row, _Ids(request))

    @router.post("/accountingPeriod/{ident}/close", summary="Close (and lock) a period")
    async def close_period(
        ident: str, request: Request, body: ClosePeriod | None = None
    ) -> dict[str, Any]:
        locked = body.allLocked if body is not None else False
        return _set_period(ident, request, closed=True, locked=locked)

    @router.post("/accountingPeriod/{ident}/reopen", summary="Reopen (and unlock) a period")
    async def reopen_period(ident: str, request: Request) -> dict[str, Any]:
        return _set_period(ident, request, closed=False, locked=False)

    def _set_period(ident: str, request: Request, *, closed: bool, locked: bool) -> dict[str, Any]:
        with state.session() as s:
            row = _period(s, ident)
            if (row.closed, row.all_locked) != (closed, locked):
                row.closed, row.all_locked = closed, locked
                row.last_modified = _now()
                s.add(row)
                s.commit()
            return period_type.render(s, row, _Ids(request))

    @router.post("/invoice/{ident}/void", summary="Void an invoice behind pssync's back")
    async def void_invoice(
        ident: str, request: Request, body: VoidInvoice | None = None
    ) -> dict[str, Any]:
        memo = body.memo if body is not None else None
        with state.session() as s:
            row = _find(s, invoice, ident)
            if row.status == INVOICE_PAID:
                raise TwinError(
                    400,
                    "INVALID_TRANSACTION_STATE",
                    f"Invoice {row.id} is paid in full; a paid invoice cannot be voided.",
                    "status",
                )
            if row.status != INVOICE_VOIDED:
                note = f"Voided: {memo}" if memo else "Voided"
                row.memo = f"{row.memo}\n{note}" if row.memo else note
                row.status = INVOICE_VOIDED
                row.last_modified = _now()
                s.add(row)
                s.commit()
            return invoice.render(s, row, _Ids(request))

    return router
