"""The composition root: builds clients, connectors and the store from settings, registers
workflows and activities, and runs the workers. Nothing else constructs infrastructure.

    pssync worker            # connect to settings.temporal and run until Ctrl-C
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import prometheus_client
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

import store
from activities import doctor as doctor_activities
from activities.assignment_sync import AssignmentForecastActivities, AssignmentSyncActivities
from activities.change_order import (
    ChangeOrderActivities,
    ChangeOrderErpActivities,
    OutboxNotifier,
)
from activities.crm import CrmActivities
from activities.erp import ErpActivities
from activities.events_relay import run_relay, thresholds_of
from activities.hcm_poll import HcmPollActivities, ensure_hcm_schedule
from activities.psa import PsaActivities
from activities.rate_cards import (
    RateCardActivities,
    RateCardErpActivities,
    RateCardSweepActivities,
    ensure_rate_card_sweep_schedule,
)
from activities.reconciliation import (
    ReconciliationActivities,
    ensure_reconciliation_schedules,
)
from activities.retention import RetentionActivities, ensure_retention_schedule
from activities.store import StoreActivities
from activities.time_posting import TimePostingActivities
from activities.time_to_invoice import TimeToInvoiceActivities, ensure_time_sweep_schedule
from activities.worker_termination import TerminationActivities
from activities.workforce import WorkforceActivities
from connectors._http import CLIENT_HOOKS
from connectors.crm import CrmPort, SalesforceCrm
from connectors.erp import ErpPort, NetSuiteErp
from connectors.hcm import HcmPort, WorkdayHcm
from connectors.psa import KantataPsa, PsaPort
from contracts.naming import TASK_QUEUE, erp_task_queue
from contracts.settings import Settings, load_settings
from contracts.v1.time_to_invoice import pipeline_input
from plumbing.codec import converter_for
from plumbing.logs import configure_logging
from plumbing.telemetry import WORKER, Tracing, start_tracing
from workflows import assignment_sync as assignment_sync_workflows
from workflows import change_order as change_order_workflows
from workflows import rate_card_sweep as rate_card_sweep_workflows
from workflows import rate_card_sync as rate_card_workflows
from workflows import reconciliation as reconciliation_workflows
from workflows import retention as retention_workflows
from workflows import time_to_invoice as time_to_invoice_workflows
from workflows import worker_lifecycle as lifecycle_workflows
from workflows import worker_termination as termination_workflows
from workflows.doctor import DoctorWorkflow
from workflows.opportunity_to_project import OpportunityToProjectWorkflow

log = logging.getLogger("pssync.worker")

WORKFLOWS: Sequence[type] = (
    DoctorWorkflow,
    OpportunityToProjectWorkflow,
    *change_order_workflows.WORKFLOWS,
    *assignment_sync_workflows.WORKFLOWS,
    *rate_card_workflows.WORKFLOWS,
    *rate_card_sweep_workflows.WORKFLOWS,
    *termination_workflows.WORKFLOWS,
    *lifecycle_workflows.WORKFLOWS,
    *time_to_invoice_workflows.WORKFLOWS,
    *retention_workflows.WORKFLOWS,
    *reconciliation_workflows.WORKFLOWS,
)


def prometheus_runtime(port: int) -> Runtime:
    """A Temporal runtime exporting SDK metrics for Prometheus on 127.0.0.1:`port`."""
    return Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}"))
    )


def serve_app_metrics(port: int, *, host: str = "127.0.0.1") -> Callable[[], None] | None:
    """Serve pssync's own worker metrics (the default prometheus_client registry: vendor
    quota and rate limits, posting latency, entry outcomes) on `host:port`, beside the SDK's
    endpoint on `worker_metrics_port`. Returns what stops it; None when `port` is 0 (off)."""
    if not port:
        return None
    server, thread = prometheus_client.start_http_server(port, addr=host)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    log.info("pssync metrics on http://%s:%d/metrics", host, port)
    return stop


async def connect_client(
    settings: Settings, *, target: str | None = None, runtime: Runtime | None = None
) -> Client:
    """A client with the one data converter pssync uses everywhere: pydantic's, with payloads
    encrypted by the keys `settings.payloads` configure (`plumbing.codec`).

    Connection options come from a Temporal envconfig profile when one is named, then from
    pssync's own settings (address, namespace, TLS, API key)."""
    options: dict[str, Any] = {}
    if settings.temporal.envconfig_profile:
        options.update(
            ClientConfig.load_client_connect_config(profile=settings.temporal.envconfig_profile)
        )
    options["target_host"] = target or settings.temporal.address
    options["namespace"] = settings.temporal.namespace
    if settings.temporal.api_key is not None:
        options["api_key"] = settings.temporal.api_key.get_secret_value()
        options["tls"] = True
    elif settings.temporal.tls:
        options["tls"] = True
    if runtime is not None:
        options["runtime"] = runtime
    return await Client.connect(data_converter=converter_for(settings), **options)


