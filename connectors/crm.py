"""CRM connector: Salesforce REST, spoken in canonical contracts.

    crm = SalesforceCrm(settings.crm)
    opp = await crm.get_opportunity("0065g00000keQIVAA2")   # header + line items, re-read
    await crm.write_back_enterprise_id(opp.external_id, project_enterprise_id)
    await crm.mark_provisioning(opp.external_id, ProvisioningStatus.PROVISIONED)

`CrmPort` is what activities depend on; `SalesforceCrm` talks to a real org or the twin in
`sandbox/crm.py`; `FakeCrm` keeps the same rules in memory for unit and workflow tests.
Salesforce field names appear only here (and in the twin). `create_opportunity` and
`set_stage` act as a salesperson would, for tests and the demo; they are not part of the port.
No Temporal imports: activities decide what a failure means.

Every write is safe to repeat: the port's writes are PATCHes of fields to values, and
`create_opportunity` keys each record it makes by an External ID field (`Pssync_Key__c`, from
`NewOpportunity.key`): it looks the key up first, creates with an upsert by that key (so even
two racing creates make one record), and after a lost answer finds the record by its key
instead of sending again. Salesforce's plain create (POST) has no key and is not used.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, Protocol, cast
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors._http import VendorError, VendorHttp
from contracts.errors import BusinessRuleViolation, ConflictError, NotFoundError
from contracts.ids import is_ulid
from contracts.money import Money
from contracts.ownership import check_write
from contracts.settings import SystemSettings
from contracts.systems import System
from contracts.v1 import Customer, LineType, Opportunity, OpportunityLine

API_VERSION = "v61.0"
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


class ProvisioningStatus(StrEnum):
    """Values of the Provisioning_Status__c picklist pssync maintains on the opportunity."""

    NOT_STARTED = "Not Started"
    IN_PROGRESS = "In Progress"
    PROVISIONED = "Provisioned"
    FAILED = "Failed"


class NewOpportunityLine(BaseModel):
    """A line to put on a new opportunity (tests and the demo)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    product_code: str
    description: str = ""
    line_type: LineType = LineType.TIME_AND_MATERIALS
    role: str | None = None
    quantity: Decimal = Field(gt=0)
    unit_price: Decimal = Field(ge=0)
    service_date: date | None = None


