"""Names shared by every process: task queues, workflow ID formats, search attributes.

Plain strings only, so the gateway, the worker, the CLI and the embedded dev server agree
without importing Temporal-specific code. No I/O here.
"""

from __future__ import annotations

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
    return f"opp-to-project/{crm_tenant}/{opportunity_id}"


def change_order_workflow_id(psa_tenant: str, change_order_id: str) -> str:
    return f"change-order/{psa_tenant}/{change_order_id}"


def termination_workflow_id(hcm_tenant: str, worker_id: str, effective_date: str) -> str:
    return f"termination/{hcm_tenant}/{worker_id}/{effective_date}"


def assignment_sync_workflow_id(psa_tenant: str, project_id: str) -> str:
    return f"assignment-sync/{psa_tenant}/{project_id}"


def time_pipeline_workflow_id(psa_tenant: str, project_id: str) -> str:
    """The time-to-invoice pipeline of one PSA project (one run posts all its entries)."""
    return f"time-to-invoice/{psa_tenant}/{project_id}"


def time_sweep_schedule_id(psa_tenant: str) -> str:
    return f"time-to-invoice-sweep/{psa_tenant}"