@dataclass
class Deployment:
    """The connectors and store one deployment runs on. `from_settings` builds the real ones;
    tests build it with the in-memory fakes."""

    settings: Settings
    store: store.Store
    crm: CrmPort
    psa: PsaPort
    erp: ErpPort
    hcm: HcmPort
    engine: Engine | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Deployment:
        engine = store.make_engine(settings.resolved_database_url)
        return cls(
            settings=settings,
            store=store.Store(engine),
            crm=SalesforceCrm(settings.crm),
            psa=KantataPsa(settings.psa),
            erp=NetSuiteErp(settings.erp),
            hcm=WorkdayHcm(settings.hcm),
            engine=engine,
        )

    def tenants(self) -> dict[str, str]:
        s = self.settings
        return {"CRM": s.crm.tenant, "PSA": s.psa.tenant, "ERP": s.erp.tenant, "HCM": s.hcm.tenant}

    async def aclose(self) -> None:
        for connector in (self.crm, self.psa, self.erp, self.hcm):
            close = getattr(connector, "aclose", None)
            if close is not None:
                await close()
        if self.engine is not None:
            self.engine.dispose()


Activities = tuple[list[Any], list[Any]]
"""A process's activities: those on the main task queue, and those on the ERP queue."""


def _provisioning_and_change_orders(deployment: Deployment) -> Activities:
    crm = CrmActivities(deployment.crm)
    psa = PsaActivities(deployment.psa)
    erp = ErpActivities(deployment.erp)
    change_order = ChangeOrderActivities(
        deployment.psa, deployment.store, OutboxNotifier(deployment.store, deployment.psa)
    )
    change_order_erp = ChangeOrderErpActivities(deployment.erp)
    main = [
        # opportunity to project
        crm.read_opportunity,
        crm.write_back_enterprise_id,
        crm.mark_provisioning,
        psa.check_rate_card,
        psa.create_project_shell,
        psa.archive_project,
        psa.seed_staffing_demand,
        psa.cancel_staffing_demand,
        # change orders
        change_order.read_change_order,
        change_order.set_state,
        change_order.read_psa_budget,
        change_order.update_psa_budget,
        change_order.revert_psa_budget,
        change_order.raise_demand,
        change_order.cancel_demand,
        change_order.notify,
    ]
    erp_bound = [
        erp.check_cost_center,
        erp.upsert_customer,
        erp.upsert_project,
        erp.close_project,
        change_order_erp.read_erp_budget,
        change_order_erp.revise_erp_budget,
        change_order_erp.revert_erp_budget,
    ]
    return main, erp_bound


def _staffing_and_rate_cards(client: Client, deployment: Deployment) -> Activities:
    sync = AssignmentSyncActivities(deployment.psa, deployment.store)
    sync_erp = AssignmentForecastActivities(deployment.erp)
    rate_cards = RateCardActivities(deployment.psa)
    rate_cards_erp = RateCardErpActivities(deployment.erp)
    main = [
        sync.read_assignments,
        sync.resolve_erp_project,
        rate_cards.read_revision,  # rate card sync, and the sweep for lost webhooks
        RateCardSweepActivities(deployment.psa, deployment.store, client).sweep,
    ]
    return main, [sync_erp.sync_forecast, rate_cards_erp.write_erp_revision]


