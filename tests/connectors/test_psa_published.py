"""`KantataPsa` against Kantata's published payloads (tests/fixtures/vendors/kantata, sources in
its MANIFEST.md), served over `httpx.MockTransport`: every public read of projects, stories,
time, expenses, assignments, external references and the worker <-> user map.

The recorded responses are from 2013 (no `meta`, money as `*_in_cents` that may be null beside a
formatted string); the `_built` ones follow the published schemas (a workspace's `status`
object, an assignment with its `assignee` and `story` included, custom field values). Each
read gives the canonical record a user cares about, and a record missing a field the mapping
needs raises `UnmappableRecord` naming the record and the field, never a bare exception."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
import pytest

from connectors.psa import KantataPsa
from contracts.errors import AuthError, BusinessRuleViolation, NotFoundError, UnmappableRecord
from contracts.money import Money
from contracts.v1 import AssignmentKind, ProjectStatus, WbsNodeType
from tests._shapes import load_fixture
from tests.connectors._psa_fixtures import EID, psa_settings

API = "/api/v1"
WS = "3457635"
"""The recorded workspace (workspace_update_2013.json, workspace_with_status_built.json)."""
ENTRY_USER, ASSIGNEE = "3711195", "3847595"
"""The users of the recorded time entry and expense, and of the built assignment."""


def fixture(name: str) -> Any:
    return load_fixture("kantata", name)


def only(body: dict[str, Any]) -> dict[str, Any]:
    """The one record a fixture's envelope lists."""
    first = body["results"][0]
    record: dict[str, Any] = body[first["key"]][first["id"]]
    return record


def references(*rows: tuple[str, str, str, str]) -> dict[str, Any]:
    """A list of external references in the published shape (external_reference_create_or_
    update.json), one per (subject_type, subject_id, service_model, service_model_ref)."""
    template = only(fixture("external_reference_create_or_update.json"))
    refs: dict[str, Any] = {}
    for n, (subject_type, subject_id, model, ref) in enumerate(rows, start=1):
        refs[str(n)] = {
            **template,
            "id": str(n),
            "subject_type": subject_type,
            "subject_id": subject_id,
            "service_name": "pssync",
            "service_model": model,
            "service_model_ref": ref,
        }
    return {
        "count": len(refs),
        "results": [{"key": "external_references", "id": i} for i in refs],
        "external_references": refs,
    }


WORKERS = references(
    ("User", ENTRY_USER, "hcm_worker", "W-100"), ("User", ASSIGNEE, "hcm_worker", "W-200")
)


@dataclass
class Vendor:
    """A scripted Kantata account: `answers[path]` is the status and body of a request to that
    path (`workspaces.json`, ... under /api/v1), the same for every method and query."""

    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def answer(self, path: str, body: Any, status: int = 200) -> None:
        self.answers[f"{API}/{path}"] = (status, body)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body = self.answers.get(
            request.url.path, (404, fixture("error_not_found_404.json"))
        )
        if callable(body):
            body = body(request)
        return httpx.Response(status, content=json.dumps(body).encode())

    def params(self, path: str) -> list[dict[str, str]]:
        """The query of each request made to `path`."""
        return [dict(r.url.params) for r in self.requests if r.url.path == f"{API}/{path}"]


@pytest.fixture
def vendor() -> Vendor:
    v = Vendor()
    v.answer("external_references.json", WORKERS)
    return v


@pytest.fixture
async def psa(vendor: Vendor) -> AsyncIterator[KantataPsa]:
    settings = psa_settings(
        "https://api.mavenlink.test", auth="bearer", token="kantata-token", retry_budget_s=0.2
    )
    client = KantataPsa(settings, transport=httpx.MockTransport(vendor), backoff_base_s=0.001)
    try:
        yield client
    finally:
        await client.aclose()


def edited(name: str, **changes: Any) -> dict[str, Any]:
    """A fixture with its (first) record changed: `None` values remove the key."""
    body: dict[str, Any] = copy.deepcopy(fixture(name))
    record = only(body)
    for key, value in changes.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return body


