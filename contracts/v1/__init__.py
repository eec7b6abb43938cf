"""Canonical contracts, version 1. Import models from here: `from contracts.v1 import Project`."""

from pydantic import BaseModel

from contracts.money import CurrencyMismatchError, Money
from contracts.v1.change_orders import ErpBudget
from contracts.v1.events import EVENT_MODELS
from contracts.v1.models import (
    Assignment,
    AssignmentKind,
    BillingRule,
    ChangeOrder,
    ChangeOrderLine,
    ChangeOrderStatus,
    CostPosting,
    Customer,
    Entity,
    ExpenseEntry,
    Forecast,
    ForecastStatus,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineType,
    Milestone,
    MilestoneStatus,
    Opportunity,
    OpportunityLine,
    PostingKind,
    Project,
    ProjectStatus,
    RateCard,
    RateCardLine,
    TimeEntry,
    WbsNode,
    WbsNodeType,
    Worker,
    WorkerStatus,
)
from contracts.v1.notifications import Notification

VERSION = "v1"

MODELS: dict[str, type[BaseModel]] = {
    model.__name__: model
    for model in (
        Money,
        Customer,
        Opportunity,
        OpportunityLine,
        Project,
        WbsNode,
        Milestone,
        RateCard,
        RateCardLine,
        Worker,
        Assignment,
        TimeEntry,
        ExpenseEntry,
        CostPosting,
        Invoice,
        InvoiceLine,
        ChangeOrder,
        ChangeOrderLine,
        Forecast,
    )
}
"""Every public model by name (the JSON Schema export walks this)."""
MODELS.update(EVENT_MODELS)  # the domain events' envelope and data (docs/events.md)

__all__ = [
    "MODELS",
    "VERSION",
    "Assignment",
    "AssignmentKind",
    "BillingRule",
    "ChangeOrder",
    "ChangeOrderLine",
    "ChangeOrderStatus",
    "CostPosting",
    "CurrencyMismatchError",
    "Customer",
    "Entity",
    "ErpBudget",
    "ExpenseEntry",
    "Forecast",
    "ForecastStatus",
    "Invoice",
    "InvoiceLine",
    "InvoiceStatus",
    "LineType",
    "Milestone",
    "MilestoneStatus",
    "Money",
    "Notification",
    "Opportunity",
    "OpportunityLine",
    "PostingKind",
    "Project",
    "ProjectStatus",
    "RateCard",
    "RateCardLine",
    "TimeEntry",
    "WbsNode",
    "WbsNodeType",
    "Worker",
    "WorkerStatus",
]
