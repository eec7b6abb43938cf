"""SuiteQL's `transaction` and `transactionline` tables, as the twin answers them.

SuiteQL has no `invoice` table: every transaction is a row of `transaction` (an invoice has
`type = 'CustInvc'`, its `status` a letter — `A` Open, `B` Paid In Full, `V` Voided — and its
total in its own currency in `foreigntotal`), and its lines are rows of `transactionline`
(`transaction` = the header's id; `mainline = 'T'` for the header's own line, which carries
the header's `entity`). Where the project is a field apart from the customer (pssync sets
`entity` = the customer and `job` = the project on the record), the project is the item
lines' `entity`: `JOIN transactionline tl ON tl.transaction = t.id ... tl.entity IN (...)`
finds a project's invoices.

The twin's only transactions are its invoices; rows come flattened as every SuiteQL row does
(text values, ids as ids, dates in the account's format, nulls left out).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlmodel import Session, col, select

from sandbox.erp.common import INVOICE_OPEN, INVOICE_PAID, INVOICE_VOIDED, _stamp
from sandbox.erp.tables import ErpInvoice

INVOICE_TYPE = "CustInvc"
STATUS_CODES = {INVOICE_OPEN: "A", INVOICE_PAID: "B", INVOICE_VOIDED: "V"}

TRANSACTION_COLUMNS = frozenset(
    {
        "id",
        "tranid",
        "type",
        "entity",
        "trandate",
        "postingperiod",
        "currency",
        "foreigntotal",
        "status",
        "memo",
        "externalid",
        "custbody_pssync_milestone",
        "lastmodifieddate",
        "voided",
    }
)
LINE_COLUMNS = frozenset(
    {"id", "transaction", "linesequencenumber", "mainline", "entity", "memo", "quantity"}
)
COLUMNS = {"transaction": TRANSACTION_COLUMNS, "transactionline": LINE_COLUMNS}
"""The columns of the tables SuiteQL has and the twin serves here (others are refused)."""

Flatten = Callable[[dict[str, Any]], dict[str, str]]


def transaction_rows(s: Session, table: str, flatten: Flatten) -> list[dict[str, str]]:
    """Every row of `transaction` or `transactionline` (by `table`), in id order."""
    invoices = s.exec(select(ErpInvoice).order_by(col(ErpInvoice.id))).all()
    if table == "transaction":
        return [flatten(_header(row)) for row in invoices]
    return [flatten(line) for row in invoices for line in _lines(row)]


def _header(row: ErpInvoice) -> dict[str, Any]:
    return {
        "id": row.id,
        "tranid": f"INV{row.id}",
        "type": INVOICE_TYPE,
        "entity": row.customer_id,
        "trandate": row.tran_date.isoformat(),
        "postingperiod": row.period_id,
        "currency": row.currency,
        "foreigntotal": row.total,
        "status": STATUS_CODES.get(row.status, row.status),
        "memo": row.memo,
        "externalid": row.external_id,
        "custbody_pssync_milestone": row.milestone,
        "lastmodifieddate": _stamp(row.last_modified),
        "voided": row.status == INVOICE_VOIDED,
    }


def _lines(row: ErpInvoice) -> list[dict[str, Any]]:
    main = {
        "id": 0,
        "transaction": row.id,
        "linesequencenumber": 0,
        "mainline": True,
        "entity": row.customer_id,
        "memo": row.memo,
    }
    items = [
        {
            "id": n,
            "transaction": row.id,
            "linesequencenumber": n,
            "mainline": False,
            "entity": row.job_id if row.job_id is not None else row.customer_id,
            "memo": line.get("description"),
            "quantity": line.get("quantity"),
        }
        for n, line in enumerate(json.loads(row.lines_json), start=1)
    ]
    return [main, *items]
