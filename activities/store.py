"""Store activities: enterprise IDs and links, exception items, outbox, lineage.

The store is synchronous (SQLAlchemy); each call runs in a thread so the worker's event loop
keeps polling.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, Field
from temporalio import activity

from activities._errors import translate_errors
from store import AlreadyResolved, NewExceptionItem, Store


class ReserveEnterpriseId(BaseModel):
    """Link `candidate` to a source record, or return the ID it already has."""

    entity_type: str
    system: str
    tenant: str
    object_type: str
    external_id: str
    candidate: str


class XrefLink(BaseModel):
    system: str
    object_type: str
    external_id: str
    tenant: str | None = None
    """Default: the tenant this deployment is configured with for `system`."""
    status: str = "active"


class LinkXrefs(BaseModel):
    enterprise_id: str
    entity_type: str
    links: list[XrefLink]


class OpenExceptionItem(BaseModel):
    item_id: str
    workflow_id: str
    run_id: str | None = None
    process: str
    cause_code: str
    field: str | None = None
    detail: str
    owner: str
    context: dict[str, Any] = Field(default_factory=dict)


class ResolveExceptionItem(BaseModel):
    item_id: str
    actor: str
    resolution: dict[str, Any]


class EscalateExceptionItem(BaseModel):
    item_id: str
    owner: str


class OutboxEvent(BaseModel):
    event_type: str
    key: str
    payload: dict[str, Any]


class LineageRecord(BaseModel):
    entity_type: str
    entity_key: str
    fields: list[str]
    source_system: str
    source_version: str | None = None
    activity: str


class StoreActivities:
    def __init__(self, store: Store, tenants: dict[str, str]) -> None:
        self.store = store
        self.tenants = tenants

    @activity.defn(name="store.reserve_enterprise_id")
    @translate_errors
    async def reserve_enterprise_id(self, request: ReserveEnterpriseId) -> str:
        """The source record's enterprise id: the existing one, else the candidate.

        One store operation, so sagas reserving for the same record at once (two deals of one
        customer won together) all get the same id instead of all but one failing."""
        return await asyncio.to_thread(
            self.store.reserve_enterprise_id,
            request.candidate,
            request.entity_type,
            request.system,
            request.tenant,
            request.object_type,
            request.external_id,
        )

    @activity.defn(name="store.link_xrefs")
    @translate_errors
    async def link_xrefs(self, request: LinkXrefs) -> int:
        def link() -> int:
            for link in request.links:
                self.store.link_xref(
                    request.enterprise_id,
                    request.entity_type,
                    link.system,
                    link.tenant or self.tenants.get(link.system, "default"),
                    link.object_type,
                    link.external_id,
                    status=link.status,
                )
            return len(request.links)

        return await asyncio.to_thread(link)

    @activity.defn(name="store.open_exception")
    @translate_errors
    async def open_exception(self, request: OpenExceptionItem) -> None:
        item = NewExceptionItem(
            id=request.item_id,
            workflow_id=request.workflow_id,
            run_id=request.run_id,
            process=request.process,
            cause_code=request.cause_code,
            field=request.field,
            detail=request.detail,
            owner=request.owner,
            context=request.context,
        )
        await asyncio.to_thread(self.store.open_exception, item)

    @activity.defn(name="store.resolve_exception")
    @translate_errors
    async def resolve_exception(self, request: ResolveExceptionItem) -> None:
        """Record the workflow's resolution; returns once the item is resolved, by whomever.

        An item already resolved (a retry whose first attempt committed, or a rescind
        withdrawing an item a person resolved meanwhile) is left with the resolution recorded
        first. The store decides atomically; a check before it would race a concurrent one."""

        def resolve() -> None:
            try:
                self.store.resolve_exception(request.item_id, request.resolution, request.actor)
            except AlreadyResolved:
                pass

        await asyncio.to_thread(resolve)

    @activity.defn(name="store.escalate_exception")
    @translate_errors
    async def escalate_exception(self, request: EscalateExceptionItem) -> None:
        """Escalate the item; a no-op if it was resolved meanwhile (the store returns it as is)."""
        await asyncio.to_thread(self.store.escalate_exception, request.item_id, request.owner)

    @activity.defn(name="store.add_outbox")
    @translate_errors
    async def add_outbox(self, request: OutboxEvent) -> bool:
        return await asyncio.to_thread(
            self.store.add_outbox, request.event_type, request.key, request.payload
        )

    @activity.defn(name="store.record_lineage")
    @translate_errors
    async def record_lineage(self, request: LineageRecord) -> None:
        info = activity.info()
        await asyncio.to_thread(
            self.store.record_lineage,
            request.entity_type,
            request.entity_key,
            request.fields,
            request.source_system,
            request.source_version,
            info.workflow_id or "",
            info.workflow_run_id,
            request.activity,
        )
