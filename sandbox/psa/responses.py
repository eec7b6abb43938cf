"""Kantata's response shapes: the error body, rendered objects, side-loaded includes,
paging (`page` / `per_page`), `only=` and `order=`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from fastapi import Query
from sqlalchemy import func
from sqlmodel import Session, SQLModel, col, select

from sandbox._twin import TwinError
from sandbox.psa.published import add_published_fields
from sandbox.psa.tables import (
    KEYS,
    PsaBillingMilestone,
    PsaCustomField,
    PsaCustomFieldSet,
    PsaCustomFieldValue,
    PsaRateCard,
    PsaRateCardRole,
    PsaStory,
    PsaUser,
    PsaWorkspace,
)

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 200


_ERROR_TYPES = {"validation", "system", "oauth"}


def error_body(status: int, code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """Kantata's error shape: `{"errors": [{"type", "message", "field"?}]}`."""
    if code in _ERROR_TYPES:
        kind = code
    elif status == 401:
        kind = "oauth"
    elif status in (400, 422):
        kind = "validation"
    else:
        kind = "system"
    err: dict[str, Any] = {"type": kind, "message": message}
    if field:
        err["field"] = field
    return {"errors": [err]}


def _render_value(name: str, value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int) and (name == "id" or name.endswith("_id")):
        return str(value)
    if isinstance(value, list) and name.endswith("_ids"):
        return [str(v) for v in value]
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def render(row: SQLModel) -> dict[str, Any]:
    return {k: _render_value(k, v) for k, v in row.model_dump().items()}


def _rendered(session: Session, key: str, rows: Sequence[SQLModel]) -> dict[str, dict[str, Any]]:
    """`rows` of collection `key` as Kantata sends them, by id: their columns and the published
    fields the tables do not hold (`published`)."""
    objects = {str(r.id): render(r) for r in rows}  # type: ignore[attr-defined]
    add_published_fields(session, key, rows, objects)
    return objects


@dataclass(frozen=True)
class HasMany:
    model: type[SQLModel]
    foreign_key: str
    ids_attr: str


@dataclass(frozen=True)
class BelongsTo:
    model: type[SQLModel]
    local_key: str
    id_attr: str | None = None
    """Where Kantata names the related record only when it is included (an assignment's
    `assignee_id`, `story_id`), the attribute the included id goes in."""


@dataclass(frozen=True)
class CustomFieldValues:
    """`include=custom_field_values` on a subject (a workspace): its stored custom field
    values (`POST /custom_field_values`), listed in `custom_field_value_ids`."""

    subject_type: str
    key: str = "custom_field_values"
    ids_attr: str = "custom_field_value_ids"


INCLUDES: dict[str, dict[str, HasMany | BelongsTo | CustomFieldValues]] = {
    "workspaces": {
        "stories": HasMany(PsaStory, "workspace_id", "story_ids"),
        "billing_milestones": HasMany(PsaBillingMilestone, "workspace_id", "billing_milestone_ids"),
        "rate_card": BelongsTo(PsaRateCard, "rate_card_id"),
        "custom_field_values": CustomFieldValues("Workspace"),
    },
    "stories": {
        "workspace": BelongsTo(PsaWorkspace, "workspace_id"),
        "parent": BelongsTo(PsaStory, "parent_id"),
    },
    "time_entries": {
        "user": BelongsTo(PsaUser, "user_id"),
        "workspace": BelongsTo(PsaWorkspace, "workspace_id"),
        "story": BelongsTo(PsaStory, "story_id"),
    },
    "expenses": {
        "user": BelongsTo(PsaUser, "user_id"),
        "workspace": BelongsTo(PsaWorkspace, "workspace_id"),
    },
    "assignments": {
        "user": BelongsTo(PsaUser, "user_id"),
        "workspace": BelongsTo(PsaWorkspace, "workspace_id"),
        "assignee": BelongsTo(PsaUser, "user_id", "assignee_id"),
        "story": BelongsTo(PsaStory, "story_id", "story_id"),
    },
    "resource_requests": {"workspace": BelongsTo(PsaWorkspace, "workspace_id")},
    "rate_cards": {
        "rate_card_roles": HasMany(PsaRateCardRole, "rate_card_id", "rate_card_role_ids")
    },
    "rate_card_versions": {
        "rate_card": BelongsTo(PsaRateCard, "rate_card_id"),
        "rate_card_roles": HasMany(PsaRateCardRole, "rate_card_version_id", "rate_card_role_ids"),
    },
    "billing_milestones": {"workspace": BelongsTo(PsaWorkspace, "workspace_id")},
    "change_orders": {"workspace": BelongsTo(PsaWorkspace, "workspace_id")},
    "users": {"custom_field_values": CustomFieldValues("User")},
    "invoices": {},
    "external_references": {},
    "posts": {"workspace": BelongsTo(PsaWorkspace, "workspace_id")},
    "custom_field_sets": {},
    "custom_fields": {
        "custom_field_set": BelongsTo(
            PsaCustomFieldSet, "custom_field_set_id", "custom_field_set_id"
        )
    },
    "custom_field_values": {
        "custom_field": BelongsTo(PsaCustomField, "custom_field_id", "custom_field_id")
    },
}


