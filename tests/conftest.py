"""Shared fixtures: the Temporal servers (from the installed wheels) and settings.

Servers bind to 127.0.0.1 with OS-chosen ports and are stopped at the end of the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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


E2E = "tests/e2e/"


def _end_to_end(nodeid: str) -> bool:
    return nodeid.startswith(E2E)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end tests first (stable order otherwise): under pytest-xdist their one work
    unit (below) is the longest, so it starts at once while the other process takes the rest."""
    items.sort(key=lambda item: not _end_to_end(item.nodeid))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` (pyproject's addopts): the end-to-end tests are one work unit, run in
    turn by one process — each starts a dev server, the twins, gateways and worker processes,
    and two at once on a 2-core machine would starve each other's timers; every other test is
    a unit of its own, spread over the processes. (pytest-xdist's own `xdist_group` marker
    does not take effect on pytest 9, which derives node ids anew, hence this scheduler.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class EndToEndInTurn(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return E2E if _end_to_end(nodeid) else nodeid

    return EndToEndInTurn(config, log)
