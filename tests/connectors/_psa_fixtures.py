"""Harnesses for the PSA connector tests: the same scenario runs against `KantataPsa` on the
twin (over HTTP on loopback) and against `FakePsa`, seeded through one small interface."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, TypedDict, Unpack

import httpx
from fastapi import FastAPI

from connectors._http import classify
from connectors.psa import FakePsa, KantataPsa, parse_error
from connectors.psa.resources import PsaResource
from contracts.money import Money
from contracts.settings import SystemSettings
from contracts.systems import System
from contracts.v1 import (
    BillingRule,
    ChangeOrderLine,
    Milestone,
    Project,
    WbsNode,
    WbsNodeType,
)
from sandbox import psa as twin
from tests._builders import rate, rate_card
from tests._servers import serve

AUTH = {"Authorization": "Bearer dev-static-token"}
EID = "01J9Z8Y7X6W5V4T3S2R1Q0P9N8"
EID2 = "01J9Z8Y7X6W5V4T3S2R1Q0P9N9"


def make_project(*, rate_card_id: str | None = "RC-STD", currency: str = "USD") -> Project:
    def m(amount: str) -> Money:
        return Money(amount, currency)

    return Project(
        name="Apollo rollout",
        customer_id="ACC-1",
        opportunity_id="OPP-1",
        billing_rule=BillingRule.MILESTONE,
        contract_value=m("120000.00"),
        start_date=date(2025, 3, 1),
        end_date=date(2025, 9, 30),
        cost_center="CC-100",
        practice="Data",
        rate_card_id=rate_card_id,
        delivery_manager="dana.manager",
        wbs=[
            WbsNode(code="1", name="Discovery", node_type=WbsNodeType.PHASE, budget=m("0")),
            WbsNode(
                code="1.1",
                name="Workshops",
                parent_code="1",
                role="Consultant",
                estimated_minutes=4800,
                budget=m("12000.00"),
            ),
            WbsNode(
                code="1.2",
                name="Report",
                parent_code="1",
                role="Analyst",
                estimated_minutes=2400,
                budget=m("5000.50"),
                billable=False,
            ),
        ],
        milestones=[
            Milestone(
                code="M1", name="Kickoff", amount=m("20000.00"), target_date=date(2025, 3, 15)
            ),
            Milestone(code="M2", name="Go-live", amount=m("100000.00")),
        ],
        source_system=System.CRM,
    )


RATE_CARD = rate_card(
    rate("Consultant", Money("150.00", "USD"), date(2024, 1, 1)),
    rate("Analyst", Money("95.50", "USD"), date(2024, 1, 1), date(2025, 12, 31)),
    external_id="RC-STD",
    name="Standard",
)


class UserOptions(TypedDict, total=False):
    """How a harness's user is set up; `user_options` fills in what is left out."""

    role: str | None
    active: bool
    start_date: date | None
    closed_after: date | None


def user_options(options: UserOptions) -> UserOptions:
    """A consultant, active, with no start date and no time-entry cutoff, unless told."""
    defaults: UserOptions = {
        "role": "Consultant",
        "active": True,
        "start_date": None,
        "closed_after": None,
    }
    return defaults | options  # type: ignore[return-value]


