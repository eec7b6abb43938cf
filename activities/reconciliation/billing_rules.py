"""Billing status, the comparison itself (pure: no I/O): one PSA project's billing milestones,
its approved time and expenses (their invoiced flags), pssync's time-posting ledger (which
entries went on which invoice) and the ERP's invoices of its project -> the drifts.

    findings = compare_billing(context, milestones, psa_items, ledger, invoices)

An invoice is pssync's when its external id is an invoice key of the project
(`inv-<project>-ms-<milestone>` or `inv-<project>-period-<YYYY-MM>`, `-a<n>` after a
compensation), or it carries a milestone (`custbody_pssync_milestone`) or a billing period
(memo `period YYYY-MM`); any other invoice is not pssync's business. *Live*: not voided.
Its *source* is the milestone or the T&M period it bills; the ledger rows carrying its key
(`invoice_ref`) are the entries it billed.

- a completed milestone (of a project billed by milestone) with no invoice, or a closed T&M
  period (before this month) with posted, billable entries on no invoice ->
  `invoice_missing`: repair (the pipeline bills it); escalate when the PSA says the
  milestone is invoiced, or the ledger billed entries on an invoice the ERP does not hold;
  report when pssync's compensation voided the invoice (the pipeline holds the billing for
  a person);
- more than one live invoice for a milestone, or for a period a second one that bills no
  entry -> `invoice_duplicate`: escalate;
- a live invoice whose total is not the milestone's amount (fixed fee) or the bill amounts
  of the entries it billed (T&M) -> `invoice_amount_mismatch`: escalate (edited in the ERP);
- an invoice voided in the ERP while the PSA or the ledger still say it billed its
  milestone or entries (pssync's compensation unmarks both) -> `invoice_voided`: escalate;
- a live invoice whose entries or milestone the PSA does not show invoiced ->
  `invoiced_flag_mismatch`: repair (marked again under the invoice's key); escalate when the
  invoice has no key (made in the ERP by hand), and for an entry the PSA shows invoiced on no
  invoice pssync made; a live T&M invoice no ledger entry carries (its marking did not
  finish, the pipeline holds it for a person): report;
- a live invoice of pssync's whose milestone does not exist or is not complete, or whose
  period has not begun, is of a project not billed by time, or has no entries ->
  `invoice_without_source`: escalate.

Records changed within the settle window (PSA entries, ledger rows, invoices) are left for
the next run: the pipeline is still on them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from contracts.systems import System
from contracts.v1.reconciliation import Disposition, Domain, Drift, DriftKind
from contracts.v1.time_to_invoice import BillingRequest, BillingTrigger

CENTS = Decimal("0.01")
_ATTEMPT = re.compile(r"-a\d+$")
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
VOID = "void"
COMPLETE = frozenset({"completed", "invoiced"})
REQUESTED_BY = "reconciliation"


def _period(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(CENTS))


@dataclass(frozen=True)
class PsaMilestone:
    code: str
    milestone_id: str | None
    """The PSA's id (webhooks and billing requests name it by id)."""
    amount: Decimal
    currency: str
    status: str
    """planned | completed | invoiced"""


@dataclass(frozen=True)
class PsaItem:
    """An approved PSA time entry or expense and its invoiced flag."""

    kind: str
    entry_id: str
    period: str
    invoiced: bool
    updated_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.entry_id}"


@dataclass(frozen=True)
class LedgerLine:
    """What the time-posting ledger holds of an entry: posted (billable, with its bill
    amount) and on which invoice it was billed."""

    entry_key: str
    period: str | None
    state: str
    billable: bool
    bill: Decimal | None
    invoice_ref: str | None
    updated_at: datetime | None = None

    @property
    def kind(self) -> str:
        return self.entry_key.partition(":")[0]

    @property
    def entry_id(self) -> str:
        return self.entry_key.partition(":")[2]

    @property
    def billable_posted(self) -> bool:
        return self.state == "posted" and self.billable and self.bill is not None


