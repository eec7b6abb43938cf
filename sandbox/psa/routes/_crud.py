"""The routes and steps the PSA resources share: the standard list, read-one and update
routes, and the load / save / insert steps of the others."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlmodel import Session, SQLModel

from sandbox._twin import TwinState
from sandbox.psa.responses import ListParams, envelope, include_params, list_params, list_rows
from sandbox.psa.routes._shared import twin_state
from sandbox.psa.rules import _check_lock, _get, _invalid, _touch
from sandbox.psa.tables import KEYS

DEFAULT_ORDERABLE = ("id", "updated_at", "created_at")


def _keyword(
    name: str, annotation: Any, default: Any = inspect.Parameter.empty
) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


_STATE = _keyword("state", TwinState, Depends(twin_state))
_INCLUDE = _keyword("params", ListParams, Depends(include_params))


def _add_route(
    router: APIRouter,
    method: str,
    path: str,
    model: type[SQLModel],
    call: Callable[..., Any],
    name: str,
    parameters: Sequence[inspect.Parameter],
) -> None:
    """Register `call` as the route `method path`, named `name`, tagged with the model's
    collection key. FastAPI reads a route's query, path, body and dependency parameters off
    its signature, so `call` (which takes them as keywords) is given `parameters` as one."""
    call.__name__ = call.__qualname__ = name
    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        list(parameters), return_annotation=dict[str, Any]
    )
    router.add_api_route(path, call, methods=[method], tags=[KEYS[model]])


def _path_id(path: str) -> str:
    """The name of the one path parameter in `path`."""
    names: list[str] = re.findall(r"{(\w+)}", path)
    (name,) = names
    return name


def add_list_route(
    router: APIRouter,
    path: str,
    model: type[SQLModel],
    filters: Callable[..., list[Any]] | None = None,
    *,
    orderable: Sequence[str] = DEFAULT_ORDERABLE,
) -> None:
    """`GET path`: the resource's records, paged (`page`, `per_page`, `only=`, `order=` by
    `orderable`, `include=`). `filters` is a function whose keyword parameters are the
    resource's own query parameters (declared as on a route) and which returns the where
    clauses they select; it runs after the paging parameters are read, as a route body would."""
    own = inspect.signature(filters, eval_str=True).parameters.values() if filters else ()

    async def list_records(params: ListParams, state: TwinState, **query: Any) -> dict[str, Any]:
        clauses = filters(**query) if filters else []
        with state.session() as s:
            return list_rows(s, model, params, clauses, orderable)

    parameters = [
        _keyword("params", ListParams, Depends(list_params)),
        *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own),
        _STATE,
    ]
    _add_route(router, "GET", path, model, list_records, f"list_{KEYS[model]}", parameters)


def add_get_route(router: APIRouter, path: str, model: type[SQLModel], what: str) -> None:
    """`GET path` (`/things/{thing_id}.json`): one record with its `include=`; a 404 calls it
    `what`."""
    id_name = _path_id(path)

    async def get_record(params: ListParams, state: TwinState, **ident: int) -> dict[str, Any]:
        with state.session() as s:
            return reply(s, _get(s, model, ident[id_name], what), params)

    name = f"get_{what.replace(' ', '_')}"
    _add_route(
        router, "GET", path, model, get_record, name, [_keyword(id_name, int), _INCLUDE, _STATE]
    )


def add_update_route(
    router: APIRouter,
    path: str,
    model: type[SQLModel],
    what: str,
    body_type: type[BaseModel],
    rules: Callable[[Session, Any, dict[str, Any]], None],
    *,
    on_saved: Callable[[TwinState, Any, dict[str, Any]], None] | None = None,
    mode: str = "python",
) -> None:
    """`PUT path` (`/things/{thing_id}.json`, body `{"thing": {...}}`): load the record and
    the fields the body changes (`load_changes`, dumped in `mode`); with none, answer it as
    it is; else run the resource's `rules(session, row, changes)` (they raise to refuse, and
    may set derived fields), save the changes, call `on_saved(state, row, changes)` (events)
    and answer the record."""
    id_name = _path_id(path)
    (field,) = body_type.model_fields

    async def update_record(
        body: BaseModel, params: ListParams, state: TwinState, **ident: int
    ) -> dict[str, Any]:
        with state.session() as s:
            fields = getattr(body, field)
            row, changes = load_changes(s, model, ident[id_name], what, fields, mode=mode)
            if not changes:
                return reply(s, row, params)
            rules(s, row, changes)
            save(s, row, changes)
            if on_saved is not None:
                on_saved(state, row, changes)
            return reply(s, row, params)

    parameters = [_keyword(id_name, int), _keyword("body", body_type), _INCLUDE, _STATE]
    name = f"update_{what.replace(' ', '_')}"
    _add_route(router, "PUT", path, model, update_record, name, parameters)


def reply(session: Session, row: SQLModel, params: ListParams) -> dict[str, Any]:
    """Kantata's envelope of one record, with the includes `params` asks for."""
    return envelope(session, type(row), [row], params=params)


def load_changes(
    session: Session,
    model: type[SQLModel],
    ident: int,
    what: str,
    fields: BaseModel,
    *,
    mode: str = "python",
) -> tuple[Any, dict[str, Any]]:
    """The record an update names (404 when missing; 409 when the body's `lock_version`, if
    it has one, is stale) and the fields the body sets to a value the record does not have."""
    changes = fields.model_dump(exclude_unset=True, exclude={"lock_version"}, mode=mode)
    columns = model.__table__.columns  # type: ignore[attr-defined]
    for name, value in changes.items():
        if value is None and name in columns and not columns[name].nullable:
            raise _invalid(f"{name} can't be blank", name)  # as Kantata says it, not a 500
    row = _get(session, model, ident, what)
    _check_lock(row, getattr(fields, "lock_version", None))
    return row, {k: v for k, v in changes.items() if getattr(row, k) != v}


def save(session: Session, row: Any, changes: dict[str, Any] | None = None) -> None:
    """Set `changes` on an existing record, bump its `updated_at` (and `lock_version`),
    commit and re-read it."""
    for k, v in (changes or {}).items():
        setattr(row, k, v)
    _touch(row)
    insert(session, row)


def insert(session: Session, row: SQLModel) -> None:
    """Add a record, commit and re-read it (its id and defaults)."""
    session.add(row)
    session.commit()
    session.refresh(row)
