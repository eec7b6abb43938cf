"""Loading the seeded firm into the ERP twin: departments, periods, customers, employees."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from sqlmodel import Session

from sandbox._twin import TwinState, seed_session
from sandbox.erp.common import _dec
from sandbox.erp.lookups import _by_eid
from sandbox.erp.tables import ErpAccountingPeriod, ErpCustomer, ErpDepartment, ErpEmployee

if TYPE_CHECKING:
    from sandbox.seed import Firm


def _add_new(s: Session, table: Any, external_id: str, **values: Any) -> Any:
    """The record with `external_id`, added with `values` unless it is there already."""
    row = _by_eid(s, table, external_id)
    if row is None:
        row = table(external_id=external_id, **values)
        s.add(row)
    return row


def load_firm(app_or_state: FastAPI | TwinState, firm: Firm) -> None:
    """Departments from the firm's cost centers (externalId = cost-center code), accounting
    periods from its periods, customers from its customers (externalId = CRM account id),
    employees with their labor cost from its workers (externalId = employee ID). Loading
    twice changes nothing."""
    with seed_session(app_or_state) as s:
        departments = {
            cc.id: _add_new(s, ErpDepartment, cc.id, name=cc.name, is_inactive=not cc.active)
            for cc in firm.cost_centers
        }
        s.flush()  # the new departments' ids, for the employees
        for period in firm.periods:
            _add_new(
                s,
                ErpAccountingPeriod,
                period.period,
                period_name=period.period,
                start_date=period.start,
                end_date=period.end,
                closed=period.closed,
            )
        for customer in firm.customers:
            _add_new(
                s,
                ErpCustomer,
                customer.id,
                company_name=customer.name,
                currency=customer.currency,
                credit_hold="ON" if customer.credit_hold else "AUTO",
            )
        for worker in firm.workers:
            department = departments.get(worker.cost_center)
            _add_new(
                s,
                ErpEmployee,
                worker.id,
                first_name=worker.first_name,
                last_name=worker.last_name,
                email=worker.email,
                labor_cost=_dec(worker.cost_rate) or "0",
                currency=worker.currency,
                department_id=department.id if department is not None else None,
                is_inactive=worker.status == "terminated",
                hire_date=worker.hire_date,
            )
