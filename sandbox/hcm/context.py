"""What the HCM twin's route modules share: the twin state, its tenant and clock, tenant and
paging checks, finding a worker, and completing a business process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlmodel import Session

from sandbox._twin import TwinError, TwinState
from sandbox.hcm.bodies import _refuse, _utc, render_event, render_worker
from sandbox.hcm.records import _event, _find
from sandbox.hcm.tables import HcmWorker

MAX_LIMIT = 100
DEFAULT_LIMIT = 20

Clock = Callable[[], datetime]


@dataclass
class HcmTwin:
    """One HCM twin app's shared state (what `create_app`'s closures used to hold)."""

    state: TwinState
    tenant: str
    now: Clock
    """Stamps entry moments and sets the date worker status is computed for."""

    def check_tenant(self, path_tenant: str) -> None:
        if path_tenant != self.tenant:
            raise TwinError(404, "NOT_FOUND", f"unknown tenant {path_tenant}")

    def today(self) -> date:
        return _utc(self.now()).astimezone(UTC).date()

    def paging(self, limit: int, offset: int) -> None:
        if not 1 <= limit <= MAX_LIMIT:
            raise _refuse("INVALID_LIMIT", f"limit must be between 1 and {MAX_LIMIT}", "limit")
        if offset < 0:
            raise _refuse("INVALID_OFFSET", "offset must not be negative", "offset")

    @contextmanager
    def worker(self, worker_ref: str) -> Iterator[tuple[Session, HcmWorker]]:
        """A session and the worker `worker_ref` names (its WID or `Employee_ID=...`; 404 for
        no such worker)."""
        with self.state.session() as session:
            yield session, _find(session, worker_ref)

    def complete(
        self, session: Session, w: HcmWorker, kind: str, effective: date, **data: Any
    ) -> dict[str, Any]:
        """Record business process event `kind` on `w`, entered now, commit, and answer the
        completed event with the worker as it now is."""
        event = _event(session, w, kind, effective, _utc(self.now()), **data)
        session.commit()
        body = render_event(event)
        body["status"] = "Successfully Completed"
        body["worker"] = render_worker(w, self.tenant, self.today())
        return body
