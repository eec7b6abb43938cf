"""Request bodies (pydantic), as NetSuite's REST record service accepts them, and their
validation into vendor-shaped 400s."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from sandbox._twin import TwinError


class Ref(BaseModel):
    """A reference to another record: `{"id": "12"}` (or `{"externalId": "..."}`)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    externalId: str | None = None
    refName: str | None = None
    links: list[Any] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _int_ids(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @model_validator(mode="after")
    def _needs_key(self) -> Ref:
        if not self.id and not self.externalId:
            raise ValueError("a reference needs an id or an externalId")
        return self


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    externalId: str | None = None
    links: list[Any] | None = None
    id: str | None = None
    """Read-only; accepted (and ignored) so a GET body can be sent back."""


class CustomerBody(_Body):
    companyName: str | None = None
    email: str | None = None
    currency: Ref | None = None
    creditHoldOverride: Literal["AUTO", "ON", "OFF"] | None = None
    isInactive: bool | None = None
    custentity_pssync_enterprise_id: str | None = None
    lastModifiedDate: str | None = None


class DepartmentBody(_Body):
    name: str | None = None
    isInactive: bool | None = None
    lastModifiedDate: str | None = None


class EmployeeBody(_Body):
    firstName: str | None = None
    lastName: str | None = None
    email: str | None = None
    laborCost: Decimal | None = None
    currency: Ref | None = None
    department: Ref | None = None
    isInactive: bool | None = None
    hireDate: date | None = None
    lastModifiedDate: str | None = None


class AccountingPeriodBody(_Body):
    periodName: str | None = None
    startDate: date | None = None
    endDate: date | None = None
    closed: bool | None = None
    allLocked: bool | None = None
    lastModifiedDate: str | None = None


class JobBody(_Body):
    entityId: str | None = None
    companyName: str | None = None
    customer: Ref | None = None
    entityStatus: Ref | None = None
    startDate: date | None = None
    projectedEndDate: date | None = None
    currency: Ref | None = None
    department: Ref | None = None
    estimatedRevenue: Decimal | None = None
    custentity_pssync_enterprise_id: str | None = None
    custentity_pssync_practice: str | None = None
    comments: str | None = None
    lastModifiedDate: str | None = None


class TimebillBody(_Body):
    customer: Ref | None = None
    """The project (NetSuite puts the job in a timebill's customer field)."""
    employee: Ref | None = None
    tranDate: date | None = None
    hours: Decimal | None = None
    rate: Decimal | None = None
    costAmount: Decimal | None = None
    billAmount: Decimal | None = None
    currency: Ref | None = None
    department: Ref | None = None
    memo: str | None = None
    isBillable: bool | None = None
    reverses: Ref | None = None
    custcol_pssync_kind: Literal["time", "expense", "reversal"] | None = None
    custcol_pssync_source_entry: str | None = None
    postingPeriod: Ref | None = None
    """Read-only (derived from tranDate); accepted and ignored."""
    lastModifiedDate: str | None = None


class InvoiceLineBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    quantity: Decimal = Decimal(1)
    rate: Decimal | None = None
    amount: Decimal


class InvoiceItems(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[InvoiceLineBody]


class InvoiceBody(_Body):
    entity: Ref | None = None
    job: Ref | None = None
    tranDate: date | None = None
    currency: Ref | None = None
    memo: str | None = None
    custbody_pssync_milestone: str | None = None
    item: InvoiceItems | None = None
    total: Decimal | None = None
    """Read-only (sum of the lines); accepted and ignored."""
    status: str | None = None
    postingPeriod: Ref | None = None
    lastModifiedDate: str | None = None


class VoidBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    memo: str | None = None
    """Why: kept in the invoice's memo."""


class BudgetRecordBody(_Body):
    """`customrecord_pssync_budget`: the tenant's custom record type for a project budget."""

    name: str | None = None
    custrecord_pssync_budget_project: Ref | None = None
    custrecord_pssync_budget_amount: Decimal | None = None
    custrecord_pssync_budget_currency: Ref | None = None
    custrecord_pssync_budget_version: int | None = None
    lastModifiedDate: str | None = None


class LaborForecastRecordBody(_Body):
    """`customrecord_pssync_labor_forecast`: the tenant's custom record type for a project's
    labor forecast of one month."""

    name: str | None = None
    custrecord_pssync_lf_project: Ref | None = None
    custrecord_pssync_lf_period: str | None = None
    custrecord_pssync_lf_hours: Decimal | None = None
    custrecord_pssync_lf_labor_cost: Decimal | None = None
    custrecord_pssync_lf_currency: Ref | None = None
    custrecord_pssync_lf_status: str | None = None
    custrecord_pssync_lf_version: int | None = None
    lastModifiedDate: str | None = None


class SuiteQLBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: str


_M = TypeVar("_M", bound=BaseModel)


def _validate(model: type[_M], raw: Any) -> _M:
    """Vendor-shaped 400s for bad bodies: INVALID_FIELD names an unknown field."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"]) or None
        if err["type"] == "extra_forbidden":
            raise TwinError(400, "INVALID_FIELD", f"Invalid field name: {path}", path) from None
        raise TwinError(
            400, "INVALID_CONTENT", f"Invalid value for {path or 'the body'}: {err['msg']}", path
        ) from None
