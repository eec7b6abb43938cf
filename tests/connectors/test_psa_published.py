"""`KantataPsa` against Kantata's published payloads (tests/fixtures/vendors/kantata, sources in
its MANIFEST.md), served over `httpx.MockTransport`: every public read of projects, stories,
time, expenses, assignments, external references and the worker <-> user map.

The recorded responses are from 2013 (no `meta`, money as `*_in_cents` that may be null beside a
formatted string); the `_built` ones follow the published schemas (a workspace's `status`
object, an assignment with its `assignee` and `story` included, custom fields and their
values). Each read gives the canonical record a user cares about, and a record missing a field
the mapping needs raises `UnmappableRecord` naming the record and the field, never a bare
exception. A project shell's workspace facts are written as custom field values in the body
Kantata's reference publishes (`custom_field_values_bulk_create_request.json`)."""

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
from tests._shapes import assert_same_shape, load_fixture
from tests.connectors._psa_fixtures import EID, EID2, make_project, psa_settings

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
            if isinstance(body, tuple):  # (status, body)
                status, body = body
        return httpx.Response(status, content=json.dumps(body).encode())

    def params(self, path: str) -> list[dict[str, str]]:
        """The query of each request made to `path`."""
        return [dict(r.url.params) for r in self.requests if r.url.path == f"{API}/{path}"]

    def sent(self, method: str, path: str) -> list[Any]:
        """The JSON body of each `method` request made to `path`."""
        return [
            json.loads(r.content)
            for r in self.requests
            if r.method == method and r.url.path == f"{API}/{path}"
        ]


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


async def test_custom_field_values_win_over_the_twins_legacy_columns(
    vendor: Vendor, psa: KantataPsa
) -> None:
    body = edited("workspace_with_status_built.json", cost_center="CC-OLD", practice="Old")
    values = fixture("custom_field_values_built.json")
    only(body)["custom_field_value_ids"] = [r["id"] for r in values["results"]]
    body["custom_field_values"] = values["custom_field_values"]
    vendor.answer(f"workspaces/{WS}.json", body)
    assert (await psa.get_project(WS)).cost_center == "CC-100"
    # A workspace the twin made before it stored values: the legacy column is read.
    vendor.answer(
        f"workspaces/{WS}.json", edited("workspace_with_status_built.json", practice="Old")
    )
    assert (await psa.get_project(WS)).practice == "Old"


# --------------------------------------------------------------------------- project shell

EMPTY: dict[str, Any] = {"count": 0, "results": []}
FIELD_IDS = {
    "Customer ID": 4101,
    "Opportunity ID": 4102,
    "Billing Rule": 4103,
    "Cost Center": 4104,
    "Practice": 4105,
    "Delivery Manager": 4106,
}
"""The Workspace custom fields of custom_fields_with_set_built.json."""


def ref_statuses(vendor: Vendor) -> list[str]:
    """The status of each external reference pssync wrote, in order."""
    sent = vendor.sent("POST", "external_references/create_or_update")
    return [body["external_reference"]["status"] for body in sent]


def shell_only() -> Any:
    """A project with no WBS, milestones or rate card: a workspace and its facts."""
    return make_project(rate_card_id=None).model_copy(update={"wbs": [], "milestones": []})


def provisioning(vendor: Vendor, custom_fields: Any | None = None) -> None:
    """Kantata's answers to a first `create_project_shell`: no reference or workspace yet,
    the workspace created is the recorded one (`WS`), the account's custom fields as given."""
    vendor.answer("external_references.json", references())
    vendor.answer("external_references/create_or_update", references())
    workspace = fixture("workspace_update_2013.json")
    vendor.answer("workspaces.json", lambda r: workspace if r.method == "POST" else EMPTY)
    vendor.answer(
        "custom_fields.json", custom_fields or fixture("custom_fields_with_set_built.json")
    )
    vendor.answer("custom_field_values.json", fixture("custom_field_values_built.json"))
    vendor.answer("stories.json", EMPTY)
    vendor.answer("billing_milestones.json", EMPTY)


