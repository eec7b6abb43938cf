"""Labor actuals, the comparison itself (pure: no I/O): one PSA project's approved time and
expense, the ERP's postings of its project and pssync's time-posting ledger -> the drifts.

    findings = compare_labor(context, psa_entries, erp_postings, ledger_rows)

Entry by entry (an entry is `time:<id>` or `expense:<id>`; an ERP posting belongs to one when
its key is pssync's, `psa-<kind>-<id>-v<version>`), against the *live* postings (posted and not
reversed):

- approved, no live posting -> `missing_in_erp`: repair (the pipeline posts it); escalate in a
  closed period; report while the pipeline holds the entry for a person;
- approved, one live posting of an older version -> `stale_version`: repair when the ledger
  holds that posting (the pipeline reverses it and posts anew); else escalate;
- approved, one live posting whose hours or amounts differ -> `amount_mismatch`: escalate (a
  person edited the ERP);
- approved, more than one live posting -> `duplicate_posting`: escalate;
- not approved (or deleted), live postings -> `posted_not_approved`: repair when the ledger
  holds that posting (the pipeline reverses it); else escalate.

Per period and kind, postings no entry explains (not pssync's) make a `period_total_mismatch`
(escalate); its values are the unexplained amount (the PSA side: none), the period's totals
are evidence (they move with every entry, so a person's acknowledgement holds while the
unexplained part stays the same). A repair needs the period of the posting it makes or
reverses open. Entries that changed (in the PSA or the ledger) within the settle window are
left alone: the webhook-driven pipeline is on them, and the next run looks again.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from contracts.systems import System
from contracts.v1.reconciliation import Disposition, Domain, Drift, DriftKind

HOURS = Decimal("0.000001")
CENTS = Decimal("0.01")
_KEY = re.compile(r"^psa-(time|expense)-(.+)-v([^-]+)$")
_LIVE_LEDGER = frozenset({"posted", "posting"})
_HELD_LEDGER = frozenset({"exception", "rejected"})


def _period(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class PsaEntry:
    """An approved PSA time entry (quantity: hours) or expense (quantity: amount)."""

    kind: str
    entry_id: str
    version: str
    work_date: date
    quantity: Decimal
    invoiced: bool = False
    updated_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.entry_id}"

    @property
    def period(self) -> str:
        return _period(self.work_date)


@dataclass(frozen=True)
class ErpPosting:
    """A posting as the ERP holds it (a reversal names the key it reverses)."""

    key: str
    kind: str
    """time | expense | reversal"""
    posting_date: date
    hours: Decimal
    cost: Decimal
    bill: Decimal | None = None
    reverses: str | None = None

    @property
    def period(self) -> str:
        return _period(self.posting_date)

    @property
    def entry(self) -> tuple[str, str, str] | None:
        """(kind, entry id, version) of a posting pssync made; None for any other."""
        match = _KEY.match(self.key)
        return (match[1], match[2], match[3]) if match else None

    @property
    def entry_key(self) -> str | None:
        entry = self.entry
        return f"{entry[0]}:{entry[1]}" if entry else None

    @property
    def version(self) -> str | None:
        entry = self.entry
        return entry[2] if entry else None

    def quantity(self, kind: str) -> Decimal:
        """What the PSA's side is compared with: hours for time, the amount for expense."""
        return self.hours.quantize(HOURS) if kind == "time" else self.cost.quantize(CENTS)


@dataclass(frozen=True)
class LedgerEntry:
    """What pssync's ledger remembers of an entry."""

    entry_key: str
    version: str
    state: str
    posting_key: str | None = None
    hours: Decimal | None = None
    cost: Decimal | None = None
    bill: Decimal | None = None
    item_id: str | None = None
    updated_at: datetime | None = None

    @property
    def live(self) -> bool:
        return self.state in _LIVE_LEDGER


@dataclass(frozen=True)
class LaborContext:
    tenant: str
    psa_project_id: str
    now: datetime
    settle_s: float = 300.0
    since_period: str | None = None
    closed_periods: frozenset[str] = frozenset()


