"""The console's runs and health page (`gateway.console.health`) over real HTTP, a real SQLite
store and the real Temporal dev server, with a stand-in run and activity.

The stand-in (`HealthStandIn`, on its own task queue) either calls an ERP activity that keeps
failing (`erp.stand_in_post`: a run stuck on a retrying activity) or fails at once (a recent
failure). Its worker's client runs on a Temporal runtime exporting Prometheus metrics on
`settings.worker_metrics_port`, as the real worker does, so the page reads real SDK metrics.
Runs carry `BusinessProcess = 'assignment_sync'` (no other gateway test starts such runs), and
the page is read with `?process=assignment_sync`, so runs other tests left behind on the shared
dev server do not crowd them out. Every run still going is terminated at teardown.
"""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from markupsafe import escape
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from sqlalchemy import Engine
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.exceptions import ApplicationError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RetryConfig
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from contracts.settings import Actor, Settings, hash_token, load_settings
from gateway import create_app
from gateway.console.health import parse_worker_metrics
from store import Store
from tests._servers import free_port, serve
from tests.gateway.test_console import (
    DM,
    FINANCE,
    OPS,
    add_items,
    browser,
    csrf_of,
    run_with_item,
    sign_in,
    signed_in,
)
from tests.gateway.test_gateway import CRM_TENANT, Gw

__all__ = ["browser"]

BUSINESS_PROCESS = SearchAttributeKey.for_keyword("BusinessProcess")
ENTERPRISE_PROJECT_ID = SearchAttributeKey.for_keyword("EnterpriseProjectId")
PROCESS = "assignment_sync"
SCOPED_OPS = "dev-scoped-ops-p1"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
PAGE = f"/console/health?process={PROCESS}"


# --------------------------------------------------------------------------- stand-in run


@activity.defn(name="erp.stand_in_post")
async def refused_post(project: str, detail: str) -> None:
    raise ApplicationError(f"ERP refused the posting for {project}: {detail}", type="Refused")


@workflow.defn(name="HealthStandIn")
class HealthStandIn:
    """`retry`: calls the ERP stand-in activity until it succeeds (it never does);
    `fail`: fails at once; both say `detail` (hostile text, in most tests)."""

    @workflow.run
    async def run(self, mode: str, project: str, detail: str) -> None:
        if mode == "fail":
            raise ApplicationError(f"the ERP project {project} is closed: {detail}")
        await workflow.execute_activity(
            refused_post,
            args=[project, detail],
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=100),
                backoff_coefficient=600.0,
                maximum_interval=timedelta(minutes=2),
            ),
        )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """test_gateway's settings, an ops person scoped to project P-1, and the worker's metrics
    ports (the SDK's and pssync's own) on free ports."""
    settings = load_settings(home=tmp_path / ".pssync")
    settings.crm.tenants = [CRM_TENANT]
    settings.actors[hash_token(SCOPED_OPS)] = Actor(
        name="olga.scoped", roles=["ops"], scopes=["project:P-1"]
    )
    settings.worker_metrics_port = free_port()
    settings.worker_app_metrics_port = free_port()
    return settings


Start = Callable[..., Awaitable[WorkflowHandle[Any, Any]]]


@pytest.fixture
async def start_run(gw: Gw, dev_env: WorkflowEnvironment) -> AsyncIterator[Start]:
    """Start stand-in runs, served by a worker whose runtime exports Prometheus metrics on
    `settings.worker_metrics_port`; every run still going is terminated afterwards."""
    queue = f"health-{uuid.uuid4()}"
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=f"127.0.0.1:{gw.settings.worker_metrics_port}")
        )
    )
    client = await Client.connect(
        dev_env.client.service_client.config.target_host,
        namespace=dev_env.client.namespace,
        data_converter=dev_env.client.data_converter,
        runtime=runtime,
    )
    started: list[WorkflowHandle[Any, Any]] = []

    async def start(
        mode: str, project: str = "P-1", detail: str = HOSTILE
    ) -> WorkflowHandle[Any, Any]:
        handle = await client.start_workflow(
            "HealthStandIn",
            args=[mode, project, detail],
            id=f"health-stand-in/{mode}/{uuid.uuid4().hex[:10]}",
            task_queue=queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(BUSINESS_PROCESS, PROCESS),
                    SearchAttributePair(ENTERPRISE_PROJECT_ID, project),
                ]
            ),
        )
        started.append(handle)
        return handle

    async with Worker(
        client,
        task_queue=queue,
        workflows=[HealthStandIn],
        activities=[refused_post],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        yield start
        for handle in started:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")


async def visible(client: Client, workflow_id: str, status: str) -> None:
    """Wait until visibility lists the run with `status` (it is eventually consistent)."""
    query = f"WorkflowId = '{workflow_id}' AND ExecutionStatus = '{status}'"
    for _ in range(200):
        if (await client.count_workflows(query)).count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{workflow_id} never listed as {status}")


async def retrying(handle: WorkflowHandle[Any, Any]) -> None:
    """Wait until the run's activity is past its first attempt."""
    for _ in range(200):
        desc = await handle.describe()
        if any(p.attempt > 1 for p in desc.raw_description.pending_activities):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} never retried its activity")


