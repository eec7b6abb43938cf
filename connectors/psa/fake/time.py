"""The in-memory PSA's time entries and expenses, rejections and invoices."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import date, datetime
from typing import TypeVar

from connectors.psa._constants import MAX_PAGE_SIZE, SYSTEM
from connectors.psa.fake._base import _EPOCH, FakeInvoice, FakePsaBase, _found, _refused
from connectors.psa.mapping import _rejection_line, notes_with
from contracts.errors import BusinessRuleViolation, NotFoundError
from contracts.v1 import ExpenseEntry, MilestoneStatus, TimeEntry

_Entry = TypeVar("_Entry", TimeEntry, ExpenseEntry)


def _approved_since(
    records: dict[str, _Entry],
    since: datetime | None,
    project_id: str | None,
    invoiced: bool | None,
) -> Iterator[_Entry]:
    """The approved records changed after `since`, oldest change first, filtered."""
    for record in sorted(records.values(), key=lambda r: r.updated_at or _EPOCH):
        if not record.approved or (since is not None and (record.updated_at or _EPOCH) <= since):
            continue
        if project_id is not None and record.project_id != project_id:
            continue
        if invoiced is not None and record.invoiced != invoiced:
            continue
        yield record


def _present(records: dict[str, _Entry], idents: Sequence[str]) -> list[_Entry]:
    """The records with these ids, once each; unknown ids are left out."""
    return [records[i] for i in dict.fromkeys(idents) if i in records]


def _approved_to_reject(records: dict[str, _Entry], ident: str, label: str) -> _Entry:
    """The record a rejection sends back (one no longer approved is returned as it is); an
    unknown record is not found, an invoiced one refused."""
    record = records.get(ident)
    if record is None:
        raise NotFoundError(f"{label} {ident} not found", system=SYSTEM)
    if record.approved and record.invoiced:
        raise _refused(f"{label} {ident} has been invoiced", "is_invoiced")
    return record


class FakeTimeMixin(FakePsaBase):
    """`FakePsa`'s time entries, expenses and invoices."""

    # ---------------------------------------------------------------- time and expense

    async def list_approved_time(
        self,
        since: datetime | None = None,
        *,
        project_id: str | None = None,
        invoiced: bool | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[TimeEntry]:
        self._enter("list_approved_time")
        for entry in _approved_since(self.time_entries, since, project_id, invoiced):
            yield entry

    async def get_time_entry(self, entry_id: str) -> TimeEntry:
        self._enter("get_time_entry")
        return _found(self.time_entries, entry_id, "time entry")

    async def get_time_entries(self, entry_ids: Sequence[str]) -> list[TimeEntry]:
        self._enter("get_time_entries")
        return _present(self.time_entries, entry_ids)

    async def reject_time_entry(self, entry_id: str, reason: str) -> TimeEntry:
        self._enter("reject_time_entry")
        line = _rejection_line(reason)
        entry = _approved_to_reject(self.time_entries, entry_id, "time entry")
        if not entry.approved:
            return entry
        self.time_entries[entry_id] = self._bump(
            entry, approved=False, notes=notes_with(entry.notes, line)
        )
        return self.time_entries[entry_id]

    async def list_worker_time(
        self,
        worker_id: str,
        *,
        performed_from: date | None = None,
        performed_through: date | None = None,
        approved: bool | None = None,
    ) -> list[TimeEntry]:
        self._enter("list_worker_time")
        return sorted(
            (
                e
                for e in self.time_entries.values()
                if e.worker_id == worker_id
                and (performed_from is None or e.date_performed >= performed_from)
                and (performed_through is None or e.date_performed <= performed_through)
                and (approved is None or e.approved == approved)
            ),
            key=lambda e: (e.date_performed, int(e.external_id)),
        )

    async def list_approved_expenses(
        self,
        since: datetime | None = None,
        *,
        project_id: str | None = None,
        invoiced: bool | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[ExpenseEntry]:
        self._enter("list_approved_expenses")
        for expense in _approved_since(self.expenses, since, project_id, invoiced):
            yield expense

    async def get_expense(self, expense_id: str) -> ExpenseEntry:
        self._enter("get_expense")
        return _found(self.expenses, expense_id, "expense")

    async def get_expenses(self, expense_ids: Sequence[str]) -> list[ExpenseEntry]:
        self._enter("get_expenses")
        return _present(self.expenses, expense_ids)

    async def reject_expense(self, expense_id: str, reason: str) -> ExpenseEntry:
        self._enter("reject_expense")
        line = _rejection_line(reason)
        expense = _approved_to_reject(self.expenses, expense_id, "expense")
        if not expense.approved:
            return expense
        notes = self.expense_notes.get(expense_id, "")
        self.expense_notes[expense_id] = notes_with(notes, line)
        self.expenses[expense_id] = self._bump(expense, approved=False)
        return self.expenses[expense_id]

    async def mark_invoiced(
        self,
        entry_ids: Sequence[str],
        *,
        invoice_ref: str,
        expense_ids: Sequence[str] = (),
        project_id: str | None = None,
        milestone_codes: Sequence[str] = (),
    ) -> str:
        self._enter("mark_invoiced")
        live = [i for i in self.invoices.values() if i.ref == invoice_ref and not i.cancelled]
        covered_time = {e for inv in live for e in inv.entry_ids}
        covered_exp = {e for inv in live for e in inv.expense_ids}
        covered_ms = {m for inv in live for m in inv.milestones}
        if milestone_codes and project_id is None:
            raise BusinessRuleViolation(
                "MISSING_PROJECT", "milestone codes need the project", field="project_id"
            )
        missing_time = [e for e in dict.fromkeys(entry_ids) if e not in covered_time]
        missing_exp = [e for e in dict.fromkeys(expense_ids) if e not in covered_exp]
        missing_ms = [
            (project_id or "", c)
            for c in dict.fromkeys(milestone_codes)
            if (project_id or "", c) not in covered_ms
        ]
        for eid in missing_time:
            entry = self.time_entries.get(eid)
            if entry is None:
                raise _refused(f"time entry {eid} does not exist", "time_entry_ids")
            if not entry.approved:
                raise _refused(f"time entry {eid} is not approved", "time_entry_ids")
            if entry.invoiced:
                raise _refused(f"time entry {eid} is already invoiced", "time_entry_ids")
        for xid in missing_exp:
            expense = self.expenses.get(xid)
            if expense is None or not expense.approved or expense.invoiced:
                raise _refused(f"expense {xid} cannot be invoiced", "expense_ids")
        for pid, code in missing_ms:
            ms = self._milestone(pid, code)
            if ms.status is not MilestoneStatus.COMPLETED:
                raise _refused(f"milestone {code} is {ms.status}", "billing_milestone_ids")
        if not (missing_time or missing_exp or missing_ms):
            if live:
                return live[0].id
            raise BusinessRuleViolation(
                "NOTHING_TO_INVOICE", "no entries to mark invoiced", field="entry_ids"
            )
        for eid in missing_time:
            self.time_entries[eid] = self._bump(self.time_entries[eid], invoiced=True)
        for xid in missing_exp:
            self.expenses[xid] = self._bump(self.expenses[xid], invoiced=True)
        for pid, code in missing_ms:
            self._set_milestone(pid, code, MilestoneStatus.INVOICED)
        inv = FakeInvoice(self._id(), invoice_ref, missing_time, missing_exp, missing_ms)
        self.invoices[inv.id] = inv
        return live[0].id if live else inv.id

    async def unmark_invoiced(self, *, invoice_ref: str) -> None:
        self._enter("unmark_invoiced")
        for inv in self.invoices.values():
            if inv.ref != invoice_ref or inv.cancelled:
                continue
            for eid in inv.entry_ids:
                self.time_entries[eid] = self._bump(self.time_entries[eid], invoiced=False)
            for xid in inv.expense_ids:
                self.expenses[xid] = self._bump(self.expenses[xid], invoiced=False)
            for pid, code in inv.milestones:
                self._set_milestone(pid, code, MilestoneStatus.COMPLETED)
            inv.cancelled = True