@dataclass(frozen=True)
class EntryRepair:
    """What a repair asks the time pipeline for: reconcile this entry (`version`: the PSA's,
    None when it is not approved); `reset`: tell the ledger first that its posting is in doubt
    (the pipeline then posts it again under the same key, an upsert)."""

    kind: str
    entry_id: str
    version: str | None
    reset: bool = False


@dataclass(frozen=True)
class Finding:
    drift: Drift
    repair: EntryRepair | None = None
    evidence: dict[str, str | None] = field(default_factory=dict)
    periods: frozenset[str] = frozenset()
    """The ERP periods a repair posts into (it needs them open)."""


def live_postings(postings: Iterable[ErpPosting]) -> tuple[list[ErpPosting], list[ErpPosting]]:
    """The postings that stand (neither a reversal nor reversed) and the reversals whose
    original the ERP does not hold (they still count in its totals)."""
    postings = list(postings)
    keys = {p.key for p in postings}
    reversed_keys = {p.reverses for p in postings if p.reverses}
    live = [p for p in postings if p.kind != "reversal" and p.key not in reversed_keys]
    orphans = [p for p in postings if p.kind == "reversal" and p.reverses not in keys]
    return live, orphans


def compare_labor(
    ctx: LaborContext,
    psa: Iterable[PsaEntry],
    erp: Iterable[ErpPosting],
    ledger: Iterable[LedgerEntry],
) -> list[Finding]:
    """Every labor drift of one project (see the module's table), ordered by kind and key."""
    settle = timedelta(seconds=ctx.settle_s)
    approved = {e.key: e for e in psa}
    rows = {r.entry_key: r for r in ledger}
    live, orphans = live_postings(erp)
    by_entry: dict[str, list[ErpPosting]] = defaultdict(list)
    unattributed = list(orphans)
    for p in live:
        key = p.entry_key
        if key is None:
            unattributed.append(p)
        else:
            by_entry[key].append(p)

    def settling(key: str) -> bool:
        entry, row = approved.get(key), rows.get(key)
        recent = [t for t in (entry and entry.updated_at, row and row.updated_at) if t]
        return any(ctx.now - t < settle for t in recent)

    def in_scope(period: str) -> bool:
        return ctx.since_period is None or period >= ctx.since_period

    findings: list[Finding] = []
    for key in sorted(set(approved) | set(by_entry)):
        entry, postings = approved.get(key), by_entry.get(key, [])
        period = entry.period if entry else min(p.period for p in postings)
        if not in_scope(period) or settling(key):
            continue
        finding = _entry_finding(ctx, key, period, entry, postings, rows.get(key))
        if finding is not None:
            findings.append(finding)
    findings += _period_findings(ctx, approved, live, unattributed, in_scope)
    return sorted(findings, key=lambda f: (f.drift.kind.value, sorted(f.drift.keys.items())))


DriftMaker = Callable[..., Drift]
"""`drift(kind, disposition, detail, **values)` of one entry (its keys bound)."""


