"""NetSuite labor cost rates, effective-dated (`ErpLaborCostPort`), kept in the custom record
type `customrecord_pssync_labor_cost_rate` (docs/processes/worker_lifecycle.md): one record per
row of a worker's rate history — the worker (HCM Employee ID), the hourly rate, its currency,
the day it is effective from and the HCM event behind it — upserted by
`PUT .../eid:<row key>`, so a retried write after a lost answer leaves one row.

The row in force on the worker's today becomes the employee's labor cost (`laborCost`, what
`get_cost_rate` reads); rows and postings already there are never rewritten. A worker's rows
are read in one SuiteQL query, their columns with them (SuiteQL answers text, currencies as
their id and dates in the account's format, `SystemSettings.date_format`). A row costs that
query, the `PUT` when the row is not among them yet, and the employee's read (plus its
`PATCH` when the labor cost changes) — a fixed number of calls, whatever the history's length.

The mixin brings the employee upsert with it (`_EmployeesMixin`, `netsuite/employees.py`): a
hire makes the employee first, so its row in force becomes the employee's labor cost."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from connectors._vendor_errors import unmappable
from connectors.erp.labor_cost import LaborCostRate, rate_on
from connectors.erp.mapping import cost_rate_from_employee
from connectors.erp.netsuite.employees import _EmployeesMixin
from connectors.erp.port import SYSTEM
from connectors.erp.values import DateFormat, currency_code, number
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


_COLUMNS = ("id", "externalid", EMPLOYEE, RATE, CURRENCY, EFFECTIVE, EVENT, SEQUENCE)


def _in_order(rate: LaborCostRate) -> tuple[date, int, str]:
    """A history's order: oldest effective first, then as HCM entered them."""
    return (rate.effective_from, rate.sequence, rate.key)


@unmappable(SYSTEM, RECORD)
def labor_cost_from_suiteql(
    row: Mapping[str, Any], *, date_format: DateFormat, currencies: Mapping[str, str]
) -> LaborCostRate:
    """A SuiteQL row of the record (`_COLUMNS`): text values, the currency as its id (an ISO
    code, or an internal id found in `currencies`), the day in the account's date format."""
    return LaborCostRate(
        worker_id=str(row[EMPLOYEE]),
        rate=Money(number(row[RATE]), currency_code(row.get(CURRENCY), currencies) or "USD"),
        effective_from=date_format.parse(row[EFFECTIVE]),
        key=str(row.get(EVENT) or row.get("externalid") or row["id"]),
        sequence=int(row.get(SEQUENCE) or 0),
    )


class _LaborCostMixin(_EmployeesMixin):
    """The worker's rate history, on the worker's employee (`employees.py`: created and kept
    in step from HCM), whose labor cost follows the row in force."""

    async def labor_cost_rates(self, worker_id: str) -> list[LaborCostRate]:
        return [rate for _, rate in await self._history(worker_id)]

    async def _history(self, worker_id: str) -> list[tuple[str | None, LaborCostRate]]:
        """The worker's rows with their external IDs, oldest effective first: one query."""
        rows = await self._suiteql(
            f"SELECT {', '.join(_COLUMNS)} FROM {RECORD} "
            f"WHERE {EMPLOYEE} = {_quoted(worker_id)} ORDER BY id"
        )
        currencies = await self._currencies(*(row.get(CURRENCY) for row in rows))
        found = [
            (
                str(row["externalid"]) if row.get("externalid") else None,
                labor_cost_from_suiteql(row, date_format=self.date_format, currencies=currencies),
            )
            for row in rows
        ]
        return sorted(found, key=lambda f: _in_order(f[1]))

    async def put_labor_cost_rate(self, rate: LaborCostRate, *, today: date) -> LaborCostRate:
        # The history read first holds the row when a retry finds it written (keyed by its
        # external ID, as the PUT is); the row in force is then the history with this row.
        external_id = row_external_id(rate)
        history = await self._history(rate.worker_id)
        stored = next((r for eid, r in history if eid == external_id), None)
        rows = [r for _, r in history]
        if stored is None:
            path = self._path(RECORD, external_id, external=True)
            await self._send("PUT", path, labor_cost_body(rate))
            stored = rate
            rows = sorted([*rows, rate], key=_in_order)
        current = rate_on(rows, today)
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
