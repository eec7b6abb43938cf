"""A provisioning world in memory: fake CRM/PSA/ERP/HCM, a real SQLite store, the real
activities and workflow registered exactly as `worker.build_workers` does."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.client import Client

import store
import worker
from connectors.crm import FakeCrm
from connectors.erp import FakeErp
from connectors.hcm import FakeHcm
from connectors.psa import FakePsa
from contracts import Money, System
from contracts.settings import load_settings
from contracts.v1 import Customer, LineType, Opportunity, OpportunityLine, RateCard, RateCardLine

ACCOUNT = "001000000000000AAA"
OPPORTUNITY = "006000000000000AAA"


class Recording:
    """Wraps a port; appends '<system>.<operation>' to a shared log for each call."""

    def __init__(self, inner: Any, system: str, log: list[str]) -> None:
        self._inner = inner
        self._system = system
        self._log = log
        self.failures: dict[str, BaseException] = {}
        """operation -> error raised on every call (until removed)."""

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._log.append(f"{self._system}.{name}")
            failure = self.failures.get(name)
            if failure is not None:

                async def fail() -> Any:
                    raise failure

                return fail()
            return attr(*args, **kwargs)

        return call


def won_opportunity(**overrides: Any) -> Opportunity:
    lines = [
        OpportunityLine(
            line_id="00k1",
            product_code="SVC-TM-CONSULTANT",
            description="Build: consultants",
            line_type=LineType.TIME_AND_MATERIALS,
            role="Consultant",
            quantity=Decimal(100),
            unit_price=Money(150, "USD"),
            total_price=Money(15000, "USD"),
            service_date=date(2026, 12, 31),
        ),
        OpportunityLine(
            line_id="00k2",
            product_code="SVC-TM-MANAGER",
            description="Build: management",
            line_type=LineType.TIME_AND_MATERIALS,
            role="Manager",
            quantity=Decimal(20),
            unit_price=Money(220, "USD"),
            total_price=Money(4400, "USD"),
        ),
        OpportunityLine(
            line_id="00k3",
            product_code="SVC-MS-GOLIVE",
            description="Go-live milestone",
            line_type=LineType.MILESTONE,
            quantity=Decimal(1),
            unit_price=Money(5600, "USD"),
            total_price=Money(5600, "USD"),
            service_date=date(2027, 1, 31),
        ),
    ]
    data: dict[str, Any] = {
        "external_id": OPPORTUNITY,
        "name": "Acme data platform",
        "account_id": ACCOUNT,
        "amount": Money(25000, "USD"),
        "close_date": date(2026, 11, 20),
        "stage": "Closed Won",
        "is_won": True,
        "is_closed": True,
        "cost_center": "CC-110",
        "practice": "Data & AI",
        "rate_card_id": "RC-STD-USD",
        "delivery_manager": "W-00007",
        "lines": lines,
        "source_system": System.CRM,
    }
    data.update(overrides)
    return Opportunity(**data)


@dataclass
class World:
    client: Client
    task_queue: str
    crm: FakeCrm
    psa: FakePsa
    erp: FakeErp
    store: store.Store
    log: list[str] = field(default_factory=list)
    recorders: dict[str, Recording] = field(default_factory=dict)
    deployment: Any = None

    def workflow_id(self) -> str:
        return f"opp-to-project/test/{OPPORTUNITY}/{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def provisioning_world(
    client: Client,
    tmp_path: Path,
    *,
    opportunity: Opportunity | None = None,
    prepare: Callable[[World], Awaitable[None] | None] | None = None,
    run_workers: bool = True,
) -> AsyncIterator[World]:
    """`run_workers=False`: the test runs `worker.build_workers(client, world.deployment)`
    itself (to stop them mid-run, say)."""
    log: list[str] = []
    crm = FakeCrm(tenant="test")
    crm.add_account(Customer(external_id=ACCOUNT, name="Acme Corp", source_system=System.CRM))
    crm.add_opportunity(opportunity or won_opportunity())
    psa = FakePsa()
    psa.add_rate_card(
        RateCard(
            external_id="RC-STD-USD",
            name="Standard USD",
            currency="USD",
            source_system=System.PSA,
            lines=[
                RateCardLine(
                    role="Consultant", bill_rate=Money(150, "USD"), effective_from=date(2026, 1, 1)
                )
            ],
        )
    )
    erp = FakeErp(cost_centers=["CC-110", "CC-120"], inactive_cost_centers=["CC-999"])
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store.upgrade(url)
    engine = store.make_engine(url)
    st = store.Store(engine)
    world = World(client, f"q-{uuid.uuid4().hex[:8]}", crm, psa, erp, st, log)
    if prepare is not None:
        maybe = prepare(world)
        if maybe is not None:
            await maybe
    settings = load_settings(home=tmp_path, database_url=url)
    world.recorders = {
        "crm": Recording(crm, "crm", log),
        "psa": Recording(psa, "psa", log),
        "erp": Recording(erp, "erp", log),
    }
    deployment = worker.Deployment(
        settings=settings,
        store=st,
        crm=world.recorders["crm"],  # type: ignore[arg-type]
        psa=world.recorders["psa"],  # type: ignore[arg-type]
        erp=world.recorders["erp"],  # type: ignore[arg-type]
        hcm=FakeHcm(),
    )
    world.deployment = deployment
    workers = (
        worker.build_workers(client, deployment, task_queue=world.task_queue) if run_workers else []
    )
    async with contextlib.AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        yield world
    engine.dispose()
