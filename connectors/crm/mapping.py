"""Salesforce <-> canonical: the org's picklists and field limits, record fields, Opportunity /
OpportunityLineItem / Account records read back, error bodies, and the write checks both the
client and the fake keep. Salesforce field names appear only here, in `salesforce.py` (and in
the twin).

Read as Salesforce publishes them (tests/fixtures/vendors/salesforce): datetimes
`2011-07-07T00:37:00.000+0000` (no colon in the offset), numbers as JSON floats (`23.0`, read as
decimals by the client), absent optional fields and unknown ones ignored, `nextRecordsUrl` left
out on the last query page. Every vendor -> canonical function is `@unmappable`: a record of an
unexpected shape raises `UnmappableRecord` naming it and the field, never a bare exception."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx

from connectors._http import VendorError
from connectors._vendor_errors import unmappable
from connectors.crm.port import NewOpportunity, NewOpportunityLine
from contracts.errors import BusinessRuleViolation
from contracts.ids import is_ulid
from contracts.money import Money
from contracts.ownership import check_write
from contracts.systems import System
from contracts.v1 import Customer, LineType, Opportunity, OpportunityLine

CONTRACTED_STAGE = "Closed Won"
OPPORTUNITY_STAGES: tuple[str, ...] = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
"""The org's StageName picklist (Salesforce's default sales process)."""
ERROR_MAX_LENGTH = 255
"""Provisioning_Error__c is a Text(255) field."""
KEY_FIELD = "Pssync_Key__c"
"""pssync's External ID field (Text(255), unique) on Opportunity and OpportunityLineItem."""

_OPPORTUNITY_FIELDS = (
    "Id, Name, AccountId, Amount, CloseDate, StageName, IsWon, IsClosed, CurrencyIsoCode, "
    "HasOpportunityLineItem, Probability, Practice__c, Cost_Center__c, Rate_Card__c, "
    "Delivery_Manager__c, Enterprise_Project_Id__c, Provisioning_Status__c, "
    "Provisioning_Error__c, LastModifiedDate, SystemModstamp"
)
_LINE_FIELDS = (
    "Id, OpportunityId, ProductCode, Name, Description, Quantity, UnitPrice, TotalPrice, "
    "ServiceDate, SortOrder, Billing_Type__c, Role__c"
)
_LINE_TYPES: dict[str, LineType] = {
    "Time and Materials": LineType.TIME_AND_MATERIALS,
    "Fixed Fee": LineType.FIXED_FEE,
    "Milestone": LineType.MILESTONE,
}
_BILLING_TYPES = {v: k for k, v in _LINE_TYPES.items()}
_CENT = Decimal("0.01")


# --------------------------------------------------------------------------- mapping


def _sf_datetime(value: str) -> datetime:
    """`2011-07-07T00:37:00.000+0000` (Salesforce's form: no colon in the offset), and the
    ISO 8601 variants (`Z`, `+00:00`, no milliseconds); an offset is required."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"date-time without an offset: {value!r}")
    return moment.astimezone(UTC)


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _money(value: Any, currency: str) -> Money:
    amount = Decimal(0) if value is None else _decimal(value)
    return Money(amount.quantize(_CENT, rounding=ROUND_HALF_UP), currency)


@unmappable(System.CRM, "OpportunityLineItem")
def opportunity_line_from_salesforce(record: Mapping[str, Any], currency: str) -> OpportunityLine:
    service = record.get("ServiceDate")
    return OpportunityLine(
        line_id=record["Id"],
        product_code=record.get("ProductCode") or "",
        description=record.get("Description") or record.get("Name") or "",
        line_type=_LINE_TYPES.get(record.get("Billing_Type__c") or "", LineType.TIME_AND_MATERIALS),
        role=record.get("Role__c"),
        quantity=_decimal(record["Quantity"]),
        unit_price=_money(record.get("UnitPrice"), currency),
        total_price=_money(record.get("TotalPrice"), currency),
        service_date=date.fromisoformat(service) if service else None,
    )


@unmappable(System.CRM, "Opportunity")
def opportunity_from_salesforce(
    record: Mapping[str, Any], lines: Sequence[Mapping[str, Any]] = ()
) -> Opportunity:
    """Canonical Opportunity from an Opportunity record (and its OpportunityLineItems)."""
    currency = record.get("CurrencyIsoCode") or "USD"
    enterprise = record.get("Enterprise_Project_Id__c")
    return Opportunity(
        enterprise_id=enterprise if enterprise and is_ulid(enterprise) else None,
        source_system=System.CRM,
        source_version=record.get("SystemModstamp"),
        updated_at=_sf_datetime(record["LastModifiedDate"]),
        external_id=record["Id"],
        name=record["Name"],
        account_id=record.get("AccountId") or "",
        amount=_money(record.get("Amount"), currency),
        close_date=date.fromisoformat(record["CloseDate"]),
        stage=record["StageName"],
        is_won=bool(record.get("IsWon")),
        is_closed=bool(record.get("IsClosed")),
        cost_center=record.get("Cost_Center__c"),
        practice=record.get("Practice__c"),
        rate_card_id=record.get("Rate_Card__c"),
        delivery_manager=record.get("Delivery_Manager__c"),
        lines=[opportunity_line_from_salesforce(li, currency) for li in lines],
    )


@unmappable(System.CRM, "Account")
def customer_from_salesforce(record: Mapping[str, Any]) -> Customer:
    return Customer(
        source_system=System.CRM,
        source_version=record.get("SystemModstamp"),
        updated_at=_sf_datetime(record["LastModifiedDate"]),
        external_id=record["Id"],
        name=record["Name"],
        currency=record.get("CurrencyIsoCode") or "USD",
        billing_country=record.get("BillingCountry"),
        credit_hold=bool(record.get("Credit_Hold__c")),
    )


@unmappable(System.CRM, "query result")
def query_page(body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The records of one query page and the `nextRecordsUrl` to follow (None when `done`:
    Salesforce then leaves the key out rather than sending null)."""
    records = body["records"]
    if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
        raise TypeError("records is not a list of records")
    following = None if body.get("done", True) else body.get("nextRecordsUrl")
    return records, str(following) if following else None


