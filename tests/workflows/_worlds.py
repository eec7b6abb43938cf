"""What the in-memory worlds of these tests share: a migrated SQLite store under tmp_path,
the real workers (as `worker.build_workers` makes them) on a queue of their own, a project
opened in the PSA and ERP fakes, and a wait on a run's query."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowHandle

import store
import worker
from connectors.crm import FakeCrm
from connectors.erp import FakeErp
from connectors.hcm import FakeHcm
from connectors.psa import FakePsa
from contracts import Money, System
from contracts.v1 import Customer, Project

T = TypeVar("T")
ACME = Customer(external_id="001A", name="Acme", source_system=System.CRM)


def acme_project(**fields: Any) -> Project:
    """Acme's time-and-materials data platform: 25,000 USD from 2026-01-01 on CC-110."""
    values: dict[str, Any] = {
        "name": "Acme data platform",
        "customer_id": "001A",
        "billing_rule": "time_and_materials",
        "contract_value": Money(25000, "USD"),
        "start_date": date(2026, 1, 1),
        "cost_center": "CC-110",
        "source_system": System.PSSYNC,
    }
    return Project(**(values | fields))


@dataclass
class ProjectWorld:
    """A world of one project: its PSA id, the fakes it lives in, the store, the queue."""

    client: Client
    task_queue: str
    psa: FakePsa
    erp: FakeErp
    store: store.Store
    psa_project_id: str


@contextlib.contextmanager
def sqlite_store(tmp_path: Path) -> Iterator[tuple[str, store.Store]]:
    """A migrated SQLite store in `tmp_path`, and its URL; its engine is disposed after."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store.upgrade(url)
    engine = store.make_engine(url)
    try:
        yield url, store.Store(engine)
    finally:
        engine.dispose()


def fake_deployment(**parts: Any) -> worker.Deployment:
    """A deployment over the fakes: `settings`, `store`, `psa` and `erp` as given, and an
    empty CRM and HCM unless given."""
    defaults: dict[str, Any] = {"crm": FakeCrm(), "hcm": FakeHcm()}
    return worker.Deployment(**(defaults | parts))


@contextlib.asynccontextmanager
async def running_workers(
    client: Client, deployment: worker.Deployment, task_queue: str
) -> AsyncIterator[None]:
    """Every worker `worker.build_workers` makes for `deployment`, polling `task_queue`."""
    workers = worker.build_workers(client, deployment, task_queue=task_queue)
    async with contextlib.AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        yield


async def query_until(
    handle: WorkflowHandle[Any, Any],
    query: Any,
    result_type: type[T],
    done: Callable[[T], bool],
    *,
    timeout_s: float,
    poll_s: float,
    stuck: Callable[[T], str],
) -> T:
    """Ask the run's `query` until `done` holds for the answer; after `timeout_s`, an
    AssertionError that `stuck` words from the last answer."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        answer: T = await handle.query(query, result_type=result_type)
        if done(answer):
            return answer
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(stuck(answer))
        await asyncio.sleep(poll_s)


async def open_project(
    psa: FakePsa,
    erp: FakeErp,
    project: Project,
    *,
    enterprise_id: str,
    customer: Customer = ACME,
    customer_enterprise_id: str = "c1",
) -> str:
    """The project as provisioning leaves it: a PSA shell, and an ERP project (budget: the
    contract value) under `customer`. Returns the PSA project id."""
    psa_id = await psa.create_project_shell(project, enterprise_id=enterprise_id)
    customer_erp_id = await erp.upsert_customer(customer, enterprise_id=customer_enterprise_id)
    await erp.upsert_project(
        project,
        enterprise_id=enterprise_id,
        customer_erp_id=customer_erp_id,
        budget=project.contract_value,
    )
    return psa_id
