"""`WorkdayHcm`: the `HcmPort` (and the HR actions) over Workday REST for a tenant; HR actions
are made safe to repeat by checking the worker's state, not by keys."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, Unpack
from urllib.parse import quote

import httpx

from connectors._http import Backoff, VendorClient, VendorHttp
from connectors._vendor_errors import unmappable_from
from connectors.hcm.errors import ERROR_CODES
from connectors.hcm.mapping import (
    _iso_moment,
    _worker_ref,
    changes_from_workday,
    page_from_workday,
    parse_error,
    worker_from_workday,
    worker_of_event,
)
from connectors.hcm.port import HcmHrActions, WorkerChange, _has_termination, _rehired
from contracts.settings import SystemSettings
from contracts.systems import System
from contracts.v1 import Worker

PAGE_LIMIT = 100
"""Workday REST's maximum page size."""

# --------------------------------------------------------------------------- the HTTP adapter


class WorkdayHcm(VendorClient, HcmHrActions):
    """`HcmPort` (and the HR actions) over Workday REST for `settings.tenant`."""

    def __init__(
        self,
        settings: SystemSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        page_limit: int = PAGE_LIMIT,
        **backoff: Unpack[Backoff],
    ) -> None:
        super().__init__(
            VendorHttp(
                System.HCM,
                settings,
                parse_error,
                transport=transport,
                error_codes=ERROR_CODES,
                **backoff,
            )
        )
        self.tenant = settings.tenant
        self.page_limit = max(1, min(PAGE_LIMIT, page_limit))
        self._base = f"/ccx/api/v1/{quote(settings.tenant, safe='')}/workers"

    async def _pages(self, params: dict[str, str]) -> list[Mapping[str, Any]]:
        records: list[Mapping[str, Any]] = []
        offset = 0
        while True:
            response = await self.http.request(
                "GET",
                self._base,
                ok=(200,),
                params={**params, "limit": str(self.page_limit), "offset": str(offset)},
            )
            data, total = page_from_workday(_json(response, "worker list"))
            records.extend(data)
            offset += len(data)
            # Without a total (or with a 0 one beside records, as published examples have),
            # a short page is the last one.
            if not data or (offset >= total if total else len(data) < self.page_limit):
                return records

    async def get_worker(self, worker_id: str) -> Worker:
        response = await self.http.request("GET", f"{self._base}/{_worker_ref(worker_id)}")
        return worker_from_workday(_json(response, "Worker"))

    async def list_workers(self) -> list[Worker]:
        return [worker_from_workday(r) for r in await self._pages({})]

    async def changed_workers(
        self, updated_from: datetime, updated_through: datetime
    ) -> list[WorkerChange]:
        records = await self._pages(
            {
                "updatedFrom": _iso_moment(updated_from),
                "updatedThrough": _iso_moment(updated_through),
            }
        )
        changes = [c for r in records for c in changes_from_workday(r)]
        return sorted(changes, key=lambda c: (c.entry_moment, c.event_id))

    async def _action(
        self, worker_id: str, action: str, body: dict[str, Any], done: Callable[[Worker], bool]
    ) -> Worker:
        """Run a business process once. Business processes are not idempotent (a second
        termination is refused, or worse, a second event is entered), so a POST is never
        re-sent blindly: after an answer that may hide an applied action the worker is read
        again, and `done(worker)` says whether the action took effect."""

        async def send() -> Worker:
            response = await self.http.request(
                "POST", f"{self._base}/{_worker_ref(worker_id)}/{action}", retry=False, json=body
            )
            return worker_of_event(_json(response, "business process event"))

        async def find() -> Worker | None:
            worker = await self.get_worker(worker_id)
            return worker if done(worker) else None

        return await self.http.create(send, find)

    async def terminate(
        self,
        worker_id: str,
        termination_date: date,
        last_day: date | None = None,
        reason: str | None = None,
    ) -> Worker:
        """Enter a termination. A repeat of the one the worker already has (same dates) is
        that termination, returned as it is; a different one is refused (rescind first)."""
        body: dict[str, Any] = {"terminationDate": termination_date.isoformat()}
        if last_day is not None:
            body["lastDayOfWork"] = last_day.isoformat()
        if reason is not None:
            body["reason"] = reason
        done = functools.partial(_has_termination, termination_date, last_day)
        current = await self.get_worker(worker_id)
        if done(current):
            return current
        return await self._action(worker_id, "terminate", body, done)

    async def rescind_termination(self, worker_id: str) -> Worker:
        """Rescind the worker's termination. Its answer lost, the worker is read again: no
        termination left means it went through. A rescind of a worker without a termination
        is refused (`NO_TERMINATION`), also when an earlier call already rescinded it."""
        return await self._action(
            worker_id, "rescindTermination", {}, lambda w: w.termination_date is None
        )

    async def rehire(self, worker_id: str, hire_date: date) -> Worker:
        """Rehire a terminated worker; a worker already rehired on `hire_date` (no
        termination, that hire date) is returned as it is."""
        done = functools.partial(_rehired, hire_date)
        current = await self.get_worker(worker_id)
        if done(current):
            return current
        return await self._action(worker_id, "rehire", {"hireDate": hire_date.isoformat()}, done)


def _json(response: httpx.Response, record: str) -> Any:
    """The body of a 2xx answer; one that is not JSON is an `UnmappableRecord`."""
    try:
        return response.json()
    except ValueError as exc:
        raise unmappable_from(exc, system=System.HCM, record=record) from exc


def _check_port() -> HcmHrActions:  # pragma: no cover - a static check for mypy
    return WorkdayHcm(SystemSettings(base_url="http://localhost"))
