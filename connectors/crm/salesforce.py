"""`SalesforceCrm`: the `CrmPort` over Salesforce REST (OAuth2 client credentials, retries,
Retry-After), plus a salesperson's actions for tests and the demo."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any, Unpack, cast
from urllib.parse import quote

import httpx

from connectors._http import Backoff, VendorClient, VendorHttp
from connectors._vendor_errors import unmappable_from
from connectors.crm.errors import ERROR_CODES, parse_limit_info
from connectors.crm.mapping import (
    _LINE_FIELDS,
    _OPPORTUNITY_FIELDS,
    KEY_FIELD,
    _check_enterprise_id,
    _check_stage,
    _error_text,
    _soql_string,
    customer_from_salesforce,
    line_item_record,
    opportunity_from_salesforce,
    opportunity_record,
    parse_error,
    query_page,
    saved_id,
)
from connectors.crm.port import CrmPort, NewOpportunity, ProvisioningStatus
from contracts.errors import BusinessRuleViolation, ConflictError
from contracts.settings import SystemSettings
from contracts.systems import System
from contracts.v1 import Customer, Opportunity

API_VERSION = "v61.0"

# --------------------------------------------------------------------------- the HTTP adapter


class SalesforceCrm(VendorClient):
    """`CrmPort` over Salesforce REST (OAuth2 client credentials, retries, Retry-After)."""

    def __init__(
        self,
        settings: SystemSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        query_batch_size: int | None = None,
        reread_attempts: int = 3,
        **backoff: Unpack[Backoff],
    ) -> None:
        super().__init__(
            VendorHttp(
                System.CRM,
                settings,
                parse_error,
                transport=transport,
                error_codes=ERROR_CODES,
                quota_header=parse_limit_info,
                **backoff,
            )
        )
        self.tenant: str = settings.tenant
        self.query_batch_size = query_batch_size
        self.reread_attempts = reread_attempts
        self._base = f"/services/data/{API_VERSION}"

    # -- plumbing ---------------------------------------------------------------------------
    @staticmethod
    def _json(response: httpx.Response) -> Any:
        # Salesforce sends amounts as JSON numbers (`23.0`): read them as decimals, never
        # floats. A 2xx body that is not JSON is unmappable, not a bare ValueError.
        try:
            return json.loads(response.text, parse_float=Decimal)
        except ValueError as exc:
            raise unmappable_from(exc, system=System.CRM, record="response body") from exc

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
                ok=(200, 201, 300),
                retry=False,
                json=fields,
            )
            body = self._json(response)
            if response.status_code == 300:
                raise _multiple_choices(sobject, key, body)
            return saved_id(body)

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
        page, following = query_page(self._json(response))
        records: list[dict[str, Any]] = list(page)
        while following:
            response = await self.http.request("GET", following, ok=(200,), headers=headers)
            page, following = query_page(self._json(response))
            records.extend(page)
        return records

    # -- the port ---------------------------------------------------------------------------
    async def get_opportunity(self, opportunity_id: str) -> Opportunity:
        for _ in range(self.reread_attempts):
            header = await self._get_record("Opportunity", opportunity_id)
            lines = await self.query(
                f"SELECT {_LINE_FIELDS} FROM OpportunityLineItem "
                f"WHERE OpportunityId = {_soql_string(_record_id(header, opportunity_id))} "
                "ORDER BY SortOrder"
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
        """Create the opportunity and its line items, each keyed by `new.key` (see the package
        docstring); returns its Id. With a key, a repeat after any failure is the same deal
        and makes only what is missing; a record that exists is left as it is."""
        _check_stage(new.stage)
        key = new.key or f"pssync-{uuid.uuid4()}"
        opp_id = await self._create_keyed("Opportunity", key, opportunity_record(new))
        lines = await self.query(
            f"SELECT Id, {KEY_FIELD} FROM OpportunityLineItem "
            f"WHERE OpportunityId = {_soql_string(opp_id)}"
        )
        have = {str(li.get(KEY_FIELD)) for li in lines if li.get(KEY_FIELD)}
        for n, line in enumerate(new.lines, start=1):
            if f"{key}:{n}" in have:
                continue
            await self._create_keyed(
                "OpportunityLineItem", f"{key}:{n}", line_item_record(line, opp_id, n)
            )
        return opp_id

    async def set_stage(self, opportunity_id: str, stage: str) -> None:
        """Move the deal to `stage`; `Closed Won` makes the CRM send its won-deal event."""
        _check_stage(stage)
        await self._patch("Opportunity", opportunity_id, {"StageName": stage})


def _record_id(record: Any, fallback: str) -> str:
    """The record's own (18-character) Id, else the Id it was asked by."""
    found = record.get("Id") if isinstance(record, dict) else None
    return str(found) if found else fallback


def _multiple_choices(sobject: str, key: str, body: Any) -> BusinessRuleViolation:
    """`300 Multiple Choices` on an upsert: several records share the key (the External ID
    field is not unique in the org). Salesforce answers the bare list of their URLs; a
    person must merge the duplicates or make the field unique."""
    urls = [str(u) for u in body] if isinstance(body, list) else [str(body)]
    return BusinessRuleViolation(
        "MULTIPLE_CHOICES",
        f"{len(urls)} {sobject} records have {KEY_FIELD} = {key!r}: {', '.join(urls)}"[:500],
        field=KEY_FIELD,
        system=System.CRM,
    )


def _check_port() -> CrmPort:  # pragma: no cover - a static check for mypy
    return SalesforceCrm(SystemSettings(base_url="http://localhost"))
