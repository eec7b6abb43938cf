"""The CRM twin's org constants, stage picklist and sObject describe (field specs per type)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import SQLModel

from sandbox._ids import salesforce_id
from sandbox.crm.tables import CrmAccount, CrmOpportunity, CrmOpportunityLineItem

ORG_ID = salesforce_id("00D", 1)
"""The twin org's ID."""
CONTRACTED_STAGE = "Closed Won"
WON_EVENT = "opportunity.won"
MIN_API_VERSION, MAX_API_VERSION = 31.0, 62.0
TWIN_POD = "9Z"
"""Records created through the API get IDs on this pod; seeded ones use another."""

# StageName -> (Probability, IsClosed, IsWon, ForecastCategoryName), Salesforce's defaults.
STAGES: dict[str, tuple[int, bool, bool, str]] = {
    "Prospecting": (10, False, False, "Pipeline"),
    "Qualification": (10, False, False, "Pipeline"),
    "Needs Analysis": (20, False, False, "Pipeline"),
    "Value Proposition": (50, False, False, "Pipeline"),
    "Id. Decision Makers": (60, False, False, "Pipeline"),
    "Perception Analysis": (70, False, False, "Pipeline"),
    "Proposal/Price Quote": (75, False, False, "Pipeline"),
    "Negotiation/Review": (90, False, False, "Commit"),
    "Closed Won": (100, True, True, "Closed"),
    "Closed Lost": (0, True, False, "Omitted"),
}
CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD", "CHF", "JPY")
BILLING_TYPES = ("Time and Materials", "Fixed Fee", "Milestone")
PROVISIONING_STATUSES = ("Not Started", "In Progress", "Provisioned", "Failed")


# --------------------------------------------------------------------------- describe


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str
    """id, string, textarea, reference, currency, double, percent, int, date, datetime,
    boolean, picklist."""
    create: bool = False
    update: bool = False
    required: bool = False
    length: int | None = None
    values: tuple[str, ...] = ()
    refers_to: str | None = None
    external_id: bool = False
    """An External ID field (unique here): usable as the key of an upsert."""


@dataclass(frozen=True)
class SObject:
    name: str
    prefix: str
    table: type[SQLModel]
    fields: dict[str, FieldSpec]
    lookup: dict[str, str] = field(default_factory=dict)
    """lower-case name -> API name."""


def _sobject(name: str, prefix: str, table: type[SQLModel], specs: list[FieldSpec]) -> SObject:
    fields = {s.name: s for s in specs}
    return SObject(name, prefix, table, fields, {n.lower(): n for n in fields})


_AUDIT = [
    FieldSpec("CreatedDate", "datetime"),
    FieldSpec("LastModifiedDate", "datetime"),
    FieldSpec("SystemModstamp", "datetime"),
]

SOBJECTS: dict[str, SObject] = {
    "Account": _sobject(
        "Account",
        "001",
        CrmAccount,
        [
            FieldSpec("Id", "id"),
            FieldSpec("Name", "string", required=True, length=255, create=True, update=True),
            FieldSpec("CurrencyIsoCode", "picklist", values=CURRENCIES, create=True, update=True),
            FieldSpec("BillingCountry", "string", length=80, create=True, update=True),
            FieldSpec("Industry", "string", length=40, create=True, update=True),
            FieldSpec("Type", "string", length=40, create=True, update=True),
            FieldSpec("Credit_Hold__c", "boolean", create=True, update=True),
            *_AUDIT,
        ],
    ),
    "Opportunity": _sobject(
        "Opportunity",
        "006",
        CrmOpportunity,
        [
            FieldSpec("Id", "id"),
            FieldSpec("Name", "string", required=True, length=120, create=True, update=True),
            FieldSpec("AccountId", "reference", refers_to="Account", create=True, update=True),
            FieldSpec("Amount", "currency", create=True, update=True),
            FieldSpec("CloseDate", "date", required=True, create=True, update=True),
            FieldSpec(
                "StageName",
                "picklist",
                required=True,
                values=tuple(STAGES),
                create=True,
                update=True,
            ),
            FieldSpec("Probability", "percent", create=True, update=True),
            FieldSpec("IsClosed", "boolean"),
            FieldSpec("IsWon", "boolean"),
            FieldSpec("ForecastCategoryName", "string"),
            FieldSpec("CurrencyIsoCode", "picklist", values=CURRENCIES, create=True, update=True),
            FieldSpec("HasOpportunityLineItem", "boolean"),
            FieldSpec("Description", "textarea", length=32000, create=True, update=True),
            FieldSpec("Practice__c", "string", length=80, create=True, update=True),
            FieldSpec("Cost_Center__c", "string", length=40, create=True, update=True),
            FieldSpec("Rate_Card__c", "string", length=40, create=True, update=True),
            FieldSpec("Delivery_Manager__c", "string", length=40, create=True, update=True),
            FieldSpec("Enterprise_Project_Id__c", "string", length=26, create=True, update=True),
            FieldSpec(
                "Pssync_Key__c", "string", length=255, create=True, update=True, external_id=True
            ),
            FieldSpec(
                "Provisioning_Status__c",
                "picklist",
                values=PROVISIONING_STATUSES,
                create=True,
                update=True,
            ),
            FieldSpec("Provisioning_Error__c", "string", length=255, create=True, update=True),
            *_AUDIT,
        ],
    ),
    "OpportunityLineItem": _sobject(
        "OpportunityLineItem",
        "00k",
        CrmOpportunityLineItem,
        [
            FieldSpec("Id", "id"),
            FieldSpec(
                "OpportunityId", "reference", create=True, required=True, refers_to="Opportunity"
            ),
            # Salesforce derives ProductCode and Name from Product2; the twin has no product
            # catalogue, so they are set on create.
            FieldSpec("ProductCode", "string", create=True, length=255),
            FieldSpec("Name", "string", create=True, length=376),
            FieldSpec("Description", "string", length=255, create=True, update=True),
            FieldSpec("Quantity", "double", required=True, create=True, update=True),
            FieldSpec("UnitPrice", "currency", create=True, update=True),
            FieldSpec("TotalPrice", "currency", create=True, update=True),
            FieldSpec("ServiceDate", "date", create=True, update=True),
            FieldSpec("SortOrder", "int", create=True, update=True),
            FieldSpec("CurrencyIsoCode", "string"),
            FieldSpec(
                "Billing_Type__c", "picklist", values=BILLING_TYPES, create=True, update=True
            ),
            FieldSpec("Role__c", "string", length=80, create=True, update=True),
            FieldSpec(
                "Pssync_Key__c", "string", length=255, create=True, update=True, external_id=True
            ),
            *_AUDIT,
        ],
    ),
}
