"""Every create path of every connector, against its twin over HTTP, while the twin loses a
large share of its answers (the write is applied, the answer is a 504).

What a user cares about is the twin's data: however many answers are lost, and however often
the call is repeated after an error (as Temporal retries an activity), each business key leaves
exactly one record. Each test repeats the call once more after it succeeded — the activity
retry that follows a worker crash after the vendor answered — and expects the same result.
Fault sequences are seeded and the calls run one after the other, so each run loses the same
answers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest
from sqlmodel import select
from temporalio.exceptions import ApplicationError

from activities.psa import CreateProjectShell, PsaActivities, SeedStaffingDemand
from connectors.crm import NewOpportunity, NewOpportunityLine, ProvisioningStatus, SalesforceCrm
from connectors.erp import NetSuiteErp
from connectors.hcm import WorkdayHcm
from connectors.psa import DEMAND_MARKER, MILESTONE_MARKER, POST_MARKER, WBS_MARKER
from contracts.errors import PssyncError, TransientError
from contracts.money import Money
from contracts.settings import SystemSettings
from contracts.systems import System
from contracts.v1 import Customer, Invoice, InvoiceLine
from contracts.v1.provisioning import staffing_demand
from sandbox import crm as crm_twin
from sandbox import erp as erp_twin_module
from sandbox import hcm as hcm_twin
from sandbox import psa as psa_twin
from sandbox._twin import TwinState
from sandbox.seed import STATUS_ACTIVE, build_firm
from tests._servers import serve
from tests._twins import TwinApp
from tests.connectors._psa_fixtures import EID, TwinHarness, make_project, twin_harness
from tests.connectors.test_erp import posting, project, settings
from tests.twins._erp_fixtures import CUSTOMER, ErpTwin, erp_twin

T = TypeVar("T")
AUTH = {"Authorization": "Bearer dev-static-token"}
ATTEMPTS = 30


async def like_temporal(call: Callable[[], Awaitable[T]], *, retried: list[int] | None = None) -> T:
    """Call until it succeeds, calling again after a retryable error, as Temporal retries an
    activity (a fresh call, nothing carried over from the failed one)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await call()
        except PssyncError as exc:
            if not exc.retryable or attempt == ATTEMPTS:
                raise
        except ApplicationError as exc:  # an activity's translated error
            if exc.non_retryable or attempt == ATTEMPTS:
                raise
        if retried is not None:
            retried.append(attempt)
    raise AssertionError("unreachable")


async def lose(client: httpx.AsyncClient, system: str, rate: float, seed: int = 0) -> int:
    """Set the twin's lost-response rate; returns how many answers it has dropped so far."""
    r = await client.post(f"/_admin/{system}/lost-responses", json={"rate": rate, "seed": seed})
    r.raise_for_status()
    dropped: int = r.json()["dropped"]
    return dropped


def rows(state: TwinState, table: Any, *where: Any) -> list[Any]:
    with state.session() as s:
        return list(s.exec(select(table).where(*where)).all())


def markers(objs: list[Any], attr: str, marker: str) -> Counter[str]:
    found: Counter[str] = Counter()
    for obj in objs:
        for line in (getattr(obj, attr) or "").splitlines():
            if line.startswith(marker):
                found[line[len(marker) :]] += 1
    return found


# --------------------------------------------------------------------------- PSA (Kantata)


@pytest.fixture
async def psa() -> AsyncIterator[TwinHarness]:
    # A short retry budget: some calls give up inside the connector and are retried whole.
    async with twin_harness(retry_budget_s=0.3) as h:
        yield h


def psa_state(h: TwinHarness) -> TwinState:
    state: TwinState = h.app.state.twin
    return state


