"""Rate card revisions: new bill rates per role from an effective date, owned by the PSA
(delivery sets bill rates in Kantata's rate card versions) and synchronized to the ERP.

- `RateCardRevision`: one revision as the PSA holds it (Kantata's `rate_card_versions` with
  their `rate_card_roles`).
- `ErpRateCardRevision`: the same revision as the ERP keeps it, with what pssync decided: the
  date it applies from (the effective date, or the day after the last invoiced time once
  finance acknowledged a revision that reached back into invoiced time), or not at all.
- `bill_rate_on`: the one rule for the rate of a role on a day (the time pipeline's), honouring
  those decisions: time before a revision keeps its rate, time from it on uses the new one.
- `invoiced_conflicts`: which invoiced time a revision would re-rate.
- `PublishedRevision`, `RateCardSweepInput`: the sweep that announces revisions a lost webhook
  missed (a Schedule lists the PSA's versions published since a cursor).

No I/O here; deterministic (workflows use these).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from pydantic import Field

from contracts.ids import canonical_tenant
from contracts.money import Money
from contracts.v1.models import RateCard
from contracts.v1.processes import RESOLVER_ROLES, Message

RATE_CARD_SYNC = "RateCardSync"
PROCESS_RATE_CARD_SYNC = "rate_card_sync"
REVISION_SIGNAL = "rate_card_revised"
RATE_CARD_QUERY = "rate_card"
RATE_CARD_RESOLVER_ROLES = RESOLVER_ROLES[PROCESS_RATE_CARD_SYNC]
"""Who may decide on a revision that reaches into invoiced time."""
INVOICED_TIME_REVISED = "INVOICED_TIME_REVISED"
RATE_CARD_SWEEP = "RateCardSweep"


def rate_card_sync_workflow_id(psa_tenant: str, rate_card_id: str) -> str:
    return f"rate-card/{psa_tenant}/{rate_card_id}"


def rate_card_sweep_schedule_id(psa_tenant: str) -> str:
    return f"rate-card-sweep/{canonical_tenant(psa_tenant)}"


def revision_key(rate_card_id: str, revision_id: str) -> str:
    """The ERP record's external ID (and the idempotency key) of one revision."""
    return f"ratecard-{rate_card_id}-rev-{revision_id}"


class RoleRate(Message):
    role: str
    bill_rate: Money
    """Per hour."""


class RateCardRevision(Message):
    """New bill rates for some roles of a rate card from `effective_from` (inclusive)."""

    rate_card_id: str
    revision_id: str
    effective_from: date
    currency: str
    rates: list[RoleRate] = Field(default_factory=list)

    def rate_of(self, role: str) -> Money | None:
        return next((r.bill_rate for r in self.rates if r.role == role), None)


class RevisionStatus(StrEnum):
    APPLIED = "applied"
    """Applies from `applied_from` (its effective date unless finance moved it)."""
    HELD = "held"
    """Reaches into invoiced time: waits for finance; not applied meanwhile."""
    REJECTED = "rejected"
    """Finance refused it: pssync never applies it."""


class ErpRateCardRevision(Message):
    """A revision as the ERP keeps it (one custom record per revision, keyed by
    `revision_key`)."""

    rate_card_id: str
    revision_id: str
    effective_from: date
    applied_from: date | None
    status: RevisionStatus
    currency: str
    rates: list[RoleRate] = Field(default_factory=list)

    @property
    def key(self) -> str:
        return revision_key(self.rate_card_id, self.revision_id)

    def rate_of(self, role: str) -> Money | None:
        return next((r.bill_rate for r in self.rates if r.role == role), None)


