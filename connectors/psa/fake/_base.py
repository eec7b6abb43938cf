"""The in-memory PSA's records, state and seeding helpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from connectors.psa._constants import SYSTEM
from contracts.errors import BusinessRuleViolation, NotFoundError, PssyncError
from contracts.money import Money
from contracts.systems import System
from contracts.v1 import (
    Assignment,
    AssignmentKind,
    ChangeOrder,
    ChangeOrderLine,
    ExpenseEntry,
    Milestone,
    MilestoneStatus,
    Project,
    ProjectStatus,
    RateCard,
    TimeEntry,
)

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Sorts entities whose source gave no `updated_at` first."""


def _refused(message: str, field: str) -> BusinessRuleViolation:
    return BusinessRuleViolation("VALIDATION", message, field=field, system=SYSTEM)


def _found(records: dict[str, T], ident: str, label: str) -> T:
    """`records[ident]`; NotFoundError (`<label> <ident> not found`) when it is not there."""
    if ident not in records:
        raise NotFoundError(f"{label} {ident} not found", system=SYSTEM)
    return records[ident]


@dataclass
class FakeUser:
    worker_id: str
    name: str
    role: str | None = None
    active: bool = True
    start_date: date | None = None
    closed_after: date | None = None


@dataclass
class FakeProject:
    project: Project
    enterprise_id: str | None
    archived: bool = False
    budget: Money | None = None
    version: int = 1
    reference_status: str = "successful"
    reason: str | None = None


@dataclass
class FakeInvoice:
    id: str
    ref: str
    entry_ids: list[str]
    expense_ids: list[str]
    milestones: list[tuple[str, str]]
    cancelled: bool = False


@dataclass
class FakePost:
    id: str
    workspace_id: str
    message: str
    recipients: list[str]
    key: str | None = None


