"""The PSA twin's Kantata API v1 routes, one module per vendor resource (each with its
`router`), plus the twin's own admin route (`admin.router`). What the resources share is in
`_shared` (dependencies, events) and `_crud` (the standard list, read and update routes)."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.psa.routes import (
    admin,
    assignments,
    billing_milestones,
    change_orders,
    custom_fields,
    expenses,
    external_references,
    invoices,
    posts,
    rate_card_versions,
    rate_cards,
    resource_requests,
    stories,
    time_entries,
    users,
    workspaces,
)

API = "/api/v1"

RESOURCES = (
    workspaces,
    stories,
    users,
    time_entries,
    expenses,
    assignments,
    resource_requests,
    rate_cards,
    rate_card_versions,
    billing_milestones,
    change_orders,
    invoices,
    external_references,
    posts,
    custom_fields,
)
"""The resource modules in the order their routes are registered (it matters where paths
overlap)."""


def vendor_router() -> APIRouter:
    """Every resource's routes under `/api/v1`, in `RESOURCES` order."""
    router = APIRouter(prefix=API)
    for module in RESOURCES:
        router.include_router(module.router)
    return router


__all__ = ["API", "RESOURCES", "admin", "vendor_router"]