def _entry_finding(
    ctx: LaborContext,
    key: str,
    period: str,
    entry: PsaEntry | None,
    postings: list[ErpPosting],
    row: LedgerEntry | None,
) -> Finding | None:
    kind_name, _, entry_id = key.partition(":")
    keys = {"tenant": ctx.tenant, "psa_project_id": ctx.psa_project_id, "period": period}
    keys["entry"] = key
    evidence: dict[str, str | None] = {
        "ledger_state": row.state if row else None,
        "ledger_version": row.version if row else None,
        "ledger_posting": row.posting_key if row else None,
        "erp_postings": ",".join(sorted(p.key for p in postings)) or None,
    }

    def drift(
        kind: DriftKind, disposition: Disposition, detail: str, **values: str | None
    ) -> Drift:
        return Drift(
            domain=Domain.LABOR_ACTUALS,
            kind=kind,
            keys=keys,
            values=values,
            owner=System.ERP,
            disposition=disposition,
            detail=detail,
        )

    if entry is not None and not postings:
        return _missing(ctx, entry, row, drift, evidence)
    if entry is None:
        return _not_approved(ctx, kind_name, entry_id, postings, row, drift, evidence)
    posted = sum((p.quantity(kind_name) for p in postings), Decimal(0))
    if len(postings) > 1:
        twice = drift(
            DriftKind.LABOR_DUPLICATE_POSTING,
            Disposition.ESCALATE,
            f"{len(postings)} live postings in the ERP for one PSA entry",
            psa=_text(entry.quantity), erp=_text(posted),
        )  # fmt: skip
        return Finding(twice, EntryRepair(kind_name, entry_id, entry.version), evidence)
    [posting] = postings
    if posting.version != entry.version:
        ledger_holds = row is not None and row.live and row.posting_key == posting.key
        if entry.invoiced and ledger_holds and posted == entry.quantity:
            # Marking an entry invoiced raises its version in the PSA (Kantata's lock_version)
            # without changing what was posted: the posting pssync made still stands for it.
            return _amounts(entry, posting, row, drift, evidence)
        reasons = [
            f"period {p} is closed in the ERP"
            for p in sorted({posting.period, entry.period} & ctx.closed_periods)
        ]
        if entry.invoiced:
            reasons.append("the entry is invoiced")
        if not ledger_holds:
            reasons.append("pssync's ledger does not hold that posting")
        stale = drift(
            DriftKind.LABOR_STALE_VERSION,
            Disposition.ESCALATE if reasons else Disposition.REPAIR,
            f"the ERP holds v{posting.version}, the PSA approved v{entry.version}"
            + _because(reasons),
            psa=_text(entry.quantity), erp=_text(posted),
            psa_version=entry.version, erp_version=posting.version,
        )  # fmt: skip
        repair = EntryRepair(kind_name, entry_id, entry.version)
        return Finding(stale, repair, evidence, frozenset({posting.period, entry.period}))
    return _amounts(entry, posting, row, drift, evidence)


def _because(reasons: list[str]) -> str:
    return f"; {' and '.join(reasons)}" if reasons else ""


def _missing(
    ctx: LaborContext,
    entry: PsaEntry,
    row: LedgerEntry | None,
    drift: DriftMaker,
    evidence: dict[str, str | None],
) -> Finding:
    """Approved, nothing live in the ERP: the pipeline posts it (unless it holds it already
    for a person, or the period is closed)."""
    psa_q = _text(entry.quantity)
    if row is not None and row.version == entry.version and row.state in _HELD_LEDGER:
        held = drift(
            DriftKind.LABOR_MISSING_IN_ERP,
            Disposition.REPORT,
            f"held by the time pipeline ({row.state}, item {row.item_id})",
            psa=psa_q, erp=None,
        )  # fmt: skip
        return Finding(held, evidence=evidence)
    closed = entry.period in ctx.closed_periods
    reasons = [f"period {entry.period} is closed in the ERP"] if closed else []
    missing = drift(
        DriftKind.LABOR_MISSING_IN_ERP,
        Disposition.ESCALATE if closed else Disposition.REPAIR,
        f"approved in the PSA (v{entry.version}), no live posting in the ERP" + _because(reasons),
        psa=psa_q, erp=None,
    )  # fmt: skip
    repair = EntryRepair(entry.kind, entry.entry_id, entry.version, reset=bool(row and row.live))
    return Finding(missing, repair, evidence, frozenset({entry.period}))


def _not_approved(
    ctx: LaborContext,
    kind: str,
    entry_id: str,
    postings: list[ErpPosting],
    row: LedgerEntry | None,
    drift: DriftMaker,
    evidence: dict[str, str | None],
) -> Finding:
    """Live postings of an entry the PSA no longer holds approved: the pipeline reverses the
    posting its ledger holds; anything else is for a person."""
    periods = frozenset(p.period for p in postings)
    ledger_holds = (
        len(postings) == 1 and row is not None and row.live and row.posting_key == postings[0].key
    )
    reasons = [f"period {p} is closed in the ERP" for p in sorted(periods & ctx.closed_periods)]
    if not ledger_holds:
        reasons.append("pssync's ledger does not hold that posting")
    posted = sum((p.quantity(kind) for p in postings), Decimal(0))
    unapproved = drift(
        DriftKind.LABOR_POSTED_NOT_APPROVED,
        Disposition.ESCALATE if reasons else Disposition.REPAIR,
        "posted in the ERP, not approved (or deleted) in the PSA" + _because(reasons),
        psa=None, erp=_text(posted),
    )  # fmt: skip
    return Finding(unapproved, EntryRepair(kind, entry_id, None), evidence, periods)


