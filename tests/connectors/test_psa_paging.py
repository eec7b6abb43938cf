"""The PSA connector's change walk (`list_approved_time`) when thousands of entries share one
`updated_at` second: every entry comes exactly once, the requests stay linear in the entries
(pages of 200, plus a few), and entries that change, leave or arrive while the walk runs
never make it skip one that did not.

Over the Kantata twin (HTTP) and over a synthetic Kantata (`httpx.MockTransport`) that
answers the list the vendor's way — `approved`, `updated_after` (exclusive),
`order=updated_at:asc` with a stable order among equal stamps, `page`/`per_page` — and lets a
test change the data between two requests."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.psa import KantataPsa
from connectors.psa.kantata.time import _window
from contracts.settings import SystemSettings
from tests.connectors._psa_fixtures import EID, make_project, twin_harness

PAGE = 200
T0 = datetime(2025, 3, 10, 12, 0, 0, tzinfo=UTC)
TIME_ENTRIES = "/api/v1/time_entries.json"


class CountingTransport(httpx.AsyncBaseTransport):
    """Passes requests to the network and counts the time-entry list reads."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.time_entry_reads = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(TIME_ENTRIES):
            self.time_entry_reads += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_five_thousand_entries_of_one_second_over_the_twin() -> None:
    counter = CountingTransport()
    async with twin_harness(lambda: counter) as h:
        psa_id = await h.port.create_project_shell(make_project(), enterprise_id=EID)
        await h.add_user("W1")
        entries = [
            {
                "workspace_id": int(psa_id),
                "user_id": h.users["W1"],
                "date_performed": (date(2025, 3, 3) + timedelta(days=i % 20)).isoformat(),
                "time_in_minutes": 30,
            }
            for i in range(5000)
        ]
        r = await h.client.post("/_admin/time_entries/bulk", json={"entries": entries})
        assert r.status_code == 200, r.text
        ids = r.json()["ids"]
        # One transaction, one stamp: the 5,000 share their updated_at to the microsecond.
        first = (await h.client.get(f"/api/v1/time_entries/{ids[0]}.json")).json()
        last = (await h.client.get(f"/api/v1/time_entries/{ids[-1]}.json")).json()
        stamps = {
            body["time_entries"][str(i)]["updated_at"]
            for body, i in ((first, ids[0]), (last, ids[-1]))
        }
        assert len(stamps) == 1

        walked = [e.external_id async for e in h.port.list_approved_time()]

    assert sorted(walked, key=int) == sorted(ids, key=int)
    assert len(walked) == len(set(walked)) == 5000
    # The walk it replaces re-read the second's pages from the first each time: 350 reads.
    assert counter.time_entry_reads <= math.ceil(5000 / PAGE) + 3


# --------------------------------------------------------------------------- synthetic Kantata


@dataclass
class Entry:
    id: int
    stamp: datetime
    approved: bool = True
    version: int = 2

    def json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "workspace_id": "11",
            "user_id": "7",
            "date_performed": "2025-03-03",
            "time_in_minutes": 60,
            "approved": self.approved,
            "is_invoiced": False,
            "lock_version": self.version,
            "updated_at": self.stamp.isoformat(),
        }


@dataclass
class SyntheticKantata:
    """Approved time entries as Kantata lists them. `before_read(server)` runs before each
    time-entry list read is answered: what other users changed meanwhile. Every change is
    stamped with the second of the read that follows it (`now`), later than anything read."""

    entries: dict[int, Entry]
    tiebreak: Callable[[Entry], Any] = lambda e: e.id
    before_read: Callable[[SyntheticKantata], None] | None = None
    reads: int = 0
    windows: list[tuple[int, int]] = field(default_factory=list)

    @property
    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.reads)

    def touch(self, entry: Entry, *, approved: bool = True) -> None:
        entry.approved = approved
        entry.version += 1
        entry.stamp = self.now

    def add(self) -> Entry:
        entry = Entry(id=max(self.entries) + 1, stamp=self.now)
        self.entries[entry.id] = entry
        return entry

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/external_references.json"):
            ref = {"id": "1", "subject_id": "7", "service_model_ref": "W1"}
            return httpx.Response(200, json=self.envelope("external_references", [ref], 1, 1, 200))
        assert request.url.path == TIME_ENTRIES
        q = request.url.params
        assert q["approved"] == "true" and q["order"] == "updated_at:asc"
        self.reads += 1
        if self.before_read is not None:
            self.before_read(self)
        rows = [e for e in self.entries.values() if e.approved]
        if "updated_after" in q:
            after = datetime.fromisoformat(q["updated_after"])
            rows = [e for e in rows if e.stamp > after]
        rows.sort(key=lambda e: (e.stamp, self.tiebreak(e)))
        page, per_page = int(q["page"]), int(q["per_page"])
        assert 1 <= per_page <= 200
        self.windows.append(((page - 1) * per_page, per_page))
        chunk = rows[(page - 1) * per_page : page * per_page]
        return httpx.Response(
            200,
            json=self.envelope(
                "time_entries", [e.json() for e in chunk], len(rows), page, per_page
            ),
        )

    @staticmethod
    def envelope(
        key: str, objects: list[dict[str, Any]], count: int, page: int, per_page: int
    ) -> dict[str, Any]:
        return {
            "count": count,
            "meta": {
                "count": count,
                "page_count": max(1, math.ceil(count / per_page)),
                "page_number": page,
                "page_size": per_page,
            },
            "results": [{"key": key, "id": o["id"]} for o in objects],
            key: {o["id"]: o for o in objects},
        }


