"""What the twin and connector tests share: a served twin's app and state, a clock a test can
set, the seeded workers a test may change, and a short wait for a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fastapi import FastAPI

from contracts.settings import SystemSettings
from sandbox._twin import FaultConfig, TwinState
from sandbox.seed import STATUS_ACTIVE, Firm, Worker

CLIENT_CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "pssync",
    "client_secret": "dev-secret",
}
"""The form a dev client posts to a twin's `/oauth2/token` for a bearer token."""


@dataclass
class TwinApp:
    """A twin's app; `state` is the twin's own (faults, stats, database)."""

    app: FastAPI

    @property
    def state(self) -> TwinState:
        state: TwinState = self.app.state.twin
        return state

    def calm(self) -> None:
        """No faults, and the stats from zero."""
        self.state.set_faults(FaultConfig())
        self.state.reset_stats()


@dataclass
class ConnectedTwin(TwinApp):
    """A twin served at `base_url` with `firm` loaded, and the settings a connector reaches it
    with (tenant "acme")."""

    base_url: str
    firm: Firm

    def settings(self, **overrides: Any) -> SystemSettings:
        values: dict[str, Any] = {
            "base_url": self.base_url,
            "tenant": "acme",
            "retry_budget_s": 5,
            **overrides,
        }
        return SystemSettings(**values)


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


def employee(firm: Firm, n: int, today: date) -> Worker:
    """The n-th active, already hired worker without a termination (a fresh one per test)."""
    plain = [
        w
        for w in firm.workers
        if w.status == STATUS_ACTIVE and w.termination_date is None and w.hire_date < today
    ]
    return plain[n]


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)
