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
        """Records updated after `since`, oldest change first, by keyset paging on
        `updated_at`: page numbers would skip records when one is updated mid-walk (the rest
        shift left). Kantata stamps whole seconds, so many records share one `updated_at`; the
        walk re-reads from the last timestamp inclusively and drops IDs already yielded at it."""
        per_page = max(1, min(page_size, MAX_PAGE_SIZE))
        cursor = since.astimezone(UTC) if since and since.tzinfo else since
        if cursor is not None and cursor.tzinfo is None:
            cursor = cursor.replace(tzinfo=UTC)
        at_cursor: set[str] = set()
        inclusive = False
        page = 1
        while True:
            query = {**params, "page": page, "per_page": per_page}
            if cursor is not None:
                after = cursor - timedelta(microseconds=1) if inclusive else cursor
                query["updated_after"] = after.isoformat()
            objects = self._objects(await self._call("GET", f"{path}", params=query))
            fresh = 0
            for obj in objects:
                stamp = _when(obj.get("updated_at"))
                if inclusive and cursor is not None and stamp <= cursor:
                    if stamp < cursor or str(obj.get("id")) in at_cursor:
                        continue
                if cursor is None or stamp > cursor:
                    cursor, at_cursor = stamp, set()
                at_cursor.add(str(obj.get("id")))
                fresh += 1
                yield obj
            if len(objects) < per_page:
                return
            # A full page of records already seen: more than a page share one timestamp,
            # so walk that timestamp's pages; otherwise restart from the new cursor.
            page = page + 1 if fresh == 0 else 1
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