class NewOpportunity(BaseModel):
    """An opportunity to create (tests and the demo); Amount follows from the lines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=120)
    account_id: str
    close_date: date
    currency: str = "USD"
    stage: str = "Proposal/Price Quote"
    practice: str | None = None
    cost_center: str | None = None
    rate_card_id: str | None = None
    delivery_manager: str | None = None
    lines: list[NewOpportunityLine] = Field(default_factory=list)
    key: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[^/]+$")
    """The deal's business key (its External ID; no `/`, it travels in the URL path):
    creating twice with one key is one deal. Without it each call mints its own key, so a
    lost answer within the call is recovered, but a caller that retries the whole call needs
    to pass one."""


class CrmPort(Protocol):
    """What pssync needs from the CRM."""

    async def get_opportunity(self, opportunity_id: str) -> Opportunity:
        """The opportunity and its line items as they are now (the safe re-read after a thin
        event). NotFoundError when it does not exist."""
        ...

    async def get_account(self, account_id: str) -> Customer: ...

    async def opportunities_in_stage(self, stage: str) -> list[Opportunity]:
        """Every opportunity in `stage`, headers only (`lines` empty) — for reconciliation."""
        ...

    async def write_back_enterprise_id(self, opportunity_id: str, enterprise_id: str) -> None:
        """Record the enterprise project ID on the opportunity (idempotent)."""
        ...

    async def mark_provisioning(
        self, opportunity_id: str, status: ProvisioningStatus, error: str | None = None
    ) -> None:
        """Tell the salespeople how provisioning went; `error` says why it failed."""
        ...


# --------------------------------------------------------------------------- mapping


def _sf_datetime(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _money(value: Any, currency: str) -> Money:
    amount = Decimal(0) if value is None else _decimal(value)
    return Money(amount.quantize(_CENT, rounding=ROUND_HALF_UP), currency)


def _unmappable(entity: str, exc: ValidationError) -> BusinessRuleViolation:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return BusinessRuleViolation(
        "UNMAPPABLE_RECORD",
        f"{entity} from Salesforce does not fit the canonical model: {first['msg']}",
        field=where or None,
        system=System.CRM,
    )


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


def opportunity_from_salesforce(
    record: Mapping[str, Any], lines: Sequence[Mapping[str, Any]] = ()
) -> Opportunity:
    """Canonical Opportunity from an Opportunity record (and its OpportunityLineItems)."""
    currency = record.get("CurrencyIsoCode") or "USD"
    enterprise = record.get("Enterprise_Project_Id__c")
    try:
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
    except ValidationError as exc:
        raise _unmappable("Opportunity", exc) from None


def customer_from_salesforce(record: Mapping[str, Any]) -> Customer:
    try:
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
    except ValidationError as exc:
        raise _unmappable("Account", exc) from None


def parse_error(response: httpx.Response) -> VendorError:
    """Salesforce errors: `[{"message", "errorCode", "fields"}]` (the first one counts)."""
    body = response.json()
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


# --------------------------------------------------------------------------- the HTTP adapter


class SalesforceCrm:
    """`CrmPort` over Salesforce REST (OAuth2 client credentials, retries, Retry-After)."""

    def __init__(
        self,
        settings: SystemSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        backoff_base_s: float = 0.05,
        backoff_cap_s: float = 5.0,
        query_batch_size: int | None = None,
        reread_attempts: int = 3,
    ) -> None:
        self.http = VendorHttp(
            System.CRM,
            settings,
            parse_error,
            transport=transport,
            backoff_base_s=backoff_base_s,
            backoff_cap_s=backoff_cap_s,
        )
        self.tenant: str = settings.tenant
        self.query_batch_size = query_batch_size
        self.reread_attempts = reread_attempts
        self._base = f"/services/data/{API_VERSION}"

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> SalesforceCrm:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # -- plumbing ---------------------------------------------------------------------------
    @staticmethod
    def _json(response: httpx.Response) -> Any:
        # Salesforce sends amounts as JSON numbers: read them as decimals, never floats.
        return json.loads(response.text, parse_float=Decimal)

    async def _get_record(self, sobject: str, record_id: str) -> dict[str, Any]:
        response = await self.http.request(
            "GET", f"{self._base}/sobjects/{sobject}/{quote(record_id, safe='')}", ok=(200,)
        )
        return cast(dict[str, Any], self._json(response))

    async def _patch(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None:
        await self.http.request(
            "PATCH",
            f"{self._base}/sobjects/{sobject}/{quote(record_id, safe='')}",
            ok=(204,),
            json=fields,
        )

    async def _keyed(self, sobject: str, key: str) -> str | None:
        """The Id of the record whose External ID `Pssync_Key__c` is `key`, if any."""
        found = await self.query(
            f"SELECT Id FROM {sobject} WHERE {KEY_FIELD} = {_soql_string(key)}"
        )
        return str(found[0]["Id"]) if found else None

    async def _create_keyed(self, sobject: str, key: str, fields: dict[str, Any]) -> str:
        """Create the record keyed `key` unless it exists; its Id.

        The create is an upsert by the External ID (`PATCH .../{KEY_FIELD}/{key}`), so a second
        create with the key can never make a second record. It is still not re-sent blindly:
        a repeat would take the upsert's update path, where fields that may only be set on
        create (a line item's OpportunityId, ProductCode) are refused. After an uncertain
        failure the key is looked up instead (`VendorHttp.create`)."""
        existing = await self._keyed(sobject, key)
        if existing is not None:
            return existing

        async def send() -> str:
            response = await self.http.request(
                "PATCH",
                f"{self._base}/sobjects/{sobject}/{KEY_FIELD}/{quote(key, safe='')}",
                ok=(200, 201),
                retry=False,
                json=fields,
            )
            return str(self._json(response)["id"])

        return await self.http.create(send, lambda: self._keyed(sobject, key))

    async def query(self, soql: str) -> list[dict[str, Any]]:
        """Every record of a SOQL query, following `nextRecordsUrl`."""
        headers = (
            {"Sforce-Query-Options": f"batchSize={self.query_batch_size}"}
            if self.query_batch_size
            else {}
        )
        response = await self.http.request(
            "GET", f"{self._base}/query", ok=(200,), params={"q": soql}, headers=headers
        )
        body = self._json(response)
        records: list[dict[str, Any]] = list(body["records"])
        while not body.get("done", True) and body.get("nextRecordsUrl"):
            response = await self.http.request(
                "GET", body["nextRecordsUrl"], ok=(200,), headers=headers
            )
            body = self._json(response)
            records.extend(body["records"])
        return records

    # -- the port ---------------------------------------------------------------------------
    async def get_opportunity(self, opportunity_id: str) -> Opportunity:
        for _ in range(self.reread_attempts):
            header = await self._get_record("Opportunity", opportunity_id)
            lines = await self.query(
                f"SELECT {_LINE_FIELDS} FROM OpportunityLineItem "
                f"WHERE OpportunityId = {_soql_string(header['Id'])} ORDER BY SortOrder"
            )
            # Header and lines come from two reads; a line change in between bumps the
            # header's SystemModstamp, so read again until both agree.
            check = await self._get_record("Opportunity", opportunity_id)
            if check.get("SystemModstamp") == header.get("SystemModstamp"):
                return opportunity_from_salesforce(header, lines)
        raise ConflictError(
            f"opportunity {opportunity_id} kept changing while it was read", system=System.CRM
        )

    async def get_account(self, account_id: str) -> Customer:
        return customer_from_salesforce(await self._get_record("Account", account_id))

    async def opportunities_in_stage(self, stage: str) -> list[Opportunity]:
        _check_stage(stage)
        records = await self.query(
            f"SELECT {_OPPORTUNITY_FIELDS} FROM Opportunity "
            f"WHERE StageName = {_soql_string(stage)} ORDER BY CloseDate"
        )
        return [opportunity_from_salesforce(r) for r in records]

    async def write_back_enterprise_id(self, opportunity_id: str, enterprise_id: str) -> None:
        _check_enterprise_id(enterprise_id)
        await self._patch(
            "Opportunity", opportunity_id, {"Enterprise_Project_Id__c": enterprise_id}
        )

    async def mark_provisioning(
        self, opportunity_id: str, status: ProvisioningStatus, error: str | None = None
    ) -> None:
        await self._patch(
            "Opportunity",
            opportunity_id,
            {
                "Provisioning_Status__c": ProvisioningStatus(status).value,
                "Provisioning_Error__c": _error_text(error),
            },
        )

    # -- a salesperson's actions (tests and the demo) -----------------------------------
    async def create_opportunity(self, new: NewOpportunity) -> str:
        """Create the opportunity and its line items, each keyed by `new.key` (see the class
        docstring); returns its Id. With a key, a repeat after any failure is the same deal
        and makes only what is missing; a record that exists is left as it is."""
        _check_stage(new.stage)
        key = new.key or f"pssync-{uuid.uuid4()}"
        opp_id = await self._create_keyed(
            "Opportunity",
            key,
            {
                "Name": new.name,
                "AccountId": new.account_id,
                "CloseDate": new.close_date.isoformat(),
                "StageName": new.stage,
                "CurrencyIsoCode": new.currency,
                "Practice__c": new.practice,
                "Cost_Center__c": new.cost_center,
                "Rate_Card__c": new.rate_card_id,
                "Delivery_Manager__c": new.delivery_manager,
            },
        )
        lines = await self.query(
            f"SELECT Id, {KEY_FIELD} FROM OpportunityLineItem "
            f"WHERE OpportunityId = {_soql_string(opp_id)}"
        )
        have = {str(li.get(KEY_FIELD)) for li in lines if li.get(KEY_FIELD)}
        for n, line in enumerate(new.lines, start=1):
            if f"{key}:{n}" in have:
                continue
            await self._create_keyed(
                "OpportunityLineItem",
                f"{key}:{n}",
                {
                    "OpportunityId": opp_id,
                    "ProductCode": line.product_code,
                    "Name": line.description or line.product_code,
                    "Description": line.description or None,
                    "Quantity": str(line.quantity),
                    "UnitPrice": str(line.unit_price),
                    "ServiceDate": line.service_date.isoformat() if line.service_date else None,
                    "SortOrder": n,
                    "Billing_Type__c": _BILLING_TYPES[line.line_type],
                    "Role__c": line.role,
                },
            )
        return opp_id

    async def set_stage(self, opportunity_id: str, stage: str) -> None:
        """Move the deal to `stage`; `Closed Won` makes the CRM send its won-deal event."""
        _check_stage(stage)
        await self._patch("Opportunity", opportunity_id, {"StageName": stage})


# --------------------------------------------------------------------------- the fake


class FakeCrm:
    """`CrmPort` in memory, with the twin's rules: unknown IDs are NotFoundError, Amount is
    the sum of the lines, stages come from the picklist, enterprise IDs must be ULIDs.
    `won` lists the opportunity IDs that reached `Closed Won` (what the CRM would announce)."""

    def __init__(self, tenant: str = "default") -> None:
        self.tenant = tenant
        self.accounts: dict[str, Customer] = {}
        self.opportunities: dict[str, Opportunity] = {}
        self.provisioning: dict[str, tuple[ProvisioningStatus, str | None]] = {}
        self.won: list[str] = []
        self.keys: dict[str, str] = {}
        """`NewOpportunity.key` -> opportunity Id (the External ID upsert)."""
        self._seq = 0
        self._clock = 0

    def _next_version(self) -> tuple[str, datetime]:
        self._clock += 1
        return f"v{self._clock}", datetime.now(UTC)

    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}FAKE{self._seq:011d}"

    def add_account(self, customer: Customer) -> Customer:
        self.accounts[customer.external_id] = customer
        return customer

    def add_opportunity(self, opportunity: Opportunity) -> Opportunity:
        """Put a canonical opportunity in as it is (tests)."""
        self.opportunities[opportunity.external_id] = opportunity.model_copy(deep=True)
        return opportunity

    def _opp(self, opportunity_id: str) -> Opportunity:
        opp = self.opportunities.get(opportunity_id)
        if opp is None:
            raise NotFoundError(
                f"CRM 404 NOT_FOUND: Opportunity {opportunity_id}", system=System.CRM
            )
        return opp

    def _touch(self, opp: Opportunity) -> None:
        opp.source_version, opp.updated_at = self._next_version()

    async def get_opportunity(self, opportunity_id: str) -> Opportunity:
        return self._opp(opportunity_id).model_copy(deep=True)

    async def get_account(self, account_id: str) -> Customer:
        account = self.accounts.get(account_id)
        if account is None:
            raise NotFoundError(f"CRM 404 NOT_FOUND: Account {account_id}", system=System.CRM)
        return account.model_copy(deep=True)

    async def opportunities_in_stage(self, stage: str) -> list[Opportunity]:
        _check_stage(stage)
        found = [o for o in self.opportunities.values() if o.stage == stage]
        return [o.model_copy(update={"lines": []}, deep=True) for o in found]

    async def write_back_enterprise_id(self, opportunity_id: str, enterprise_id: str) -> None:
        _check_enterprise_id(enterprise_id)
        opp = self._opp(opportunity_id)
        opp.enterprise_id = enterprise_id
        self._touch(opp)

    async def mark_provisioning(
        self, opportunity_id: str, status: ProvisioningStatus, error: str | None = None
    ) -> None:
        opp = self._opp(opportunity_id)
        self.provisioning[opportunity_id] = (ProvisioningStatus(status), _error_text(error))
        self._touch(opp)

    async def create_opportunity(self, new: NewOpportunity) -> str:
        _check_stage(new.stage)
        if new.key is not None and new.key in self.keys:
            return self.keys[new.key]
        if new.account_id not in self.accounts:
            raise BusinessRuleViolation(
                "INVALID_CROSS_REFERENCE_KEY",
                f"invalid cross reference id: AccountId {new.account_id}",
                field="AccountId",
                system=System.CRM,
            )
        opp_id = self._next_id("006")
        lines = []
        for line in new.lines:
            unit = Money(line.unit_price.quantize(_CENT, rounding=ROUND_HALF_UP), new.currency)
            lines.append(
                OpportunityLine(
                    line_id=self._next_id("00k"),
                    product_code=line.product_code,
                    description=line.description,
                    line_type=line.line_type,
                    role=line.role,
                    quantity=line.quantity,
                    unit_price=unit,
                    total_price=_money(line.quantity * line.unit_price, new.currency),
                    service_date=line.service_date,
                )
            )
        amount = sum((li.total_price for li in lines), Money.zero(new.currency))
        version, moment = self._next_version()
        self.opportunities[opp_id] = Opportunity(
            source_system=System.CRM,
            source_version=version,
            updated_at=moment,
            external_id=opp_id,
            name=new.name,
            account_id=new.account_id,
            amount=amount,
            close_date=new.close_date,
            stage=new.stage,
            is_won=new.stage == CONTRACTED_STAGE,
            is_closed=new.stage in ("Closed Won", "Closed Lost"),
            cost_center=new.cost_center,
            practice=new.practice,
            rate_card_id=new.rate_card_id,
            delivery_manager=new.delivery_manager,
            lines=lines,
        )
        if new.stage == CONTRACTED_STAGE:
            self.won.append(opp_id)
        if new.key is not None:
            self.keys[new.key] = opp_id
        return opp_id

    async def set_stage(self, opportunity_id: str, stage: str) -> None:
        _check_stage(stage)
        opp = self._opp(opportunity_id)
        was_won = opp.is_won
        opp.stage = stage
        opp.is_won = stage == CONTRACTED_STAGE
        opp.is_closed = stage in ("Closed Won", "Closed Lost")
        self._touch(opp)
        if opp.is_won and not was_won:
            self.won.append(opportunity_id)


__all__ = [
    "API_VERSION",
    "CONTRACTED_STAGE",
    "OPPORTUNITY_STAGES",
    "CrmPort",
    "FakeCrm",
    "NewOpportunity",
    "NewOpportunityLine",
    "ProvisioningStatus",
    "SalesforceCrm",
    "customer_from_salesforce",
    "opportunity_from_salesforce",
    "parse_error",
]
