"""The PSA port: what activities need from the PSA, in canonical types, split by use;
`PsaPort` is all of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from typing import Protocol

from connectors.psa._constants import MAX_PAGE_SIZE
from connectors.psa.rate_card_port import PsaRateCardRevisionsPort
from contracts.money import Money
from contracts.v1 import (
    Assignment,
    ChangeOrder,
    ChangeOrderStatus,
    ExpenseEntry,
    Milestone,
    Project,
    RateCard,
    TimeEntry,
)


class PsaProjectsPort(Protocol):
    """Projects: the shell (workspace, WBS, milestones), its status and budget, its rate card,
    its billing milestones and its activity feed."""

    # projects
    async def find_project_by_enterprise_id(self, enterprise_id: str) -> str | None: ...
    async def create_project_shell(self, project: Project, *, enterprise_id: str) -> str: ...
    async def archive_project(self, psa_id: str, *, reason: str) -> None: ...
    async def get_project(self, psa_id: str) -> Project: ...
    async def set_enterprise_id(self, psa_id: str, enterprise_id: str) -> None: ...
    async def get_project_budget(self, psa_id: str) -> Money | None: ...
    async def update_project_budget(
        self, psa_id: str, budget: Money, *, expected_version: str | None = None
    ) -> str: ...

    # rate cards
    async def get_rate_card(self, rate_card_id: str) -> RateCard: ...

    # billing milestones
    async def list_milestones(self, psa_id: str) -> list[Milestone]: ...
    async def complete_milestone(self, psa_id: str, code: str) -> Milestone: ...

    # activity feed
    async def post_notification(
        self, workspace_id: str, message: str, recipients: Sequence[str], *, key: str | None = None
    ) -> str:
        """Post `message` to the workspace's activity feed, addressed to `recipients` (roles or
        people); returns the post's id. With `key`, a repeat finds the earlier post (a marker in
        its message) and returns that one instead of posting twice."""
        ...


class PsaTimePort(Protocol):
    """Approved time and expenses: reading, sending back to the submitter, marking invoiced."""

    # time and expense
    def list_approved_time(
        self,
        since: datetime | None = None,
        *,
        project_id: str | None = None,
        invoiced: bool | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[TimeEntry]: ...
    async def get_time_entry(self, entry_id: str) -> TimeEntry: ...
    async def get_time_entries(self, entry_ids: Sequence[str]) -> list[TimeEntry]:
        """The entries with these ids, in no particular order; an id the PSA does not have is
        simply absent. One request per 200 ids."""
        ...

    async def reject_time_entry(self, entry_id: str, reason: str) -> TimeEntry:
        """Send an approved entry back to its submitter: unapprove it and add
        `[pssync] <reason>` to its notes, in one write. Idempotent: an entry that is not
        approved (already sent back) is returned as it is. An invoiced entry is refused."""
        ...

    async def list_worker_time(
        self,
        worker_id: str,
        *,
        performed_from: date | None = None,
        performed_through: date | None = None,
        approved: bool | None = None,
    ) -> list[TimeEntry]:
        """A worker's time entries (approved or not) performed in the date range, by date."""
        ...

    def list_approved_expenses(
        self,
        since: datetime | None = None,
        *,
        project_id: str | None = None,
        invoiced: bool | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[ExpenseEntry]: ...
    async def get_expense(self, expense_id: str) -> ExpenseEntry: ...
    async def get_expenses(self, expense_ids: Sequence[str]) -> list[ExpenseEntry]:
        """Like `get_time_entries`, for expenses."""
        ...

    async def reject_expense(self, expense_id: str, reason: str) -> ExpenseEntry:
        """Like `reject_time_entry`, for an expense (the reason goes to its notes)."""
        ...

    async def mark_invoiced(
        self,
        entry_ids: Sequence[str],
        *,
        invoice_ref: str,
        expense_ids: Sequence[str] = (),
        project_id: str | None = None,
        milestone_codes: Sequence[str] = (),
    ) -> str: ...
    async def unmark_invoiced(self, *, invoice_ref: str) -> None: ...


class PsaStaffingPort(Protocol):
    """Staffing: resource requests (role demand), assignments, resources' time-entry window
    and change orders."""

    # staffing demand
    async def create_resource_requests(
        self, psa_id: str, demands: Sequence[Assignment]
    ) -> list[str]: ...
    async def cancel_resource_request(self, request_id: str) -> None: ...
    async def list_resource_requests(
        self, psa_id: str, *, include_cancelled: bool = False
    ) -> list[Assignment]: ...

    # assignments
    async def list_assignments(
        self, project_id: str | None = None, worker_id: str | None = None
    ) -> list[Assignment]: ...
    async def get_assignment(self, assignment_id: str) -> Assignment: ...
    async def update_assignment_end(
        self, assignment_id: str, end_date: date, *, expected_version: str | None = None
    ) -> Assignment: ...
    async def delete_assignment(self, assignment_id: str) -> None: ...
    async def restore_assignment(self, assignment: Assignment) -> Assignment: ...

    # resources
    async def close_resource_to_time(self, worker_id: str, after: date) -> None: ...
    async def reopen_resource_to_time(self, worker_id: str) -> None: ...

    # change orders
    async def get_change_order(self, change_order_id: str) -> ChangeOrder: ...
    async def set_change_order_state(
        self, change_order_id: str, state: ChangeOrderStatus
    ) -> ChangeOrder: ...
    async def list_change_orders_awaiting(self, approver: str) -> list[ChangeOrder]:
        """Open (submitted) change orders of projects whose delivery manager — the change
        order's approver — is the HCM worker `approver`."""
        ...


class PsaPort(PsaProjectsPort, PsaTimePort, PsaStaffingPort, PsaRateCardRevisionsPort, Protocol):
    """What pssync's activities need from the PSA, in canonical types only.

    IDs are the PSA's own (workspace, entry, assignment ... IDs as strings) except workers,
    which are HCM worker IDs. Every write is safe to repeat.
    """
