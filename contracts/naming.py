"""Names shared by every process: task queues, workflow ID formats, search attributes.

Plain strings only, so the gateway, the worker, the CLI and the embedded dev server agree
without importing Temporal-specific code. No I/O here.

Workflow ids derive only from canonical business keys (`contracts.ids`): every function below
normalises its tenant and ids first (idempotent), so `DEFAULT`/`default`, or a Salesforce id's
15- and 18-character forms, name one run whoever computes the id — the gateway, a poller, the
CLI. A malformed key raises `contracts.ids.InvalidId` (a ValueError) instead of naming a run.
"""

from __future__ import annotations

from contracts.ids import (
    canonical_date_key,
    canonical_hcm_id,
    canonical_psa_id,
    canonical_salesforce_id,
    canonical_tenant,
)

TASK_QUEUE = "pssync"
"""Workflows and most activities."""


def erp_task_queue(task_queue: str) -> str:
    """ERP-bound activities run on their own queue, rate-limited to the ERP's quota; it pairs
    with the workflow's queue so a deployment (or a test) with its own queue gets its own."""
    return f"{task_queue}-erp"


ERP_TASK_QUEUE = erp_task_queue(TASK_QUEUE)

# Custom search attributes: name -> Temporal indexed value type.
SEARCH_ATTRIBUTES: dict[str, str] = {
    "EnterpriseProjectId": "Keyword",
    "CrmOpportunityId": "Keyword",
    "CustomerName": "Keyword",
    "BusinessProcess": "Keyword",
    "ExceptionOpen": "Bool",
    "ChangeOrderId": "Keyword",
    "WorkerId": "Keyword",
}


def opportunity_workflow_id(crm_tenant: str, opportunity_id: str) -> str:
    """Duplicate won-deal webhooks for one opportunity join the same run."""
    tenant, opp = canonical_tenant(crm_tenant), canonical_salesforce_id(opportunity_id)
    return f"opp-to-project/{tenant}/{opp}"


def change_order_workflow_id(psa_tenant: str, change_order_id: str) -> str:
    return f"change-order/{canonical_tenant(psa_tenant)}/{canonical_psa_id(change_order_id)}"


def termination_workflow_id(hcm_tenant: str, worker_id: str, effective_date: str) -> str:
    tenant, worker = canonical_tenant(hcm_tenant), canonical_hcm_id(worker_id)
    return f"termination/{tenant}/{worker}/{canonical_date_key(effective_date)}"


def assignment_sync_workflow_id(psa_tenant: str, project_id: str) -> str:
    return f"assignment-sync/{canonical_tenant(psa_tenant)}/{canonical_psa_id(project_id)}"


def time_pipeline_workflow_id(psa_tenant: str, project_id: str) -> str:
    """The time-to-invoice pipeline of one PSA project (one run posts all its entries)."""
    return f"time-to-invoice/{canonical_tenant(psa_tenant)}/{canonical_psa_id(project_id)}"


def time_sweep_schedule_id(psa_tenant: str) -> str:
    return f"time-to-invoice-sweep/{canonical_tenant(psa_tenant)}"
