"""`WorkdayHcm` against Workday's published worker views (tests/fixtures/vendors/workday,
sources in its MANIFEST.md), served over `httpx.MockTransport`.

Workday's published `/workers` views carry no hire date, cost center or termination (see
`connectors/hcm/mapping.py`): a worker read from them alone is an `UnmappableRecord` naming
what is missing, never a bare `KeyError`. Workers that carry the employment fields (built from
Workday's documented Get_Workers field list, marked `_built` in the manifest) map to the
canonical worker, whichever published view they extend."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.hcm import WorkdayHcm, WorkerEventType
from contracts.errors import UnmappableRecord
from contracts.settings import SystemSettings
from contracts.systems import System
from contracts.v1 import WorkerStatus
from tests._shapes import FIXTURES, load_fixture

WORKERS = "/ccx/api/v1/acme/workers"
NOON = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


def published(name: str) -> bytes:
    return (FIXTURES / "workday" / name).read_bytes()


def fixture(name: str) -> Any:
    return load_fixture("workday", name)


@dataclass
class Vendor:
    """A scripted Workday tenant: `answers[path]` is the body for a GET of that path."""

    answers: dict[str, bytes] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = self.answers.get(request.url.path)
        if body is None:
            return httpx.Response(404, json={"error": "Resource not found", "errors": []})
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})


@pytest.fixture
def vendor() -> Vendor:
    return Vendor()


@pytest.fixture
async def hcm(vendor: Vendor) -> AsyncIterator[WorkdayHcm]:
    settings = SystemSettings(
        base_url="https://wd2-impl-services1.workday.com",
        tenant="acme",
        auth="bearer",
        token=SecretStr("wd-token"),
        retry_budget_s=0.2,
    )
    async with WorkdayHcm(
        settings, transport=httpx.MockTransport(vendor), backoff_base_s=0.001
    ) as client:
        yield client


def dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


# --------------------------------------------------------------------------- published views


async def test_the_published_common_view_is_unmappable_not_a_crash(
    hcm: WorkdayHcm, vendor: Vendor
) -> None:
    vendor.answers[WORKERS] = published("workers_list.json")
    with pytest.raises(UnmappableRecord) as caught:
        await hcm.list_workers()
    error = caught.value
    assert (error.record, error.record_id, error.system) == ("Worker", "1", System.HCM)
    assert error.field == "workerId"
    for missing in ("workerId", "workerStatus.hireDate", "costCenter.id"):
        assert missing in str(error)
    assert len(vendor.requests) == 1  # `total: 3`, three records: one page


async def test_the_published_staffing_view_lacks_the_employment_fields(
    hcm: WorkdayHcm, vendor: Vendor
) -> None:
    vendor.answers[WORKERS] = published("staffing_workers_list.json")
    with pytest.raises(UnmappableRecord) as caught:
        await hcm.list_workers()
    # It has the Employee ID (`workerId`), not the hire date nor the cost center.
    assert caught.value.field == "workerStatus.hireDate"
    assert "no workerStatus.hireDate, costCenter.id:" in str(caught.value)
    # `total: 0` beside three records (as published): a short page ends the paging.
    assert len(vendor.requests) == 1


async def test_a_published_worker_read_by_id_is_unmappable(hcm: WorkdayHcm, vendor: Vendor) -> None:
    vendor.answers[f"{WORKERS}/Employee_ID=1"] = dumps(fixture("workers_list.json")["data"][0])
    with pytest.raises(UnmappableRecord):
        await hcm.get_worker("1")
    with pytest.raises(UnmappableRecord):
        await hcm.worker_active_on("1", date(2025, 6, 15))


# --------------------------------------------------------------------------- built workers


async def test_get_worker_from_the_common_view_with_employment_fields(
    hcm: WorkdayHcm, vendor: Vendor
) -> None:
    vendor.answers[f"{WORKERS}/Employee_ID=21001"] = published("worker_active_built.json")
    worker = await hcm.get_worker("21001")
    assert (worker.external_id, worker.name, worker.email) == (
        "21001",
        "Priya Raman",
        "priya.raman@example.com",
    )
    assert (worker.status, worker.hire_date, worker.cost_center) == (
        WorkerStatus.ACTIVE,
        date(2021, 3, 15),
        "CC-120",
    )
    assert (worker.location, worker.role) == ("Seattle", "Senior Consultant")
    assert worker.termination_date is None and worker.last_day_worked is None
    assert worker.updated_at == datetime(2025, 6, 12, 9, 0, tzinfo=UTC)
    assert worker.source_version == "2025-06-12T09:00:00.000Z"
    assert await hcm.worker_active_on("21001", date(2025, 6, 15))
    assert not await hcm.worker_active_on("21001", date(2021, 3, 14))


async def test_get_worker_from_the_staffing_view_with_a_termination(
    hcm: WorkdayHcm, vendor: Vendor
) -> None:
    vendor.answers[f"{WORKERS}/Employee_ID=21017"] = published("worker_terminated_built.json")
    worker = await hcm.get_worker("21017")
    assert (worker.external_id, worker.name) == ("21017", "Tomasz Nowak")
    # The staffing view nests job data under `primaryJob`.
    assert (worker.role, worker.location) == ("Consultant", "Warsaw")
    assert worker.email is None  # `person.email` is not the work email: not read
    assert worker.status is WorkerStatus.TERMINATED
    assert (worker.hire_date, worker.termination_date, worker.last_day_worked) == (
        date(2022, 9, 1),
        date(2025, 5, 31),
        date(2025, 5, 30),
    )
    assert worker.updated_at == datetime(2025, 5, 20, 13, 45, 10, 250000, tzinfo=UTC)
    assert await hcm.worker_active_on("21017", date(2025, 5, 30))
    assert not await hcm.worker_active_on("21017", date(2025, 5, 31))


async def test_changed_workers_reads_the_window(hcm: WorkdayHcm, vendor: Vendor) -> None:
    body = fixture("workers_window_built.json")
    # The transaction log holds every business process; pssync acts on four of them.
    body["data"][0]["events"].append(
        {
            "id": "f00dfeed00000000000000000000beef",
            "type": "changeJob",
            "descriptor": "Change Job",
            "effectiveDate": "2025-06-16",
            "entryMoment": "2025-06-15T10:45:00.000Z",
        }
    )
    vendor.answers[WORKERS] = dumps(body)
    [change] = await hcm.changed_workers(datetime(2025, 6, 15, 10, tzinfo=UTC), NOON)
    assert change.event_type is WorkerEventType.TERMINATE
    assert change.event_id == "e1b2c3d4f5a6478899aabbccddeeff00"
    assert (change.effective_date, change.termination_date, change.last_day_worked) == (
        date(2025, 7, 31),
        date(2025, 7, 31),
        date(2025, 7, 29),
    )
    assert change.entry_moment == datetime(2025, 6, 15, 10, 30, tzinfo=UTC)
    assert change.worker.external_id == "21001"
    assert change.worker.status is WorkerStatus.ACTIVE  # future-dated: still working
    params = vendor.requests[0].url.params
    assert (params["updatedFrom"], params["updatedThrough"]) == (
        "2025-06-15T10:00:00Z",
        "2025-06-15T12:00:00Z",
    )


async def test_unknown_and_missing_optional_fields_do_not_break_the_read(
    hcm: WorkdayHcm, vendor: Vendor
) -> None:
    record = fixture("worker_active_built.json")
    for name in (
        "href",
        "businessTitle",
        "primarySupervisoryOrganization",
        "primaryWorkEmail",
        "primaryWorkPhone",
        "isManager",
        "workerType",
        "jobProfile",
        "location",
        "lastUpdated",
    ):
        del record[name]
    for name in ("active", "onLeave", "terminated", "terminationDate", "originalHireDate"):
        del record["workerStatus"][name]
    record["preferredName"] = {"firstName": "Priya", "nested": [1, None]}
    record["workerStatus"]["retired"] = False
    record["location"] = "not a reference"  # an unexpected shape for an optional field
    vendor.answers[f"{WORKERS}/Employee_ID=21001"] = dumps(record)
    worker = await hcm.get_worker("21001")
    assert (worker.email, worker.role, worker.location, worker.updated_at) == (
        None,
        None,
        None,
        None,
    )
    assert (worker.status, worker.hire_date, worker.cost_center) == (
        WorkerStatus.ACTIVE,
        date(2021, 3, 15),
        "CC-120",
    )


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(record: dict[str, Any]) -> None:
        for key in path[:-1]:
            record = record[key]
        record[path[-1]] = value

    return mutate


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda record: record.pop(name)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_drop("descriptor"), "descriptor"),
        (_drop("costCenter"), "costCenter.id"),
        (_set(("workerStatus", "hireDate"), "15/03/2021"), None),
        (_set(("workerStatus", "hireDate"), 20210315), None),
        (_set(("workerStatus",), ["active"]), "workerStatus.hireDate"),
        (_set(("costCenter",), "CC-120"), "costCenter.id"),
        (_set(("lastUpdated",), "yesterday"), None),
        (_set(("lastUpdated",), "2025-06-12T09:00:00"), None),  # no offset
        (_set(("workerStatus", "terminationDate"), "2020-01-01"), None),  # before hire
        (_set(("primaryWorkEmail",), {"address": "x"}), "email"),
    ],
)
async def test_a_malformed_worker_is_unmappable(
    hcm: WorkdayHcm,
    vendor: Vendor,
    mutate: Callable[[dict[str, Any]], None],
    field: str | None,
) -> None:
    record = fixture("worker_active_built.json")
    mutate(record)
    vendor.answers[f"{WORKERS}/Employee_ID=21001"] = dumps(record)
    with pytest.raises(UnmappableRecord) as caught:
        await hcm.get_worker("21001")
    error = caught.value
    assert (error.record, error.record_id, error.system) == (
        "Worker",
        "3aa5550b7fe348b98d7b5741afc65534",
        System.HCM,
    )
    if field is not None:
        assert error.field == field


@pytest.mark.parametrize(
    "body",
    [
        b'[{"id": "1"}]',  # not the `{data, total}` envelope
        b'{"data": {"id": "1"}, "total": 1}',
        b'{"data": [{"id": "1"}], "total": "many"}',
        b"<html>maintenance</html>",
    ],
)
async def test_a_malformed_list_is_unmappable(hcm: WorkdayHcm, vendor: Vendor, body: bytes) -> None:
    vendor.answers[WORKERS] = body
    with pytest.raises(UnmappableRecord):
        await hcm.list_workers()


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_set(("effectiveDate",), "31.07.2025"), None),
        (_set(("entryMoment",), None), None),
        (_drop("type"), "type"),
        (_drop("id"), "id"),
    ],
)
async def test_a_malformed_event_is_unmappable(
    hcm: WorkdayHcm,
    vendor: Vendor,
    mutate: Callable[[dict[str, Any]], None],
    field: str | None,
) -> None:
    body = fixture("workers_window_built.json")
    mutate(body["data"][0]["events"][0])
    vendor.answers[WORKERS] = dumps(body)
    with pytest.raises(UnmappableRecord) as caught:
        await hcm.changed_workers(datetime(2025, 6, 15, 10, tzinfo=UTC), NOON)
    assert caught.value.record == "Worker"
    if field is not None:
        assert caught.value.field == field
