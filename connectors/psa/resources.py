"""The PSA resource pool: a worker as a bookable resource (role, location, manager, FTE and the
availability calendar, leave included). `PsaResourcesPort` is what the worker-lifecycle
activities need; `FakePsa` has it in memory (`connectors/psa/fake/resources.py`).

An upsert is keyed by the worker id (HCM's Employee ID): sending the same resource twice leaves
one resource with those values, so a retried activity is harmless.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


class LeavePeriod(BaseModel):
    """Days the resource is away (both ends included; `end` None: until further notice)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: date
    end: date | None = None

    def overlaps(self, start: date, end: date) -> bool:
        return start <= (self.end or date.max) and self.start <= end


class PsaResource(BaseModel):
    """A worker as the PSA books them."""

    model_config = ConfigDict(extra="forbid")

    worker_id: str
    name: str
    email: str | None = None
    role: str | None = None
    location: str | None = None
    practice: str | None = None
    manager_id: str | None = None
    fte: Decimal = Decimal(1)
    available_from: date | None = None
    """The first day the resource can be staffed (hire or rehire date)."""
    leaves: list[LeavePeriod] = Field(default_factory=list)
    active: bool = True


@runtime_checkable
class PsaResourcesPort(Protocol):
    """Resources in the PSA."""

    async def get_resource(self, worker_id: str) -> PsaResource | None:
        """None when the PSA has no resource for the worker."""
        ...

    async def upsert_resource(
        self, resource: PsaResource, *, current: PsaResource | None = None
    ) -> PsaResource:
        """Create the worker's resource, or bring it to these values. `current`: the resource
        as the caller has just read it (`get_resource`), if it has: what already matches it
        need not be sent again (a retry reads again, so it still converges)."""
        ...