@dataclass(frozen=True)
class ErpInvoice:
    erp_id: str
    key: str | None
    milestone_code: str | None
    period: str | None
    total: Decimal
    currency: str
    status: str
    """draft | open | paid | void"""
    updated_at: datetime | None = None

    @property
    def live(self) -> bool:
        return self.status != VOID

    @property
    def name(self) -> str:
        return self.key or f"invoice-{self.erp_id}"


@dataclass(frozen=True)
class BillingContext:
    tenant: str
    psa_project_id: str
    now: datetime
    time_and_materials: bool
    settle_s: float = 300.0
    since_period: str | None = None

    @property
    def current_period(self) -> str:
        return _period(self.now)


@dataclass(frozen=True)
class BillingRepair:
    """What a repair does: `bill` — signal the project's pipeline with `request`; `remark` —
    mark the entries and milestone invoiced in the PSA under `invoice_ref` again."""

    action: str
    request: BillingRequest | None = None
    invoice_ref: str | None = None
    time_ids: tuple[str, ...] = ()
    expense_ids: tuple[str, ...] = ()
    milestone_codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BillingFinding:
    drift: Drift
    repair: BillingRepair | None = None
    evidence: dict[str, str | None] = field(default_factory=dict)


@dataclass
class _Source:
    """What an invoice bills: a milestone (`milestone`: its code or id) or a period."""

    milestone: str | None = None
    period: str | None = None


def invoice_source(project: str, invoice: ErpInvoice) -> _Source | None:
    """The milestone or period of one of pssync's invoices; None for any other invoice."""
    source = _Source(milestone=invoice.milestone_code, period=invoice.period)
    prefix = f"inv-{project}-"
    if invoice.key and invoice.key.startswith(prefix):
        rest = _ATTEMPT.sub("", invoice.key[len(prefix) :])
        if rest.startswith("ms-") and source.milestone is None:
            source.milestone = rest[3:]
        elif rest.startswith("period-") and source.period is None:
            source.period = rest[7:]
        return source if (source.milestone or source.period) else _Source(milestone="")
    if source.milestone or source.period:
        return source
    return None