@dataclass
class TwinHarness:
    port: KantataPsa
    app: FastAPI
    client: httpx.AsyncClient
    users: dict[str, int] = field(default_factory=dict)

    async def add_user(self, worker_id: str, **options: Unpack[UserOptions]) -> None:
        user = user_options(options)
        self.users[worker_id] = twin.add_user(
            self.app,
            full_name=f"Worker {worker_id}",
            role=user["role"],
            active=user["active"],
            start_date=user["start_date"],
            time_entry_closed_after=user["closed_after"],
            worker_id=worker_id,
        )

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST as the PSA's own users would; refusals come back as the connector maps them."""
        r = await self.client.post(f"/api/v1/{path}", json=body)
        if r.status_code >= 400:
            raise classify("PSA", r, parse_error)
        first = r.json()["results"][0]
        obj: dict[str, Any] = r.json()[first["key"]][first["id"]]
        return obj

    async def put(self, path: str, body: dict[str, Any]) -> httpx.Response:
        r = await self.client.put(f"/api/v1/{path}", json=body)
        if r.status_code >= 400:
            raise classify("PSA", r, parse_error)
        return r

    async def record(
        self, path: str, key: str, project_id: str, worker_id: str, **fields: Any
    ) -> dict[str, Any]:
        """What a worker records on a workspace (time, an expense), POSTed as `key`."""
        body = {"workspace_id": project_id, "user_id": self.users[worker_id], **fields}
        return await self.post(path, {key: body})

    async def add_time(
        self, project_id: str, worker_id: str, on: date, minutes: int, *, approve: bool = False
    ) -> str:
        entry = await self.record(
            "time_entries.json",
            "time_entry",
            project_id,
            worker_id,
            date_performed=on.isoformat(),
            time_in_minutes=minutes,
        )
        if approve:
            await self.put(f"time_entries/{entry['id']}.json", {"time_entry": {"approved": True}})
        return str(entry["id"])

    async def add_expense(self, project_id: str, worker_id: str, on: date, cents: int) -> str:
        expense = await self.record(
            "expenses.json",
            "expense",
            project_id,
            worker_id,
            date=on.isoformat(),
            amount_in_cents=cents,
        )
        await self.put(f"expenses/{expense['id']}.json", {"expense": {"approved": True}})
        return str(expense["id"])

    async def add_assignment(
        self, project_id: str, worker_id: str | None, role: str, start: date, end: date
    ) -> str:
        row = await self.post(
            "assignments.json",
            {
                "assignment": {
                    "workspace_id": project_id,
                    "user_id": self.users[worker_id] if worker_id else None,
                    "role": role,
                    "start_date": start.isoformat(),
                    "end_date": end.isoformat(),
                    "allocated_minutes": 9600,
                }
            },
        )
        return str(row["id"])

    async def add_change_order(
        self, project_id: str, title: str, delta: Money, lines: list[ChangeOrderLine]
    ) -> str:
        row = await self.post(
            "change_orders.json",
            {
                "change_order": {
                    "workspace_id": project_id,
                    "title": title,
                    "budget_delta_in_cents": delta.to_minor(),
                    "currency": delta.currency,
                    "requested_by": "dana.manager",
                    "lines": [
                        {
                            "role": line.role,
                            "minutes_delta": int(line.hours_delta * 60),
                        }
                        for line in lines
                    ],
                }
            },
        )
        return str(row["id"])


@dataclass
class FakeHarness:
    port: FakePsa

    async def add_user(self, worker_id: str, **options: Unpack[UserOptions]) -> None:
        self.port.add_user(worker_id, **user_options(options))

    async def add_time(
        self, project_id: str, worker_id: str, on: date, minutes: int, *, approve: bool = False
    ) -> str:
        return self.port.add_time_entry(
            project_id, worker_id, on, minutes, approved=approve
        ).external_id

    async def add_expense(self, project_id: str, worker_id: str, on: date, cents: int) -> str:
        expense = self.port.add_expense(project_id, worker_id, on, Money.from_minor(cents, "USD"))
        return self.port.approve_expense(expense.external_id).external_id

    async def add_assignment(
        self, project_id: str, worker_id: str | None, role: str, start: date, end: date
    ) -> str:
        return self.port.add_assignment(
            project_id, role, start, end, worker_id=worker_id, minutes=9600
        ).external_id

    async def add_change_order(
        self, project_id: str, title: str, delta: Money, lines: list[ChangeOrderLine]
    ) -> str:
        return self.port.add_change_order(
            project_id, title, delta, lines, requested_by="dana.manager"
        ).external_id


Harness = TwinHarness | FakeHarness
"""Seeds a PSA (twin or fake) the way its own users would."""


def psa_resource(worker_id: str, **changes: object) -> PsaResource:
    """A hired worker as pssync would write them to the PSA (`changes` over the defaults)."""
    found = PsaResource(
        worker_id=worker_id,
        name=f"Worker {worker_id}",
        email=f"{worker_id.lower()}@example.com",
        role="Consultant",
        location="Sydney",
        practice="Cloud",
        manager_id="W-00001",
        fte=Decimal("0.8"),
        available_from=date(2026, 3, 10),
    )
    return found.model_copy(update=changes)


def psa_settings(url: str, **overrides: Any) -> SystemSettings:
    values: dict[str, Any] = {"base_url": url, "retry_budget_s": 5.0, "timeout_s": 5.0}
    return SystemSettings.model_validate(values | overrides)


@asynccontextmanager
async def twin_harness(
    transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
    **settings: Any,
) -> AsyncIterator[TwinHarness]:
    app = twin.create_app()
    twin.add_rate_card(
        app,
        title="Standard",
        currency="USD",
        roles=[
            ("Consultant", 15000, date(2024, 1, 1), None),
            ("Analyst", 9550, date(2024, 1, 1), date(2025, 12, 31)),
        ],
        external_id="RC-STD",
    )
    async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        port = KantataPsa(
            psa_settings(url, **settings),
            transport=transport() if transport else None,
            backoff_base_s=0.01,
            backoff_cap_s=0.2,
        )
        try:
            yield TwinHarness(port=port, app=app, client=client)
        finally:
            await port.aclose()


def fake_harness() -> FakeHarness:
    fake = FakePsa()
    fake.add_rate_card(RATE_CARD)
    return FakeHarness(port=fake)


def hours(value: str) -> Decimal:
    return Decimal(value)
