"""What the PSA resource pool costs in Kantata calls (`KantataPsa` on the twin, every request
recorded): a new hire reads its own `hcm_worker` external reference, not the account's whole
worker map, so N hires cost O(N) reference reads however many workers the account has; a
worker is read once and then known; and an upsert that leaves role and active as the
`current` resource the caller just read (`get_resource`, as the activity does) sends no
`PUT /users/{id}`. The activity converges after a failed attempt: a retry reads again."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.workforce import UpsertResource, WorkforceActivities
from connectors.psa.resources import PsaResource
from contracts.errors import TransientError
from contracts.v1.workforce import WorkerChange, WorkerChangeKind, WorkerState
from sandbox import psa as twin
from tests.connectors._psa_fixtures import TwinHarness, twin_harness
from tests.connectors._psa_fixtures import psa_resource as resource

REFS = "/api/v1/external_references.json"
ACCOUNT_WORKERS = 260
"""More than one page of references (200 a page): a whole-map read would cost two requests."""


class Recording(httpx.AsyncBaseTransport):
    """The connector's HTTP transport, noting each request's method, path and query."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[str, str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path, request.url.query.decode()))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def count(self, method: str, path: str | None = None) -> int:
        return sum(1 for m, p, _ in self.sent if m == method and (path is None or p == path))

    def puts_to_users(self) -> int:
        return sum(1 for m, p, _ in self.sent if m == "PUT" and p.startswith("/api/v1/users/"))


async def hire(h: TwinHarness, wanted: PsaResource) -> None:
    """What `workforce.upsert_resource` does for a hire: read, then upsert."""

    assert await h.port.get_resource(wanted.worker_id) is None
    await h.port.upsert_resource(wanted)


def seed_account(h: TwinHarness) -> None:
    for n in range(ACCOUNT_WORKERS):
        twin.add_user(h.app, full_name=f"Old {n}", role="Analyst", worker_id=f"OLD-{n:04d}")


async def test_n_hires_read_one_reference_each_whatever_the_account_holds() -> None:
    recording = Recording()
    async with twin_harness(transport=lambda: recording) as h:
        seed_account(h)
        hires = [f"N-{n:03d}" for n in range(5)]
        for worker_id in hires:
            await hire(h, resource(worker_id))
        # get_resource and upsert_resource each look the new worker up once (a miss is not
        # remembered: the hire ties the reference a moment later); the map is never read.
        assert recording.count("GET", REFS) == 2 * len(hires)
        assert all("service_model_ref=" in q for m, p, q in recording.sent if p == REFS)
        before = recording.count("GET", REFS)
        for worker_id in hires:  # tied by this connector: known without a read
            found = await h.port.get_resource(worker_id)
            assert found is not None and found.worker_id == worker_id
        assert recording.count("GET", REFS) == before


async def test_a_worker_tied_elsewhere_is_read_once_then_known() -> None:
    recording = Recording()
    async with twin_harness(transport=lambda: recording) as h:
        seed_account(h)
        for _ in range(3):
            found = await h.port.get_resource("OLD-0100")
            assert found is not None and found.role == "Analyst"
        assert recording.count("GET", REFS) == 1
        # an unknown user still loads the whole map (`_worker_of`), as before
        assert await h.port._worker_of("999999") == "psa-user:999999"
        assert recording.count("GET", REFS) == 1 + 2


async def test_an_upsert_that_keeps_role_and_active_sends_no_put() -> None:
    recording = Recording()
    async with twin_harness(transport=lambda: recording) as h:
        worker_id = "N-100"
        await hire(h, resource(worker_id))
        assert recording.puts_to_users() == 1  # the hire sets the new user's role

        async def read_then_upsert(wanted: PsaResource) -> None:
            existing = await h.port.get_resource(worker_id)
            assert existing is not None and existing != wanted
            await h.port.upsert_resource(wanted, current=existing)

        await read_then_upsert(resource(worker_id, practice="Data"))
        assert recording.puts_to_users() == 1  # only custom-field facts changed
        await read_then_upsert(resource(worker_id, role="Manager"))
        assert recording.puts_to_users() == 2
        # an upsert without `current` cannot know: it sends the PUT
        await h.port.upsert_resource(resource(worker_id, role="Manager"))
        assert recording.puts_to_users() == 3
        found = await h.port.get_resource(worker_id)
        assert found == resource(worker_id, role="Manager")


async def test_a_job_change_whose_first_attempt_failed_converges_on_retry() -> None:
    """The first attempt's PUT lands, then the facts' write fails (an outage); the retried
    activity reads the new role, sends no PUT and writes the facts."""
    recording = Recording()
    async with twin_harness(transport=lambda: recording, retry_budget_s=0.2) as h:
        worker_id = "N-200"
        await hire(h, resource(worker_id))
        activities = WorkforceActivities(h.port, object())
        day = date(2026, 4, 1)
        state = WorkerState(
            worker_id=worker_id,
            name=f"Worker {worker_id}",
            email=f"{worker_id.lower()}@example.com",
            role="Manager",
            location="Sydney",
            practice="Data",
            manager_id="W-00001",
            fte=Decimal("0.8"),
            employed_from=date(2026, 3, 10),
        )
        change = WorkerChange(
            event_id="evt-job",
            worker_id=worker_id,
            kind=WorkerChangeKind.JOB_CHANGE,
            effective_date=day,
            sequence=1,
            entered_at=datetime(2026, 3, 31, tzinfo=UTC),
            time_zone="UTC",
            role="Manager",
            practice="Data",
        )
        request = UpsertResource(state=state, change=change)
        real_call = h.port._call

        async def facts_fail(method: str, path: str, **kw: Any) -> dict[str, Any]:
            if path == "/custom_field_values.json":
                raise TransientError("PSA outage", system="PSA")
            return await real_call(method, path, **kw)

        h.port._call = facts_fail  # type: ignore[method-assign]
        try:
            with pytest.raises(ApplicationError):  # the activity's translated failure
                await activities.upsert_resource(request)
        finally:
            del h.port._call
        assert recording.puts_to_users() == 2  # the hire's, the job change's
        await activities.upsert_resource(request)
        assert recording.puts_to_users() == 2
        assert await h.port.get_resource(worker_id) == resource(
            worker_id, role="Manager", practice="Data"
        )
