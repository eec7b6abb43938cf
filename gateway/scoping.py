"""Scope checks for every process, on reads as on writes (`contracts.scopes` for the rules).

The gateway gathers a resource's business keys — from its run's workflow id, the exception
item's context, the run's search attributes — and widens a project key to every id the
cross-reference links to it (enterprise id, PSA workspace, ERP job, CRM opportunity), so an
actor scoped to `project:E-1001` reaches that project in every process.

An actor out of scope gets exactly the answer someone asking for a resource that does not exist
gets (the route passes its own 404), never a 403 that would confirm the resource exists.
Must never: import workflows, activities or connectors.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError

from contracts import scopes
from contracts.naming import change_order_workflow_id
from contracts.settings import Actor, Settings
from contracts.systems import System
from gateway.errors import GatewayError
from gateway.webhooks import in_thread
from store import AuditRow, ExceptionItemRow, Store

PSA_PROJECT_OBJECT = "workspace"
_RPC_TIMEOUT = timedelta(seconds=5)


class Scoper:
    """Keys of runs, items and projects; one per request (it caches the store's answers)."""

    def __init__(self, store: Store, client: Client | None, settings: Settings) -> None:
        self._store = store
        self._client = client
        self._settings = settings
        self._expanded: dict[str, set[str]] = {}

    @property
    def psa_tenant(self) -> str:
        return self._settings.psa.tenant

    async def project_keys(self, project_id: str) -> set[str]:
        """A project id (enterprise id or PSA workspace id) and everything linked to it."""
        if project_id in self._expanded:
            return set(self._expanded[project_id])
        found = {scopes.key("project", project_id)}
        eid: str | None = None
        if await in_thread(self._store.xrefs_for, project_id):
            eid = project_id
        else:
            psa = self._settings.psa
            for tenant in dict.fromkeys((psa.tenant, *psa.known_tenants)):
                eid = await in_thread(
                    self._store.find_enterprise_id,
                    System.PSA.value,
                    tenant,
                    PSA_PROJECT_OBJECT,
                    project_id,
                )
                if eid is not None:
                    break
        if eid is not None:
            found.add(scopes.key("project", eid))
            for row in await in_thread(self._store.xrefs_for, eid):
                found.add(scopes.key("tenant", row.tenant))
                kind = "opportunity" if row.system == System.CRM.value else "project"
                if row.object_type != "account":
                    found.add(scopes.key(kind, row.external_id))
        self._expanded[project_id] = found
        return set(found)

    async def _widen(self, keys: set[str]) -> set[str]:
        widened = set(keys)
        for k in keys:
            kind, _, value = k.partition(":")
            if kind == "project":
                widened |= await self.project_keys(value)
        return widened

    async def item_keys(self, row: ExceptionItemRow) -> set[str]:
        keys = scopes.keys_of_workflow(row.workflow_id) | scopes.keys_of_context(row.context)
        return await self._widen(keys)

    async def run_keys(self, workflow_id: str) -> set[str]:
        """A run's keys: its id's, and its search attributes' when the run exists."""
        keys = scopes.keys_of_workflow(workflow_id)
        if self._client is not None:
            try:
                desc = await self._client.get_workflow_handle(workflow_id).describe(
                    rpc_timeout=_RPC_TIMEOUT
                )
            except (RPCError, RuntimeError, TimeoutError, ConnectionError):
                pass  # no run (or Temporal down): the id's keys decide; the update will say
            else:
                keys |= scopes.keys_of_search_attributes(_attributes(desc.typed_search_attributes))
        return await self._widen(keys)

    async def visible_items(
        self, actor: Actor, rows: Iterable[ExceptionItemRow]
    ) -> list[ExceptionItemRow]:
        if scopes.EVERYTHING in actor.scopes:
            return list(rows)
        return [row for row in rows if scopes.covers(actor.scopes, await self.item_keys(row))]

    async def audit_keys(self, row: AuditRow) -> set[str]:
        """The keys of the subject an audit record is about: its tenant, and the item, run,
        worker or project it names (widened through the cross-reference)."""
        keys = {scopes.key("tenant", row.tenant)} if row.tenant else set()
        subject = row.subject_id
        if row.subject_kind == "exception_item":
            item = await in_thread(self._store.get_exception, subject)
            if item is not None:
                keys |= await self.item_keys(item)
        elif row.subject_kind == "change_order":
            keys.add(scopes.key("change-order", subject))
            tenant = row.tenant or self.psa_tenant
            keys |= await self.run_keys(change_order_workflow_id(tenant, subject))
        elif row.subject_kind == "termination":
            keys.add(scopes.key("worker", subject.split("/", 1)[0]))
        elif row.subject_kind == "project":
            keys |= await self.project_keys(subject)
        elif row.subject_kind == "reconciliation":
            project = subject.partition("/")[2]
            if project and project != "all":
                keys |= await self.project_keys(project)
        return keys

    async def visible_audit(self, actor: Actor, rows: Iterable[AuditRow]) -> list[AuditRow]:
        """The audit records whose subject the actor reaches (`*`: all of them)."""
        if scopes.EVERYTHING in actor.scopes:
            return list(rows)
        return [row for row in rows if scopes.covers(actor.scopes, await self.audit_keys(row))]


def _attributes(typed: Any) -> dict[str, Any]:
    """Search attributes by name (`typed_search_attributes` of a description)."""
    return {pair.key.name: pair.value for pair in typed or ()}


def require_scope(actor: Actor, keys: Iterable[str], not_found: GatewayError) -> None:
    """Raise the route's own not-found answer unless the actor reaches `keys`."""
    if not scopes.covers(actor.scopes, keys):
        raise not_found
