"""Rate card revisions end to end on the real dev server: a revision published in the PSA twin
-> its signed `rate_card_version.published` webhook (or, when that is lost, the sweep Schedule)
-> the gateway -> the card's `RateCardSync` in the worker -> the ERP twin's revision record,
which the time-to-invoice pipeline prices approved time with.

- a revision touching no invoiced time is applied from its effective date: time approved
  afterwards is billed in the ERP at the new rate from that date, at the old rate before it;
- a revision reaching back into invoiced time is held, with one item for finance; finance
  acknowledges it through the gateway's exceptions API, and the ERP record applies it from the
  day after the last invoiced entry;
- a revision whose webhook was lost is found by the sweep, and the sweep syncs nothing twice.

One stack for the module; each scenario has its own rate card, so each has its own sync."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import ScheduleActionExecutionStartWorkflow

import worker
from bench._harness.linking import RATE_CARD, LinkedProject, link_projects
from bench._harness.waiting import must_eventually as eventually
from connectors.erp import NetSuiteErp
from connectors.psa import KantataPsa
from contracts import Money, System
from contracts.settings import load_settings
from contracts.v1 import BillingRule, Project
from contracts.v1.rate_cards import RateCardSweepResult, rate_card_sweep_schedule_id
from sandbox.psa.load import add_rate_card
from sandbox.psa.rate_card_load import RATE_CARD_VERSION_PUBLISHED, add_rate_card_version
from sandbox.seed import build_firm
from stack import Stack, running_stack

pytestmark = pytest.mark.e2e

FIRM = build_firm(7)  # what the stack seeds
FINANCE = {"Authorization": "Bearer dev-finance-token"}
TWIN_AUTH = {"Authorization": "Bearer dev-static-token"}
OUT_OF_THE_WAY_S = 30 * 86_400
"""The Schedules' interval: webhooks drive the runs; a test triggers the sweep itself."""


@dataclass
class World:
    stack: Stack
    psa: KantataPsa
    project: LinkedProject
    """On the seeded standard card, linked in PSA and ERP."""
    twins: httpx.AsyncClient
    gateway: httpx.AsyncClient
    first: date
    """The first day of last month (its time is in an open period)."""

    def rows(self, system: str, sql: str) -> list[Any]:
        with self.stack.sandbox.state(system).engine.connect() as conn:
            return list(conn.execute(text(sql)).all())

    def erp_revisions(self, card: int) -> list[tuple[str, str, date | None]]:
        """(revision, status, applied from) of every ERP record of the card."""
        return [
            (str(rev), str(status), date.fromisoformat(str(applied)) if applied else None)
            for rev, status, applied in self.rows(
                "erp",
                "SELECT revision, status, applied_from FROM erp_rate_card_revision "
                f"WHERE rate_card = '{card}' ORDER BY id",
            )
        ]

    def publish(self, card: int, on: date, role: str, cents: int) -> str:
        """An administrator publishes a revision of the card in the PSA: `role` at `cents`
        from `on`. The twin sends its webhook (unless a rule drops it)."""
        return str(
            add_rate_card_version(self.stack.sandbox.state("psa"), card, on, [(role, cents)])
        )

    def new_card(self, name: str, role: str, cents: int) -> int:
        """A rate card of the PSA: `role` at `cents` since long before the test's dates."""
        return add_rate_card(
            self.stack.sandbox.state("psa"),
            title=name,
            currency="USD",
            roles=[(role, cents, self.first - timedelta(days=400), None)],
            external_id=name,
        )

    def webhooks_accepted(self) -> int:
        """How many `rate_card_version.published` webhooks the PSA sent, every one of them
        accepted by the gateway (202)."""
        sender = self.stack.sandbox.state("psa").webhooks
        assert sender is not None
        sent = [
            d for d in sender.deliveries.values() if d.event_type == RATE_CARD_VERSION_PUBLISHED
        ]
        assert all(d.delivered and d.last_status == 202 for d in sent), sent
        return len(sent)

    async def sweep(self) -> RateCardSweepResult:
        """Trigger the sweep Schedule's action now (rather than wait for it); its result."""
        tenant = self.stack.settings.psa.tenant
        schedule = self.stack.client.get_schedule_handle(rate_card_sweep_schedule_id(tenant))
        done = (await schedule.describe()).info.num_actions
        await schedule.trigger()

        async def started() -> ScheduleActionExecutionStartWorkflow | None:
            info = (await schedule.describe()).info
            if info.num_actions <= done:
                return None
            action = info.recent_actions[-1].action
            assert isinstance(action, ScheduleActionExecutionStartWorkflow)
            return action

        action = await eventually(started, 30)
        handle = self.stack.client.get_workflow_handle(
            action.workflow_id,
            run_id=action.first_execution_run_id,
            result_type=RateCardSweepResult,
        )
        result: RateCardSweepResult = await handle.result()
        return result

    async def twin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = await self.twins.request(method, path, json=body, headers=TWIN_AUTH)
        assert r.status_code < 300, r.text
        return r.json() if r.content else None

    @property
    def user(self) -> int:
        return self.project.users[0]

    @property
    def role(self) -> str:
        [(role,)] = self.rows("psa", f"SELECT role FROM psa_user WHERE id = {self.user}")
        return str(role)


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """The stack (dev server, gateway, seeded twins with webhooks to the gateway, the worker
    in process) and one project on the seeded standard card, linked in PSA and ERP."""
    home: Path = tmp_path_factory.mktemp("rate-cards") / ".pssync"
    settings = load_settings(home=home)
    settings.time_linger_ms = 100
    settings.time_sweep_interval_s = OUT_OF_THE_WAY_S
    settings.hcm_poll_interval_s = OUT_OF_THE_WAY_S
    settings.rate_card_sweep_interval_s = OUT_OF_THE_WAY_S
    settings.reconcile.enabled = False
    async with running_stack(settings, ephemeral_ports=True) as stack:
        deployment = worker.Deployment.from_settings(stack.settings)
        psa, erp = deployment.psa, deployment.erp
        assert isinstance(psa, KantataPsa) and isinstance(erp, NetSuiteErp)
        try:
            (project,) = await link_projects(
                psa, erp, FIRM.workers, 1, name="Rate card e2e", tag="RCE", ulid_prefix="01JRC"
            )
            async with (
                httpx.AsyncClient(
                    base_url=stack.urls["sandbox"],
                    timeout=30,
                    limits=httpx.Limits(max_keepalive_connections=0),
                ) as twins,
                httpx.AsyncClient(base_url=stack.urls["gateway"], timeout=30) as gateway,
            ):
                first = (date.today().replace(day=1) - timedelta(days=1)).replace(day=1)
                yield World(stack, psa, project, twins, gateway, first)
        finally:
            await deployment.aclose()


