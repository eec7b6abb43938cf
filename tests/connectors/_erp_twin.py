"""The ERP connector tests' shared set-up: the ERP twin served over real HTTP and pssync's
NetSuite connector pointed at it, quick to retry so that a test of refusals stays short.

Import the `twin` and `erp` fixtures into a test file to use them; `netsuite_on` builds a
further connector on the same twin (one that knows no project yet, say)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from connectors.erp import NetSuiteErp
from contracts.settings import SystemSettings
from tests.twins._erp_fixtures import ErpTwin, erp_twin


def settings(base_url: str, **overrides: object) -> SystemSettings:
    """The ERP's connection settings for a twin at `base_url`, short budgets by default."""
    values: dict[str, object] = {
        "base_url": base_url,
        "retry_budget_s": 5,
        "timeout_s": 5,
        "max_concurrency": 4,
    }
    return SystemSettings.model_validate(values | overrides)


def netsuite_on(twin: ErpTwin) -> NetSuiteErp:
    """A NetSuite connector on the twin, backing off in hundredths of a second."""
    return NetSuiteErp(
        settings(twin.base_url), backoff_base_s=0.01, backoff_cap_s=0.2, poll_interval_s=0.01
    )


@pytest.fixture
async def twin() -> AsyncIterator[ErpTwin]:
    async with erp_twin() as t:
        yield t


@pytest.fixture
async def erp(twin: ErpTwin) -> AsyncIterator[NetSuiteErp]:
    async with netsuite_on(twin) as connector:
        yield connector
