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

from temporalio.client import Client, WorkflowHandle

import store
from connectors.crm import FakeCrm
from connectors.erp import FakeErp
from connectors.psa import FakePsa
from contracts import BusinessRuleViolation, Money, System
from contracts.settings import load_settings
from contracts.v1 import Customer, LineType, Opportunity, OpportunityLine
from contracts.v1.processes import (
    ExceptionResolution,
    ProvisioningStatus,
    ProvisioningStep,
    ProvisionProjectInput,
    ResolutionAction,
)
from tests._builders import rate, rate_card
from tests.workflows._worlds import (
    fake_deployment,
    query_until,
    running_workers,
    sqlite_store,
)
from workflows.opportunity_to_project import OpportunityToProjectWorkflow

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


def cost_center_corrected(item_id: str, **who: object) -> ExceptionResolution:
    """A retry with the cost center corrected to CC-120 (`who`: other than the delivery
    manager)."""
    return resolution(
        item_id, ResolutionAction.RETRY_WITH_DATA, corrections={"cost_center": "CC-120"}, **who
    )


def credit_hold(message: str = "credit hold") -> BusinessRuleViolation:
    """The ERP's refusal of a project for a customer on credit hold."""
    return BusinessRuleViolation("CUSTOMER_CREDIT_HOLD", message, field="customer", system="ERP")


def resolution(item_id: str, action: ResolutionAction, **kw: object) -> ExceptionResolution:
    """A delivery manager's decision on an open item (`kw`: other fields, or other people)."""
    data: dict[str, object] = {
        "item_id": item_id,
        "action": action,
        "actor": "dana.manager",
        "actor_roles": ["delivery_manager"],
    }
    data.update(kw)
    return ExceptionResolution.model_validate(data)


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

    def erp_refuses_the_project(self, error: BaseException) -> None:
        """Every ERP project upsert fails with `error`."""
        self.recorders["erp"].failures["upsert_project"] = error

    def compensations(self) -> list[str]:
        """The compensating calls made so far, in order."""
        return [c for c in self.log if c in ("erp.close_project", "psa.archive_project")]


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
    psa.add_rate_card(rate_card(rate("Consultant", Money(150, "USD"), date(2026, 1, 1))))
    erp = FakeErp(cost_centers=["CC-110", "CC-120"], inactive_cost_centers=["CC-999"])
    with sqlite_store(tmp_path) as (url, st):
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
        deployment = fake_deployment(
            settings=settings,
            store=st,
            crm=world.recorders["crm"],
            psa=world.recorders["psa"],
            erp=world.recorders["erp"],
        )
        world.deployment = deployment
        if not run_workers:
            yield world
            return
        async with running_workers(client, deployment, world.task_queue):
            yield world


async def start_saga(
    world: World, *, workflow_id: str | None = None, **fields: Any
) -> WorkflowHandle[Any, Any]:
    """Start OpportunityToProject for the world's won deal (`fields`: other input fields),
    under `workflow_id` or a fresh one."""
    return await world.client.start_workflow(
        OpportunityToProjectWorkflow.run,
        ProvisionProjectInput(crm_tenant="test", opportunity_id=OPPORTUNITY, **fields),
        id=workflow_id or world.workflow_id(),
        task_queue=world.task_queue,
    )


async def wait_for_step(
    handle: WorkflowHandle[Any, Any], step: ProvisioningStep, timeout_s: float = 15
) -> ProvisioningStatus:
    return await query_until(
        handle,
        OpportunityToProjectWorkflow.status,
        ProvisioningStatus,
        lambda status: status.step is step,
        timeout_s=timeout_s,
        poll_s=0.05,
        stuck=lambda status: f"workflow stuck at {status.step}, expected {step}",
    )