def row_of(page: httpx.Response, table: str, run: str) -> str:
    """The rendered row of `run` in `table` ('' when it is not listed)."""
    if f'id="{table}"' not in page.text:
        return ""
    part = page.text.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    marker = f'data-run="{html.escape(run)}"'
    return part.split(marker, 1)[1].split("</tr>", 1)[0] if marker in part else ""


def cell(row: str, n: int) -> str:
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
    return cells[n] if n < len(cells) else ""


# --------------------------------------------------------------------------- the page


async def test_a_run_retrying_an_activity_shows_as_stuck(
    gw: Gw, browser: Any, start_run: Start
) -> None:
    handle = await start_run("retry")
    await visible(gw.client, handle.id, "Running")
    await retrying(handle)
    olga = browser()
    await signed_in(olga, OPS)
    page = await olga.get(PAGE)
    assert page.status_code == 200
    assert '<a href="/console/health" aria-current="page">Health</a>' in page.text
    row = row_of(page, "stuck", handle.id)
    assert row, page.text[:2000]
    assert cell(row, 3) == "erp.stand_in_post"
    attempt = int(cell(row, 4).split()[0])
    assert attempt >= 2
    assert "ERP refused the posting for P-1" in cell(row, 5)
    assert str(escape(HOSTILE)) in cell(row, 5)
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    running = page.text.split('data-process="assignment_sync"', 1)[1].split("</tr>", 1)[0]
    assert int(cell(running, 1)) >= 1
    # The worker's own metrics: the failed attempts of an ERP activity count against the ERP.
    erp = page.text.split('data-system="ERP"', 1)[1].split("</tr>", 1)[0]
    assert 'id="notice-worker"' not in page.text
    assert int(cell(erp, 2).replace(",", "")) >= 1  # failed
    assert cell(erp, 3).endswith("%")  # error rate


async def test_a_run_with_an_open_item_is_stuck_and_its_cause_counted(gw: Gw, browser: Any) -> None:
    workflow_id, _ = await run_with_item(gw)
    olga = browser()
    await signed_in(olga, OPS)
    page = await olga.get("/console/health?process=opportunity_to_project")
    assert page.status_code == 200
    row = row_of(page, "stuck", workflow_id)
    assert row and ">1</a>: COST_CENTER_INVALID" in cell(row, 2)
    recent = page.text.split('id="recent-causes"', 1)[1].split("</table>", 1)[0]
    assert 'data-cause="COST_CENTER_INVALID">1<' in recent


async def test_a_failed_run_shows_with_its_cause_escaped(
    gw: Gw, browser: Any, start_run: Start
) -> None:
    handle = await start_run("fail")
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    await visible(gw.client, handle.id, "Failed")
    olga = browser()
    await signed_in(olga, OPS)
    page = await olga.get(PAGE)
    assert page.status_code == 200
    row = row_of(page, "failures", handle.id)
    assert row and cell(row, 2) == "failed"
    assert f"the ERP project P-1 is closed: {escape(HOSTILE)}" in cell(row, 4)
    assert "<script>alert" not in page.text and "<img src=x" not in page.text


async def test_only_ops_see_runs_and_health(gw: Gw, browser: Any) -> None:
    for token in (DM, FINANCE):
        person = browser()
        await signed_in(person, token)
        refused = await person.get("/console/health")
        assert refused.status_code == 403
        assert "does not hold the ops role" in refused.text
        assert 'id="stuck"' not in refused.text
    away = await browser().get("/console/health")
    assert away.status_code == 303 and "/console/sign-in" in away.headers["location"]


