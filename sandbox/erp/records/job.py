"""The `job` record type (a financial project): credit hold, cost center."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from sandbox._twin import TwinError
from sandbox.erp.bodies import JobBody, _Body
from sandbox.erp.common import JOB_STATUSES, _dec, _num
from sandbox.erp.lookups import _lookup
from sandbox.erp.records.base import RecordType, _currency_given, _ref
from sandbox.erp.records.department import _check_department, _department_ref
from sandbox.erp.tables import ErpCustomer, ErpJob


class JobType(RecordType):
    name = "job"
    table = ErpJob
    body = JobBody
    required = ("companyName", "customer")
    filters = {
        "externalId": "external_id",
        "customer": "customer_id",
        "entityStatus": "status",
        "companyName": "company_name",
    }
    copied = (
        ("entityId", "entity_id"),
        ("companyName", "company_name"),
        ("startDate", "start_date"),
        ("projectedEndDate", "projected_end_date"),
        ("custentity_pssync_enterprise_id", "enterprise_id"),
        ("custentity_pssync_practice", "practice"),
        ("comments", "comments"),
    )

    def resolved(self, s: Session, body: _Body, given: set[str]) -> dict[str, Any]:
        assert isinstance(body, JobBody)
        out: dict[str, Any] = {}
        if "estimatedRevenue" in given:
            out["estimated_revenue"] = _dec(body.estimatedRevenue)
        if "customer" in given and body.customer is not None:
            out["customer_id"] = _lookup(s, ErpCustomer, body.customer, "customer").id
        if "entityStatus" in given and body.entityStatus is not None:
            status = body.entityStatus.id or ""
            if status not in JOB_STATUSES:
                raise TwinError(
                    400, "INVALID_KEY_OR_REF", f"Invalid entityStatus {status}", "entityStatus"
                )
            out["status"] = status
        out |= _currency_given(body, given)
        if "department" in given:
            out["department_id"] = (
                _department_ref(s, body.department) if body.department is not None else None
            )
        return out

    def check(self, s: Session, row: ErpJob, changed: set[str] | None) -> None:
        if changed is None:
            customer = s.get(ErpCustomer, row.customer_id)
            if customer is not None and customer.credit_hold == "ON":
                raise TwinError(
                    400,
                    "CUSTOMER_CREDIT_HOLD",
                    f"Customer {customer.company_name} is on credit hold; "
                    "no new project can be opened for it.",
                    "customer",
                )
        if row.department_id is not None and (changed is None or "department_id" in changed):
            _check_department(s, row.department_id)

    def fields_json(self, s: Session, row: ErpJob) -> dict[str, Any]:
        customer = s.get(ErpCustomer, row.customer_id)
        return {
            "entityId": row.entity_id,
            "companyName": row.company_name,
            "customer": _ref(row.customer_id, customer.company_name if customer else None),
            "entityStatus": _ref(row.status, JOB_STATUSES.get(row.status)),
            "startDate": row.start_date.isoformat() if row.start_date else None,
            "projectedEndDate": (
                row.projected_end_date.isoformat() if row.projected_end_date else None
            ),
            "currency": _ref(row.currency, row.currency),
            "department": _ref(row.department_id),
            "estimatedRevenue": _num(row.estimated_revenue),
            "custentity_pssync_enterprise_id": row.enterprise_id,
            "custentity_pssync_practice": row.practice,
            "comments": row.comments,
        }
