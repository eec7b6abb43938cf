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
- a second project in one system for the deal (the xref links one, the enterprise ID leads to
  another that is there too: made outside pssync, e.g. a person re-keyed the deal) ->
  `duplicate_project`: escalate with both projects and the one the xref links; which one is
  the deal's is for a person, so that system's link and fields are not compared meanwhile;
- another project of the deal's customer that carries no enterprise ID and that the xref links
  to no enterprise ID (a person re-keyed the won deal by hand), open, with the deal's project
  name (case and spaces aside) or noting the deal's opportunity id -> `duplicate_project`
  (keyed by the duplicate): escalate with both projects and why it matched. Projects of other
  deals (they carry or are linked to their enterprise ID) and closed ones never match;
- a project found by its enterprise ID but not linked in the xref -> `xref_missing`: repair (the
  link is written again); linked to another object -> escalate;
- name, currency, cost center, budget or status differ between the PSA and the ERP project ->
  `field_mismatch`, one per field, owned by the system holding the copy (the system of record
  per `contracts.ownership` is in the evidence): escalate. Budget is compared where both
  systems hold one; status as open or closed, not while the PSA project is still being
  provisioned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from contracts.money import Money
from contracts.ownership import owner_of
from contracts.systems import System
from contracts.v1.models import ProjectStatus
from contracts.v1.reconciliation import Disposition, Domain, Drift, DriftKind

PSA_PROJECT_OBJECT = "workspace"
ERP_PROJECT_OBJECT = "job"

COPIED_FIELDS: tuple[str, ...] = ("name", "currency", "cost_center", "budget", "status")
"""Fields both projects hold. When they differ the system of record (`owner_of("Project",
field)`: the PSA for name, currency and status, the ERP for cost center and budget) is right
and the other system's copy is the value to change (the drift's `owner`)."""

CLOSED_STATUSES = frozenset({ProjectStatus.CLOSED, ProjectStatus.ARCHIVED})
"""A project over (closed to time and billing) in either system; `closed_for_time` is still
open: the ERP still bills it."""


@dataclass(frozen=True)
class FoundProject:
    """A project as one system holds it (the fields compared; None: not known, not compared)."""

    external_id: str
    name: str
    currency: str
    cost_center: str | None
    budget: Money | None = None
    """None: the system holds no budget for it (a workspace not budgeted, a job without one)."""
    status: ProjectStatus | None = None
    customer: str | None = None
    """The system's id of the project's customer (not compared: where its other projects are
    looked for)."""


@dataclass(frozen=True)
class OtherProject:
    """Another project of the deal's customer, as the system's list of the customer's
    projects shows it: a duplicate if a person made it for this deal by hand."""

    external_id: str
    name: str
    enterprise_id: str | None = None
    """The enterprise ID it carries (None: pssync did not make it)."""
    reference: str | None = None
    """Free text a person noted on it (where an opportunity id may be)."""
    closed: bool = False
    linked_to: str | None = None
    """The enterprise ID the xref links it to (None: none)."""


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
    """The PSA project found (by its enterprise ID reference, else by the link)."""
    erp: FoundProject | None = None
    psa_duplicates: tuple[str, ...] = ()
    """Other PSA projects of this deal that are there (the one the xref links when the
    enterprise ID leads to another)."""
    erp_duplicates: tuple[str, ...] = ()
    psa_others: tuple[OtherProject, ...] = ()
    """The other projects of the deal's customer in the PSA (none: not looked for)."""
    erp_others: tuple[OtherProject, ...] = ()


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


def field_value(found: FoundProject, name: str) -> str | None:
    """A copied field as compared and shown: money rounded to its minor unit with its
    currency, a status as open or closed (None: not compared)."""
    value = getattr(found, name)
    if isinstance(value, Money):
        rounded = value.rounded()
        return f"{rounded.amount} {rounded.currency}"
    if isinstance(value, ProjectStatus):
        if value is ProjectStatus.PROVISIONING:
            return None  # the saga is still on it
        return "closed" if value in CLOSED_STATUSES else "open"
    return value if value is None else str(value)


def _copy_holder(name: str) -> System:
    """The system whose copy of `name` is wrong when the two differ."""
    return System.ERP if owner_of("Project", name) is System.PSA else System.PSA


