"""Activities of the rate card sync: read a PSA rate card revision with the invoiced time it
would re-rate, and write pssync's decision on it to the ERP (on the ERP task queue).

No business rules here beyond the port calls: the conflicts and dates are the pure functions of
`contracts.v1.rate_cards`.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field
from temporalio import activity

from activities._errors import translate_errors
from connectors.erp.rate_card_port import ErpRateCardsPort
from connectors.psa import PsaProjectsPort, PsaTimePort
from connectors.psa.rate_card_port import PsaRateCardRevisionsPort
from contracts.errors import NotFoundError
from contracts.v1.rate_cards import (
    ErpRateCardRevision,
    InvoicedEntry,
    RateCardRevision,
    invoiced_conflicts,
)


class RateCardPsa(PsaProjectsPort, PsaTimePort, PsaRateCardRevisionsPort, Protocol):
    """The PSA as the rate card sync reads it."""


class ReadRevision(BaseModel):
    psa_tenant: str
    rate_card_id: str
    revision_id: str


class RevisionFacts(BaseModel):
    revision: RateCardRevision
    conflicts: list[InvoicedEntry] = Field(default_factory=list)
    """Invoiced time the revision would re-rate (old rate as invoiced, new rate)."""


class RateCardActivities:
    def __init__(self, psa: RateCardPsa) -> None:
        self.psa = psa

    @activity.defn(name="rate_cards.read_revision")
    @translate_errors
    async def read_revision(self, request: ReadRevision) -> RevisionFacts:
        """The revision and the invoiced time on or after its effective date, on projects
        priced from the card. NotFoundError when the PSA has no such revision."""
        revisions = await self.psa.list_rate_card_revisions(request.rate_card_id)
        revision = next((r for r in revisions if r.revision_id == request.revision_id), None)
        if revision is None:
            raise NotFoundError(
                f"rate card {request.rate_card_id} has no revision {request.revision_id}"
            )
        card = await self.psa.get_rate_card(request.rate_card_id)
        roles = {r.role for r in revision.rates}
        invoiced: list[InvoicedEntry] = []
        for project_id in await self.psa.list_projects_on_rate_card(request.rate_card_id):
            async for t in self.psa.list_approved_time(project_id=project_id, invoiced=True):
                if not t.billable or t.role not in roles:
                    continue
                if t.date_performed < revision.effective_from:
                    continue
                old = t.bill_rate or card.rate_for(t.role, t.date_performed)
                if old is None:
                    continue
                invoiced.append(
                    InvoicedEntry(
                        entry_id=t.external_id,
                        project_id=project_id,
                        role=t.role,
                        date_performed=t.date_performed,
                        hours=t.hours,
                        old_rate=old,
                        new_rate=old,
                    )
                )
        return RevisionFacts(
            revision=revision, conflicts=invoiced_conflicts(card, revision, invoiced)
        )


class RateCardErpActivities:
    def __init__(self, erp: ErpRateCardsPort) -> None:
        self.erp = erp

    @activity.defn(name="rate_cards.write_erp_revision")
    @translate_errors
    async def write_erp_revision(self, revision: ErpRateCardRevision) -> bool:
        """Upsert pssync's decision on the revision in the ERP; False when it already held
        it (a repeated revision writes nothing)."""
        return await self.erp.put_rate_card_revision(revision)
