"""Project master, the comparison itself (pure: no I/O): a won CRM opportunity, what pssync's
xref links to its enterprise ID, and the PSA and ERP projects as found -> the drifts.

    findings = compare_project(context, deal)

Every won opportunity has exactly one PSA project and one ERP project, linked in the xref under
one enterprise ID, and the fields copied between them agree:

- won, no enterprise ID anywhere (never provisioned: its webhook was lost, or it was won before
  pssync ran) -> `missing_psa_project`: escalate; a person's retry starts the provisioning saga
  (keyed by the opportunity: a run already there is joined). Deals closed before `since` are
  not compared (the history before pssync is not pssync's to provision);
- provisioned, the PSA (ERP) project gone -> `missing_psa_project` (`missing_erp_project`):
  escalate;
- a project found by its enterprise ID but not linked in the xref -> `xref_missing`: repair (the
  link is written again); linked to another object -> escalate;
- name, currency or cost center differ between the PSA and the ERP project ->
  `field_mismatch`, one per field, owned by the system holding the copy: escalate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from contracts.systems import System
from contracts.v1.reconciliation import Disposition, Domain, Drift, DriftKind

PSA_PROJECT_OBJECT = "workspace"
ERP_PROJECT_OBJECT = "job"

COPIED_FIELDS: tuple[tuple[str, System], ...] = (
    ("name", System.ERP),
    ("currency", System.ERP),
    ("cost_center", System.PSA),
)
"""Fields both projects hold, and the system whose copy is wrong when they differ (the name
belongs to the PSA, the currency to the contract, the cost center to the ERP)."""


@dataclass(frozen=True)
class FoundProject:
    """A project as one system holds it (the fields compared)."""

    external_id: str
    name: str
    currency: str
    cost_center: str | None


@dataclass(frozen=True)
class Deal:
    """A won opportunity and what pssync and the systems hold for it."""

    opportunity_id: str
    name: str
    updated_at: datetime | None = None
    closed_on: date | None = None
    enterprise_id: str | None = None
    psa_link: str | None = None
    """The PSA project the xref links (None: no link)."""
    erp_link: str | None = None
    psa: FoundProject | None = None
    """The PSA project found (by the link, else by its enterprise ID reference)."""
    erp: FoundProject | None = None


@dataclass(frozen=True)
class ProjectContext:
    tenant: str
    now: datetime
    settle_s: float = 300.0
    since: date | None = None
    """Deals closed before this date are not compared."""


@dataclass(frozen=True)
class ProjectRepair:
    """`provision`: start the provisioning saga of the opportunity; `link`: (system, object
    type, external id) to link to the enterprise ID."""

    opportunity_id: str
    enterprise_id: str | None = None
    provision: bool = False
    link: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class ProjectFinding:
    drift: Drift
    repair: ProjectRepair | None = None
    evidence: dict[str, str | None] = field(default_factory=dict)


def compare_project(ctx: ProjectContext, deal: Deal) -> list[ProjectFinding]:
    """Every project-master drift of one won opportunity (none while it changed within the
    settle window: provisioning may be under way; none for a deal closed before `since`)."""
    if ctx.since is not None and deal.closed_on is not None and deal.closed_on < ctx.since:
        return []
    if deal.updated_at is not None and ctx.now - deal.updated_at < timedelta(seconds=ctx.settle_s):
        return []
    evidence: dict[str, str | None] = {
        "enterprise_id": deal.enterprise_id,
        "xref_psa": deal.psa_link,
        "xref_erp": deal.erp_link,
        "psa_project": deal.psa.external_id if deal.psa else None,
        "erp_project": deal.erp.external_id if deal.erp else None,
    }
    eid = deal.enterprise_id

    def drift(
        kind: DriftKind,
        disposition: Disposition,
        owner: System,
        detail: str,
        values: dict[str, str | None] | None = None,
        **extra: str,
    ) -> Drift:
        keys = {"tenant": ctx.tenant, "opportunity": deal.opportunity_id, **extra}
        if eid is not None:
            keys["enterprise_id"] = eid
        values = values or {
            "crm": deal.opportunity_id,
            "psa": deal.psa.external_id if deal.psa else None,
            "erp": deal.erp.external_id if deal.erp else None,
        }
        return Drift(
            domain=Domain.PROJECT_MASTER,
            kind=kind,
            keys=keys,
            values=values,
            owner=owner,
            disposition=disposition,
            detail=detail,
        )

    if eid is None:
        missing = drift(
            DriftKind.PROJECT_MISSING_PSA_PROJECT,
            Disposition.ESCALATE,
            System.PSA,
            f"opportunity {deal.opportunity_id} ({deal.name}) is won and was never provisioned;"
            " retry provisions it",
        )
        return [ProjectFinding(missing, ProjectRepair(deal.opportunity_id, provision=True),
                               evidence)]  # fmt: skip
    findings: list[ProjectFinding] = []
    for system, link, found, kind, object_type in (
        (System.PSA, deal.psa_link, deal.psa, DriftKind.PROJECT_MISSING_PSA_PROJECT,
         PSA_PROJECT_OBJECT),
        (System.ERP, deal.erp_link, deal.erp, DriftKind.PROJECT_MISSING_ERP_PROJECT,
         ERP_PROJECT_OBJECT),
    ):  # fmt: skip
        if found is None:
            findings.append(
                ProjectFinding(
                    drift(
                        kind,
                        Disposition.ESCALATE,
                        system,
                        f"enterprise project {eid} has no {system.value} project"
                        + (f" (the xref links {link}, which is gone)" if link else ""),
                    ),
                    evidence=evidence,
                )
            )
        elif link != found.external_id:
            relink = link is None
            detail = (
                f"the {system.value} project {found.external_id} of {eid} is not linked in the xref"
                if relink
                else f"the xref links {link}, but {system.value} project {found.external_id} "
                f"carries {eid}"
            )
            repair = ProjectRepair(
                deal.opportunity_id, eid, link=(system.value, object_type, found.external_id)
            )
            findings.append(
                ProjectFinding(
                    drift(
                        DriftKind.PROJECT_XREF_MISSING,
                        Disposition.REPAIR if relink else Disposition.ESCALATE,
                        System.PSSYNC,
                        detail,
                        system=system.value,
                    ),
                    repair,
                    evidence,
                )
            )
    if deal.psa is not None and deal.erp is not None:
        for name, owner in COPIED_FIELDS:
            psa_value, erp_value = getattr(deal.psa, name), getattr(deal.erp, name)
            if psa_value == erp_value:
                continue
            mismatch = drift(
                DriftKind.PROJECT_FIELD_MISMATCH,
                Disposition.ESCALATE,
                owner,
                f"{name} differs: PSA {psa_value!r}, ERP {erp_value!r}",
                {"psa": psa_value, "erp": erp_value},
                field=name,
            )
            findings.append(ProjectFinding(mismatch, evidence=evidence))
    return findings