async def test_scoped_ops_see_only_the_runs_of_their_projects(
    gw: Gw, browser: Any, start_run: Start
) -> None:
    mine, theirs = await start_run("retry", "P-1"), await start_run("retry", "P-2")
    for handle in (mine, theirs):
        await visible(gw.client, handle.id, "Running")
        await retrying(handle)
    opened = datetime.now(UTC) - timedelta(hours=2)
    add_items(
        gw.engine,
        [
            {"id": "h-1", "project": "P-1", "process": PROCESS},
            {"id": "h-2", "project": "P-2", "process": PROCESS},
        ],
        opened=opened,
    )
    olga = browser()
    assert (await sign_in(olga, SCOPED_OPS)).status_code == 303
    page = await olga.get(PAGE)
    assert page.status_code == 200
    assert row_of(page, "stuck", mine.id) and not row_of(page, "stuck", theirs.id)
    assert row_of(page, "stuck", "time-to-invoice/acme/P-1")
    assert not row_of(page, "stuck", "time-to-invoice/acme/P-2")
    everyone = browser()
    await signed_in(everyone, OPS)
    page = await everyone.get(PAGE)
    assert row_of(page, "stuck", mine.id) and row_of(page, "stuck", theirs.id)
    assert row_of(page, "stuck", "time-to-invoice/acme/P-2")