async def test_a_revision_prices_time_from_its_effective_date(world: World) -> None:
    card = int(await world.psa._resolve_rate_card(RATE_CARD))
    role, effective = world.role, world.first + timedelta(days=14)
    before = (await world.psa.get_rate_card(RATE_CARD)).rate_for(role, effective)
    assert before is not None
    new = before + Money("25.00", "USD")

    revision = world.publish(card, effective, role, int(new.amount * 100))
    applied = [(revision, "applied", effective)]
    await eventually(lambda: world.erp_revisions(card) == applied, 30)
    assert world.webhooks_accepted() >= 1  # the sweep never ran: the webhook brought it

    # Two hours the day before and two on the effective date, approved by a person in the
    # PSA: each approval's webhook brings the entry to the pipeline, which posts it.
    entries = {}
    for day in (effective - timedelta(days=1), effective):
        made = await world.twin(
            "POST",
            "/psa/api/v1/time_entries.json",
            {
                "time_entry": {
                    "workspace_id": world.project.psa_id,
                    "user_id": world.user,
                    "date_performed": day.isoformat(),
                    "time_in_minutes": 120,
                }
            },
        )
        entry = str(made["results"][0]["id"])
        await world.twin(
            "PUT", f"/psa/api/v1/time_entries/{entry}.json", {"time_entry": {"approved": True}}
        )
        entries[day] = entry

    def billed() -> dict[str, Decimal] | None:
        ids = ", ".join(f"'{e}'" for e in entries.values())
        got = world.rows(
            "erp",
            "SELECT source_entry, bill_amount FROM erp_timebill "
            f"WHERE source_entry IN ({ids}) AND reverses_id IS NULL",
        )
        return {str(e): Decimal(str(a)) for e, a in got} if len(got) == 2 else None

    amounts = await eventually(billed, 45)
    assert amounts == {
        entries[effective - timedelta(days=1)]: before.amount * 2,
        entries[effective]: new.amount * 2,
    }
    assert world.erp_revisions(card) == applied


