"""The in-memory PSA's resource pool (`PsaResourcesPort`)."""

from __future__ import annotations

from connectors.psa.fake._base import FakePsaBase, FakeUser
from connectors.psa.resources import PsaResource


class FakeResourcesMixin(FakePsaBase):
    """Resources keyed by worker id; an upsert also makes the worker a user who can be staffed
    and log time from the day they are available."""

    @property
    def resources(self) -> dict[str, PsaResource]:
        found: dict[str, PsaResource] | None = self.__dict__.get("_resources")
        if found is None:
            found = self.__dict__["_resources"] = {}
        return found

    async def get_resource(self, worker_id: str) -> PsaResource | None:
        self._enter("get_resource")
        found = self.resources.get(worker_id)
        return None if found is None else found.model_copy(deep=True)

    async def upsert_resource(
        self, resource: PsaResource, *, current: PsaResource | None = None
    ) -> PsaResource:
        self._enter("upsert_resource")
        self.resources[resource.worker_id] = resource.model_copy(deep=True)
        user = self.users.get(resource.worker_id)
        if user is None:
            self.users[resource.worker_id] = FakeUser(
                resource.worker_id,
                resource.name,
                resource.role,
                resource.active,
                resource.available_from,
            )
        else:
            user.name, user.role, user.active = resource.name, resource.role, resource.active
            if resource.available_from is not None:
                user.start_date = resource.available_from
        return resource.model_copy(deep=True)