def _workforce(client: Client, deployment: Deployment) -> Activities:
    """Worker termination, the HCM poller and the worker lifecycle."""
    termination = TerminationActivities(deployment.psa, deployment.hcm)
    workforce = WorkforceActivities(deployment.psa, deployment.erp)
    posting = TimePostingActivities(deployment.psa, deployment.erp)
    poll = HcmPollActivities(
        deployment.hcm, deployment.store, client, default_tenant=deployment.settings.hcm.tenant
    )
    main = [
        termination.find_conflicts,
        termination.read_worker,
        termination.assignments_after,
        termination.end_assignments,
        termination.restore_assignments,
        termination.raise_backfill,
        termination.cancel_backfill,
        termination.close_time_entry,
        termination.reopen_time_entry,
        poll.poll_changes,
        workforce.find_conflicts,
        workforce.upsert_resource,
    ]
    return main, [posting.post_approved_time, *workforce.erp_bound()]


def _time_and_reconciliation(client: Client, deployment: Deployment) -> Activities:
    """Time to invoice, reconciliation and retention."""
    settings = deployment.settings
    time_to_invoice = TimeToInvoiceActivities(
        deployment.psa,
        deployment.erp,
        deployment.hcm,
        deployment.store,
        client=client,
        pipeline_defaults=pipeline_input(settings, "-"),
    )
    reconciliation = ReconciliationActivities(
        deployment.crm,
        deployment.psa,
        deployment.erp,
        deployment.store,
        client=client,
        pipeline_defaults=pipeline_input(settings, "-"),
        tenants=deployment.tenants(),
        hcm=deployment.hcm,
        budget_variance=settings.reconcile.budget_variance,
    )
    main = [
        time_to_invoice.reject_entry,
        time_to_invoice.prepare_invoice,
        time_to_invoice.mark_invoiced,
        time_to_invoice.sweep,
        # retention: the daily purge of aged inbox, outbox, lineage and audit rows
        RetentionActivities(deployment.store).purge,
        reconciliation.begin,
        reconciliation.plan,
        reconciliation.finish,
        reconciliation.acknowledge,
    ]
    erp_bound = [
        time_to_invoice.process_batch,
        time_to_invoice.create_invoice,
        time_to_invoice.void_invoice,
        reconciliation.compare_labor_actuals,
        reconciliation.compare_project_master,
        reconciliation.compare_billing_status,
        reconciliation.compare_forecast_alignment,
        reconciliation.compare_workforce,
        reconciliation.force_repair,
    ]
    return main, erp_bound


def _store(deployment: Deployment) -> list[Any]:
    """The store's activities, shared by every process."""
    st = StoreActivities(deployment.store, deployment.tenants())
    return [
        st.reserve_enterprise_id,
        st.link_xrefs,
        st.open_exception,
        st.resolve_exception,
        st.escalate_exception,
        st.add_outbox,
        st.record_lineage,
    ]


def build_workers(
    client: Client, deployment: Deployment, *, task_queue: str = TASK_QUEUE, **options: Any
) -> list[Worker]:
    """Every workflow and activity of every process, on two workers: the main one (workflows;
    CRM, PSA, HCM and store activities) and the ERP one, whose activities the server starts no
    faster than the ERP's quota. Tests build the same wiring over in-memory fakes.
    `options` go to both `Worker`s (e.g. `max_cached_workflows`)."""
    settings = deployment.settings
    main_activities: list[Any] = [doctor_activities.ping, *_store(deployment)]
    erp_activities: list[Any] = []
    for main, erp_bound in (
        _provisioning_and_change_orders(deployment),
        _staffing_and_rate_cards(client, deployment),
        _workforce(client, deployment),
        _time_and_reconciliation(client, deployment),
    ):
        main_activities += main
        erp_activities += erp_bound
    # A deploy (SIGTERM) lets activities in flight finish instead of abandoning them to their
    # start-to-close timeouts.
    grace = timedelta(seconds=settings.worker_shutdown_grace_s)
    return [
        Worker(
            client,
            task_queue=task_queue,
            workflows=list(WORKFLOWS),
            activities=main_activities,
            graceful_shutdown_timeout=grace,
            **options,
        ),
        Worker(
            client,
            task_queue=erp_task_queue(task_queue),
            activities=erp_activities,
            max_task_queue_activities_per_second=settings.erp_quota_rps,
            max_concurrent_activities=settings.erp.max_concurrency * 4,
            graceful_shutdown_timeout=grace,
            **options,
        ),
    ]