async def test_a_revision_of_invoiced_time_waits_for_finance(world: World) -> None:
    role = world.role
    card = world.new_card("RC-E2E-INVOICED", role, 15000)
    project = Project(
        name="Rate card e2e invoiced",
        customer_id="ACC-RCE-INV",
        billing_rule=BillingRule.TIME_AND_MATERIALS,
        contract_value=Money("50000.00", "USD"),
        start_date=world.first - timedelta(days=30),
        end_date=date.today() + timedelta(days=180),
        cost_center=FIRM.workers[0].cost_center,
        rate_card_id="RC-E2E-INVOICED",
        source_system=System.CRM,
    )
    psa_id = await world.psa.create_project_shell(
        project, enterprise_id="01JRCINV000000000000000001"
    )
    # Time invoiced in the PSA at 150.00: an hour on the 4th and two on the 6th of last month.
    invoiced = [world.first + timedelta(days=3), world.first + timedelta(days=5)]
    made = await world.twin(
        "POST",
        "/psa/_admin/time_entries/bulk",
        {
            "entries": [
                {
                    "workspace_id": int(psa_id),
                    "user_id": world.user,
                    "date_performed": day.isoformat(),
                    "time_in_minutes": minutes,
                }
                for day, minutes in zip(invoiced, (60, 120), strict=True)
            ],
            "approved": True,
        },
    )
    await world.twin(
        "POST",
        "/psa/api/v1/invoices.json",
        {"invoice": {"reference_number": "INV-RCE-1", "time_entry_ids": made["ids"]}},
    )

    # A revision effective on the 2nd: it would re-rate both invoiced entries.
    effective = world.first + timedelta(days=1)
    revision = world.publish(card, effective, role, 16000)
    await eventually(lambda: world.erp_revisions(card) == [(revision, "held", None)], 30)

    async def finance_item() -> dict[str, Any] | None:
        r = await world.gateway.get(
            "/api/exceptions", params={"process": "rate_card_sync"}, headers=FINANCE
        )
        r.raise_for_status()
        items = [i for i in r.json()["items"] if i["context"].get("rate_card_id") == str(card)]
        assert len(items) <= 1, items
        return items[0] if items else None

    item = await eventually(finance_item, 30)
    assert (item["cause_code"], item["owner"], item["status"]) == (
        "INVOICED_TIME_REVISED",
        "finance_controller",
        "open",
    )
    context = item["context"]
    assert [e["entry_id"] for e in context["entries"]] == [str(i) for i in made["ids"]]
    assert Decimal(context["difference"]["amount"]) == Decimal("30.00")  # 10.00/h over 3 h
    day_after = invoiced[-1] + timedelta(days=1)
    assert context["apply_from_if_acknowledged"] == day_after.isoformat()

    # Finance acknowledges through the gateway: applied from the day after the invoiced time.
    r = await world.gateway.post(
        f"/api/exceptions/{item['id']}/resolution",
        json={"action": "skip", "note": "invoiced time stays as billed"},
        headers=FINANCE,
    )
    assert r.status_code == 200, r.text
    await eventually(lambda: world.erp_revisions(card) == [(revision, "applied", day_after)], 30)
    resolved = (await world.gateway.get(f"/api/exceptions/{item['id']}", headers=FINANCE)).json()
    assert resolved["status"] == "resolved"


async def test_a_revision_whose_webhook_was_lost_is_found_by_the_sweep(world: World) -> None:
    role = world.role
    card = world.new_card("RC-E2E-LOST", role, 15000)
    await world.twin(
        "POST",
        "/psa/_admin/tamper/drop-webhooks",
        {"type": RATE_CARD_VERSION_PUBLISHED, "count": 1},
    )
    effective = date.today() + timedelta(days=30)
    revision = world.publish(card, effective, role, 17000)
    report = await world.twin("GET", "/psa/_admin/tamper/drop-webhooks")
    lost = [e for e in report["events"] if e["data"]["rate_card_version_id"] == revision]
    assert len(lost) == 1  # the webhook never left the PSA
    assert world.erp_revisions(card) == []

    # The sweep Schedule's action finds it. It also announces the revisions the webhooks
    # brought before (it does not know them): their syncs drop them, the ERP keeps what it had.
    others = world.rows("erp", "SELECT * FROM erp_rate_card_revision ORDER BY id")
    swept = await world.sweep()
    assert f"{card}/{revision}" in swept.announced
    applied = [(revision, "applied", effective)]
    await eventually(lambda: world.erp_revisions(card) == applied, 30)
    assert (
        world.rows(
            "erp", f"SELECT * FROM erp_rate_card_revision WHERE rate_card != '{card}' ORDER BY id"
        )
        == others
    )

    # The next sweep reads the same window again: nothing new to announce.
    again = await world.sweep()
    assert (again.announced, again.duplicates) == ([], swept.seen)
    assert world.erp_revisions(card) == applied
