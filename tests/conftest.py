"""Shared fixtures: the Temporal servers (from the installed wheels) and settings.

Servers bind to 127.0.0.1 with OS-chosen ports and are stopped at the end of the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from contracts.settings import Settings, load_settings
from sandbox.temporal import embedded_temporal, time_skipping_temporal


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(home=tmp_path / ".pssync")


@pytest.fixture(scope="session")
async def dev_env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WorkflowEnvironment]:
    """The real `temporal` dev server (in-memory), pssync's search attributes registered."""
    home = tmp_path_factory.mktemp("temporal")
    async with embedded_temporal(
        load_settings(home=home), port=None, ui=False, persist=False
    ) as env:
        yield env


@pytest.fixture(scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server."""
    async with time_skipping_temporal() as env:
        yield env


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say plainly whether the PostgreSQL store tests ran (CI must show they did)."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for outcome in counts:
        for report in terminalreporter.stats.get(outcome, []):
            if "postgres" in getattr(report, "keywords", {}):
                counts[outcome] += 1
    terminalreporter.write_line(
        "PostgreSQL store tests: " + ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`), the end-to-end tests run one after another on one
    worker: each starts a dev server, the twins, a gateway and worker processes, and two at once
    on a 2-core machine would starve each other's timers. The other tests spread over the
    remaining workers."""
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(pytest.mark.xdist_group("e2e"))