async def test_psa_project_shell_is_one_workspace_with_one_of_each_story_and_milestone(
    psa: TwinHarness,
) -> None:
    project = make_project()
    await lose(psa.client, "psa", 0.4, seed=11)
    first = await like_temporal(lambda: psa.port.create_project_shell(project, enterprise_id=EID))
    again = await like_temporal(lambda: psa.port.create_project_shell(project, enterprise_id=EID))
    dropped = await lose(psa.client, "psa", 0)

    assert again == first and dropped > 0
    state = psa_state(psa)
    assert [str(w.id) for w in rows(state, psa_twin.PsaWorkspace)] == [first]
    stories = rows(state, psa_twin.PsaStory)
    assert markers(stories, "description", WBS_MARKER) == Counter(n.code for n in project.wbs)
    assert len(stories) == len(project.wbs)
    milestones = rows(state, psa_twin.PsaBillingMilestone)
    assert markers(milestones, "description", MILESTONE_MARKER) == Counter(
        m.code for m in project.milestones
    )
    assert len(milestones) == len(project.milestones)
    (ref,) = rows(
        state,
        psa_twin.PsaExternalReference,
        psa_twin.PsaExternalReference.subject_type == "Workspace",
    )
    assert (ref.service_model_ref, ref.status) == (EID, "successful")


async def test_psa_resource_requests_one_per_demand_key(psa: TwinHarness) -> None:
    project = make_project()
    ws = await psa.port.create_project_shell(project, enterprise_id=EID)
    demands = staffing_demand(project, EID)
    assert len(demands) == 2
    await lose(psa.client, "psa", 0.4, seed=1)
    first = await like_temporal(lambda: psa.port.create_resource_requests(ws, demands))
    again = await like_temporal(lambda: psa.port.create_resource_requests(ws, demands))
    assert await lose(psa.client, "psa", 0) > 0

    assert again == first and len(set(first)) == 2
    requests = rows(psa_state(psa), psa_twin.PsaResourceRequest)
    assert markers(requests, "notes", DEMAND_MARKER) == Counter(d.external_id for d in demands)
    assert sorted(str(r.id) for r in requests) == sorted(first)


async def test_psa_keyed_post_is_posted_once(psa: TwinHarness) -> None:
    ws = await psa.port.create_project_shell(make_project(), enterprise_id=EID)
    await lose(psa.client, "psa", 0.5, seed=2)
    sent = [
        await like_temporal(
            lambda n=n: psa.port.post_notification(  # type: ignore[misc]
                ws, f"Change order approved ({n})", ["resource_manager"], key=f"co-1:{n}"
            )
        )
        for n in range(6)
    ]
    repeat = await like_temporal(
        lambda: psa.port.post_notification(
            ws, "Change order approved (0)", ["resource_manager"], key="co-1:0"
        )
    )
    assert await lose(psa.client, "psa", 0) > 0

    assert repeat == sent[0] and len(set(sent)) == 6
    posts = rows(psa_state(psa), psa_twin.PsaPost)
    assert markers(posts, "message", POST_MARKER) == Counter(f"co-1:{n}" for n in range(6))
    assert len(posts) == 6


async def test_psa_post_without_key_is_never_sent_twice(psa: TwinHarness) -> None:
    """Nothing could find an unkeyed post again, so an uncertain failure is raised, not
    re-sent: at most one post, never two."""
    ws = await psa.port.create_project_shell(make_project(), enterprise_id=EID)
    await lose(psa.client, "psa", 1.0)
    with pytest.raises(TransientError):
        await psa.port.post_notification(ws, "Heads up", ["approver"])
    await lose(psa.client, "psa", 0)
    assert len(rows(psa_state(psa), psa_twin.PsaPost)) == 1


async def test_psa_invoice_is_recorded_once(psa: TwinHarness) -> None:
    ws = await psa.port.create_project_shell(make_project(), enterprise_id=EID)
    await psa.add_user("W-1")
    entries = [
        await psa.add_time(ws, "W-1", date(2025, 3, d), 240, approve=True) for d in (3, 4, 5)
    ]
    await lose(psa.client, "psa", 0.5, seed=8)
    first = await like_temporal(lambda: psa.port.mark_invoiced(entries, invoice_ref="ERP-INV-7"))
    again = await like_temporal(lambda: psa.port.mark_invoiced(entries, invoice_ref="ERP-INV-7"))
    assert await lose(psa.client, "psa", 0) > 0

    assert again == first
    (invoice,) = rows(psa_state(psa), psa_twin.PsaInvoice)
    assert invoice.reference_number == "ERP-INV-7"
    assert sorted(str(i) for i in invoice.time_entry_ids) == sorted(entries)
    assert all(t.invoiced for t in await psa.port.get_time_entries(entries))