def assert_unmappable(
    exc: pytest.ExceptionInfo[UnmappableRecord], record: str, **what: Any
) -> None:
    err = exc.value
    assert err.code == "UNMAPPABLE_RECORD" and err.system == "PSA"
    assert err.record == record
    for name, value in what.items():
        assert getattr(err, name) == value, (name, getattr(err, name))


# --------------------------------------------------------------------------- projects


async def test_project_reads_the_status_object_and_the_published_fields(
    vendor: Vendor, psa: KantataPsa
) -> None:
    vendor.answer(f"workspaces/{WS}.json", fixture("workspace_with_status_built.json"))
    vendor.answer(
        "external_references.json",
        references(("Workspace", WS, "enterprise_project", EID)),
    )
    project = await psa.get_project(WS)
    assert project.status is ProjectStatus.CLOSED  # {"color": "blue", "message": "Completed"}
    assert project.enterprise_id == EID and project.name == "Random New Workspace"
    assert (project.start_date, project.end_date) == (date(2013, 8, 1), date(2013, 9, 30))
    assert project.contract_value == Money("0", "USD")  # "price": "TBD", price_in_cents null
    assert project.rate_card_id == "12"
    include = vendor.params(f"workspaces/{WS}.json")[0]["include"].split(",")
    assert {"stories", "billing_milestones", "custom_field_values"} <= set(include)


@pytest.mark.parametrize(
    ("status", "archived", "expected"),
    [
        ({"color": "green", "key": 305, "message": "In Progress"}, False, ProjectStatus.ACTIVE),
        ({"color": "red", "key": 520, "message": "Cancelled"}, False, ProjectStatus.CLOSED),
        ({"color": "gray", "key": 100, "message": "Not Started"}, True, ProjectStatus.ARCHIVED),
        (None, False, ProjectStatus.ACTIVE),
        ("completed", False, ProjectStatus.CLOSED),  # the twin's string
    ],
)
async def test_project_status_from_the_object_or_the_twins_string(
    vendor: Vendor, psa: KantataPsa, status: Any, archived: bool, expected: ProjectStatus
) -> None:
    body = edited("workspace_with_status_built.json", archived=archived)
    only(body)["status"] = status
    vendor.answer(f"workspaces/{WS}.json", body)
    assert (await psa.get_project(WS)).status is expected


async def test_recorded_workspace_without_status_or_dates(vendor: Vendor, psa: KantataPsa) -> None:
    vendor.answer(f"workspaces/{WS}.json", fixture("workspace_update_2013.json"))
    project = await psa.get_project(WS)
    assert project.status is ProjectStatus.ACTIVE and project.enterprise_id is None
    assert project.start_date == date(2013, 7, 29)  # created_at stands in; no start_date
    assert project.end_date is None  # "effective_due_date": "" and no due_date


async def test_money_from_cents_else_from_the_formatted_amount(
    vendor: Vendor, psa: KantataPsa
) -> None:
    vendor.answer(f"workspaces/{WS}.json", edited("workspace_update_2013.json", price="$20,000"))
    assert (await psa.get_project(WS)).contract_value == Money("20000.00", "USD")
    both = edited("workspace_update_2013.json", price="$1", price_in_cents=2_500_050)
    vendor.answer(f"workspaces/{WS}.json", both)
    assert (await psa.get_project(WS)).contract_value == Money("25000.50", "USD")
    assert await psa.get_project_budget(WS) == Money("25000.50", "USD")  # Kantata's budget
    vendor.answer(f"workspaces/{WS}.json", fixture("workspace_update_2013.json"))
    assert await psa.get_project_budget(WS) is None  # budgeted, but the price is "TBD"


async def test_custom_field_values_hold_what_kantata_has_no_field_for(
    vendor: Vendor, psa: KantataPsa
) -> None:
    body = fixture("workspace_with_status_built.json")
    values = fixture("custom_field_values_built.json")
    only(body)["custom_field_value_ids"] = [r["id"] for r in values["results"]]
    body["custom_field_values"] = values["custom_field_values"]
    vendor.answer(f"workspaces/{WS}.json", body)
    project = await psa.get_project(WS)
    assert (project.cost_center, project.practice) == ("CC-100", "Data")
    assert project.customer_id == "unassigned"  # no "Customer ID" value on this workspace


