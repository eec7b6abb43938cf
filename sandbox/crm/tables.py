"""The CRM twin's SQLite tables (Account, Opportunity, OpportunityLineItem, ID sequences)."""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Field, SQLModel

from sandbox._twin import table_list


class _SObjectRow(SQLModel):
    """What every sObject's table has: the 18-character Id and the audit stamps."""

    Id: str = Field(primary_key=True)
    CreatedDate: datetime
    LastModifiedDate: datetime
    SystemModstamp: datetime


class CrmAccount(_SObjectRow, table=True):
    __tablename__ = "crm_account"

    Name: str
    CurrencyIsoCode: str = "USD"
    BillingCountry: str | None = None
    Industry: str | None = None
    Type: str | None = "Customer"
    Credit_Hold__c: bool = False


class CrmOpportunity(_SObjectRow, table=True):
    __tablename__ = "crm_opportunity"

    Name: str
    AccountId: str | None = Field(default=None, index=True)
    Amount: str | None = None
    CloseDate: date
    StageName: str = Field(index=True)
    Probability: str | None = None
    IsClosed: bool = False
    IsWon: bool = False
    ForecastCategoryName: str = "Pipeline"
    CurrencyIsoCode: str = "USD"
    HasOpportunityLineItem: bool = False
    Description: str | None = None
    Practice__c: str | None = None
    Cost_Center__c: str | None = None
    Rate_Card__c: str | None = None
    Delivery_Manager__c: str | None = None
    Enterprise_Project_Id__c: str | None = Field(default=None, index=True)
    Pssync_Key__c: str | None = Field(default=None, index=True)
    Provisioning_Status__c: str | None = None
    Provisioning_Error__c: str | None = None


class CrmOpportunityLineItem(_SObjectRow, table=True):
    __tablename__ = "crm_opportunity_line_item"

    OpportunityId: str = Field(index=True)
    ProductCode: str | None = None
    Name: str | None = None
    Description: str | None = None
    Quantity: str
    UnitPrice: str
    TotalPrice: str
    ServiceDate: date | None = None
    SortOrder: int | None = None
    CurrencyIsoCode: str = "USD"
    Billing_Type__c: str | None = None
    Role__c: str | None = None
    Pssync_Key__c: str | None = Field(default=None, index=True)


class CrmSequence(SQLModel, table=True):
    __tablename__ = "crm_sequence"

    prefix: str = Field(primary_key=True)
    next: int = 1


TABLES = table_list(CrmAccount, CrmOpportunity, CrmOpportunityLineItem, CrmSequence)
