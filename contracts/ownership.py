"""Field ownership: which system of record owns each canonical field.

One declarative map answers "may system S write field F of entity E". Connectors call
`check_write` before sending an update so a sync can never overwrite another system's truth.
Fields not listed are owned by the entity's default owner. No I/O here.
"""

from __future__ import annotations

from contracts.errors import OwnershipViolation
from contracts.systems import System

# entity -> (default owner, {field: owner} overrides)
OWNERSHIP: dict[str, tuple[System, dict[str, System]]] = {
    "Customer": (System.CRM, {"enterprise_id": System.PSSYNC, "credit_hold": System.ERP}),
    "Opportunity": (System.CRM, {"enterprise_id": System.PSSYNC}),
    "Project": (
        System.PSA,
        {
            "enterprise_id": System.PSSYNC,
            "contract_value": System.CRM,
            "opportunity_id": System.CRM,
            "cost_center": System.ERP,
            "budget": System.ERP,
            "gl_status": System.ERP,
        },
    ),
    # Rate cards and their effective-dated revisions: the PSA (delivery sets bill rates in
    # Kantata rate card versions); the ERP keeps a synced copy (docs/processes/rate_cards.md).
    "RateCard": (System.PSA, {"enterprise_id": System.PSSYNC}),
    # Workers: HCM owns identity, employment dates, location, cost center, practice, manager,
    # role, FTE and leave (WorkerLifecycle carries them to the PSA resource); the ERP holds the
    # labor cost rate pssync reads, as an effective-dated history that WorkerLifecycle extends
    # from HCM's compensation changes (docs/processes/worker_lifecycle.md).
    "Worker": (
        System.HCM,
        {"enterprise_id": System.PSSYNC, "cost_rate": System.ERP},
    ),
    "Assignment": (System.PSA, {"enterprise_id": System.PSSYNC}),
    "TimeEntry": (System.PSA, {"enterprise_id": System.PSSYNC, "posting_id": System.ERP}),
    "ExpenseEntry": (System.PSA, {"enterprise_id": System.PSSYNC, "posting_id": System.ERP}),
    "CostPosting": (System.ERP, {"enterprise_id": System.PSSYNC}),
    "Invoice": (System.ERP, {"enterprise_id": System.PSSYNC}),
    "ChangeOrder": (System.PSA, {"enterprise_id": System.PSSYNC}),
    "Forecast": (System.ERP, {"enterprise_id": System.PSSYNC, "hours": System.PSA}),
}


def owner_of(entity: str, field: str) -> System:
    """The system of record for `entity.field`; KeyError for an unknown entity."""
    default, overrides = OWNERSHIP[entity]
    return overrides.get(field, default)


def may_write(system: System | str, entity: str, field: str) -> bool:
    """May `system` be the source of a write to canonical `entity.field`?"""
    return owner_of(entity, field) == System(system)


def check_write(system: System | str, entity: str, fields: list[str]) -> None:
    """Raise `OwnershipViolation` for the first field `system` does not own."""
    for field in fields:
        owner = owner_of(entity, field)
        if owner != System(system):
            raise OwnershipViolation(str(System(system)), entity, field, str(owner))
