"""NetSuite labor cost rates, effective-dated (`ErpLaborCostPort`), kept in the custom record
type `customrecord_pssync_labor_cost_rate` (docs/processes/worker_lifecycle.md): one record per
row of a worker's rate history — the worker (HCM Employee ID), the hourly rate, its currency,
the day it is effective from and the HCM event behind it — upserted by
`PUT .../eid:<row key>`, so a retried write after a lost answer leaves one row.

The row in force on the worker's today becomes the employee's labor cost (`laborCost`, what
`get_cost_rate` reads); rows and postings already there are never rewritten. A worker's rows
are found over SuiteQL, then read by internal id (record GETs give dates as ISO dates, SuiteQL
in the account's format).

The mixin brings the employee upsert with it (`_EmployeesMixin`, `netsuite/employees.py`): a
hire makes the employee first, so its row in force becomes the employee's labor cost."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from typing import Any

from connectors.erp.labor_cost import LaborCostRate, rate_on
from connectors.erp.mapping import cost_rate_from_employee
from connectors.erp.netsuite.employees import _EmployeesMixin
from contracts.errors import NotFoundError
from contracts.money import Money

RECORD = "customrecord_pssync_labor_cost_rate"
EMPLOYEE = "custrecord_pssync_lcr_employee"
RATE = "custrecord_pssync_lcr_rate"
CURRENCY = "custrecord_pssync_lcr_currency"
EFFECTIVE = "custrecord_pssync_lcr_effective"
EVENT = "custrecord_pssync_lcr_event"
SEQUENCE = "custrecord_pssync_lcr_sequence"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def row_external_id(rate: LaborCostRate) -> str:
    """The row's external ID: the worker and the HCM event (unique per record type)."""
    return f"{rate.worker_id}:{rate.key}"


def labor_cost_body(rate: LaborCostRate) -> dict[str, Any]:
    return {
        "name": f"{rate.worker_id} from {rate.effective_from.isoformat()}",
        EMPLOYEE: rate.worker_id,
        RATE: str(rate.rate.amount),
        CURRENCY: {"id": rate.rate.currency},
        EFFECTIVE: rate.effective_from.isoformat(),
        EVENT: rate.key,
        SEQUENCE: rate.sequence,
    }


def labor_cost_from_netsuite(body: dict[str, Any]) -> LaborCostRate:
    currency_ref = body.get(CURRENCY) or {}
    currency = str(currency_ref.get("refName") or currency_ref.get("id") or "USD")
    return LaborCostRate(
        worker_id=str(body[EMPLOYEE]),
        rate=Money(Decimal(str(body[RATE])), currency),
        effective_from=date.fromisoformat(str(body[EFFECTIVE])),
        key=str(body.get(EVENT) or body.get("externalId") or body["id"]),
        sequence=int(body.get(SEQUENCE) or 0),
    )


class _LaborCostMixin(_EmployeesMixin):
    """The worker's rate history, on the worker's employee (`employees.py`: created and kept
    in step from HCM), whose labor cost follows the row in force."""

    async def labor_cost_rates(self, worker_id: str) -> list[LaborCostRate]:
        rows = await self._suiteql(
            f"SELECT id FROM {RECORD} WHERE {EMPLOYEE} = {_quoted(worker_id)} ORDER BY id"
        )
        bodies = await asyncio.gather(
            *(self._get(self._path(RECORD, str(row["id"]), external=False)) for row in rows)
        )
        found = [labor_cost_from_netsuite(b) for b in bodies]
        return sorted(found, key=lambda r: (r.effective_from, r.sequence, r.key))

    async def put_labor_cost_rate(self, rate: LaborCostRate, *, today: date) -> LaborCostRate:
        path = self._path(RECORD, row_external_id(rate), external=True)
        try:
            stored = labor_cost_from_netsuite(await self._get(path))
        except NotFoundError:
            stored = None
        if stored is None:
            await self._send("PUT", path, labor_cost_body(rate))
            stored = rate
        current = rate_on(await self.labor_cost_rates(rate.worker_id), today)
        if current is not None:
            await self._set_labor_cost(rate.worker_id, current.rate)
        return stored

    async def _set_labor_cost(self, worker_id: str, rate: Money) -> None:
        """The employee's labor cost, when it differs (a repeat writes nothing). A worker the
        ERP has no employee for yet keeps the row only: time is priced from the history."""
        path = self._path("employee", worker_id, external=True)
        try:
            body = await self._get(path)
        except NotFoundError:
            return
        currencies = await self._currencies(body.get("currency"))
        if cost_rate_from_employee(body, currencies=currencies) == rate:
            return
        await self._send(
            "PATCH", path, {"laborCost": float(rate.amount), "currency": {"id": rate.currency}}
        )