class _Drifts:
    """Builds one deal's drifts: its keys, the default values and the evidence."""

    def __init__(self, ctx: ProjectContext, deal: Deal) -> None:
        self.ctx, self.deal = ctx, deal
        self.evidence: dict[str, str | None] = {
            "enterprise_id": deal.enterprise_id,
            "xref_psa": deal.psa_link,
            "xref_erp": deal.erp_link,
            "psa_project": deal.psa.external_id if deal.psa else None,
            "erp_project": deal.erp.external_id if deal.erp else None,
        }

    def drift(
        self,
        kind: DriftKind,
        disposition: Disposition,
        owner: System,
        detail: str,
        values: dict[str, str | None] | None = None,
        **extra: str,
    ) -> Drift:
        deal = self.deal
        keys = {"tenant": self.ctx.tenant, "opportunity": deal.opportunity_id, **extra}
        if deal.enterprise_id is not None:
            keys["enterprise_id"] = deal.enterprise_id
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

    def finding(
        self,
        drift: Drift,
        repair: ProjectRepair | None = None,
        **evidence: str | None,
    ) -> ProjectFinding:
        return ProjectFinding(drift, repair, {**self.evidence, **evidence})


def compare_project(ctx: ProjectContext, deal: Deal) -> list[ProjectFinding]:
    """Every project-master drift of one won opportunity (none while it changed within the
    settle window: provisioning may be under way; none for a deal closed before `since`)."""
    if ctx.since is not None and deal.closed_on is not None and deal.closed_on < ctx.since:
        return []
    if deal.updated_at is not None and ctx.now - deal.updated_at < timedelta(seconds=ctx.settle_s):
        return []
    made = _Drifts(ctx, deal)
    eid = deal.enterprise_id
    if eid is None:
        missing = made.drift(
            DriftKind.PROJECT_MISSING_PSA_PROJECT,
            Disposition.ESCALATE,
            System.PSA,
            f"opportunity {deal.opportunity_id} ({deal.name}) is won and was never provisioned;"
            " retry provisions it",
        )
        return [made.finding(missing, ProjectRepair(deal.opportunity_id, provision=True))]
    findings: list[ProjectFinding] = []
    for system, link, found, duplicates, kind, object_type, others in (
        (System.PSA, deal.psa_link, deal.psa, deal.psa_duplicates,
         DriftKind.PROJECT_MISSING_PSA_PROJECT, PSA_PROJECT_OBJECT, deal.psa_others),
        (System.ERP, deal.erp_link, deal.erp, deal.erp_duplicates,
         DriftKind.PROJECT_MISSING_ERP_PROJECT, ERP_PROJECT_OBJECT, deal.erp_others),
    ):  # fmt: skip
        for other in others:
            reason = duplicate_reason(deal, found, other, exclude=(link, *duplicates))
            if reason is not None and other.linked_to is None:
                findings.append(_hand_made(made, system, found, other, reason))
        if found is None:
            findings.append(
                made.finding(
                    made.drift(
                        kind,
                        Disposition.ESCALATE,
                        system,
                        f"enterprise project {eid} has no {system.value} project"
                        + (f" (the xref links {link}, which is gone)" if link else ""),
                    )
                )
            )
        elif duplicates:
            findings.append(_duplicate(made, system, link, found, duplicates))
        elif link != found.external_id:
            findings.append(_unlinked(made, system, link, found, object_type))
    if deal.psa is not None and deal.erp is not None:
        if not (deal.psa_duplicates or deal.erp_duplicates):
            findings += _mismatches(made, deal.psa, deal.erp)
    return findings


def normalised_name(name: str) -> str:
    """A project name as compared for duplicates: case and surrounding or repeated spaces
    aside."""
    return " ".join(name.split()).casefold()


def duplicate_reason(
    deal: Deal,
    found: FoundProject | None,
    other: OtherProject,
    exclude: tuple[str | None, ...] = (),
) -> str | None:
    """Why `other` (a project of the deal's customer) looks like a second project for the
    deal made by hand, or None: it must carry no enterprise ID, be open, not be the deal's
    project (`found`, or one in `exclude`), and have the deal's project name (or the deal's)
    or note the deal's opportunity id. Whether the xref links it is checked apart
    (`OtherProject.linked_to`)."""
    if other.enterprise_id is not None or other.closed:
        return None
    if other.external_id in (found.external_id if found else None, *exclude):
        return None
    names = {normalised_name(deal.name)} | ({normalised_name(found.name)} if found else set())
    reasons = []
    name = normalised_name(other.name)
    if name and name in names:
        reasons.append(f"same name as the deal's project ({other.name!r})")
    if other.reference and deal.opportunity_id in re.findall(r"[\w-]+", other.reference):
        reasons.append(f"notes opportunity {deal.opportunity_id}")
    return " and ".join(reasons) or None


