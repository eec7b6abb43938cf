"""The core of the Kantata client: error parsing, requests, paging, external references and the
worker <-> user map.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Unpack

import httpx

from connectors._http import Backoff, VendorClient, VendorError, VendorHttp
from connectors._vendor_errors import MAPPING_ERRORS, unmappable_from
from connectors.psa._constants import API, MAX_PAGE_SIZE, SERVICE_NAME, SYSTEM, WORKER_MODEL
from connectors.psa._values import _marker_code
from connectors.psa.errors import ERROR_CODES
from connectors.psa.mapping import reference_from_kantata
from contracts.errors import NotFoundError
from contracts.settings import SystemSettings


def parse_error(response: httpx.Response) -> VendorError:
    """Kantata's `{"errors": [{"type", "message", "field"}]}`."""
    body = response.json()
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        return VendorError(code=f"HTTP_{response.status_code}", message=response.text[:500])
    first = errors[0]
    message = "; ".join(str(e.get("message", "")) for e in errors)
    return VendorError(
        code=str(first.get("type") or "system").upper(),
        message=message,
        field=first.get("field"),
    )


@dataclass
class _Page:
    objects: list[dict[str, Any]]
    body: dict[str, Any]


@dataclass
class Included:
    """Records of a list read with `include=`, and the side-loaded collections of all its
    pages by key (`{"stories": {"<id>": {...}}}`)."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    side: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, page: _Page, keys: Iterable[str]) -> None:
        self.objects.extend(page.objects)
        for key in keys:
            collection = page.body.get(key)
            if isinstance(collection, dict):
                self.side.setdefault(key, {}).update(collection)

    @classmethod
    def of(cls, body: dict[str, Any], keys: Iterable[str]) -> Included:
        """The records and side-loaded `keys` of one response."""
        found = cls()
        found.add(_Page(KantataBase._objects(body), body), keys)
        return found

    def get(self, key: str, ident: Any) -> dict[str, Any] | None:
        """The side-loaded record `key`/`ident`, or None (absent, or no id)."""
        if ident is None:
            return None
        found: dict[str, Any] | None = self.side.get(key, {}).get(str(ident))
        return found


def page_count(body: dict[str, Any], per_page: int) -> int:
    """How many pages a list has: `meta.page_count` where Kantata sends `meta`, else from the
    total `count` (the recorded responses carry `count` and no `meta`)."""
    meta = body.get("meta")
    if isinstance(meta, dict) and meta.get("page_count") is not None:
        return int(meta["page_count"])
    return math.ceil(int(body.get("count") or 0) / per_page)


class KantataBase(VendorClient):
    """The core of `KantataPsa`: construction on `VendorHttp`, requests, paging, external
    references and the worker <-> user map the resource mixins share."""

    def __init__(
        self,
        settings: SystemSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **backoff: Unpack[Backoff],
    ) -> None:
        super().__init__(
            VendorHttp(
                SYSTEM,
                settings,
                parse_error,
                transport=transport,
                error_codes=ERROR_CODES,
                **backoff,
            )
        )
        self._workers_by_user: dict[str, str] = {}
        self._users_by_worker: dict[str, str] = {}
        self._worker_map_lock = asyncio.Lock()
        self._join_locks: dict[str, asyncio.Lock] = {}
        """One per worker joining the account: two upserts of one new worker in a process
        invite them once (`ResourcesMixin.upsert_resource`)."""
        self._rate_cards: dict[str, str] = {}
        self._custom_field_ids: dict[str, str] | None = None
        """The workspace custom fields' ids by name, once read (`CustomFieldsMixin`)."""
        self._custom_field_lock = asyncio.Lock()

    # ---------------------------------------------------------------- plumbing

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        retry: bool = True,
    ) -> dict[str, Any]:
        """One request; with `retry`, transient failures are retried. Only for reads and
        idempotent writes: creates go through `_create`."""
        response = await self.http.request(
            method, f"{API}{path}", params=params, json=json, retry=retry
        )
        if response.status_code == 204 or not response.content:
            return {}
        body: dict[str, Any] = response.json()
        return body

    async def _create(
        self,
        path: str,
        wrapper: str,
        fields: dict[str, Any],
        find: Callable[[], Awaitable[dict[str, Any] | None]] | None,
    ) -> dict[str, Any]:
        """POST a new record (`{wrapper: fields}`) and return it, never blindly twice: after
        an answer that may hide an applied create, `find` (a look-up by the marker or key the
        fields carry) runs first, and the POST is sent again only when it finds nothing.
        Kantata has no idempotency keys; see `VendorHttp.create`."""

        async def send() -> dict[str, Any]:
            body = await self._call("POST", path, json={wrapper: fields}, retry=False)
            return self._one(body)

        return await self.http.create(send, find)

    async def _find_by_marker(
        self, path: str, params: dict[str, Any], text_field: str, marker: str, code: str
    ) -> dict[str, Any] | None:
        """The oldest record of a list whose `text_field` carries `marker + code` on a line."""
        for obj in await self._all(path, params):
            if _marker_code(obj.get(text_field), marker) == code:
                return obj
        return None

    @staticmethod
    def _objects(body: dict[str, Any]) -> list[dict[str, Any]]:
        """The records a response lists in `results`, in order; a response whose `results`
        name records it does not carry is `UnmappableRecord`, not a bare `KeyError`."""
        try:
            return [body[r["key"]][str(r["id"])] for r in body.get("results", [])]
        except MAPPING_ERRORS as exc:
            raise unmappable_from(exc, system=SYSTEM, record="response", raw=body) from exc

    def _one(self, body: dict[str, Any]) -> dict[str, Any]:
        objects = self._objects(body)
        if not objects:
            raise NotFoundError("PSA returned no record", system=SYSTEM)
        return objects[0]

    async def _pages(
        self, path: str, params: dict[str, Any], *, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncIterator[_Page]:
        page = 1
        per_page = max(1, min(page_size, MAX_PAGE_SIZE))
        while True:
            body = await self._call(
                "GET", path, params={**params, "page": page, "per_page": per_page}
            )
            yield _Page(self._objects(body), body)
            if page >= page_count(body, per_page):
                return
            page += 1

    async def _all(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        async for page in self._pages(path, params):
            found.extend(page.objects)
        return found

    async def _all_included(
        self, path: str, params: dict[str, Any], keys: Iterable[str]
    ) -> Included:
        """`_all` with the side-loaded collections `keys` of every page."""
        keys = tuple(keys)
        found = Included()
        async for page in self._pages(path, params):
            found.add(page, keys)
        return found

    async def _refs(self, **filters: Any) -> list[dict[str, Any]]:
        return await self._all(
            "/external_references.json", {"service_name": SERVICE_NAME, **filters}
        )

    async def _put_ref(
        self,
        subject_type: str,
        subject_id: str,
        model: str,
        ref: str,
        status: str,
        message: str | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "subject_type": subject_type,
            "subject_id": int(subject_id),
            "service_name": SERVICE_NAME,
            "service_model": model,
            "service_model_ref": ref,
            "status": status,
        }
        if message is not None:
            body["external_message"] = message[:500]
        # create_or_update is an upsert (one reference per subject, service and model): a
        # retried POST whose answer was lost updates the same reference, so it may be retried.
        await self._call(
            "POST", "/external_references/create_or_update", json={"external_reference": body}
        )

    # ---------------------------------------------------------------- workers <-> users

    async def _load_worker_map(self) -> None:
        refs = await self._refs(subject_type="User", service_model=WORKER_MODEL)
        workers = dict(reference_from_kantata(r) for r in refs)
        self._workers_by_user = workers
        self._users_by_worker = {w: u for u, w in workers.items()}

    async def _worker_of(self, user_id: str | None) -> str | None:
        """HCM worker ID of a Kantata user; unmapped users come back as `psa-user:<id>` so a
        later HCM lookup fails visibly instead of matching the wrong person."""
        if not user_id:
            return None
        if user_id not in self._workers_by_user:
            async with self._worker_map_lock:
                if user_id not in self._workers_by_user:
                    await self._load_worker_map()
        return self._workers_by_user.get(user_id, f"psa-user:{user_id}")

    async def _workers_of(self, user_ids: Iterable[str]) -> dict[str, str]:
        """`_worker_of` for many users, reading the map at most once."""
        wanted = set(user_ids)
        if not wanted <= self._workers_by_user.keys():
            async with self._worker_map_lock:
                if not wanted <= self._workers_by_user.keys():
                    await self._load_worker_map()
        return {u: self._workers_by_user.get(u, f"psa-user:{u}") for u in wanted}

    async def _user_of(self, worker_id: str) -> str | None:
        """The Kantata user of an HCM worker, or None when no user is tied to them yet.

        A worker not in the map is looked up alone — their one `hcm_worker` reference
        (`service_model_ref`), one request however many workers the account has — and kept
        both ways. A worker with no reference is not remembered: a hire ties one moments
        later (`ResourcesMixin._join`, which also fills the map), perhaps from another
        process, and an old "no user" must not hide it."""
        if worker_id.startswith("psa-user:"):
            return worker_id.removeprefix("psa-user:")
        found = self._users_by_worker.get(worker_id)
        if found is not None:
            return found
        refs = await self._refs(
            subject_type="User", service_model=WORKER_MODEL, service_model_ref=worker_id
        )
        # Of two users tied to one worker, the last listed wins, as in `_load_worker_map`.
        tied = [reference_from_kantata(r) for r in refs]
        tied = [(user, worker) for user, worker in tied if worker == worker_id]
        if not tied:
            return None
        user_id = tied[-1][0]
        self._users_by_worker[worker_id] = user_id
        self._workers_by_user[user_id] = worker_id
        return user_id

    async def _require_user(self, worker_id: str) -> str:
        user_id = await self._user_of(worker_id)
        if user_id is None:
            raise NotFoundError(f"no PSA user for worker {worker_id}", system=SYSTEM)
        return user_id