async def test_project_shell_writes_the_facts_as_custom_field_values(
    vendor: Vendor, psa: KantataPsa
) -> None:
    provisioning(vendor)
    assert await psa.create_project_shell(shell_only(), enterprise_id=EID) == WS

    (created,) = vendor.sent("POST", "workspaces.json")
    assert set(created["workspace"]) == {
        "title", "description", "start_date", "due_date", "price_in_cents", "budgeted",
        "budget_in_cents", "currency", "rate_card_id", "change_orders_enabled",
    }  # fmt: skip
    (written,) = vendor.sent("POST", "custom_field_values.json")
    assert_same_shape(written, fixture("custom_field_values_bulk_create_request.json"))
    assert {(v["subject_type"], v["subject_id"]) for v in written["custom_field_values"]} == {
        ("Workspace", int(WS))
    }
    assert {(v["custom_field_id"], v["value"]) for v in written["custom_field_values"]} == {
        (FIELD_IDS["Customer ID"], "ACC-1"),
        (FIELD_IDS["Opportunity ID"], "OPP-1"),
        (FIELD_IDS["Billing Rule"], "Milestone"),
        (FIELD_IDS["Cost Center"], "CC-100"),
        (FIELD_IDS["Practice"], "Data"),
        (FIELD_IDS["Delivery Manager"], "dana.manager"),
    }
    assert vendor.params("custom_fields.json")[0]["include"] == "custom_field_set"
    paths = [r.url.path.removeprefix(API) for r in vendor.requests]
    assert paths.index("/custom_fields.json") < paths.index("/workspaces.json")
    statuses = ref_statuses(vendor)
    assert statuses == ["pending", "successful"]

    # The fields are looked up once per client; a fact the project lacks is not sent.
    no_practice = shell_only().model_copy(update={"practice": None})
    await psa.create_project_shell(no_practice, enterprise_id=EID2)
    assert len(vendor.params("custom_fields.json")) == 1
    second = vendor.sent("POST", "custom_field_values.json")[1]["custom_field_values"]
    assert FIELD_IDS["Practice"] not in {v["custom_field_id"] for v in second}


def _without(body: Any, name: str) -> None:
    fields = body["custom_fields"]
    ident = next(i for i, f in fields.items() if f["name"] == name)
    del fields[ident]
    body["results"] = [r for r in body["results"] if r["id"] != ident]


def _field(body: Any, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in body["custom_fields"].values() if f["name"] == name)
    return found


def _missing_two(body: Any) -> None:
    _without(body, "Practice")
    _field(body, "Cost Center")["custom_field_set_id"] = "872"  # a task (Story) field


def _twice(body: Any) -> None:
    copy_ = {**_field(body, "Practice"), "id": "4999"}
    body["custom_fields"]["4999"] = copy_
    body["results"].append({"key": "custom_fields", "id": "4999"})


@pytest.mark.parametrize(
    ("edit", "code", "name", "says"),
    [
        (_missing_two, "MISSING_CUSTOM_FIELD", "Cost Center", "'Cost Center', 'Practice'"),
        (
            lambda b: _field(b, "Billing Rule").update(value_type="single"),
            "CUSTOM_FIELD_NOT_TEXT",
            "Billing Rule",
            "'single'",
        ),
        (_twice, "AMBIGUOUS_CUSTOM_FIELD", "Practice", "2 Workspace custom fields"),
    ],
    ids=["missing", "choice field", "twice"],
)
async def test_a_tenant_without_the_custom_fields_is_refused_before_writing(
    vendor: Vendor, psa: KantataPsa, edit: Any, code: str, name: str, says: str
) -> None:
    custom_fields = copy.deepcopy(fixture("custom_fields_with_set_built.json"))
    edit(custom_fields)
    provisioning(vendor, custom_fields)
    with pytest.raises(BusinessRuleViolation) as refused:
        await psa.create_project_shell(shell_only(), enterprise_id=EID)
    assert (refused.value.code, refused.value.field, refused.value.system) == (code, name, "PSA")
    assert says in refused.value.detail
    assert [r.method for r in vendor.requests if r.method != "GET"] == []  # nothing written

    # Once an administrator fixes the fields, the next attempt reads them again.
    vendor.answer("custom_fields.json", fixture("custom_fields_with_set_built.json"))
    assert await psa.create_project_shell(shell_only(), enterprise_id=EID) == WS
    assert len(vendor.params("custom_fields.json")) == 2


async def test_custom_field_values_are_sent_again_after_a_failure_they_override(
    vendor: Vendor, psa: KantataPsa
) -> None:
    """A 5xx (or a lost answer) on the write is retried: Kantata overrides the values, so the
    same body twice leaves one value per field."""
    provisioning(vendor)
    answers = iter([(503, {"errors": [{"type": "system", "message": "down"}]})])
    built = fixture("custom_field_values_built.json")
    vendor.answer("custom_field_values.json", lambda r: next(answers, (200, built)))
    assert await psa.create_project_shell(shell_only(), enterprise_id=EID) == WS
    first, again = vendor.sent("POST", "custom_field_values.json")
    assert first == again


async def test_a_refused_custom_field_value_fails_the_shell_and_is_looked_up_again(
    vendor: Vendor, psa: KantataPsa
) -> None:
    provisioning(vendor)
    refusal = {"errors": [{"type": "validation", "message": "Custom field is invalid"}]}
    vendor.answer("custom_field_values.json", refusal, status=422)
    with pytest.raises(BusinessRuleViolation) as refused:
        await psa.create_project_shell(shell_only(), enterprise_id=EID)
    assert refused.value.code == "VALIDATION"
    statuses = ref_statuses(vendor)
    assert statuses == ["pending", "failed"]
    vendor.answer("custom_field_values.json", fixture("custom_field_values_built.json"))
    await psa.create_project_shell(shell_only(), enterprise_id=EID)
    assert len(vendor.params("custom_fields.json")) == 2  # the cached ids were dropped


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