async def test_stories_are_the_wbs(vendor: Vendor, psa: KantataPsa) -> None:
    body = fixture("workspace_with_status_built.json")
    story = only(fixture("story_update_2013.json"))
    only(body)["story_ids"] = [story["id"]]
    body["stories"] = {story["id"]: story}
    vendor.answer(f"workspaces/{WS}.json", body)
    (node,) = (await psa.get_project(WS)).wbs
    assert (node.code, node.name, node.node_type) == ("26593185", "New Task", WbsNodeType.MILESTONE)
    assert node.budget == Money("3.00", "USD") and node.estimated_minutes == 300


async def test_workspace_listing_a_story_the_response_lacks_is_unmappable(
    vendor: Vendor, psa: KantataPsa
) -> None:
    body = fixture("workspace_with_status_built.json")
    only(body)["story_ids"] = ["26593185"]
    vendor.answer(f"workspaces/{WS}.json", body)
    with pytest.raises(UnmappableRecord) as exc:
        await psa.get_project(WS)
    assert_unmappable(exc, "workspace", record_id=WS, field="story_ids")


async def test_malformed_workspace_is_unmappable(vendor: Vendor, psa: KantataPsa) -> None:
    vendor.answer(f"workspaces/{WS}.json", edited("workspace_with_status_built.json", title=None))
    with pytest.raises(UnmappableRecord) as no_title:
        await psa.get_project(WS)
    assert_unmappable(no_title, "workspace", record_id=WS, field="title")
    vendor.answer(f"workspaces/{WS}.json", edited("workspace_with_status_built.json", status=7))
    with pytest.raises(UnmappableRecord) as odd_status:
        await psa.get_project(WS)
    assert_unmappable(odd_status, "workspace", record_id=WS, field="status")


async def test_find_project_by_reference_then_by_marker(vendor: Vendor, psa: KantataPsa) -> None:
    vendor.answer(
        "external_references.json", references(("Workspace", WS, "enterprise_project", EID))
    )
    assert await psa.find_project_by_enterprise_id(EID) == WS
    vendor.answer("external_references.json", references())
    listed = fixture("workspaces_list_with_includes_2013.json")
    vendor.answer("workspaces.json", listed)
    assert await psa.find_project_by_enterprise_id(EID) is None
    marked = copy.deepcopy(listed)
    marked["workspaces"]["3403465"]["description"] = f"Provisioned by pssync.\npssync:project:{EID}"
    vendor.answer("workspaces.json", marked)
    assert await psa.find_project_by_enterprise_id(EID) == "3403465"


async def test_lists_without_meta_are_paged_by_count(vendor: Vendor, psa: KantataPsa) -> None:
    """The recorded envelope has `count` and no `meta`: a count beyond one page reads on."""
    first = fixture("workspaces_list_with_includes_2013.json")
    first["count"] = 201
    second = edited("workspace_update_2013.json", description=f"pssync:project:{EID}")
    second["count"] = 201
    vendor.answer("external_references.json", references())
    vendor.answer("workspaces.json", lambda r: second if r.url.params["page"] == "2" else first)
    assert await psa.find_project_by_enterprise_id(EID) == WS
    assert [p["page"] for p in vendor.params("workspaces.json")] == ["1", "2"]


async def test_malformed_external_reference_is_unmappable(vendor: Vendor, psa: KantataPsa) -> None:
    refs = references(("Workspace", WS, "enterprise_project", EID))
    del refs["external_references"]["1"]["subject_id"]
    vendor.answer("external_references.json", refs)
    with pytest.raises(UnmappableRecord) as exc:
        await psa.find_project_by_enterprise_id(EID)
    assert_unmappable(exc, "external reference", record_id="1", field="subject_id")


async def test_billing_milestone_missing_its_title_is_unmappable(
    vendor: Vendor, psa: KantataPsa
) -> None:
    """No published billing milestone exists (see the manifest): a record without `title`."""
    vendor.answer(
        "billing_milestones.json",
        {
            "count": 1,
            "results": [{"key": "billing_milestones", "id": "5"}],
            "billing_milestones": {"5": {"id": "5", "workspace_id": WS, "state": "planned"}},
        },
    )
    with pytest.raises(UnmappableRecord) as exc:
        await psa.list_milestones(WS)
    assert_unmappable(exc, "billing milestone", record_id="5", field="title")