def _amounts(
    entry: PsaEntry,
    posting: ErpPosting,
    row: LedgerEntry | None,
    drift: DriftMaker,
    evidence: dict[str, str | None],
) -> Finding | None:
    """The posting of the entry's version: its hours (amount) against the PSA's, its cost and
    bill amounts against what pssync posted (the ledger)."""
    posted = posting.quantity(entry.kind)
    differs = []
    if posted != entry.quantity:
        differs.append("hours" if entry.kind == "time" else "amount")
    values: dict[str, str | None] = {"psa": _text(entry.quantity), "erp": _text(posted)}
    if row is not None and row.posting_key == posting.key:
        for name, ours, theirs in (
            ("cost", row.cost, posting.cost),
            ("bill", row.bill, posting.bill),
        ):
            if ours is not None and theirs is not None and ours != theirs:
                differs.append(f"{name} amount")
                values[f"ledger_{name}"], values[f"erp_{name}"] = _text(ours), _text(theirs)
    if not differs:
        return None
    edited = drift(
        DriftKind.LABOR_AMOUNT_MISMATCH,
        Disposition.ESCALATE,
        f"the ERP posting {posting.key} differs from what pssync posted "
        f"({', '.join(differs)}): edited in the ERP",
        **values,
    )
    repair = EntryRepair(entry.kind, entry.entry_id, entry.version, reset=True)
    return Finding(edited, repair, evidence, frozenset({posting.period}))


def _period_findings(
    ctx: LaborContext,
    approved: dict[str, PsaEntry],
    live: list[ErpPosting],
    unattributed: list[ErpPosting],
    in_scope: Callable[[str], bool],
) -> list[Finding]:
    """Per period and kind: postings no PSA entry explains (made outside pssync)."""
    stray: dict[tuple[str, str], list[ErpPosting]] = defaultdict(list)
    for p in unattributed:
        kind = "expense" if p.kind == "expense" else "time"
        if in_scope(p.period):
            stray[(p.period, kind)].append(p)
    findings = []
    for (period, kind), postings in sorted(stray.items()):
        extra = sum((p.quantity(kind) for p in postings), Decimal(0))
        if extra == 0:
            continue
        psa_total = sum(
            (e.quantity for e in approved.values() if e.period == period and e.kind == kind),
            Decimal(0),
        )
        erp_total = sum(
            (
                p.quantity(kind)
                for p in {id(p): p for p in [*live, *unattributed]}.values()
                if p.period == period and (p.entry[0] if p.entry else "time") == kind
            ),
            Decimal(0),
        )
        drift = Drift(
            domain=Domain.LABOR_ACTUALS,
            kind=DriftKind.LABOR_PERIOD_TOTAL_MISMATCH,
            keys={
                "tenant": ctx.tenant,
                "psa_project_id": ctx.psa_project_id,
                "period": period,
                "entry_kind": kind,
            },
            values={"psa": None, "erp": _text(extra)},
            owner=System.ERP,
            disposition=Disposition.ESCALATE,
            detail=f"{len(postings)} ERP postings in {period} that no PSA entry explains "
            f"(not made by pssync): {extra} {'hours' if kind == 'time' else 'of expense'}",
        )
        evidence = {
            "psa_period_total": _text(psa_total),
            "erp_period_total": _text(erp_total),
            "erp_postings": ",".join(sorted(p.key for p in postings))[:2000],
        }
        findings.append(Finding(drift, evidence=evidence))
    return findings


def periods_to_check(findings: Iterable[Finding]) -> set[str]:
    """The ERP periods whose being open decides a repair (asked before deciding)."""
    return {period for f in findings if f.repair is not None for period in f.periods}
