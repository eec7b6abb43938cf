"""What every workflow shares: the step retry policy and the typed search-attribute keys.

Deterministic constants only (no I/O). The names match `contracts.naming.SEARCH_ATTRIBUTES`,
which the embedded dev server and the compose file register.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy, SearchAttributeKey

# Transient failures (outages, 429s) retry without limit: the work waits for the system to
# come back instead of failing the process. Business errors are non-retryable by construction
# (activities raise them typed, see activities/_errors.py).
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["BusinessRuleViolation", "AuthError", "NotFoundError"],
)

BUSINESS_PROCESS = SearchAttributeKey.for_keyword("BusinessProcess")
ENTERPRISE_PROJECT_ID = SearchAttributeKey.for_keyword("EnterpriseProjectId")
CRM_OPPORTUNITY_ID = SearchAttributeKey.for_keyword("CrmOpportunityId")
CUSTOMER_NAME = SearchAttributeKey.for_keyword("CustomerName")
CHANGE_ORDER_ID = SearchAttributeKey.for_keyword("ChangeOrderId")
WORKER_ID = SearchAttributeKey.for_keyword("WorkerId")
EXCEPTION_OPEN = SearchAttributeKey.for_bool("ExceptionOpen")