# --------------------------------------------------------------------------- time and expenses


async def test_approved_time_maps_worker_minutes_and_rate(vendor: Vendor, psa: KantataPsa) -> None:
    vendor.answer("time_entries.json", fixture("time_entry_update_2013.json"))
    (entry,) = [e async for e in psa.list_approved_time()]
    assert (entry.external_id, entry.worker_id, entry.project_id) == ("8590085", "W-100", WS)
    assert (entry.date_performed, entry.minutes) == (date(2013, 7, 31), 75)
    assert entry.bill_rate == Money("25.00", "USD") and entry.task_id is None
    (again,) = await psa.get_time_entries(["8590085"])
    assert again == entry
    assert vendor.params("time_entries.json")[-1]["only"] == "8590085"


async def test_time_of_an_unmapped_user_names_the_user(vendor: Vendor, psa: KantataPsa) -> None:
    vendor.answer("external_references.json", references())
    vendor.answer("time_entries.json", fixture("time_entry_update_2013.json"))
    (entry,) = await psa.get_time_entries(["8590085"])
    assert entry.worker_id == f"psa-user:{ENTRY_USER}"


@pytest.mark.parametrize(
    "missing", ["time_in_minutes", "date_performed", "workspace_id", "user_id"]
)
async def test_time_entry_missing_a_field_is_unmappable(
    vendor: Vendor, psa: KantataPsa, missing: str
) -> None:
    vendor.answer("time_entries.json", edited("time_entry_update_2013.json", **{missing: None}))
    with pytest.raises(UnmappableRecord) as exc:
        await psa.get_time_entries(["8590085"])
    assert_unmappable(exc, "time entry", record_id="8590085", field=missing)


async def test_worker_time_goes_through_the_worker_user_map(
    vendor: Vendor, psa: KantataPsa
) -> None:
    vendor.answer("time_entries.json", fixture("time_entry_update_2013.json"))
    (entry,) = await psa.list_worker_time("W-100", approved=True)
    assert entry.worker_id == "W-100" and entry.minutes == 75
    assert vendor.params("time_entries.json")[0]["user_id"] == ENTRY_USER
    assert await psa.list_worker_time("W-NOBODY") == []


async def test_expenses_map_amount_and_worker(vendor: Vendor, psa: KantataPsa) -> None:
    vendor.answer("expenses.json", fixture("expense_update_2013.json"))
    (expense,) = await psa.get_expenses(["8509865"])
    assert (expense.worker_id, expense.project_id) == ("W-100", WS)
    assert expense.amount == Money("5.00", "USD") and expense.billable is False
    assert (expense.date_incurred, expense.category) == (date(2013, 7, 29), "Random Category X")
    # Kantata sends `user_id` and `workspace_id` only when they are included.
    assert set(vendor.params("expenses.json")[0]["include"].split(",")) == {"user", "workspace"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"user_id": None}, "user_id"),
        ({"date": None}, "date"),
        ({"workspace_id": None}, "workspace_id"),
    ],
)
async def test_expense_missing_a_field_is_unmappable(
    vendor: Vendor, psa: KantataPsa, change: dict[str, Any], field: str
) -> None:
    vendor.answer("expenses.json", edited("expense_update_2013.json", **change))
    with pytest.raises(UnmappableRecord) as exc:
        await psa.get_expenses(["8509865"])
    assert_unmappable(exc, "expense", record_id="8509865", field=field)


async def test_expense_with_an_amount_that_is_not_a_number_is_unmappable(
    vendor: Vendor, psa: KantataPsa
) -> None:
    vendor.answer("expenses.json", edited("expense_update_2013.json", amount_in_cents="5 USD"))
    with pytest.raises(UnmappableRecord) as exc:
        await psa.get_expenses(["8509865"])
    assert_unmappable(exc, "expense", record_id="8509865")


# --------------------------------------------------------------------------- assignments