def _hand_made(
    made: _Drifts,
    system: System,
    found: FoundProject | None,
    other: OtherProject,
    reason: str,
) -> ProjectFinding:
    deal = made.deal
    ours = found.external_id if found else None
    detail = (
        f"{system.value} project {other.external_id} ({other.name!r}) of the same customer "
        f"looks like a second project for opportunity {deal.opportunity_id} made outside "
        f"pssync: {reason}; it carries no enterprise ID"
        + (f"; pssync's is {ours} ({found.name!r})" if found else "")
        + ". Keep one, close or remove the other, then acknowledge"
    )
    drift = made.drift(
        DriftKind.PROJECT_DUPLICATE_PROJECT,
        Disposition.ESCALATE,
        system,
        detail,
        {"project": ours, "duplicate": other.external_id},
        system=system.value,
        duplicate=other.external_id,
    )
    return made.finding(
        drift,
        duplicate=other.external_id,
        duplicate_name=other.name,
        project=ours,
        project_name=found.name if found else None,
        matched=reason,
    )


def _duplicate(
    made: _Drifts,
    system: System,
    link: str | None,
    found: FoundProject,
    duplicates: tuple[str, ...],
) -> ProjectFinding:
    projects = sorted({found.external_id, *duplicates}, key=lambda i: (len(i), i))
    eid = made.deal.enterprise_id
    detail = (
        f"{len(projects)} {system.value} projects for enterprise project {eid} "
        f"(opportunity {made.deal.opportunity_id}): {', '.join(projects)}; "
        f"{found.external_id} carries the enterprise ID"
        + (f", the xref links {link}" if link else ", the xref links none")
        + ". One was made outside pssync: keep one, close or remove the other, then acknowledge"
    )
    drift = made.drift(
        DriftKind.PROJECT_DUPLICATE_PROJECT,
        Disposition.ESCALATE,
        system,
        detail,
        {"xref": link, "projects": ",".join(projects)},
        system=system.value,
    )
    return made.finding(
        drift,
        duplicates=",".join(projects),
        carries_enterprise_id=found.external_id,
        xref_links=link,
    )


def _unlinked(
    made: _Drifts, system: System, link: str | None, found: FoundProject, object_type: str
) -> ProjectFinding:
    eid = made.deal.enterprise_id
    assert eid is not None
    relink = link is None
    detail = (
        f"the {system.value} project {found.external_id} of {eid} is not linked in the xref"
        if relink
        else f"the xref links {link}, but {system.value} project {found.external_id} carries {eid}"
    )
    repair = ProjectRepair(
        made.deal.opportunity_id, eid, link=(system.value, object_type, found.external_id)
    )
    drift = made.drift(
        DriftKind.PROJECT_XREF_MISSING,
        Disposition.REPAIR if relink else Disposition.ESCALATE,
        System.PSSYNC,
        detail,
        system=system.value,
    )
    return made.finding(drift, repair)


def _mismatches(made: _Drifts, psa: FoundProject, erp: FoundProject) -> list[ProjectFinding]:
    findings = []
    for name in COPIED_FIELDS:
        psa_value, erp_value = field_value(psa, name), field_value(erp, name)
        if psa_value is None or erp_value is None or psa_value == erp_value:
            continue  # equal, or one side holds none (no budget; still provisioning)
        of_record = owner_of("Project", name)
        holder = _copy_holder(name)
        detail = (
            f"{name} differs: PSA {psa_value!r}, ERP {erp_value!r}; the {of_record.value} owns "
            f"it, so the {holder.value} copy is to change (or the {of_record.value} value, if it "
            "is the one that is wrong)"
        )
        mismatch = made.drift(
            DriftKind.PROJECT_FIELD_MISMATCH,
            Disposition.ESCALATE,
            holder,
            detail,
            {"psa": psa_value, "erp": erp_value},
            field=name,
        )
        findings.append(made.finding(mismatch, system_of_record=of_record.value))
    return findings