class _Compare:
    """One project's comparison (see the module's table)."""

    def __init__(
        self,
        ctx: BillingContext,
        milestones: Sequence[PsaMilestone],
        items: Iterable[PsaItem],
        ledger: Iterable[LedgerLine],
        invoices: Iterable[ErpInvoice],
    ) -> None:
        self.ctx = ctx
        self.settle = timedelta(seconds=ctx.settle_s)
        self.milestones = list(milestones)
        self.items = {i.key: i for i in items}
        self.ledger = list(ledger)
        self.carried: dict[str, list[LedgerLine]] = defaultdict(list)
        for row in self.ledger:
            if row.invoice_ref:
                self.carried[row.invoice_ref].append(row)
        self.invoices = list(invoices)
        self.by_key = {i.key: i for i in self.invoices if i.key}
        self.findings: list[BillingFinding] = []
        self.explained: set[str] = set()
        """Invoices (by `name`: a keyless one by its ERP id, never all keyless ones at once)
        and lost invoice keys another finding speaks for."""

    # -------------------------------------------------------------------- helpers

    def recent(self, *moments: datetime | None) -> bool:
        return any(m is not None and self.ctx.now - m < self.settle for m in moments)

    def in_scope(self, period: str | None) -> bool:
        since = self.ctx.since_period
        return period is None or since is None or period >= since

    def add(
        self,
        kind: DriftKind,
        disposition: Disposition,
        keys: dict[str, str],
        detail: str,
        values: dict[str, str | None],
        *,
        repair: BillingRepair | None = None,
        evidence: dict[str, str | None] | None = None,
        owner: System = System.ERP,
    ) -> None:
        drift = Drift(
            domain=Domain.BILLING_STATUS,
            kind=kind,
            keys={"tenant": self.ctx.tenant, "psa_project_id": self.ctx.psa_project_id, **keys},
            values=values,
            owner=owner,
            disposition=disposition,
            detail=detail,
        )
        self.findings.append(BillingFinding(drift, repair, dict(evidence or {})))

    def billed(self, key: str | None) -> Decimal:
        return sum((r.bill or Decimal(0) for r in self.carried.get(key or "", [])), Decimal(0))

    @staticmethod
    def names(invoices: Iterable[ErpInvoice]) -> str | None:
        return ",".join(sorted(i.name for i in invoices)) or None

    # -------------------------------------------------------------------- the rules

    def run(self) -> list[BillingFinding]:
        by_source: dict[tuple[str, str], list[ErpInvoice]] = defaultdict(list)
        busy: set[tuple[str, str]] = set()
        """Sources with an invoice changed within the settle window: left for the next run."""
        for invoice in self.invoices:
            source = invoice_source(self.ctx.psa_project_id, invoice)
            if source is None:
                continue
            milestone = self.milestone_of(source.milestone) if source.milestone else None
            if milestone is not None:
                where = ("milestone", milestone.code)
            elif source.milestone is None and source.period and _PERIOD.match(source.period):
                where = ("period", source.period)
            else:
                if invoice.live and not self.recent(invoice.updated_at):
                    why = "its milestone does not exist in the PSA"
                    self.without_source(invoice, source, why)
                continue
            by_source[where].append(invoice)
            if self.recent(invoice.updated_at):
                busy.add(where)
                self.explained.add(invoice.name)
        for ms in self.milestones:
            invoices = by_source.get(("milestone", ms.code), [])
            if ("milestone", ms.code) in busy:
                continue
            if ms.status in COMPLETE:
                self.milestone(ms, invoices)
            else:
                for invoice in (i for i in invoices if i.live):
                    source = _Source(milestone=ms.code)
                    self.without_source(invoice, source, f"milestone {ms.code} is {ms.status}")
        periods = {p for kind, p in by_source if kind == "period"}
        periods |= {r.period for r in self.ledger if r.period and r.billable_posted}
        for period in sorted(periods):
            if self.in_scope(period) and ("period", period) not in busy:
                self.period(period, by_source.get(("period", period), []))
        self.lost_invoices()
        self.flags()
        return sorted(
            self.findings, key=lambda f: (f.drift.kind.value, sorted(f.drift.keys.items()))
        )

    def milestone_of(self, ref: str) -> PsaMilestone | None:
        return next(
            (m for m in self.milestones if ref in (m.code, m.milestone_id)),
            None,
        )

    def without_source(self, invoice: ErpInvoice, source: _Source, why: str) -> None:
        self.explained.add(invoice.name)
        keys = {"invoice": invoice.name}
        if source.period:
            keys["period"] = source.period
        self.add(
            DriftKind.BILLING_INVOICE_WITHOUT_SOURCE,
            Disposition.ESCALATE,
            keys,
            f"the ERP invoice {invoice.name} ({invoice.total} {invoice.currency}) was made by "
            f"pssync but {why}",
            {"psa": None, "erp": _money(invoice.total)},
            evidence={"milestone": source.milestone or None, "status": invoice.status},
        )

    def milestone(self, ms: PsaMilestone, invoices: list[ErpInvoice]) -> None:
        keys = {"milestone": ms.code}
        live = [i for i in invoices if i.live]
        voided = [i for i in invoices if not i.live]
        evidence = {
            "milestone_status": ms.status,
            "erp_invoices": self.names(live),
            "erp_voided": self.names(voided),
        }
        if len(live) > 1:
            self.explained |= {i.name for i in live}
            self.add(
                DriftKind.BILLING_INVOICE_DUPLICATE,
                Disposition.ESCALATE,
                keys,
                f"{len(live)} live ERP invoices for milestone {ms.code}",
                {"psa": _money(ms.amount), "erp": self.names(live)},
                evidence=evidence,
            )
            return
        if live:
            self.amount(live[0], keys, ms)
            return
        carried = [i for i in voided if self.carried.get(i.key or "")]
        if voided and (ms.status == "invoiced" or carried):
            self.voided(keys, voided, carried, f"milestone {ms.code}", evidence)
        elif voided:
            self.add(
                DriftKind.BILLING_INVOICE_MISSING,
                Disposition.REPORT,
                keys,
                f"milestone {ms.code} is completed; its invoice was voided by pssync's "
                "compensation and the time pipeline holds the billing for a person",
                {"psa": _money(ms.amount), "erp": None},
                evidence=evidence,
            )
        elif ms.status == "invoiced":
            self.add(
                DriftKind.BILLING_INVOICE_MISSING,
                Disposition.ESCALATE,
                keys,
                f"the PSA says milestone {ms.code} is invoiced; the ERP has no invoice for it",
                {"psa": _money(ms.amount), "erp": None},
                evidence=evidence,
            )
        elif not self.ctx.time_and_materials:
            # (A T&M project's milestone bills its unbilled time, if any: the periods' checks
            # speak for that time.)
            request = BillingRequest(
                trigger=BillingTrigger.MILESTONE,
                milestone_id=ms.milestone_id or ms.code,
                requested_by=REQUESTED_BY,
            )
            self.add(
                DriftKind.BILLING_INVOICE_MISSING,
                Disposition.REPAIR,
                keys,
                f"milestone {ms.code} is completed in the PSA; the ERP has no invoice for it",
                {"psa": _money(ms.amount), "erp": None},
                repair=BillingRepair("bill", request=request),
                evidence=evidence,
            )

    def voided(
        self,
        keys: dict[str, str],
        voided: list[ErpInvoice],
        carried: list[ErpInvoice],
        what: str,
        evidence: dict[str, str | None],
    ) -> None:
        self.explained |= {i.name for i in voided}
        entries = sum(len(self.carried.get(i.key or "", [])) for i in voided)
        self.add(
            DriftKind.BILLING_INVOICE_VOIDED,
            Disposition.ESCALATE,
            keys,
            f"the ERP invoice of {what} ({self.names(voided)}) was voided in the ERP, not by "
            f"pssync: the PSA and pssync's ledger still say it is billed ({entries} entries)",
            {"psa": "invoiced", "erp": "void"},
            evidence=evidence | {"ledger_entries": str(entries), "carried": self.names(carried)},
        )

    def amount(
        self, invoice: ErpInvoice, keys: dict[str, str], ms: PsaMilestone | None = None
    ) -> None:
        if ms is not None and not self.ctx.time_and_materials:
            expected, currency = ms.amount, ms.currency
        elif self.carried.get(invoice.key or ""):
            expected, currency = self.billed(invoice.key), invoice.currency
        else:
            return  # nothing says what it should be (its marking is looked at in `flags`)
        total = invoice.total.quantize(CENTS)
        if total == expected.quantize(CENTS) and currency == invoice.currency:
            return
        basis = (
            f"milestone {ms.code}'s amount"
            if ms is not None and not self.ctx.time_and_materials
            else f"the {len(self.carried[invoice.key or ''])} entries pssync billed on it"
        )
        self.add(
            DriftKind.BILLING_INVOICE_AMOUNT_MISMATCH,
            Disposition.ESCALATE,
            keys | {"invoice": invoice.name},
            f"the ERP invoice {invoice.name} totals {total} {invoice.currency}, {basis} "
            f"{expected.quantize(CENTS)} {currency}: edited in the ERP",
            {"expected": _money(expected), "erp": _money(total)},
            evidence={"currency": f"{currency}/{invoice.currency}", "status": invoice.status},
        )

    def period(self, period: str, invoices: list[ErpInvoice]) -> None:
        keys = {"period": period}
        live = [i for i in invoices if i.live]
        voided = [i for i in invoices if not i.live]
        rows = [r for r in self.ledger if r.period == period and r.billable_posted]
        if not self.ctx.time_and_materials or period > self.ctx.current_period:
            why = (
                "the project is not billed by time"
                if not self.ctx.time_and_materials
                else f"period {period} has not begun"
            )
            for invoice in live:
                self.without_source(invoice, _Source(period=period), why)
            return
        uncarried = [i for i in live if not self.carried.get(i.key or "")]
        evidence = {"erp_invoices": self.names(live), "erp_voided": self.names(voided)}
        if len(live) > 1 and uncarried:
            self.explained |= {i.name for i in uncarried}
            self.add(
                DriftKind.BILLING_INVOICE_DUPLICATE,
                Disposition.ESCALATE,
                keys,
                f"{len(live)} live ERP invoices for period {period}, "
                f"{len(uncarried)} of them billing no entry pssync holds",
                {"psa": _money(sum((r.bill or Decimal(0) for r in rows), Decimal(0))),
                 "erp": self.names(live)},
                evidence=evidence,
            )  # fmt: skip
        for invoice in live:
            if invoice not in uncarried:
                self.amount(invoice, keys)
        if not rows and uncarried and len(live) == 1:
            self.without_source(uncarried[0], _Source(period=period), "it bills no entry")
        carried = [i for i in voided if self.carried.get(i.key or "")]
        if carried:
            self.voided(keys, voided, carried, f"period {period}", evidence)
        # An entry the PSA shows invoiced already (outside pssync) is not billed again: the
        # PSA would refuse to mark it; `flags` escalates it.
        unbilled = [
            r
            for r in rows
            if r.invoice_ref is None
            and not (r.entry_key in self.items and self.items[r.entry_key].invoiced)
        ]
        if not unbilled or period >= self.ctx.current_period or uncarried:
            return  # billed; still open; or an invoice waits for its marking (see `flags`)
        if self.recent(*(r.updated_at for r in unbilled)):
            return
        amount = sum((r.bill or Decimal(0) for r in unbilled), Decimal(0))
        if voided and not carried and not live:
            self.add(
                DriftKind.BILLING_INVOICE_MISSING,
                Disposition.REPORT,
                keys,
                f"period {period} is closed; its invoice was voided by pssync's compensation "
                "and the time pipeline holds the billing for a person",
                {"psa": _money(amount), "erp": None},
                evidence=evidence,
            )
            return
        request = BillingRequest(
            trigger=BillingTrigger.PERIOD_CLOSE, period=period, requested_by=REQUESTED_BY
        )
        self.add(
            DriftKind.BILLING_INVOICE_MISSING,
            Disposition.REPAIR,
            keys,
            f"period {period} is closed; {len(unbilled)} posted billable entries "
            f"({_money(amount)}) are on no ERP invoice",
            {"psa": _money(amount), "erp": _money(sum((i.total for i in live), Decimal(0)))
             if live else None},
            repair=BillingRepair("bill", request=request),
            evidence=evidence | {"entries": ",".join(r.entry_key for r in unbilled)[:2000]},
        )  # fmt: skip

    def lost_invoices(self) -> None:
        """Keys the ledger billed entries on that the ERP does not hold at all."""
        for key, rows in sorted(self.carried.items()):
            if key in self.by_key or self.recent(*(r.updated_at for r in rows)):
                continue
            periods = sorted({r.period for r in rows if r.period})
            if periods and not self.in_scope(periods[-1]):
                continue
            self.explained.add(key)
            self.add(
                DriftKind.BILLING_INVOICE_MISSING,
                Disposition.ESCALATE,
                {"invoice": key},
                f"pssync billed {len(rows)} entries on invoice {key}; the ERP has no such "
                "invoice (deleted there)",
                {"psa": _money(self.billed(key)), "erp": None},
                evidence={"entries": ",".join(r.entry_key for r in rows)[:2000]},
            )

    def flags(self) -> None:
        """The PSA's invoiced flags against the live invoices and the ledger."""
        by_key = {r.entry_key: r for r in self.ledger}
        for invoice in self.invoices:
            source = invoice_source(self.ctx.psa_project_id, invoice)
            key = invoice.key or ""
            if source is None or not invoice.live or invoice.name in self.explained:
                continue
            if self.recent(invoice.updated_at):
                continue
            ms = self.milestone_of(source.milestone) if source.milestone else None
            rows = self.carried.get(key, [])
            period = source.period if ms is None else None
            if not self.in_scope(period):
                continue
            keys = {"invoice": invoice.name} | ({"period": period} if period else {})
            if not rows and (ms is None or self.ctx.time_and_materials):
                self.add(
                    DriftKind.BILLING_INVOICED_FLAG_MISMATCH,
                    Disposition.REPORT,
                    keys,
                    f"no entry in pssync's ledger is billed on {invoice.name}: marking it "
                    "invoiced in the PSA did not finish (the time pipeline holds it)",
                    {"psa": None, "erp": _money(invoice.total)},
                    owner=System.PSA,
                )
                continue
            if self.recent(*(r.updated_at for r in rows)):
                continue
            unmarked = [
                self.items[r.entry_key]
                for r in rows
                if r.entry_key in self.items and not self.items[r.entry_key].invoiced
            ]
            if any(self.recent(i.updated_at) for i in unmarked):
                continue
            codes = (ms.code,) if ms is not None and ms.status == "completed" else ()
            if not unmarked and not codes:
                continue
            what = [f"{len(unmarked)} entries"] if unmarked else []
            what += [f"milestone {c}" for c in codes]
            if not key:
                # Made in the ERP by hand (no key of pssync's to mark the PSA under).
                self.add(
                    DriftKind.BILLING_INVOICED_FLAG_MISMATCH,
                    Disposition.ESCALATE,
                    keys | {"milestone": codes[0]} if codes else keys,
                    f"the ERP invoice {invoice.name} was made outside pssync (no external id);"
                    f" the PSA does not show {' and '.join(what)} invoiced",
                    {"psa": f"{len(unmarked) + len(codes)} not invoiced", "erp": invoice.name},
                    owner=System.PSA,
                )
                continue
            self.add(
                DriftKind.BILLING_INVOICED_FLAG_MISMATCH,
                Disposition.REPAIR,
                keys,
                f"the ERP invoice {invoice.name} stands; the PSA does not show "
                f"{' and '.join(what)} invoiced",
                {"psa": f"{len(unmarked) + len(codes)} not invoiced", "erp": invoice.name},
                repair=BillingRepair(
                    "remark",
                    invoice_ref=key,
                    time_ids=tuple(sorted(i.entry_id for i in unmarked if i.kind == "time")),
                    expense_ids=tuple(sorted(i.entry_id for i in unmarked if i.kind != "time")),
                    milestone_codes=codes,
                ),
                evidence={"entries": ",".join(sorted(i.key for i in unmarked))[:2000]},
                owner=System.PSA,
            )
        for item in sorted(self.items.values(), key=lambda i: i.key):
            row = by_key.get(item.key)
            if not item.invoiced or not self.in_scope(item.period):
                continue
            if row is not None and row.invoice_ref is not None:
                continue  # on an invoice pssync made: the invoice's own checks speak for it
            if self.recent(item.updated_at, row.updated_at if row else None):
                continue
            self.add(
                DriftKind.BILLING_INVOICED_FLAG_MISMATCH,
                Disposition.ESCALATE,
                {"period": item.period, "entry": item.key},
                f"{item.key} is invoiced in the PSA but on no ERP invoice pssync made",
                {"psa": "invoiced", "erp": None},
                evidence={"ledger_state": row.state if row else None},
                owner=System.PSA,
            )


def compare_billing(
    ctx: BillingContext,
    milestones: Sequence[PsaMilestone],
    items: Iterable[PsaItem],
    ledger: Iterable[LedgerLine],
    invoices: Iterable[ErpInvoice],
) -> list[BillingFinding]:
    """Every billing drift of one project (see the module's table), ordered by kind and
    keys."""
    return _Compare(ctx, milestones, items, ledger, invoices).run()


def billing_repairable(drift: Drift) -> bool:
    """Whether a person's `retry` can make pssync act on an escalated billing drift: bill a
    milestone or period again, or mark an invoice's entries again. Anything about an
    invoice itself (voided, duplicated, edited, without source) is fixed in the ERP."""
    if drift.kind is DriftKind.BILLING_INVOICE_MISSING:
        return "invoice" not in drift.keys
    # (A hand-made invoice's lost milestone flag names the milestone: no key to mark under.)
    return (
        drift.kind is DriftKind.BILLING_INVOICED_FLAG_MISMATCH
        and "invoice" in drift.keys
        and "milestone" not in drift.keys
    )
