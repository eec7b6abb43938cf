"""The `invoice` record type (a voided invoice is final)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlmodel import Session

from sandbox._twin import TwinError
from sandbox.erp.bodies import InvoiceBody, _Body
from sandbox.erp.common import INVOICE_VOIDED, _dec, _num
from sandbox.erp.lookups import _lookup, _open_period
from sandbox.erp.records.base import RecordType, _currency_given, _drop_none, _ref
from sandbox.erp.tables import ErpCustomer, ErpInvoice, ErpJob


class InvoiceType(RecordType):
    name = "invoice"
    table = ErpInvoice
    body = InvoiceBody
    required = ("entity", "tranDate", "item")
    filters = {"externalId": "external_id", "entity": "customer_id", "job": "job_id"}
    copied = (("memo", "memo"), ("custbody_pssync_milestone", "milestone"))
    copied_unless_null = (("tranDate", "tran_date"),)
    sublists = ("item",)

    def resolved(self, s: Session, body: _Body, given: set[str]) -> dict[str, Any]:
        assert isinstance(body, InvoiceBody)
        out: dict[str, Any] = {}
        if "entity" in given and body.entity is not None:
            out["customer_id"] = _lookup(s, ErpCustomer, body.entity, "entity").id
        if "job" in given:
            out["job_id"] = None if body.job is None else _lookup(s, ErpJob, body.job, "job").id
        out |= _currency_given(body, given)
        if "item" in given and body.item is not None:
            if not body.item.items:
                raise TwinError(400, "USER_ERROR", "An invoice needs at least one line", "item")
            lines = [
                {
                    "description": line.description,
                    "quantity": _dec(line.quantity),
                    "rate": _dec(line.rate),
                    "amount": _dec(line.amount),
                }
                for line in body.item.items
            ]
            out["lines_json"] = json.dumps(lines)
            out["total"] = _dec(sum((line.amount for line in body.item.items), Decimal(0)))
        return out

    def check(self, s: Session, row: ErpInvoice, changed: set[str] | None) -> None:
        period = _open_period(s, row.tran_date)
        row.period_id, row.period_name = period.id, period.period_name

    def final(self, row: ErpInvoice) -> str | None:
        return f"Invoice {row.id} is voided." if row.status == INVOICE_VOIDED else None

    def fields_json(self, s: Session, row: ErpInvoice) -> dict[str, Any]:
        lines = [
            _drop_none(
                {
                    "line": i + 1,
                    "description": line["description"],
                    "quantity": _num(line["quantity"]),
                    "rate": _num(line["rate"]),
                    "amount": _num(line["amount"]),
                }
            )
            for i, line in enumerate(json.loads(row.lines_json))
        ]
        return {
            "entity": _ref(row.customer_id),
            "job": _ref(row.job_id),
            "tranDate": row.tran_date.isoformat(),
            "postingPeriod": _ref(row.period_id, row.period_name),
            "currency": _ref(row.currency, row.currency),
            "memo": row.memo,
            "custbody_pssync_milestone": row.milestone,
            "item": {"items": lines},
            "total": _num(row.total),
            "status": row.status,
        }
