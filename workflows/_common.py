"""What every workflow shares: the step retry policy and the typed search-attribute keys.

Deterministic constants only (no I/O). The keys are defined once, in `plumbing.temporal`, from
`contracts.naming.SEARCH_ATTRIBUTES` (which the embedded dev server and the compose file
register); they are re-exported here so workflows import nothing else from `plumbing`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from plumbing.temporal import (
    BUSINESS_PROCESS,
    CHANGE_ORDER_ID,
    CRM_OPPORTUNITY_ID,
    CUSTOMER_NAME,
    ENTERPRISE_PROJECT_ID,
    EXCEPTION_OPEN,
    WORKER_ID,
)

# Transient failures (outages, 429s) retry without limit: the work waits for the system to
# come back instead of failing the process. Business errors are non-retryable by construction
# (activities raise them typed, see activities/_errors.py).
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["BusinessRuleViolation", "AuthError", "NotFoundError"],
)

__all__ = [
    "BUSINESS_PROCESS",
    "CHANGE_ORDER_ID",
    "CRM_OPPORTUNITY_ID",
    "CUSTOMER_NAME",
    "ENTERPRISE_PROJECT_ID",
    "EXCEPTION_OPEN",
    "RETRY",
    "WORKER_ID",
]