@unmappable(System.CRM, "save result")
def saved_id(body: Mapping[str, Any]) -> str:
    """The record Id of a create or upsert answer `{"id", "success", "errors", "created"?}`."""
    if not body["id"]:
        raise ValueError("the save result has no id")
    return str(body["id"])


def parse_error(response: httpx.Response) -> VendorError:
    """Salesforce errors: `[{"message", "errorCode", "fields"?}]` (the first one counts); some
    documented examples are the bare object. A `300 Multiple Choices` (an upsert key that
    several records share) answers the bare list of those records' URLs."""
    body = response.json()
    if response.status_code == 300 and isinstance(body, list):
        return VendorError(
            code="MULTIPLE_CHOICES",
            message=f"{len(body)} records match: " + ", ".join(str(u) for u in body)[:450],
        )
    first = body[0] if isinstance(body, list) and body else body
    if not isinstance(first, dict):
        return VendorError(code=f"HTTP_{response.status_code}", message=str(body)[:500])
    fields = first.get("fields") or []
    return VendorError(
        code=str(first.get("errorCode") or f"HTTP_{response.status_code}"),
        message=str(first.get("message") or ""),
        field=str(fields[0]) if fields else None,
    )


def _soql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _check_enterprise_id(enterprise_id: str) -> None:
    check_write(System.PSSYNC, "Opportunity", ["enterprise_id"])
    if not is_ulid(enterprise_id):
        raise BusinessRuleViolation(
            "INVALID_ENTERPRISE_ID",
            f"{enterprise_id!r} is not an enterprise ID (ULID)",
            field="enterprise_id",
            system=System.CRM,
        )


def _check_stage(stage: str) -> None:
    if stage not in OPPORTUNITY_STAGES:
        raise BusinessRuleViolation(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"StageName: bad value for restricted picklist field: {stage}",
            field="StageName",
            system=System.CRM,
        )


def _error_text(error: str | None) -> str | None:
    return error[:ERROR_MAX_LENGTH] if error else None


# --------------------------------------------------------------------------- new records


def opportunity_record(new: NewOpportunity) -> dict[str, Any]:
    """The Opportunity fields of a new deal (its line items follow, one record each)."""
    return {
        "Name": new.name,
        "AccountId": new.account_id,
        "CloseDate": new.close_date.isoformat(),
        "StageName": new.stage,
        "CurrencyIsoCode": new.currency,
        "Practice__c": new.practice,
        "Cost_Center__c": new.cost_center,
        "Rate_Card__c": new.rate_card_id,
        "Delivery_Manager__c": new.delivery_manager,
    }


def line_item_record(line: NewOpportunityLine, opportunity_id: str, n: int) -> dict[str, Any]:
    """The OpportunityLineItem fields of the deal's `n`-th line (1-based, its SortOrder)."""
    return {
        "OpportunityId": opportunity_id,
        "ProductCode": line.product_code,
        "Name": line.description or line.product_code,
        "Description": line.description or None,
        "Quantity": str(line.quantity),
        "UnitPrice": str(line.unit_price),
        "ServiceDate": line.service_date.isoformat() if line.service_date else None,
        "SortOrder": n,
        "Billing_Type__c": _BILLING_TYPES[line.line_type],
        "Role__c": line.role,
    }
