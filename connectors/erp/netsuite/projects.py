"""NetSuite customers and financial projects (`job` records), upserted by external ID."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors._concurrency import all_of
from connectors._vendor_errors import unmappable
from connectors.erp.mapping import (
    ENTERPRISE_ID_FIELD,
    JOB_STATUS_CLOSED,
    _ref_id,
    _tail_id,
    customer_body,
    project_body,
    project_from_netsuite,
)
from connectors.erp.netsuite.budgets import _BudgetsMixin
from connectors.erp.port import SYSTEM, ErpJobHeader, ErpProject
from connectors.erp.values import ref_id
from contracts.errors import NotFoundError, StaleVersionError
from contracts.money import Money
from contracts.v1.models import Customer, Project, ProjectStatus

_IN_LIST = 100
"""Values per SuiteQL `IN (...)` list."""
_JOBS_OF = (
    "SELECT id, companyname, customer, entitystatus, "
    + ENTERPRISE_ID_FIELD
    + ", comments FROM job WHERE customer IN ({customers}) ORDER BY id"
)
"""The projects of some customers (a job's `customer` is its customer's internal id), the
fields reconciliation compares, in a stable order for paging."""


class _ProjectsMixin(_BudgetsMixin):
    # -- customers and projects ---------------------------------------------------------------

    async def upsert_customer(self, customer: Customer, *, enterprise_id: str) -> str:
        body = customer_body(customer, enterprise_id=enterprise_id)
        response = await self._send(
            "PUT", self._path("customer", customer.external_id, external=True), body
        )
        erp_id = _tail_id(response.headers["location"])
        self._ids[("customer", customer.external_id)] = erp_id
        return erp_id

    async def upsert_project(
        self, project: Project, *, enterprise_id: str, customer_erp_id: str, budget: Money
    ) -> str:
        # Two independent look-ups (reads), side by side.
        department, customer = await all_of(
            self._department_ref(project.cost_center),
            self._reference("customer", customer_erp_id, field="customer"),
        )
        body = project_body(
            project, enterprise_id=enterprise_id, customer=customer, department=department
        )
        response = await self._send("PUT", self._path("job", enterprise_id, external=True), body)
        erp_id = _tail_id(response.headers["location"])
        self._ids[("job", enterprise_id)] = erp_id
        try:
            # Only the first provisioning sets the budget (from version 0, none yet); change
            # orders revise it later, and a re-run finds it set and leaves it.
            await self.revise_budget(erp_id, amount=budget, expected_version=0)
        except StaleVersionError:
            pass
        return erp_id

    async def close_project(self, erp_id: str, *, reason: str) -> None:
        try:
            await self._send(
                "PATCH",
                self._path("job", erp_id),
                {"entityStatus": {"id": JOB_STATUS_CLOSED}, "comments": reason},
            )
        except NotFoundError:
            return

    async def _department_code(self, department_id: str | None) -> str | None:
        if department_id is None:
            return None
        key = ("department-code", department_id)
        if key not in self._ids:
            body = await self._get(self._path("department", department_id, external=False))
            self._ids[key] = str(body.get("externalId") or department_id)
        return self._ids[key]

    async def get_project(self, erp_id_or_eid: str) -> ErpProject:
        body = await self._get(self._path("job", erp_id_or_eid))
        budget = await self._budget(self._record_id(body, "job"), body)
        cost_center = await self._department_code(_ref_id(body.get("department")))
        currencies = await self._currencies(body.get("currency"))
        return project_from_netsuite(
            body, budget=budget, cost_center=cost_center, currencies=currencies
        )

    async def jobs_of_customers(self, customers: Sequence[str]) -> dict[str, list[ErpJobHeader]]:
        """Many customers' projects in a few SuiteQL queries (`job` rows, 100 customers a
        query, pages of 1,000): their names, enterprise IDs, status and `comments` (where a
        person re-keying a deal may note its opportunity). Customers by internal id; another
        id holds no projects here."""
        wanted = list(dict.fromkeys(customers))
        found: dict[str, list[ErpJobHeader]] = {c: [] for c in wanted}
        ids = sorted({int(c) for c in wanted if c.isdigit()})
        for i in range(0, len(ids), _IN_LIST):
            chunk = ", ".join(str(c) for c in ids[i : i + _IN_LIST])
            for row in await self._suiteql(_JOBS_OF.format(customers=chunk)):
                job = job_header_from_row(row)
                found.setdefault(job.customer_erp_id, []).append(job)
        return found


@unmappable(SYSTEM, "job")
def job_header_from_row(row: Mapping[str, Any]) -> ErpJobHeader:
    """A SuiteQL `job` row (text values, references as bare ids, empty fields left out) as
    the project header reconciliation compares."""
    status = str(ref_id(row.get("entitystatus")) or "")
    return ErpJobHeader(
        erp_id=str(row["id"]),
        name=str(row.get("companyname") or ""),
        customer_erp_id=str(row["customer"]),
        enterprise_id=row.get(ENTERPRISE_ID_FIELD) or None,
        reference=row.get("comments") or None,
        status=ProjectStatus.CLOSED if status == JOB_STATUS_CLOSED else ProjectStatus.ACTIVE,
    )