def one_second(n: int) -> dict[int, Entry]:
    return {i: Entry(id=i, stamp=T0) for i in range(1, n + 1)}


async def walk(server: SyntheticKantata, page_size: int = PAGE) -> list[tuple[str, int, datetime]]:
    """(id, version, updated_at) of every entry the connector yields, in order."""
    settings = SystemSettings(base_url="http://kantata.test", auth="bearer", token="t")
    port = KantataPsa(settings, transport=httpx.MockTransport(server.handle))
    walked: list[tuple[str, int, datetime]] = []
    try:
        async for e in port.list_approved_time(page_size=page_size):
            assert e.source_version is not None and e.updated_at is not None
            walked.append((e.external_id, int(e.source_version), e.updated_at))
    finally:
        await port.aclose()
    return walked


@pytest.mark.parametrize("page_size", [PAGE, 100, 37, 2])
@pytest.mark.parametrize("n", [5000, 4999, 201, 1])
async def test_one_second_is_read_once_in_linear_requests(n: int, page_size: int) -> None:
    server = SyntheticKantata(one_second(n))
    walked = await walk(server, page_size)
    assert [int(i) for i, _, _ in walked] == list(range(1, n + 1))
    # Pages of 20 at least (see MIN_WINDOW). Each read overlaps the last by a record or a few
    # (to check nothing slipped in front of it): about 91 % of a page of 200 is news, 70 % of
    # a page of 20.
    page = max(page_size, 20)
    assert server.reads <= math.ceil(n / (0.7 * page)) + 3
    if page_size == PAGE and n == 5000:
        assert server.reads <= math.ceil(n / PAGE) + 3


def test_the_windows_overlap_what_was_read_and_reach_past_it() -> None:
    for frontier in range(1, 20000, 7):
        start, size = _window(frontier, PAGE, 1)
        assert start % size == 0 and start < frontier < start + size
        assert PAGE // 2 <= size <= PAGE
    assert _window(0, PAGE, 1) == (0, PAGE)
    assert _window(500, PAGE, 500) == (0, PAGE)  # an overlap back to the start: page 1


async def test_entries_leaving_before_the_window_are_not_skipped() -> None:
    """Between two reads of one second's pages, entries already read leave it (unapproved,
    or approved again: later). The window no longer starts on a read entry; the walk reads
    further back, and every entry that stayed still comes once."""
    entries = one_second(1000)
    left = [3, 150, 151, 152, 190]

    def meanwhile(server: SyntheticKantata) -> None:
        if server.reads == 3:  # after two pages: 390-ish entries read
            for i in left[:3]:
                server.touch(server.entries[i], approved=False)
            for i in left[3:]:
                server.touch(server.entries[i])

    server = SyntheticKantata(entries, before_read=meanwhile)
    walked = await walk(server)
    ids = [int(i) for i, _, _ in walked]
    stayed = set(range(1, 1001)) - set(left)
    assert all(ids.count(i) == 1 for i in stayed)
    assert ids[-2:] == left[3:]  # approved again: they come again, at their new stamp
    assert [v for i, v, _ in walked if int(i) in left[3:]][-2:] == [3, 3]
    assert server.reads <= math.ceil(1000 / PAGE) + 6


@pytest.mark.parametrize("tiebreak", ["id", "reversed id"])
@pytest.mark.parametrize("seed", range(12))
async def test_concurrent_changes_never_cost_an_untouched_entry(seed: int, tiebreak: str) -> None:
    """Other users approve, re-approve and unapprove entries while the walk runs (a few
    changes before most reads). Afterwards: every entry nobody touched came exactly once;
    every entry approved at the end came in its final version; no version came twice; the
    stamps never went back; and the reads stayed linear. Among equal stamps the vendor's
    order is any stable one (by id, or reversed)."""
    rng = random.Random(seed)
    n = 3000
    touched: set[int] = set()
    changes = 0

    def meanwhile(server: SyntheticKantata) -> None:
        nonlocal changes
        for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
            pick = server.entries[rng.randint(1, len(server.entries))]
            action = rng.choice(["touch", "unapprove", "add"])
            if action == "add":
                touched.add(server.add().id)
            else:
                server.touch(pick, approved=action == "touch" or not pick.approved)
                touched.add(pick.id)
            changes += 1

    server = SyntheticKantata(
        one_second(n),
        tiebreak=(lambda e: e.id) if tiebreak == "id" else (lambda e: -e.id),
        before_read=meanwhile,
    )
    walked = await walk(server, page_size=100)
    ids = [int(i) for i, _, _ in walked]
    for i in set(range(1, n + 1)) - touched:
        assert ids.count(i) == 1, i
    pairs = [(int(i), v) for i, v, _ in walked]
    assert len(pairs) == len(set(pairs))
    for entry in server.entries.values():
        if entry.approved:
            assert (entry.id, entry.version) in pairs, entry
    stamps = [s for _, _, s in walked]
    assert stamps == sorted(stamps)
    assert server.reads <= math.ceil(len(server.entries) / 70) + 4 * changes + 4