def bill_rate_on(
    card: RateCard, role: str, on: date, decisions: Sequence[ErpRateCardRevision] = ()
) -> Money | None:
    """The bill rate of `role` on `on` (the entry's work date, a day in the project's calendar).

    The card's line covering `on` with the latest start wins (a later revision supersedes an
    open-ended earlier line). When that line is a revision pssync holds, rejected, or applies
    only from a later day, the rate of the day before the line is used instead: the rate the
    time would have had without the revision."""
    covering = [ln for ln in card.lines if ln.role == role and ln.covers(on)]
    if not covering:
        return None
    line = max(covering, key=lambda ln: ln.effective_from)
    for d in decisions:
        if d.effective_from != line.effective_from or d.rate_of(role) != line.bill_rate:
            continue
        if d.status is RevisionStatus.APPLIED and (d.applied_from or d.effective_from) <= on:
            return line.bill_rate
        return bill_rate_on(card, role, line.effective_from - timedelta(days=1), decisions)
    return line.bill_rate


class InvoicedEntry(Message):
    """Invoiced time a revision would re-rate: evidence for finance."""

    entry_id: str
    project_id: str
    role: str
    date_performed: date
    hours: Decimal
    old_rate: Money
    """As the PSA priced (and invoiced) the entry."""
    new_rate: Money

    @property
    def difference(self) -> Money:
        return ((self.new_rate - self.old_rate) * self.hours).rounded()


def invoiced_conflicts(
    card: RateCard, revision: RateCardRevision, invoiced: Iterable[InvoicedEntry]
) -> list[InvoicedEntry]:
    """The invoiced entries on or after the revision's effective date, in a role it changes
    to a different rate (`old_rate` as invoiced, `new_rate` the revision's)."""
    out: list[InvoicedEntry] = []
    for e in invoiced:
        new = revision.rate_of(e.role)
        if new is None or e.date_performed < revision.effective_from or new == e.old_rate:
            continue
        out.append(e.model_copy(update={"new_rate": new}))
    return sorted(out, key=lambda e: (e.date_performed, e.entry_id))


def first_uninvoiced_day(revision: RateCardRevision, conflicts: Sequence[InvoicedEntry]) -> date:
    """Where an acknowledged revision applies from: the day after the last invoiced entry it
    would have re-rated (its effective date when there is none)."""
    if not conflicts:
        return revision.effective_from
    return max(e.date_performed for e in conflicts) + timedelta(days=1)


def difference_of(conflicts: Sequence[InvoicedEntry], currency: str) -> Money:
    total = Money.zero(currency)
    for e in conflicts:
        total = total + e.difference
    return total


class RateCardSyncSettings(Message):
    activity_timeout_s: int = Field(default=60, ge=1, le=3600)
    escalation_after_s: int = Field(default=24 * 3600, ge=1)


class RevisionSeen(Message):
    """A PSA revision to sync (from the webhook or the sweep)."""

    revision_id: str


class RateCardSyncInput(Message):
    psa_tenant: str
    rate_card_id: str
    settings: RateCardSyncSettings = Field(default_factory=RateCardSyncSettings)
    pending: list[str] = Field(default_factory=list)
    done: dict[str, RevisionStatus] = Field(default_factory=dict)
    """Carried across continue-as-new."""


class RateCardSyncView(Message):
    rate_card_id: str
    done: dict[str, RevisionStatus]
    pending: list[str]
    open_items: list[str]


class PublishedRevision(Message):
    """A revision as the PSA lists those published since a time (Kantata's rate card versions
    by `created_at`): which card, which revision, when."""

    rate_card_id: str
    revision_id: str
    published_at: datetime


class RateCardSweepInput(Message):
    """One run of the rate card sweep (one Schedule action)."""

    psa_tenant: str
    overlap_s: int = Field(default=3600, ge=0)
    """Each window starts this long before the stored cursor, so a version committed late (or
    stamped by a skewed clock) is still seen; what was announced before is not again."""
    initial_lookback_s: int = Field(default=24 * 3600, ge=0)
    """Where the very first window starts (no cursor in the store yet)."""
    activity_timeout_s: int = Field(default=120, ge=1, le=3600)


class RateCardSweepResult(Message):
    window_from: datetime
    window_through: datetime
    seen: int = 0
    """Versions the PSA lists in the window."""
    announced: list[str] = Field(default_factory=list)
    """`{card}/{revision}` signalled to their card's RateCardSync (first time seen)."""
    duplicates: int = 0
    """Versions an earlier sweep had announced already."""