@dataclass
class ListParams:
    page: int
    per_page: int
    include: list[str]
    only: list[int] | None
    order: str | None


def _id_list(raw: str | None, name: str) -> list[int] | None:
    if raw is None or raw == "":
        return None
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        raise TwinError(400, "validation", f"{name} must be a comma-separated list of ids", name)
    return [int(p) for p in parts]


def ids_in(column: Any, raw: str | None, name: str) -> list[Any]:
    """The where clause of an id-list query parameter (`workspace_id=1,2`): `[column IN ids]`,
    or none when the parameter is absent or empty."""
    ids = _id_list(raw, name)
    return [] if ids is None else [col(column).in_(ids)]


def list_params(
    page: int = Query(1, ge=1),
    per_page: int = Query(DEFAULT_PER_PAGE, ge=1),
    include: str | None = None,
    only: str | None = None,
    order: str | None = None,
) -> ListParams:
    includes = [i.strip() for i in (include or "").split(",") if i.strip()]
    return ListParams(
        page=page,
        per_page=min(per_page, MAX_PER_PAGE),
        include=includes,
        only=_id_list(only, "only"),
        order=order,
    )


def include_params(include: str | None = None) -> ListParams:
    return list_params(page=1, per_page=MAX_PER_PAGE, include=include, only=None, order=None)


def envelope(
    session: Session,
    model: type[SQLModel],
    rows: Sequence[SQLModel],
    *,
    total: int | None = None,
    params: ListParams | None = None,
) -> dict[str, Any]:
    """Kantata's response shape with side-loaded includes."""
    key = KEYS[model]
    params = params or ListParams(1, max(1, len(rows)), [], None, None)
    total = len(rows) if total is None else total
    objects = _rendered(session, key, rows)
    body: dict[str, Any] = {
        "count": total,
        "meta": {
            "count": total,
            "page_count": math.ceil(total / params.per_page) if total else 0,
            "page_number": params.page,
            "page_size": params.per_page,
        },
        "results": [{"key": key, "id": str(r.id)} for r in rows],  # type: ignore[attr-defined]
        key: objects,
    }
    specs = INCLUDES.get(key, {})
    for name in params.include:
        spec = specs.get(name)
        if spec is None:
            raise TwinError(400, "validation", f"unknown include '{name}' for {key}", "include")
        if isinstance(spec, CustomFieldValues):
            _include_custom_field_values(session, spec, rows, objects, body)
        elif isinstance(spec, HasMany):
            _include_many(session, spec, rows, objects, body)
        else:
            _include_one(session, spec, rows, objects, body)
    return body