async def test_psa_restored_assignment_is_restored_once(psa: TwinHarness) -> None:
    ws = await psa.port.create_project_shell(make_project(), enterprise_id=EID)
    await psa.add_user("W-2")
    original = await psa.port.get_assignment(
        await psa.add_assignment(ws, "W-2", "Consultant", date(2025, 3, 1), date(2025, 6, 30))
    )
    await psa.port.delete_assignment(original.external_id)
    await lose(psa.client, "psa", 0.5, seed=3)
    first = await like_temporal(lambda: psa.port.restore_assignment(original))
    again = await like_temporal(lambda: psa.port.restore_assignment(original))
    assert await lose(psa.client, "psa", 0) > 0

    assert again.external_id == first.external_id
    (restored,) = rows(psa_state(psa), psa_twin.PsaAssignment)
    assert str(restored.id) == first.external_id
    assert (first.worker_id, first.role, first.end_date) == ("W-2", "Consultant", date(2025, 6, 30))


async def test_psa_twenty_project_shells_as_the_provisioning_activities_make_them() -> None:
    """30% of the PSA's answers lost; 20 projects provisioned through the PSA activities
    (`psa.create_project_shell`, then `psa.seed_staffing_demand`), each retried as Temporal
    retries a failed activity: exactly 20 workspaces, and no story or resource request twice."""
    async with twin_harness(retry_budget_s=1.0) as h:
        activities = PsaActivities(h.port)
        await lose(h.client, "psa", 0.3, seed=42)
        retried: list[int] = []
        expected_demands: Counter[str] = Counter()
        for n in range(20):
            eid = f"01J9Z8Y7X6W5V4T3S2R1Q0P{n:03d}"
            project = make_project().model_copy(update={"name": f"Apollo rollout {n}"})
            shell = CreateProjectShell(project=project, enterprise_id=eid)
            psa_id = await like_temporal(
                lambda shell=shell: activities.create_project_shell(shell),  # type: ignore[misc]
                retried=retried,
            )
            demand = SeedStaffingDemand(
                psa_project_id=psa_id, demands=staffing_demand(project, eid)
            )
            await like_temporal(
                lambda demand=demand: activities.seed_staffing_demand(demand),  # type: ignore[misc]
                retried=retried,
            )
            expected_demands.update(d.external_id for d in demand.demands)
        dropped = await lose(h.client, "psa", 0)

        state = psa_state(h)
        workspaces = rows(state, psa_twin.PsaWorkspace)
        assert len(workspaces) == 20
        assert len({w.title for w in workspaces}) == 20
        for ws in workspaces:
            stories = rows(state, psa_twin.PsaStory, psa_twin.PsaStory.workspace_id == ws.id)
            codes = markers(stories, "description", WBS_MARKER)
            assert codes == Counter(["1", "1.1", "1.2"]) and len(stories) == 3, ws.title
        requests = rows(state, psa_twin.PsaResourceRequest)
        assert markers(requests, "notes", DEMAND_MARKER) == expected_demands
        assert len(requests) == 40
        refs = rows(
            state,
            psa_twin.PsaExternalReference,
            psa_twin.PsaExternalReference.subject_type == "Workspace",
        )
        assert sorted(r.status for r in refs) == ["successful"] * 20
        assert dropped > 20  # the fault was really there


# --------------------------------------------------------------------------- ERP (NetSuite)


@pytest.fixture
async def erp() -> AsyncIterator[tuple[ErpTwin, NetSuiteErp]]:
    async with erp_twin() as twin:
        async with NetSuiteErp(
            settings(twin.base_url, retry_budget_s=0.5),
            backoff_base_s=0.01,
            backoff_cap_s=0.1,
            poll_interval_s=0.01,
        ) as connector:
            yield twin, connector


