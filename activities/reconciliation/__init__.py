"""Activities of reconciliation (docs/processes/reconciliation.md), one module per domain:

    acts = ReconciliationActivities(psa, erp, store, client=client, pipeline_defaults=...)

- `runs` — a run's record (`recon.begin`, `recon.finish`), its scope page by page
  (`recon.plan`), and a person's decision on an escalated drift (`recon.acknowledge`,
  `recon.force_repair` on the ERP queue);
- `labor` — labor actuals: `recon.compare.labor_actuals` (ERP queue), with its pure rules in
  `labor_rules`;
- `project_master` — won deals vs PSA and ERP projects and the xref:
  `recon.compare.project_master` (ERP queue), with its pure rules in `project_rules`;
- `billing` — milestones and closed T&M periods vs ERP invoices, PSA invoiced flags:
  `recon.compare.billing_status` (ERP queue), pure rules in `billing_rules`;
- `forecast` — PSA staffing vs the ERP labor forecast and budget:
  `recon.compare.forecast_alignment` (ERP queue), pure rules in `forecast_rules`;
- `workforce` — HCM leavers vs their PSA assignments and time: `recon.compare.workforce`
  (ERP queue, for one queue of comparisons), pure rules in `workforce_rules`;
- `_base` — what the domains share: `_settle` (decide, repair, escalate, record), the desk's
  signals, heartbeats and the vendor-call count.

A new domain adds a member of `Domain`, a module with its `recon.compare.<domain>` activity
(and its rules), a mixin here and its activity in `worker.build_workers`.

Client side: `ensure_reconciliation_schedules` (one Schedule per configured domain) and
`start_reconciliation` (the CLI).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from activities.reconciliation.billing import _BillingStatusMixin
from activities.reconciliation.forecast import _ForecastMixin
from activities.reconciliation.forecast_rules import DEFAULT_BUDGET_VARIANCE
from activities.reconciliation.labor import _LaborMixin
from activities.reconciliation.project_master import _ProjectMasterMixin
from activities.reconciliation.runs import _RunsMixin
from activities.reconciliation.workforce import _WorkforceMixin
from connectors.crm import CrmPort
from connectors.erp import ErpPort
from connectors.hcm import HcmPort
from connectors.psa import PsaPort
from contracts.settings import Settings
from contracts.v1.reconciliation import (
    PROCESS_RECONCILIATION,
    RECONCILIATION,
    Domain,
    ReconciliationInput,
    ReconciliationReport,
    reconciliation_input,
    reconciliation_schedule_id,
    reconciliation_workflow_id,
)
from contracts.v1.time_to_invoice import TimePipelineInput
from plumbing.temporal import BUSINESS_PROCESS, ensure_interval_schedule
from store import Store


class ReconciliationActivities(
    _LaborMixin,
    _ProjectMasterMixin,
    _BillingStatusMixin,
    _ForecastMixin,
    _WorkforceMixin,
    _RunsMixin,
):
    """Everything reconciliation does outside its workflows. The comparisons and
    `force_repair` read the ERP: they run on the ERP task queue, at its quota."""

    def __init__(
        self,
        crm: CrmPort,
        psa: PsaPort,
        erp: ErpPort,
        store: Store,
        *,
        client: Client | None = None,
        pipeline_defaults: TimePipelineInput | None = None,
        tenants: dict[str, str] | None = None,
        hcm: HcmPort | None = None,
        budget_variance: Decimal = DEFAULT_BUDGET_VARIANCE,
    ) -> None:
        self.crm = crm
        self.psa = psa
        self.erp = erp
        self.store = store
        self.client = client
        self.pipeline_defaults = pipeline_defaults
        self.tenants = dict(tenants or {})
        self.hcm = hcm
        self.budget_variance = budget_variance


async def ensure_reconciliation_schedules(
    client: Client, settings: Settings, *, task_queue: str
) -> list[str]:
    """Create (or bring up to date) one Schedule per configured domain that
    runs `Reconciliation` over the PSA tenant every `settings.reconcile.interval_s`;
    overlapping runs are skipped. Returns the Schedule ids."""
    if not settings.reconcile.enabled:
        return []
    made = []
    for name in settings.reconcile.domains:
        domain = Domain(name)
        tenant = settings.psa.tenant
        schedule_id = reconciliation_schedule_id(domain, tenant)
        await ensure_interval_schedule(
            client,
            schedule_id,
            RECONCILIATION,
            reconciliation_input(settings, domain),
            every=timedelta(seconds=settings.reconcile.interval_s),
            task_queue=task_queue,
            workflow_id=reconciliation_workflow_id(domain, tenant, None, "scheduled"),
        )
        made.append(schedule_id)
    return made


def run_stamp(now: datetime | None = None) -> str:
    """The last part of a run's workflow id: when it was asked for (to the microsecond)."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")


async def start_reconciliation(
    client: Client, request: ReconciliationInput, *, task_queue: str, stamp: str | None = None
) -> WorkflowHandle[Any, ReconciliationReport]:
    """Start one run (the CLI and tests); its handle."""
    workflow_id = reconciliation_workflow_id(
        request.domain, request.tenant, request.project, stamp or run_stamp()
    )
    return await client.start_workflow(
        RECONCILIATION,
        request,
        id=workflow_id,
        task_queue=task_queue,
        result_type=ReconciliationReport,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(BUSINESS_PROCESS, PROCESS_RECONCILIATION)]
        ),
        static_summary=f"Reconcile {request.domain.value} of {request.tenant}"
        + (f", project {request.project}" if request.project else ""),
    )


__all__ = [
    "ReconciliationActivities",
    "ensure_reconciliation_schedules",
    "run_stamp",
    "start_reconciliation",
]