@dataclass
class FakePsaBase:
    """`FakePsa`'s state, its seeding helpers and the look-ups its resource mixins share."""

    projects: dict[str, FakeProject] = field(default_factory=dict)
    users: dict[str, FakeUser] = field(default_factory=dict)
    rate_cards: dict[str, RateCard] = field(default_factory=dict)
    time_entries: dict[str, TimeEntry] = field(default_factory=dict)
    expenses: dict[str, ExpenseEntry] = field(default_factory=dict)
    assignments: dict[str, Assignment] = field(default_factory=dict)
    resource_requests: dict[str, tuple[Assignment, str, str]] = field(default_factory=dict)
    """id -> (demand, demand key, status)"""
    change_orders: dict[str, ChangeOrder] = field(default_factory=dict)
    invoices: dict[str, FakeInvoice] = field(default_factory=dict)
    expense_notes: dict[str, str] = field(default_factory=dict)
    """Expense id -> its notes in the PSA (the canonical `ExpenseEntry` carries none)."""
    posts: list[FakePost] = field(default_factory=list)
    """The workspaces' activity feeds, oldest first."""
    failures: dict[str, list[PssyncError]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    _next_id: int = 100

    # ---------------------------------------------------------------- test helpers

    def _id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def fail_next(self, operation: str, error: PssyncError, times: int = 1) -> None:
        self.failures.setdefault(operation, []).extend([error] * times)

    def _enter(self, operation: str) -> None:
        self.calls.append(operation)
        pending = self.failures.get(operation)
        if pending:
            raise pending.pop(0)

    def add_user(
        self,
        worker_id: str,
        name: str = "",
        *,
        role: str | None = None,
        active: bool = True,
        start_date: date | None = None,
        closed_after: date | None = None,
    ) -> None:
        self.users[worker_id] = FakeUser(
            worker_id, name or worker_id, role, active, start_date, closed_after
        )

    def add_rate_card(self, card: RateCard) -> None:
        self.rate_cards[card.external_id] = card

    def _can_work(self, worker_id: str, on: date) -> FakeUser:
        user = self.users.get(worker_id)
        if user is None:
            raise _refused(f"user {worker_id} does not exist", "user_id")
        if not user.active:
            raise _refused(f"{user.name} is inactive", "user_id")
        if user.start_date is not None and on < user.start_date:
            raise _refused(f"{user.name} starts on {user.start_date}", "date_performed")
        if user.closed_after is not None and on > user.closed_after:
            raise _refused(
                f"{user.name} is closed to time entry after {user.closed_after}",
                "date_performed",
            )
        return user

    def _open_project(self, project_id: str) -> FakeProject:
        fp = self.projects.get(project_id)
        if fp is None:
            raise _refused(f"project {project_id} does not exist", "workspace_id")
        if fp.archived:
            raise _refused(f"project {project_id} is archived", "workspace_id")
        return fp

    def add_time_entry(
        self,
        project_id: str,
        worker_id: str,
        on: date,
        minutes: int,
        *,
        role: str | None = None,
        billable: bool = True,
        approved: bool = False,
    ) -> TimeEntry:
        fp = self._open_project(project_id)
        if fp.project.status is ProjectStatus.CLOSED_FOR_TIME:
            raise _refused(f"project {project_id} is closed for time entry", "workspace_id")
        if minutes <= 0 or minutes > 24 * 60:
            raise _refused("time must be more than 0 and at most 1440 minutes", "time_in_minutes")
        user = self._can_work(worker_id, on)
        role = role or user.role
        # Like the PSA, price the entry from the project's rate card as it is now.
        card = self.rate_cards.get(fp.project.rate_card_id or "")
        entry = TimeEntry(
            external_id=self._id(),
            project_id=project_id,
            worker_id=worker_id,
            role=role,
            date_performed=on,
            minutes=minutes,
            billable=billable,
            bill_rate=card.rate_for(role, on) if card is not None and role else None,
            source_system=System.PSA,
            source_version="1",
        )
        self.time_entries[entry.external_id] = entry
        if approved:
            self.approve_time_entry(entry.external_id)
        return self.time_entries[entry.external_id]

    @staticmethod
    def _bump(entity: Any, **changes: Any) -> Any:
        version = int(entity.source_version or "0") + 1
        return entity.model_copy(
            update={
                **changes,
                "source_version": str(version),
                "updated_at": datetime.now(UTC),
            }
        )

    def approve_time_entry(self, entry_id: str, approved: bool = True) -> TimeEntry:
        entry = self.time_entries[entry_id]
        if entry.invoiced:
            raise _refused(f"time entry {entry_id} has been invoiced", "is_invoiced")
        if entry.approved != approved:
            self.time_entries[entry_id] = self._bump(entry, approved=approved)
        return self.time_entries[entry_id]

    def add_expense(
        self, project_id: str, worker_id: str, on: date, amount: Money, category: str = "Other"
    ) -> ExpenseEntry:
        self._open_project(project_id)
        if amount.amount <= 0:
            raise _refused("amount must be greater than zero", "amount_in_cents")
        self._can_work(worker_id, on)
        expense = ExpenseEntry(
            external_id=self._id(),
            project_id=project_id,
            worker_id=worker_id,
            date_incurred=on,
            amount=amount,
            category=category,
            source_system=System.PSA,
            source_version="1",
        )
        self.expenses[expense.external_id] = expense
        return expense

    def approve_expense(self, expense_id: str) -> ExpenseEntry:
        expense = self.expenses[expense_id]
        if not expense.approved:
            self.expenses[expense_id] = self._bump(expense, approved=True)
        return self.expenses[expense_id]

    def add_assignment(
        self,
        project_id: str,
        role: str,
        start: date,
        end: date,
        *,
        worker_id: str | None = None,
        minutes: int = 0,
    ) -> Assignment:
        self._open_project(project_id)
        if end < start:
            raise _refused("end date must be on or after the start date", "end_date")
        assignment = Assignment(
            external_id=self._id(),
            project_id=project_id,
            role=role,
            kind=AssignmentKind.NAMED if worker_id else AssignmentKind.ROLE_DEMAND,
            worker_id=worker_id,
            start_date=start,
            end_date=end,
            allocated_minutes=minutes,
            source_system=System.PSA,
            source_version="1",
        )
        self.assignments[assignment.external_id] = assignment
        return assignment

    def add_change_order(
        self,
        project_id: str,
        title: str,
        budget_delta: Money,
        lines: Sequence[ChangeOrderLine] = (),
        requested_by: str = "someone",
    ) -> ChangeOrder:
        self._open_project(project_id)
        co = ChangeOrder(
            external_id=self._id(),
            project_id=project_id,
            title=title,
            budget_delta=budget_delta,
            lines=list(lines),
            requested_by=requested_by,
            submitted_at=datetime.now(UTC),
            source_system=System.PSA,
            source_version="1",
        )
        self.change_orders[co.external_id] = co
        return co

    # ---------------------------------------------------------------- shared look-ups

    def _project(self, psa_id: str) -> FakeProject:
        fp = self.projects.get(psa_id)
        if fp is None:
            raise NotFoundError(f"workspace {psa_id} not found", system=SYSTEM)
        return fp

    def _milestone(self, psa_id: str, code: str) -> Milestone:
        for ms in self._project(psa_id).project.milestones:
            if ms.code == code:
                return ms
        raise NotFoundError(f"no milestone {code} in project {psa_id}", system=SYSTEM)

    def _set_milestone(self, psa_id: str, code: str, status: MilestoneStatus) -> Milestone:
        fp = self._project(psa_id)
        updated = [
            ms.model_copy(update={"status": status}) if ms.code == code else ms
            for ms in fp.project.milestones
        ]
        fp.project = fp.project.model_copy(update={"milestones": updated})
        return self._milestone(psa_id, code)