async def test_erp_customer_job_timebills_and_invoice_once_each(
    erp: tuple[ErpTwin, NetSuiteErp],
) -> None:
    """NetSuite's creates were already safe (eid: upserts, X-NetSuite-Idempotency-Key on
    async batches); this holds them to it under the shared lost-response fault."""
    twin, connector = erp
    await lose(twin.client, "erp", 0.4, seed=9)
    for _ in range(2):
        customer_id = await like_temporal(
            lambda: connector.upsert_customer(
                Customer(source_system=System.CRM, external_id=CUSTOMER, name="Acme Corp"),
                enterprise_id="01J00000000000000000000CUS",
            )
        )
        job_id = await like_temporal(
            lambda: connector.upsert_project(
                project(),
                enterprise_id="01J0000000000000000000PRJ9",
                customer_erp_id=customer_id,  # noqa: B023 - called at once
                budget=Money("80000", "USD"),
            )
        )
        results = await like_temporal(
            lambda: connector.post_time(
                [posting(f"LR-{n}", "01J0000000000000000000PRJ9") for n in range(6)]
            )
        )
        assert all(r.ok for r in results)
        invoice_id = await like_temporal(
            lambda: connector.create_invoice(
                Invoice(
                    source_system=System.PSSYNC,
                    idempotency_key="INV-LOST-1",
                    project_id=job_id,  # noqa: B023 - called at once
                    customer_id=customer_id,  # noqa: B023
                    invoice_date=date(2025, 6, 20),
                    lines=[
                        InvoiceLine(
                            description="Work", quantity=Decimal(1), amount=Money("10", "USD")
                        )
                    ],
                )
            )
        )
    assert await lose(twin.client, "erp", 0) > 0
    state = twin.state
    assert (
        len(
            rows(
                state,
                erp_twin_module.ErpCustomer,
                erp_twin_module.ErpCustomer.external_id == CUSTOMER,
            )
        )
        == 1
    )
    assert [str(j.id) for j in rows(state, erp_twin_module.ErpJob)] == [job_id]
    keys = Counter(t.external_id for t in rows(state, erp_twin_module.ErpTimebill))
    assert keys == Counter(f"LR-{n}" for n in range(6))
    assert [str(i.id) for i in rows(state, erp_twin_module.ErpInvoice)] == [invoice_id]


# --------------------------------------------------------------------------- CRM (Salesforce)


CRM_FIRM = build_firm(21, workers=12, today=date(2025, 6, 15))


@dataclass
class CrmTwin(TwinApp):
    client: httpx.AsyncClient
    crm: SalesforceCrm


@pytest.fixture
async def crm() -> AsyncIterator[CrmTwin]:
    app = crm_twin.create_app(None, tenant="acme")
    crm_twin.load_firm(app, CRM_FIRM)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        settings = SystemSettings(base_url=url, tenant="acme", retry_budget_s=0.3)
        async with SalesforceCrm(settings, backoff_base_s=0.01, backoff_cap_s=0.1) as connector:
            yield CrmTwin(app, client, connector)


def new_deal(key: str | None) -> NewOpportunity:
    return NewOpportunity(
        name="Lost-answer deal",
        account_id=CRM_FIRM.customers[2].id,
        close_date=date(2025, 7, 31),
        **({"key": key} if key is not None else {}),
        lines=[
            NewOpportunityLine(
                product_code=f"SVC-{n}",
                description=f"Phase {n}",
                role="Consultant",
                quantity=Decimal(10 * n),
                unit_price=Decimal("150"),
            )
            for n in (1, 2, 3)
        ],
    )


async def test_crm_deal_with_key_is_one_opportunity_with_one_of_each_line(crm: CrmTwin) -> None:
    await lose(crm.client, "crm", 0.4, seed=3)
    first = await like_temporal(lambda: crm.crm.create_opportunity(new_deal("DEAL-LOST-1")))
    again = await like_temporal(lambda: crm.crm.create_opportunity(new_deal("DEAL-LOST-1")))
    assert await lose(crm.client, "crm", 0) > 0

    assert again == first
    keyed = rows(
        crm.state, crm_twin.CrmOpportunity, crm_twin.CrmOpportunity.Pssync_Key__c == "DEAL-LOST-1"
    )
    assert [o.Id for o in keyed] == [first]
    lines = rows(
        crm.state,
        crm_twin.CrmOpportunityLineItem,
        crm_twin.CrmOpportunityLineItem.OpportunityId == first,
    )
    assert sorted(li.ProductCode for li in lines) == ["SVC-1", "SVC-2", "SVC-3"]
    assert (await crm.crm.get_opportunity(first)).amount == Money("9000.00", "USD")