async def test_assignments_read_assignee_minutes_and_the_storys_project(
    vendor: Vendor, psa: KantataPsa
) -> None:
    vendor.answer("assignments.json", fixture("assignments_with_includes_built.json"))
    named, unnamed = await psa.list_assignments(project_id="3403465")
    assert (named.external_id, named.kind, named.worker_id) == (
        "41587125",
        AssignmentKind.NAMED,
        "W-200",
    )
    assert named.allocated_minutes == 480  # allocated_minutes, not estimated_minutes (600)
    assert named.project_id == "3403465"  # the story's workspace
    assert (named.start_date, named.end_date) == (date(2013, 8, 14), date(2013, 8, 23))
    assert named.role == "psa-resource:1127435"  # Kantata's role is the resource's
    assert unnamed.kind is AssignmentKind.ROLE_DEMAND and unnamed.worker_id is None
    assert unnamed.allocated_minutes == 240  # nothing scheduled yet: the estimate
    (query,) = vendor.params("assignments.json")
    assert set(query["include"].split(",")) == {"assignee", "story"}
    assert query["workspace_id"] == "3403465"


async def test_assignments_of_a_worker_filter_by_assignee(vendor: Vendor, psa: KantataPsa) -> None:
    vendor.answer("assignments.json", fixture("assignments_with_includes_built.json"))
    await psa.list_assignments(worker_id="W-200")
    assert vendor.params("assignments.json")[0]["assignee_id"] == ASSIGNEE
    assert await psa.list_assignments(worker_id="W-NOBODY") == []


async def test_one_assignment_by_id(vendor: Vendor, psa: KantataPsa) -> None:
    body = fixture("assignments_with_includes_built.json")
    body["results"] = body["results"][:1]
    vendor.answer("assignments/41587125.json", body)
    assignment = await psa.get_assignment("41587125")
    assert (assignment.worker_id, assignment.allocated_minutes) == ("W-200", 480)
    assert vendor.params("assignments/41587125.json")[0]["include"] == "assignee,story"


async def test_assignment_without_its_story_is_unmappable(vendor: Vendor, psa: KantataPsa) -> None:
    body = fixture("assignments_with_includes_built.json")
    del body["stories"]
    vendor.answer("assignments.json", body)
    with pytest.raises(UnmappableRecord) as exc:
        await psa.list_assignments(project_id="3403465")
    assert_unmappable(exc, "assignment", record_id="41587125", field="workspace_id")


async def test_a_bare_assignment_is_unmappable_not_a_key_error(
    vendor: Vendor, psa: KantataPsa
) -> None:
    vendor.answer(
        "assignments/9.json",
        {"count": 1, "results": [{"key": "assignments", "id": "9"}], "assignments": {"9": {}}},
    )
    with pytest.raises(UnmappableRecord) as exc:
        await psa.get_assignment("9")
    assert exc.value.record == "assignment" and exc.value.field == "workspace_id"


async def test_a_response_naming_records_it_lacks_is_unmappable(
    vendor: Vendor, psa: KantataPsa
) -> None:
    vendor.answer(
        "time_entries.json", {"count": 1, "results": [{"key": "time_entries", "id": "1"}]}
    )
    with pytest.raises(UnmappableRecord) as exc:
        await psa.get_time_entries(["1"])
    assert exc.value.record == "response" and exc.value.field == "time_entries"


# --------------------------------------------------------------------------- errors


async def test_published_error_bodies_are_classified(vendor: Vendor, psa: KantataPsa) -> None:
    vendor.answer("time_entries/8571785.json", fixture("error_not_found_404.json"), status=404)
    with pytest.raises(NotFoundError):
        await psa.get_time_entry("8571785")
    vendor.answer("time_entries/1.json", fixture("error_oauth_401.json"), status=401)
    with pytest.raises(AuthError):
        await psa.get_time_entry("1")
    # The syntax error's status is not published; as a 400 it is the caller's to fix.
    vendor.answer("time_entries/2.json", fixture("error_syntax_missing_params.json"), status=400)
    with pytest.raises(BusinessRuleViolation) as syntax:
        await psa.get_time_entry("2")
    assert syntax.value.code == "SYNTAX" and "Missing required parameters" in syntax.value.detail
    assert len(vendor.params("time_entries/2.json")) == 1  # not retried
