"""What every workflow shares: the step retry policy and the typed search-attribute keys.

Deterministic constants only (no I/O). The keys are defined once, in `plumbing.temporal`, from
`contracts.naming.SEARCH_ATTRIBUTES` (which the embedded dev server and the compose file
register); they are re-exported here so workflows import nothing else from `plumbing`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

# Passed through: the sandbox would otherwise run `plumbing.temporal` and, through it, every
# `contracts` model module again for each new workflow run (a fifth of a busy worker's time).
with workflow.unsafe.imports_passed_through():
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

# Short store steps a saga runs as local activities (issue 19): one transaction in the worker's
# own database, idempotent by business key, so a re-run after a worker crash (a local activity
# is at-least-once, like any activity) changes nothing. A short start-to-close: a store write
# that hangs is retried, not waited on for a vendor's minute. The same retry policy as every
# step; a backoff longer than LOCAL_RETRY_THRESHOLD becomes a server-side timer, so a long
# database outage waits in history (surviving a worker restart) instead of holding a workflow
# task open in one worker.
LOCAL_STORE_TIMEOUT = timedelta(seconds=10)
LOCAL_RETRY_THRESHOLD = timedelta(seconds=5)

# A Schedule's polling run (HCM's changed workers, the PSA's rate card versions): a few quick
# tries, then the run fails and the Schedule's next action reads the window again (the cursor
# moves only after a whole window). The activity heartbeats every 2 s: a lost worker frees the
# poll within POLL_HEARTBEAT.
POLL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
    non_retryable_error_types=["AuthError"],
)


def poll_heartbeat(activity_timeout_s: int) -> timedelta:
    return timedelta(seconds=min(10, activity_timeout_s))


__all__ = [
    "BUSINESS_PROCESS",
    "CHANGE_ORDER_ID",
    "CRM_OPPORTUNITY_ID",
    "CUSTOMER_NAME",
    "ENTERPRISE_PROJECT_ID",
    "EXCEPTION_OPEN",
    "LOCAL_RETRY_THRESHOLD",
    "LOCAL_STORE_TIMEOUT",
    "POLL_RETRY",
    "RETRY",
    "WORKER_ID",
    "poll_heartbeat",
]