async def test_temporal_unreachable_is_a_notice_not_an_error(
    gw: Gw, settings: Settings, browser: Any
) -> None:
    await run_with_item(gw)
    down = await Client.connect("127.0.0.1:1", lazy=True, retry_config=RetryConfig(max_retries=0))
    settings.worker_metrics_port = free_port()  # nothing listens there
    settings.worker_app_metrics_port = free_port()  # nor there
    async with (
        serve(create_app(settings, gw.store, down, task_queue=gw.task_queue)) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        form = await http.get("/console/sign-in")
        answer = await http.post(
            "/console/sign-in", data={"token": OPS, "next": "", "csrf_token": csrf_of(form)}
        )
        assert answer.status_code == 303
        page = await http.get("/console/health")
    assert page.status_code == 200
    assert 'id="notice-temporal"' in page.text and "Temporal is unavailable" in page.text
    assert 'id="notice-worker"' in page.text and "Worker metrics unavailable" in page.text
    # What the store knows is still shown: the open item's run is stuck.
    assert ">1</a>: COST_CENTER_INVALID" in page.text


def test_items_opened_since_a_moment_newest_first(engine: Engine, store: Store) -> None:
    now = datetime.now(UTC)
    add_items(
        engine,
        [{"id": "h-3", "project": "P-1"}, {"id": "h-4", "project": "P-2"}],
        opened=now - timedelta(days=2),
    )
    add_items(
        engine,
        [{"id": "h-5", "project": "P-3"}, {"id": "h-6", "project": "P-4"}],
        opened=now - timedelta(hours=1),
    )
    found = store.exceptions_opened_since(now - timedelta(days=1))
    assert [r.context["psa_project_id"] for r in found] == ["P-4", "P-3"]
    assert len(store.exceptions_opened_since(now - timedelta(days=3), limit=3)) == 3
    with pytest.raises(ValueError):
        store.exceptions_opened_since(datetime(2026, 1, 1))


def test_worker_metrics_per_system_with_quota_and_waits() -> None:
    """The worker's exposition as the SDK and the connectors name it, read per system."""
    text = "\n".join(
        [
            "# TYPE temporal_activity_execution_failed counter",
            'temporal_activity_execution_failed{activity_type="erp.upsert_project"} 3',
            'temporal_activity_execution_failed{activity_type="change_order.revise_erp_budget"} 1',
            "# TYPE temporal_activity_execution_latency histogram",
            'temporal_activity_execution_latency_count{activity_type="erp.upsert_project"} 30',
            "temporal_activity_execution_latency_count"
            '{activity_type="change_order.revise_erp_budget"} 10',
            'temporal_activity_execution_latency_count{activity_type="psa.check_rate_card"} 5',
            'temporal_activity_execution_latency_count{activity_type="store.purge_expired"} 9',
            "# TYPE pssync_vendor_quota_used gauge",
            'pssync_vendor_quota_used{system="ERP"} 940',
            "# TYPE pssync_vendor_quota_limit gauge",
            'pssync_vendor_quota_limit{system="ERP"} 1000',
            "# TYPE pssync_vendor_rate_limited_total counter",
            'pssync_vendor_rate_limited_total{system="ERP",code="SSS_REQUEST_LIMIT_EXCEEDED"} 2',
            'pssync_vendor_rate_limited_total{system="ERP",code="PSSYNC_QUOTA_SHARE"} 7',
            "",
        ]
    )
    systems = parse_worker_metrics(text)
    erp, psa, crm = systems["ERP"], systems["PSA"], systems["CRM"]
    assert (erp.calls, erp.errors, erp.error_rate) == (40, 4, 0.1)
    assert (erp.quota_used, erp.quota_limit, erp.rate_limited, erp.quota_waits) == (
        940,
        1000,
        2,
        7,
    )
    assert (psa.calls, psa.errors, psa.error_rate) == (5, 0, 0)
    assert (crm.calls, crm.errors, crm.error_rate) == (None, None, None)


def test_vendor_request_counts_win_over_activity_executions() -> None:
    """With the connectors' per-request counter on the app port, calls and errors are HTTP
    requests (rate limits apart); the SDK's activity figures are the fallback only."""
    sdk = "\n".join(
        [
            "# TYPE temporal_activity_execution_failed counter",
            'temporal_activity_execution_failed{activity_type="erp.upsert_project"} 9',
            "# TYPE temporal_activity_execution_latency histogram",
            'temporal_activity_execution_latency_count{activity_type="erp.upsert_project"} 90',
            'temporal_activity_execution_latency_count{activity_type="psa.check_rate_card"} 5',
            "",
        ]
    )
    app = "\n".join(
        [
            "# HELP pssync_vendor_requests_total HTTP requests to a vendor.",
            "# TYPE pssync_vendor_requests_total counter",
            'pssync_vendor_requests_total{system="ERP",method="POST",outcome="ok"} 34',
            'pssync_vendor_requests_total{system="ERP",method="GET",outcome="ok"} 3',
            'pssync_vendor_requests_total{system="ERP",method="POST",outcome="server_error"} 2',
            'pssync_vendor_requests_total{system="ERP",method="POST",outcome="timeout"} 1',
            'pssync_vendor_requests_total{system="ERP",method="GET",outcome="client_error"} 1',
            'pssync_vendor_requests_total{system="ERP",method="POST",outcome="rate_limited"} 2',
            'pssync_vendor_requests_created{system="ERP",method="POST",outcome="ok"} 1.7e9',
            'pssync_vendor_requests_total{system="CRM",method="GET",outcome="ok"} 12',
            "# TYPE pssync_vendor_quota_used gauge",
            'pssync_vendor_quota_used{system="ERP"} 940',
            "# TYPE pssync_vendor_quota_limit gauge",
            'pssync_vendor_quota_limit{system="ERP"} 1000',
            "",
        ]
    )
    systems = parse_worker_metrics(app, sdk)
    erp, psa, crm = systems["ERP"], systems["PSA"], systems["CRM"]
    assert (erp.calls, erp.errors, erp.error_rate) == (43, 4, 4 / 43)
    assert (erp.quota_used, erp.quota_limit) == (940, 1000)
    assert (crm.calls, crm.errors, crm.error_rate) == (12, 0, 0)
    assert (psa.calls, psa.errors) == (None, None), "no requests counted: not the activities"
    # Without the counter (an older worker, or its app port off), the SDK's figures show.
    fallback = parse_worker_metrics(sdk)
    assert (fallback["ERP"].calls, fallback["ERP"].errors) == (90, 9)
    assert (fallback["PSA"].calls, fallback["PSA"].errors) == (5, 0)


async def test_the_page_reads_calls_and_errors_from_the_workers_app_port(
    gw: Gw, browser: Any
) -> None:
    """Only the worker's app metrics port answers (its SDK port is silent): the systems table
    shows the connectors' request counts and the quota from it."""
    registry = CollectorRegistry()
    requests = Counter(
        "pssync_vendor_requests_total",
        "HTTP requests to a vendor.",
        ["system", "method", "outcome"],
        registry=registry,
    )
    for outcome, n in {"ok": 34, "server_error": 3, "timeout": 1, "rate_limited": 2}.items():
        requests.labels(system="ERP", method="POST", outcome=outcome).inc(n)
    requests.labels(system="HCM", method="GET", outcome="ok").inc(7)
    used = Gauge("pssync_vendor_quota_used", "used", ["system"], registry=registry)
    limit = Gauge("pssync_vendor_quota_limit", "limit", ["system"], registry=registry)
    used.labels(system="ERP").set(940)
    limit.labels(system="ERP").set(1000)
    server, thread = start_http_server(
        gw.settings.worker_app_metrics_port, addr="127.0.0.1", registry=registry
    )
    try:
        olga = browser()
        await signed_in(olga, OPS)
        page = await olga.get(PAGE)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert page.status_code == 200
    assert 'id="notice-worker"' not in page.text
    erp = page.text.split('data-system="ERP"', 1)[1].split("</tr>", 1)[0]
    assert [cell(erp, n) for n in (1, 2, 3, 4)] == ["40", "4", "10.0%", "940 of 1,000"]
    hcm = page.text.split('data-system="HCM"', 1)[1].split("</tr>", 1)[0]
    assert [cell(hcm, n) for n in (1, 2, 3)] == ["7", "0", "0.0%"]
    psa = page.text.split('data-system="PSA"', 1)[1].split("</tr>", 1)[0]
    assert cell(psa, 1) == "—"
