"""Kantata time entries and expenses: change-ordered reads, reads by id, rejections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from connectors.psa._constants import MAX_PAGE_SIZE, SYSTEM
from connectors.psa._values import _when, required_ref
from connectors.psa.kantata._base import KantataBase
from connectors.psa.mapping import (
    _rejection_line,
    expense_from_kantata,
    notes_with,
    time_entry_from_kantata,
)
from contracts.errors import ConflictError, StaleVersionError
from contracts.v1 import ExpenseEntry, TimeEntry

EXPENSE_INCLUDE = "user,workspace"
"""Kantata sends an expense's `user_id` and `workspace_id` only when `user` and `workspace`
are included (published Expense schema)."""


def _entry_user(obj: dict[str, Any]) -> str:
    return required_ref(obj, "time entry", "user_id")


def _expense_user(obj: dict[str, Any]) -> str:
    return required_ref(obj, "expense", "user_id")


MIN_WINDOW = 20
"""The largest window over one timestamp's records is at least this many records, whatever the
page size asked: the window sizes to choose from must be many (see `_window`)."""


def _window(frontier: int, largest: int, overlap: int) -> tuple[int, int]:
    """The page to read next, as (first record's position, page size), of a list whose first
    `frontier` records were read: the one reaching furthest that starts at least `overlap`
    records before the frontier, among page sizes from half of `largest` to `largest`
    (Kantata's pages only start at multiples of their size). With nothing read, or an overlap
    reaching back to the start, it is the first page of `largest`. The overlap lets the walk
    check that no record slipped in front of the page (`_starts_on`).

    One page size would leave no overlap or a page's worth; many sizes leave a few records
    (about 9 % more requests than pages of 200). A frontier that is a multiple of every size
    allowed has no overlapping page reaching past it, and is read from there without one: with
    at least `MIN_WINDOW` sizes that is a multiple of lcm(10..20) = 232,792,560, beyond any
    walk."""
    if frontier - overlap < 0:
        return 0, largest
    best = (0, largest)
    for size in range(max(1, largest // 2), largest + 1):
        start = size * ((frontier - overlap) // size)
        if start + size >= best[0] + best[1]:
            best = (start, size)
    if overlap == 1 and best[0] + best[1] <= frontier:
        return frontier, largest  # a multiple of every size: the page from the frontier on
    return best


def _starts_on(objects: list[dict[str, Any]], cursor: datetime | None, seen: set[str]) -> bool:
    """Does a page start on a record already read at the cursor's timestamp? Then every record
    there not read yet comes after it: none was skipped."""
    if not objects or cursor is None:
        return False
    first = objects[0]
    return _when(first.get("updated_at")) == cursor and str(first.get("id")) in seen


class TimeMixin(KantataBase):
    """`KantataPsa`'s time entries and expenses."""

    # ---------------------------------------------------------------- time and expense

    @staticmethod
    def _approved_params(project_id: str | None, invoiced: bool | None) -> dict[str, Any]:
        params: dict[str, Any] = {"approved": "true", "order": "updated_at:asc"}
        if project_id is not None:
            params["workspace_id"] = project_id
        if invoiced is not None:
            params["is_invoiced"] = "true" if invoiced else "false"
        return params

    async def _changed_since(
        self, path: str, params: dict[str, Any], since: datetime | None, page_size: int
    ) -> AsyncIterator[dict[str, Any]]:
        """Records updated after `since`, oldest change first, walked by keyset on
        `updated_at` (`order=updated_at:asc`, `updated_after=<cursor>`): plain page numbers
        would skip records when one is updated mid-walk (the rest shift left).

        Kantata stamps whole seconds, so thousands of records can share one `updated_at`, more
        than a page; Kantata has no filter to page within a timestamp (no id cursor), only
        `page`/`per_page`. The records of the cursor's timestamp are read in windows that
        overlap what was already read by at least one record and start on a seen record (see
        `_window`): then no record of that timestamp can lie unread before the window, however
        the list shifted since the last page. A window that does not start on a seen record
        (records before it left the list meanwhile) is read again with twice the overlap, and
        eventually from the first page. The requests are linear in the records (about 9 % more
        than pages of 200 when one timestamp spans many pages), and no record left unchanged
        during the walk is
        missed; one changed during the walk may come again, newer. A record changed during the
        walk *within the cursor's very second* and sorted before the records read at it is left
        to the next walk (the sweep re-reads an overlap behind its watermark)."""
        per_page = max(1, min(page_size, MAX_PAGE_SIZE))
        wide = max(per_page, MIN_WINDOW)
        cursor = since.astimezone(UTC) if since and since.tzinfo else since
        if cursor is not None and cursor.tzinfo is None:
            cursor = cursor.replace(tzinfo=UTC)
        seen: set[str] = set()  # the ids read at `cursor`: the first `frontier` records there
        frontier = 0  # records of the list from `cursor` on, read without a gap
        overlap = 1
        inclusive = False
        while True:
            start, size = _window(frontier, wide if frontier else per_page, overlap)
            query = {**params, "page": start // size + 1, "per_page": size}
            if cursor is not None:
                after = cursor - timedelta(microseconds=1) if inclusive else cursor
                query["updated_after"] = after.isoformat()
            objects = self._objects(await self._call("GET", path, params=query))
            if 0 < start < frontier and not _starts_on(objects, cursor, seen):
                overlap = frontier if 2 * overlap >= frontier else 2 * overlap
                continue
            overlap = 1
            anchor = cursor
            at_cursor = 0
            for obj in objects:
                stamp = _when(obj.get("updated_at"))
                if cursor is not None and stamp < cursor:
                    continue
                if cursor is None or stamp > cursor:
                    cursor, seen, at_cursor = stamp, set(), 0
                at_cursor += 1
                ident = str(obj.get("id"))
                if ident not in seen:
                    seen.add(ident)
                    yield obj
            if len(objects) < size:
                return
            frontier = start + len(objects) if cursor == anchor else at_cursor
            inclusive = True

    async def list_approved_time(
        self,
        since: datetime | None = None,
        *,
        project_id: str | None = None,
        invoiced: bool | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[TimeEntry]:
        """Approved time updated after `since`, oldest change first (a watermark is the last
        entry's `updated_at`). An entry changed during the walk may come again, newer."""
        params = self._approved_params(project_id, invoiced)
        async for obj in self._changed_since("/time_entries.json", params, since, page_size):
            worker = await self._worker_of(_entry_user(obj))
            yield time_entry_from_kantata(obj, worker or "")

    async def get_time_entry(self, entry_id: str) -> TimeEntry:
        obj = self._one(await self._call("GET", f"/time_entries/{entry_id}.json"))
        return time_entry_from_kantata(obj, await self._worker_of(_entry_user(obj)) or "")

    async def _by_ids(
        self, path: str, ids: Sequence[str], extra: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Records by id with `only=`, 200 ids a request (the requests run concurrently).
        Kantata ids are numbers: anything else cannot exist and is not asked for."""
        wanted = list(dict.fromkeys(i for i in ids if i.isdigit()))
        chunks = [wanted[i : i + MAX_PAGE_SIZE] for i in range(0, len(wanted), MAX_PAGE_SIZE)]

        async def read(chunk: list[str]) -> list[dict[str, Any]]:
            params = {"only": ",".join(chunk), "page": 1, "per_page": MAX_PAGE_SIZE}
            return self._objects(await self._call("GET", path, params={**params, **(extra or {})}))

        pages = await asyncio.gather(*(read(chunk) for chunk in chunks))
        return [obj for page in pages for obj in page]

    async def get_time_entries(self, entry_ids: Sequence[str]) -> list[TimeEntry]:
        found = await self._by_ids("/time_entries.json", entry_ids)
        users = [_entry_user(obj) for obj in found]
        workers = await self._workers_of(users)
        return [time_entry_from_kantata(o, workers[u]) for o, u in zip(found, users, strict=True)]

    async def _reject(
        self,
        collection: str,
        wrapper: str,
        ident: str,
        reason: str,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Unapprove a record and add the reason to its notes, in one PUT guarded by the
        lock_version read (when the record has one): a concurrent change (or a retried PUT
        that went through) makes the next round read it again, and an unapproved record is
        left as it is."""
        line = _rejection_line(reason)
        path = f"/{collection}/{ident}.json"
        for _ in range(3):
            obj = self._one(await self._call("GET", path, params=params))
            if not obj.get("approved"):
                return obj
            fields: dict[str, Any] = {
                "approved": False,
                "notes": notes_with(str(obj.get("notes") or ""), line),
            }
            if obj.get("lock_version") is not None:
                fields["lock_version"] = int(obj["lock_version"])
            try:
                body = await self._call("PUT", path, params=params, json={wrapper: fields})
            except ConflictError:
                continue
            return self._one(body)
        raise StaleVersionError(
            f"{wrapper} {ident} kept changing while it was being rejected", system=SYSTEM
        )

    async def reject_time_entry(self, entry_id: str, reason: str) -> TimeEntry:
        obj = await self._reject("time_entries", "time_entry", entry_id, reason)
        return time_entry_from_kantata(obj, await self._worker_of(_entry_user(obj)) or "")

    async def list_worker_time(
        self,
        worker_id: str,
        *,
        performed_from: date | None = None,
        performed_through: date | None = None,
        approved: bool | None = None,
    ) -> list[TimeEntry]:
        user_id = await self._user_of(worker_id)
        if user_id is None:
            return []
        params: dict[str, Any] = {"user_id": user_id, "order": "date_performed:asc"}
        if approved is not None:
            params["approved"] = "true" if approved else "false"
        if performed_from is not None or performed_through is not None:
            start = performed_from or date(1900, 1, 1)
            end = performed_through or date(9999, 12, 31)
            params["date_performed_between"] = f"{start.isoformat()}:{end.isoformat()}"
        found = await self._all("/time_entries.json", params)
        return [time_entry_from_kantata(obj, worker_id) for obj in found]

    async def list_approved_expenses(
        self,
        since: datetime | None = None,
        *,
        project_id: str | None = None,
        invoiced: bool | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[ExpenseEntry]:
        params = {**self._approved_params(project_id, invoiced), "include": EXPENSE_INCLUDE}
        async for obj in self._changed_since("/expenses.json", params, since, page_size):
            worker = await self._worker_of(_expense_user(obj))
            yield expense_from_kantata(obj, worker or "")

    async def get_expense(self, expense_id: str) -> ExpenseEntry:
        body = await self._call(
            "GET", f"/expenses/{expense_id}.json", params={"include": EXPENSE_INCLUDE}
        )
        obj = self._one(body)
        return expense_from_kantata(obj, await self._worker_of(_expense_user(obj)) or "")

    async def get_expenses(self, expense_ids: Sequence[str]) -> list[ExpenseEntry]:
        found = await self._by_ids("/expenses.json", expense_ids, {"include": EXPENSE_INCLUDE})
        users = [_expense_user(obj) for obj in found]
        workers = await self._workers_of(users)
        return [expense_from_kantata(o, workers[u]) for o, u in zip(found, users, strict=True)]

    async def reject_expense(self, expense_id: str, reason: str) -> ExpenseEntry:
        include = {"include": EXPENSE_INCLUDE}
        obj = await self._reject("expenses", "expense", expense_id, reason, include)
        return expense_from_kantata(obj, await self._worker_of(_expense_user(obj)) or "")
