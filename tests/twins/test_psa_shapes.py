"""The PSA twin answers in the shape of Kantata's published payloads
(tests/fixtures/vendors/kantata, sources in its MANIFEST.md): every key of the published
record with the same JSON type, values aside.

Kantata keys its records by id (`{"time_entries": {"8590085": {...}}}`); the records are
compared as lists. Beyond the published keys, the twin sends only those listed in `TWIN_ONLY`
(its `meta` paging block, `lock_version`, and the legacy columns that mirror a workspace's
custom field values), so neither side can drift unnoticed. Custom fields and their values are
written and read the documented way (`GET /custom_fields`, `POST /custom_field_values`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sandbox import psa
from tests._servers import serve
from tests._shapes import assert_same_shape, load_fixture

AUTH = {"Authorization": "Bearer dev-static-token"}
API = "/api/v1"

TWIN_ONLY: dict[str, frozenset[str]] = {
    "envelope": frozenset({"meta"}),
    "workspaces": frozenset(
        {"start_date", "due_date", "budget_in_cents", "rate_card_id", "status", "lock_version"}
        | {"cost_center", "practice", "billing_rule", "delivery_manager", "client_ref"}
        | {"opportunity_ref", "target_margin", "closed_for_time_entry", "account_id"}
    ),
    "stories": frozenset({"root_id", "role", "billable"}),
    "time_entries": frozenset(
        {"role", "cost_rate_in_cents", "approved", "approved_at", "is_invoiced", "invoice_id"}
        | {"lock_version"}
    ),
    "expenses": frozenset(
        {"reimbursable", "approved", "approved_at", "invoice_id", "lock_version"}
    ),
    "users": frozenset(
        {"role", "active", "start_date", "time_entry_closed_after", "cost_rate_in_cents"}
        | {"currency", "lock_version", "updated_at"}
    ),
    "assignments": frozenset(
        {"workspace_id", "user_id", "role", "start_date", "end_date", "lock_version"}
    ),
    "external_references": frozenset(
        {"status", "external_status", "external_message", "external_link"}
        | {"created_at", "updated_at"}
    ),
    "custom_fields": frozenset(),
    "custom_field_values": frozenset(),
}
"""Keys the twin sends beyond Kantata's published record, per collection (a story's `billable`
is in the published Story schema, not in the 2013 recording)."""
NO_VALUE_IN_THE_TWIN = frozenset(
    {"creator_id", "start_date", "due_date", "email_address", "headline", "assignee_id"}
    | {"resource_id"}
)
"""Published keys the twin sends as null: it does not model them (a creator, task dates, the
resources of unnamed assignments) or the record has none (an unnamed assignment's assignee)."""


@dataclass
class Twin:
    app: FastAPI
    client: httpx.AsyncClient
    workspace: str
    story: str
    user: int

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(f"{API}/{path}", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def post(self, path: str, wrapper: str, **fields: Any) -> dict[str, Any]:
        response = await self.client.post(f"{API}/{path}", json={wrapper: fields})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
async def twin() -> AsyncIterator[Twin]:
    app = psa.create_app()
    user = psa.add_user(app, full_name="Ada", email_address="ada@example.com", worker_id="W-1")
    card = psa.add_rate_card(
        app, title="Standard", currency="USD", roles=[("Consultant", 15000, date(2024, 1, 1), None)]
    )
    async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        base = Twin(app, client, "", "", user)
        ws = await base.post(
            "workspaces.json",
            "workspace",
            title="Apollo",
            price_in_cents=12_000_000,
            budgeted=True,
            rate_card_id=card,
        )
        wid = ws["results"][0]["id"]
        ids = await custom_field_ids(base)
        written = await write_values(
            base, wid, {ids["Cost Center"]: "CC-100", ids["Practice"]: "Data"}
        )
        assert written.status_code == 200, written.text
        story = await base.post(
            "stories.json", "story", workspace_id=wid, title="Go-live", story_type="milestone"
        )
        yield Twin(app, client, wid, story["results"][0]["id"], user)


async def custom_field_ids(twin: Twin) -> dict[str, int]:
    """The account's Workspace custom fields' ids by name, as pssync finds them."""
    body = await twin.get("custom_fields.json", include="custom_field_set")
    sets = body["custom_field_sets"]
    return {
        f["name"]: int(f["id"])
        for f in body["custom_fields"].values()
        if sets[f["custom_field_set_id"]]["subject_type"] == "Workspace"
    }


async def write_values(
    twin: Twin, workspace: str, values: dict[int, Any], *, subject_type: str = "Workspace"
) -> httpx.Response:
    """`POST /custom_field_values` in the documented bulk shape, one value per field id."""
    body = {
        "custom_field_values": [
            {
                "subject_type": subject_type,
                "subject_id": int(workspace),
                "custom_field_id": field,
                "value": value,
            }
            for field, value in values.items()
        ]
    }
    return await twin.client.post(f"{API}/custom_field_values.json", json=body)


def listed(body: Any) -> Any:
    """A Kantata body with its id-keyed collections as lists (ids differ between examples)."""
    if not isinstance(body, dict):
        return body
    return {
        key: list(value.values())
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values())
        else value
        for key, value in body.items()
    }


def same_shape(twin_body: Any, fixture: str, *collections: str, **options: Any) -> None:
    """The twin's body has the published body's shape; keys of `collections` (and the
    envelope's) may be the twin's own."""
    extra = TWIN_ONLY["envelope"].union(*(TWIN_ONLY[c] for c in collections))
    assert_same_shape(
        listed(twin_body),
        listed(load_fixture("kantata", fixture)),
        extra=options.pop("extra", extra),
        nullable=options.pop("nullable", NO_VALUE_IN_THE_TWIN),
        **options,
    )


async def test_workspace_has_the_recorded_shape(twin: Twin) -> None:
    body = await twin.get(f"workspaces/{twin.workspace}.json")
    same_shape(body, "workspace_update_2013.json", "workspaces")


async def test_workspace_list_has_the_recorded_shape(twin: Twin) -> None:
    """Recorded with `include=primary_counterpart,participants,creator`, which the twin does not
    serve: their ids and the side-loaded `users` are left out of the comparison."""
    body = await twin.get("workspaces.json")
    same_shape(
        body,
        "workspaces_list_with_includes_2013.json",
        "workspaces",
        missing={"primary_counterpart_id", "participant_ids", "users"},
    )


async def test_workspace_has_the_schema_shape_with_its_status_object(twin: Twin) -> None:
    body = await twin.get(f"workspaces/{twin.workspace}.json")
    assert body["workspaces"][twin.workspace]["status"]["message"] == "In Progress"
    same_shape(body, "workspace_with_status_built.json", "workspaces")


async def test_custom_field_values_have_the_schema_shape(twin: Twin) -> None:
    body = await twin.get(f"workspaces/{twin.workspace}.json", include="custom_field_values")
    workspace = body["workspaces"][twin.workspace]
    values = [body["custom_field_values"][i] for i in workspace["custom_field_value_ids"]]
    assert {(v["custom_field_name"], v["value"]) for v in values} == {
        ("Cost Center", "CC-100"),
        ("Practice", "Data"),
    }
    published = listed(load_fixture("kantata", "custom_field_values_built.json"))
    assert_same_shape(values, published["custom_field_values"])


async def test_custom_fields_have_the_schema_shape_with_their_set(twin: Twin) -> None:
    body = await twin.get("custom_fields.json", include="custom_field_set")
    assert set(await custom_field_ids(twin)) == {
        "Customer ID",
        "Opportunity ID",
        "Billing Rule",
        "Cost Center",
        "Practice",
        "Delivery Manager",
    }
    assert {f["value_type"] for f in body["custom_fields"].values()} == {"string"}
    same_shape(body, "custom_fields_with_set_built.json", "custom_fields")
    bare = await twin.get("custom_fields.json")
    assert "custom_field_set_id" not in next(iter(bare["custom_fields"].values()))


async def test_custom_field_value_create_overrides_and_answers_the_schema_shape(
    twin: Twin,
) -> None:
    ids = await custom_field_ids(twin)
    body = await twin.post("workspaces.json", "workspace", title="Gemini")
    wid = body["results"][0]["id"]
    first = await write_values(twin, wid, {ids["Billing Rule"]: "Fixed Price"})
    again = await write_values(twin, wid, {ids["Billing Rule"]: "Milestone"})
    assert first.status_code == again.status_code == 200, again.text
    same_shape(again.json(), "custom_field_values_built.json", "custom_field_values")
    (created,) = again.json()["custom_field_values"].values()
    assert (created["custom_field_name"], created["value"]) == ("Billing Rule", "Milestone")
    assert created["subject_id"] == int(wid) and created["subject_type"] == "Workspace"
    assert created["id"] != first.json()["results"][0]["id"]  # a new value, a new id
    read = await twin.get(f"workspaces/{wid}.json", include="custom_field_values")
    assert read["workspaces"][wid]["custom_field_value_ids"] == [created["id"]]
    assert read["workspaces"][wid]["billing_rule"] == "Milestone"  # the legacy mirror


async def test_custom_field_value_refusals_are_validation_errors(twin: Twin) -> None:
    ids = await custom_field_ids(twin)
    unknown_field = await write_values(twin, twin.workspace, {999_999: "x"})
    unknown_subject = await write_values(twin, "999999", {ids["Practice"]: "x"})
    wrong_subject = await write_values(
        twin, twin.story, {ids["Practice"]: "x"}, subject_type="Story"
    )
    not_text = await write_values(twin, twin.workspace, {ids["Practice"]: 7})
    for response, field in (
        (unknown_field, "custom_field_id"),
        (unknown_subject, "subject_id"),
        (wrong_subject, "subject_type"),
        (not_text, "value"),
    ):
        assert response.status_code == 422, response.text
        (error,) = response.json()["errors"]
        assert (error["type"], error["field"]) == ("validation", field)
    # All or none: a body with one bad value writes none of them.
    mixed = await write_values(twin, twin.workspace, {ids["Practice"]: "Cloud", 999_999: "x"})
    assert mixed.status_code == 422
    read = await twin.get(f"workspaces/{twin.workspace}.json", include="custom_field_values")
    values = read["custom_field_values"].values()
    assert {(v["custom_field_name"], v["value"]) for v in values} >= {("Practice", "Data")}


async def test_story_has_the_recorded_shape(twin: Twin) -> None:
    body = await twin.get(f"stories/{twin.story}.json")
    same_shape(body, "story_update_2013.json", "stories")


async def test_user_has_the_recorded_shape(twin: Twin) -> None:
    body = await twin.get("users.json", only=str(twin.user))
    same_shape(body, "user_only_2013.json", "users")


async def test_time_entry_has_the_recorded_shape(twin: Twin) -> None:
    created = await twin.post(
        "time_entries.json",
        "time_entry",
        workspace_id=twin.workspace,
        user_id=twin.user,
        date_performed="2025-03-03",
        time_in_minutes=75,
        rate_in_cents=2500,
    )
    entry = created["results"][0]["id"]
    same_shape(
        await twin.get(f"time_entries/{entry}.json"), "time_entry_update_2013.json", "time_entries"
    )


async def test_expense_has_the_recorded_shape(twin: Twin) -> None:
    created = await twin.post(
        "expenses.json",
        "expense",
        workspace_id=twin.workspace,
        user_id=twin.user,
        date="2025-03-03",
        amount_in_cents=500,
        is_billable=False,
    )
    expense = created["results"][0]["id"]
    body = await twin.get(f"expenses/{expense}.json", include="user,workspace")
    same_shape(
        body,
        "expense_update_2013.json",
        "expenses",
        missing={"users", "workspaces"},
        extra=TWIN_ONLY["envelope"] | TWIN_ONLY["expenses"] | {"users", "workspaces"},
    )


async def test_assignment_has_the_schema_shape_with_its_includes(twin: Twin) -> None:
    for user in (twin.user, None):
        await twin.post(
            "assignments.json",
            "assignment",
            workspace_id=twin.workspace,
            story_id=twin.story,
            assignee_id=user,
            role="Consultant",
            start_date="2025-03-01",
            end_date="2025-06-30",
            allocated_minutes=480,
        )
    body = await twin.get("assignments.json", workspace_id=twin.workspace, include="assignee,story")
    assert len(body["results"]) == 2
    named = body["assignments"][body["results"][0]["id"]]
    assert (named["assignee_id"], named["story_id"]) == (str(twin.user), twin.story)
    same_shape(
        body,
        "assignments_with_includes_built.json",
        "assignments",
        "stories",
        "users",
    )


async def test_external_reference_has_the_published_shape(twin: Twin) -> None:
    response = await twin.client.post(
        f"{API}/external_references/create_or_update",
        json={
            "external_reference": {
                "subject_type": "Workspace",
                "subject_id": int(twin.workspace),
                "service_name": "Netsuite",
                "service_model": "Job",
                "service_model_ref": "1",
            }
        },
    )
    assert response.status_code == 200, response.text
    same_shape(response.json(), "external_reference_create_or_update.json", "external_references")


async def test_error_bodies_have_the_recorded_shape_and_status(twin: Twin) -> None:
    missing = await twin.client.get(f"{API}/time_entries/999999.json")
    assert missing.status_code == 404
    assert_same_shape(missing.json(), load_fixture("kantata", "error_not_found_404.json"))
    assert missing.json()["errors"][0]["type"] == "system"
    refused = await twin.client.get(f"{API}/workspaces.json", headers={"Authorization": ""})
    assert refused.status_code == 401
    assert_same_shape(refused.json(), load_fixture("kantata", "error_oauth_401.json"))
    assert refused.json()["errors"][0]["type"] == "oauth"
