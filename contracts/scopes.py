"""What an actor may reach: scopes, and the business keys a run or an item covers.

An actor's scopes are strings (from `settings.actors` in the dev profile, from a JWT claim in
production):

- `*` — everything (operators);
- `tenant:<tenant>` — every run and item of that tenant (any system);
- `project:<id>` — one project, by its enterprise id or any system's id for it (the gateway
  expands a project's ids through the cross-reference, so `project:E-1001` also reaches the
  PSA project's time-to-invoice and assignment runs);
- `practice:<name>`, `opportunity:<id>`, `worker:<id>`, `change-order:<id>`;
- a bare value (`E-1001`, `cloud`) — the older form, matching a project, practice or
  opportunity of that value.

A resource (a run, an exception item) has a set of typed keys (`ScopeKeys`); an actor reaches it
when one scope covers one key. No scopes reach nothing: access fails closed. Pure functions, no
I/O: the gateway gathers the keys, workflows check the bare values they know.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from contracts.ids import InvalidId, canonical_tenant

EVERYTHING = "*"
KINDS = ("tenant", "project", "practice", "opportunity", "worker", "change-order")
_BARE_KINDS = frozenset({"project", "practice", "opportunity"})
MAX_SCOPES = 500
MAX_SCOPE_LENGTH = 200

ScopeKeys = frozenset[str]
"""Typed keys `<kind>:<value>` of one resource."""


def key(kind: str, value: object) -> str:
    """One typed key; tenants are compared in their canonical (case-folded) form."""
    if kind not in KINDS:
        raise ValueError(f"unknown scope kind {kind!r}")
    text = str(value).strip()
    if kind == "tenant":
        try:
            text = canonical_tenant(text)
        except InvalidId:
            text = text.casefold()
    return f"{kind}:{text}"


def is_valid_scope(scope: str) -> bool:
    """A scope pssync understands: `*`, `<kind>:<value>` or a bare value (no empty parts)."""
    if not scope or len(scope) > MAX_SCOPE_LENGTH or scope != scope.strip():
        return False
    if scope == EVERYTHING:
        return True
    kind, sep, value = scope.partition(":")
    if not sep:
        return True
    return kind in KINDS and bool(value.strip())


def _normalised(scope: str) -> str:
    kind, sep, value = scope.partition(":")
    if sep and kind == "tenant":
        return key("tenant", value)
    return scope


def covers(scopes: Iterable[str], keys: Iterable[str]) -> bool:
    """Whether any of `scopes` reaches a resource with `keys` (no scopes: never)."""
    keys = frozenset(keys)
    for scope in scopes:
        if scope == EVERYTHING:
            return True
        if ":" in scope:
            if _normalised(scope) in keys:
                return True
            continue
        if any(f"{kind}:{scope}" in keys for kind in _BARE_KINDS):
            return True
    return False


def workflow_scopes(scopes: Iterable[str], keys: Iterable[str] = ()) -> list[str]:
    """The actor's scopes as the workflows' own checks read them (bare business values, `*`):
    typed project, practice and opportunity scopes also as their bare values. The gateway has
    already decided: an actor whose tenant scope covers the run's `keys` reaches all of that
    run, which the workflows (knowing no tenants) read as `*`. Their own checks stay meaningful
    for project, practice and opportunity scopes."""
    keys = frozenset(keys)
    out: list[str] = []
    for scope in scopes:
        out.append(scope)
        kind, sep, value = scope.partition(":")
        if sep and kind in _BARE_KINDS:
            out.append(value)
        if sep and kind == "tenant" and _normalised(scope) in keys:
            out.append(EVERYTHING)
    return sorted(set(out))


_WORKFLOW_KEYS: dict[str, tuple[str, ...]] = {
    # workflow id prefix -> the kinds of the id's parts after the tenant
    "opp-to-project": ("opportunity",),
    "change-order": ("change-order",),
    "termination": ("worker",),
    "assignment-sync": ("project",),
    "time-to-invoice": ("project",),
}

_CONTEXT_KEYS: dict[str, str] = {
    "enterprise_id": "project",
    "enterprise_project_id": "project",
    "psa_project_id": "project",
    "project_id": "project",
    "erp_project_id": "project",
    "practice": "practice",
    "opportunity_id": "opportunity",
    "worker_id": "worker",
    "change_order_id": "change-order",
}


def keys_of_workflow(workflow_id: str) -> set[str]:
    """The keys a workflow id names (`<process>/<tenant>/<key>[/...]`); none for others."""
    parts = workflow_id.split("/")
    kinds = _WORKFLOW_KEYS.get(parts[0])
    if kinds is None or len(parts) < 2 + len(kinds):
        return set()
    found = {key("tenant", parts[1])}
    for kind, value in zip(kinds, parts[2:], strict=False):
        if value:
            found.add(key(kind, value))
    return found


def keys_of_context(context: Mapping[str, Any] | None) -> set[str]:
    """Keys an exception item's context names (its project, practice, worker, ...)."""
    found: set[str] = set()
    for name, kind in _CONTEXT_KEYS.items():
        value = (context or {}).get(name)
        if isinstance(value, str | int) and str(value).strip():
            found.add(key(kind, value))
    return found


def keys_of_search_attributes(attributes: Mapping[str, Any]) -> set[str]:
    """Keys from a run's search attributes (what every process sets once it knows them)."""
    names = {
        "EnterpriseProjectId": "project",
        "CrmOpportunityId": "opportunity",
        "WorkerId": "worker",
        "ChangeOrderId": "change-order",
    }
    found: set[str] = set()
    for name, kind in names.items():
        values = attributes.get(name)
        for value in values if isinstance(values, list | tuple) else [values]:
            if isinstance(value, str) and value.strip():
                found.add(key(kind, value))
    return found