async def test_crm_deal_without_key_recovers_a_lost_answer_within_the_call(crm: CrmTwin) -> None:
    before = len(rows(crm.state, crm_twin.CrmOpportunity))
    await lose(crm.client, "crm", 0.3, seed=1)
    crm.crm.http.settings = crm.crm.http.settings.model_copy(update={"retry_budget_s": 10})
    created = await crm.crm.create_opportunity(new_deal(None))
    assert await lose(crm.client, "crm", 0) > 0
    assert len(rows(crm.state, crm_twin.CrmOpportunity)) == before + 1
    assert (
        len(
            rows(
                crm.state,
                crm_twin.CrmOpportunityLineItem,
                crm_twin.CrmOpportunityLineItem.OpportunityId == created,
            )
        )
        == 3
    )


async def test_crm_writes_land_once_and_as_asked(crm: CrmTwin) -> None:
    opp = CRM_FIRM.opportunities[0].id
    await lose(crm.client, "crm", 0.5, seed=6)
    for _ in range(2):
        await like_temporal(lambda: crm.crm.write_back_enterprise_id(opp, EID))
        await like_temporal(
            lambda: crm.crm.mark_provisioning(opp, ProvisioningStatus.FAILED, "ERP refused")
        )
    assert await lose(crm.client, "crm", 0) > 0
    (row,) = rows(crm.state, crm_twin.CrmOpportunity, crm_twin.CrmOpportunity.Id == opp)
    assert (
        row.Enterprise_Project_Id__c,
        row.Provisioning_Status__c,
        row.Provisioning_Error__c,
    ) == (
        EID,
        "Failed",
        "ERP refused",
    )
    assert len(rows(crm.state, crm_twin.CrmOpportunity)) == len(CRM_FIRM.opportunities)


# --------------------------------------------------------------------------- HCM (Workday)


HCM_FIRM = build_firm(5, workers=20, today=date(2025, 6, 15))


@dataclass
class HcmTwin(TwinApp):
    client: httpx.AsyncClient
    hcm: WorkdayHcm

    def events(self, worker_id: str, kind: str) -> list[Any]:
        (worker,) = rows(self.state, hcm_twin.HcmWorker, hcm_twin.HcmWorker.worker_id == worker_id)
        return rows(
            self.state,
            hcm_twin.HcmEvent,
            hcm_twin.HcmEvent.worker_wid == worker.wid,
            hcm_twin.HcmEvent.type == kind,
        )


@pytest.fixture
async def hcm() -> AsyncIterator[HcmTwin]:
    app = hcm_twin.create_app(
        None, tenant="acme", clock=lambda: datetime(2025, 6, 15, 12, tzinfo=UTC)
    )
    hcm_twin.load_firm(app, HCM_FIRM)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        settings = SystemSettings(base_url=url, tenant="acme", retry_budget_s=0.3)
        async with WorkdayHcm(settings, backoff_base_s=0.01, backoff_cap_s=0.1) as connector:
            yield HcmTwin(app, client, connector)


def plain_workers() -> list[str]:
    return [
        w.id
        for w in HCM_FIRM.workers
        if w.status == STATUS_ACTIVE
        and w.termination_date is None
        and w.hire_date < date(2025, 6, 1)
    ]


async def test_hcm_termination_rescind_and_rehire_are_entered_once(hcm: HcmTwin) -> None:
    first, second = plain_workers()[:2]
    await lose(hcm.client, "hcm", 0.5, seed=12)
    for _ in range(2):
        ended = await like_temporal(
            lambda: hcm.hcm.terminate(first, date(2025, 7, 31), date(2025, 7, 30))
        )
    assert ended.termination_date == date(2025, 7, 31)
    assert ended.last_day_worked == date(2025, 7, 30)

    await like_temporal(lambda: hcm.hcm.terminate(second, date(2025, 6, 1)))
    back = await like_temporal(lambda: hcm.hcm.rescind_termination(second))
    assert back.termination_date is None
    await like_temporal(lambda: hcm.hcm.terminate(second, date(2025, 6, 5)))
    for _ in range(2):
        rehired = await like_temporal(lambda: hcm.hcm.rehire(second, date(2025, 6, 10)))
    assert rehired.hire_date == date(2025, 6, 10) and rehired.termination_date is None
    assert await lose(hcm.client, "hcm", 0) > 0

    assert len(hcm.events(first, "terminate")) == 1
    assert len(hcm.events(second, "terminate")) == 2
    assert len(hcm.events(second, "rescind")) == 1
    assert len(hcm.events(second, "rehire")) == 1