def _include_many(
    session: Session,
    spec: HasMany,
    rows: Sequence[SQLModel],
    objects: dict[str, dict[str, Any]],
    body: dict[str, Any],
) -> None:
    """Side-load the records that point at `rows` and list their ids on each row."""
    target_key = KEYS[spec.model]
    collection: dict[str, Any] = body.setdefault(target_key, {})
    ids = [r.id for r in rows]  # type: ignore[attr-defined]
    fk = getattr(spec.model, spec.foreign_key)
    related = session.exec(
        select(spec.model).where(col(fk).in_(ids)).order_by(spec.model.id)  # type: ignore[attr-defined]
    ).all()
    by_parent: dict[str, list[str]] = {str(i): [] for i in ids}
    for rid, obj in _rendered(session, target_key, related).items():
        collection.setdefault(rid, obj)
    for rel in related:
        by_parent[str(getattr(rel, spec.foreign_key))].append(str(rel.id))  # type: ignore[attr-defined]
    for rid, obj in objects.items():
        obj[spec.ids_attr] = by_parent.get(rid, [])


def _include_custom_field_values(
    session: Session,
    spec: CustomFieldValues,
    rows: Sequence[SQLModel],
    objects: dict[str, dict[str, Any]],
    body: dict[str, Any],
) -> None:
    """Side-load the custom field values of `rows` and list their ids on each row."""
    collection: dict[str, Any] = body.setdefault(spec.key, {})
    ids = [r.id for r in rows]  # type: ignore[attr-defined]
    values = session.exec(
        select(PsaCustomFieldValue)
        .where(
            PsaCustomFieldValue.subject_type == spec.subject_type,
            col(PsaCustomFieldValue.subject_id).in_(ids),
        )
        .order_by(col(PsaCustomFieldValue.id))
    ).all()
    collection.update(_rendered(session, spec.key, values))
    by_subject: dict[str, list[str]] = {}
    for value in values:
        by_subject.setdefault(str(value.subject_id), []).append(str(value.id))
    for rid, obj in objects.items():
        obj[spec.ids_attr] = by_subject.get(rid, [])


def _include_one(
    session: Session,
    spec: BelongsTo,
    rows: Sequence[SQLModel],
    objects: dict[str, dict[str, Any]],
    body: dict[str, Any],
) -> None:
    """Side-load the records `rows` point at (and name them in `spec.id_attr`, if any)."""
    target_key = KEYS[spec.model]
    collection: dict[str, Any] = body.setdefault(target_key, {})
    wanted = {getattr(r, spec.local_key) for r in rows} - {None}
    if wanted:
        related = session.exec(
            select(spec.model).where(col(spec.model.id).in_(wanted))  # type: ignore[attr-defined]
        ).all()
        for rid, obj in _rendered(session, target_key, related).items():
            collection.setdefault(rid, obj)
    if spec.id_attr is not None:
        for row in rows:
            value = getattr(row, spec.local_key)
            objects[str(row.id)][spec.id_attr] = None if value is None else str(value)  # type: ignore[attr-defined]


def list_rows(
    session: Session,
    model: type[SQLModel],
    params: ListParams,
    clauses: Iterable[Any] = (),
    orderable: Sequence[str] = ("id", "updated_at", "created_at"),
) -> dict[str, Any]:
    pk = model.id  # type: ignore[attr-defined]
    stmt = select(model)
    for clause in clauses:
        stmt = stmt.where(clause)
    if params.only is not None:
        stmt = stmt.where(col(pk).in_(params.only))
    total = session.exec(select(func.count()).select_from(stmt.subquery())).one()
    ordering: list[Any] = []
    for part in (params.order or "").split(","):
        if not part.strip():
            continue
        name, _, direction = part.strip().partition(":")
        if name not in orderable or direction.lower() not in ("", "asc", "desc"):
            raise TwinError(400, "validation", f"cannot order by '{part}'", "order")
        column = col(getattr(model, name))
        ordering.append(column.desc() if direction.lower() == "desc" else column.asc())
    ordering.append(col(pk).asc())
    rows = session.exec(
        stmt.order_by(*ordering).offset((params.page - 1) * params.per_page).limit(params.per_page)
    ).all()
    return envelope(session, model, rows, total=total, params=params)


def _parse_when(raw: str | None, name: str) -> datetime | None:
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise TwinError(400, "validation", f"{name} must be an ISO 8601 datetime", name) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
