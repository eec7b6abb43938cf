"""The NetSuite client's base: `VendorHttp` set-up, record paths and references, SuiteQL
paging, and async jobs (submit a batch under an idempotency key, poll it, read its tasks)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Unpack
from urllib.parse import quote

import httpx

from connectors._http import Backoff, VendorClient, VendorHttp, classify
from connectors._vendor_errors import MAPPING_ERRORS, unmappable_from
from connectors.erp.errors import ERROR_CODES
from connectors.erp.mapping import (
    _KEY_NAMESPACE,
    IDEMPOTENCY_HEADER,
    MAX_BATCH,
    RECORD,
    SUITEQL,
    _decode,
    _encode,
    _error_code,
    _error_info,
    _tail_id,
    parse_netsuite_error,
)
from connectors.erp.port import SYSTEM
from connectors.erp.values import DateFormat, currency_ids, record_id
from contracts.errors import BusinessRuleViolation, ErrorInfo, NotFoundError, TransientError
from contracts.settings import SystemSettings

_MAX_RESUBMITS = 10


@dataclass
class _Outcome:
    erp_id: str | None = None
    error: ErrorInfo | None = None


@dataclass
class _Task:
    ok: bool
    status: int
    result: Any = field(default=None)


def _result_id(result: Any) -> str | None:
    """The internal id a succeeded task reports: the record's `id` or its self link's tail."""
    if not isinstance(result, dict):
        return None
    try:
        return record_id(result)
    except KeyError:
        return None


class _NetSuiteBase(VendorClient):
    """What every NetSuite resource mixin builds on: the HTTP machinery and the id cache."""

    def __init__(
        self,
        settings: SystemSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        poll_interval_s: float = 0.02,
        poll_max_interval_s: float = 1.0,
        poll_timeout_s: float = 300.0,
        batch_size: int = MAX_BATCH,
        **backoff: Unpack[Backoff],
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        super().__init__(
            VendorHttp(
                SYSTEM,
                settings,
                parse_netsuite_error,
                transport=transport,
                error_codes=ERROR_CODES,
                **backoff,
            )
        )
        self.date_format = DateFormat(settings.date_format)
        """How SuiteQL writes dates in this account (`SystemSettings.date_format`)."""
        self.poll_interval_s = poll_interval_s
        self.poll_max_interval_s = poll_max_interval_s
        self.poll_timeout_s = poll_timeout_s
        self.batch_size = batch_size
        self._ids: dict[tuple[str, str], str] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    @property
    def retries(self) -> int:
        """Requests retried so far (429, 5xx, timeouts)."""
        return self.http.retries

    @property
    def calls(self) -> int:
        return self.http.calls

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _path(record_type: str, ident: str, *, external: bool | None = None) -> str:
        """`.../{type}/{id}`; digits are internal ids unless `external`, `eid:X` is explicit."""
        if ident.startswith("eid:"):
            return f"{RECORD}/{record_type}/eid:{quote(ident[4:], safe='')}"
        if external is None:
            external = not ident.isdigit()
        if external:
            return f"{RECORD}/{record_type}/eid:{quote(ident, safe='')}"
        return f"{RECORD}/{record_type}/{ident}"

    async def _get(self, url: str, **kwargs: Any) -> Any:
        return _decode(await self.http.request("GET", url, ok=(200,), **kwargs))

    async def _send(
        self,
        method: str,
        url: str,
        body: Any,
        *,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        return await self.http.request(
            method,
            url,
            ok=ok,
            content=_encode(body),
            headers={"Content-Type": "application/json", **(headers or {})},
            params=params,
        )

    async def _internal_id(
        self, record_type: str, ident: str, *, external: bool | None = None
    ) -> str:
        """The internal id of a record named by internal or external id (cached)."""
        if ident.startswith("eid:"):
            ident, external = ident[4:], True
        if external is None:
            external = not ident.isdigit()
        if not external:
            return ident
        key = (record_type, ident)
        if key in self._ids:
            return self._ids[key]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._ids:
                body = await self._get(self._path(record_type, ident, external=True))
                self._ids[key] = self._record_id(body, record_type)
        return self._ids[key]

    @staticmethod
    def _record_id(body: Any, record_type: str) -> str:
        """The internal id of a record GET (its `id`, else its self link's tail)."""
        try:
            return record_id(body)
        except MAPPING_ERRORS as exc:
            raise unmappable_from(exc, system=SYSTEM, record=record_type, raw=body) from exc

    async def _currencies(self, *values: Any) -> dict[str, str]:
        """Internal currency id -> ISO code for the currency fields among `values` that are
        internal ids (NetSuite's `{"id": "1", "refName": "USA"}`): each read once from its
        currency record's `symbol`. Codes already (`{"id": "USD"}`) need no look-up; an id
        not found stays unknown and the record naming it is unmappable."""
        found: dict[str, str] = {}
        for ident in sorted(currency_ids(*values)):
            key = ("currency-code", ident)
            if key not in self._ids:
                try:
                    body = await self._get(self._path("currency", ident, external=False))
                except NotFoundError:
                    continue
                symbol = body.get("symbol") if isinstance(body, dict) else None
                if not symbol:
                    continue
                self._ids[key] = str(symbol)
            found[ident] = self._ids[key]
        return found

    async def _reference(
        self,
        record_type: str,
        ident: str,
        *,
        field: str,
        external: bool | None = None,
        missing_code: str = "INVALID_KEY_OR_REF",
    ) -> dict[str, str]:
        """`{"id": ...}` for a body; an unknown record is a business error on `field`."""
        try:
            return {"id": await self._internal_id(record_type, ident, external=external)}
        except NotFoundError:
            raise BusinessRuleViolation(
                missing_code,
                f"Invalid {field} reference: no {record_type} {ident}.",
                field=field,
                system=SYSTEM,
            ) from None

    async def _department_ref(self, cost_center: str) -> dict[str, str]:
        """The department of a cost center code, for a body; an unknown code is refused as
        `INVALID_COST_CENTER` on `department`."""
        return await self._reference(
            "department",
            cost_center,
            field="department",
            external=True,
            missing_code="INVALID_COST_CENTER",
        )

    async def _suiteql(self, q: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        offset = 0
        while True:
            response = await self._send(
                "POST",
                SUITEQL,
                {"q": q},
                ok=(200,),
                headers={"Prefer": "transient"},
                params={"limit": 1000, "offset": offset},
            )
            page = _decode(response)
            rows += page.get("items", [])
            if not page.get("hasMore"):
                return rows
            offset += len(page.get("items", [])) or 1000

    # -- async jobs -------------------------------------------------------------------------

    async def _wait_for_job(self, location: str) -> Any:
        delay = self.poll_interval_s
        deadline = time.monotonic() + self.poll_timeout_s
        while True:
            job = await self._get(location)
            if job.get("completed"):
                return job
            if time.monotonic() + delay > deadline:
                raise TransientError(
                    f"{SYSTEM} async job {location} did not complete in {self.poll_timeout_s}s",
                    system=SYSTEM,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.poll_max_interval_s)

    async def _tasks(self, location: str) -> list[_Task]:
        """Every task of a completed job with its result, in task order."""
        items: list[Any] = []
        offset = 0
        while True:
            page = await self._get(
                f"{location}/task",
                params={"expandSubResources": "true", "limit": 1000, "offset": offset},
            )
            items += page.get("items", [])
            if not page.get("hasMore"):
                break
            offset += len(page.get("items", [])) or 1000
        items.sort(key=lambda t: int(t["id"]))
        tasks = []
        for item in items:
            ok = item.get("progress") == "succeeded"
            if "result" in item:
                result = item["result"]
                status = 200 if ok else int(result.get("status", 400))
            else:  # NetSuite itself does not expand results: read each one
                response = await self.http.request(
                    "GET",
                    f"{location}/task/{item['id']}/result",
                    ok=(200, 204, 400, 404, 409, 412),
                )
                result, status = _decode(response), response.status_code
                if status == 204 and "location" in response.headers:
                    # A create's result is what the synchronous create answers: 204 and
                    # the new record's Location.
                    result = {"id": _tail_id(response.headers["location"])}
                if "progress" not in item:  # a task listed without its status
                    ok = 200 <= status < 300
            tasks.append(_Task(ok=ok, status=status, result=result))
        return tasks

    async def _async_upsert(
        self, record_type: str, bodies: list[dict[str, Any]], key: str, depth: int = 0
    ) -> dict[str, _Outcome]:
        """Upsert records by externalId in one async job; the outcome per externalId."""
        bodies = sorted(bodies, key=lambda b: str(b["externalId"]))
        response = await self._send(
            "POST",
            f"{RECORD}/{record_type}",
            {"items": bodies},
            ok=(202, 400),
            headers={"Prefer": "respond-async", IDEMPOTENCY_HEADER: key},
        )
        fresh = response.status_code == 202
        if not fresh and (
            _error_code(response) != "IDEMPOTENCY_ERROR" or "location" not in response.headers
        ):
            raise classify(SYSTEM, response, parse_netsuite_error, ERROR_CODES)
        location = response.headers["location"]
        await self._wait_for_job(location)
        tasks = await self._tasks(location)
        if len(tasks) != len(bodies):
            raise TransientError(
                f"{SYSTEM} job {location} has {len(tasks)} tasks for {len(bodies)} records",
                system=SYSTEM,
            )
        outcomes: dict[str, _Outcome] = {}
        for body, task in zip(bodies, tasks, strict=True):
            ext = str(body["externalId"])
            if task.ok:
                outcomes[ext] = _Outcome(erp_id=_result_id(task.result))
            else:
                outcomes[ext] = _Outcome(error=_error_info(task.status, task.result))
        failed = [b for b in bodies if outcomes[str(b["externalId"])].error is not None]
        if not fresh and failed and depth < _MAX_RESUBMITS:
            # The earlier job refused these; what refused them may have been fixed since.
            retry_key = str(uuid.uuid5(_KEY_NAMESPACE, f"{key}\n{_tail_id(location)}"))
            outcomes |= await self._async_upsert(record_type, failed, retry_key, depth + 1)
        return outcomes