async def run_workers(
    client: Client,
    settings: Settings,
    stop: asyncio.Event,
    *,
    deployment: Deployment | None = None,
    task_queue: str = TASK_QUEUE,
    tracing: Tracing | None = None,
) -> None:
    """Run every worker until `stop` is set, then shut them down gracefully. With `tracing`
    (telemetry on) workflows, activities and vendor calls are traced."""
    store.upgrade(settings.resolved_database_url)
    if tracing is not None:  # before the connectors are made: their HTTP clients are traced
        client = tracing.traced_client(client)
        CLIENT_HOOKS.append(tracing.instrument_httpx)
    try:
        deployment = deployment or Deployment.from_settings(settings)
        workers = build_workers(client, deployment, task_queue=task_queue)
        # HCM has no push: a Schedule polls its changed-workers window (create or update).
        await ensure_hcm_schedule(
            client, every=timedelta(seconds=settings.hcm_poll_interval_s), task_queue=task_queue
        )
        # Approved time that webhooks missed, and closed T&M periods: a Schedule sweeps PSA.
        await ensure_time_sweep_schedule(
            client,
            every=timedelta(seconds=settings.time_sweep_interval_s),
            task_queue=task_queue,
            psa_tenant=settings.psa.tenant,
        )
        # Rate card revisions whose webhook was lost: a Schedule sweeps the PSA's versions.
        await ensure_rate_card_sweep_schedule(
            client,
            every=timedelta(seconds=settings.rate_card_sweep_interval_s),
            task_queue=task_queue,
            psa_tenant=settings.psa.tenant,
        )
        # Retention: a Schedule purges aged inbox, outbox, lineage and audit rows (daily).
        await ensure_retention_schedule(client, settings.retention, task_queue=task_queue)
        # Reconciliation: a Schedule per configured domain compares the systems (nightly).
        await ensure_reconciliation_schedules(client, settings, task_queue=task_queue)
        async with contextlib.AsyncExitStack() as stack:
            for w in workers:
                await stack.enter_async_context(w)
            log.info("workers polling %s", ", ".join(w.task_queue for w in workers))
            if settings.events.enabled:  # the outbox relay (docs/events.md), supervised
                relay = asyncio.create_task(
                    run_relay(
                        deployment.store, settings.events, stop, thresholds=thresholds_of(settings)
                    )
                )
                stack.callback(relay.cancel)
            await stop.wait()
    finally:
        if tracing is not None:
            CLIENT_HOOKS.remove(tracing.instrument_httpx)
        if deployment is not None:
            await deployment.aclose()


async def _main(settings: Settings) -> None:
    runtime = prometheus_runtime(settings.worker_metrics_port)
    client = await connect_client(settings, runtime=runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tracing = start_tracing(settings.telemetry, WORKER)  # None (nothing made) when off
    stop_app_metrics = serve_app_metrics(settings.worker_app_metrics_port)
    try:
        await run_workers(client, settings, stop, tracing=tracing)
    finally:
        if stop_app_metrics is not None:
            stop_app_metrics()
        if tracing is not None:
            tracing.shutdown()


def main() -> None:
    settings = load_settings()
    configure_logging(settings.telemetry)  # text or JSON lines, redacted, httpx quiet
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
