"""The `customer` record type."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from sandbox.erp.bodies import CustomerBody, _Body
from sandbox.erp.records.base import RecordType, _currency_given, _ref
from sandbox.erp.tables import ErpCustomer


class CustomerType(RecordType):
    name = "customer"
    table = ErpCustomer
    body = CustomerBody
    required = ("companyName",)
    filters = {"externalId": "external_id", "companyName": "company_name"}
    copied = (
        ("companyName", "company_name"),
        ("email", "email"),
        ("custentity_pssync_enterprise_id", "enterprise_id"),
    )
    copied_unless_null = (("creditHoldOverride", "credit_hold"), ("isInactive", "is_inactive"))

    def resolved(self, s: Session, body: _Body, given: set[str]) -> dict[str, Any]:
        return _currency_given(body, given)

    def fields_json(self, s: Session, row: ErpCustomer) -> dict[str, Any]:
        return {
            "companyName": row.company_name,
            "email": row.email,
            "currency": _ref(row.currency, row.currency),
            "creditHoldOverride": row.credit_hold,
            "isInactive": row.is_inactive,
            "custentity_pssync_enterprise_id": row.enterprise_id,
        }
