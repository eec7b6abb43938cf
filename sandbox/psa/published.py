"""Fields Kantata sends that the twin's tables do not hold, added to every rendered record so the
twin answers in the published shape (tests/fixtures/vendors/kantata/, checked by
tests/twins/test_psa_shapes.py), including custom fields and their values.

What the twin does not model it reports as Kantata would for an empty account: no spend
(`budget_used` `"$0"`), no creator, no dates on stories. Keys the tables already have are not
overwritten, except a workspace's `status`: the twin keeps a string (and takes one in writes),
Kantata sends `{"color", "key", "message"}` (`STATUSES`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, SQLModel, col, select

from sandbox.psa.tables import PsaCustomField, PsaStory, PsaTimeEntry

CUSTOM_FIELD_NAMES: dict[str, str] = {
    "client_ref": "Customer ID",
    "opportunity_ref": "Opportunity ID",
    "billing_rule": "Billing Rule",
    "cost_center": "Cost Center",
    "practice": "Practice",
    "delivery_manager": "Delivery Manager",
}
"""The workspace custom fields every twin account has (`load.add_workspace_custom_fields`), by
the workspace column that mirrors each one's value (column -> custom field name); the same
names as the connector's `CUSTOM_FIELDS`."""

STATUSES: dict[str, tuple[str, int, str]] = {
    "active": ("green", 310, "In Progress"),
    "closed": ("blue", 410, "Closed"),
    "completed": ("blue", 400, "Completed"),
    "archived": ("gray", 110, "Archived"),
}
"""The twin's status strings as Kantata's status objects (colour, key, message). The colours
are Kantata's (gray not started, green in progress, blue finished: Knowledge Base, "Project
Status List"); the keys are the twin's own, Kantata's numbering is not published."""


def status_object(status: str) -> dict[str, Any]:
    """Kantata's `status` object for the twin's status string."""
    color, key, message = STATUSES.get(status, ("gray", 100, status.replace("_", " ").title()))
    return {"color": color, "key": key, "message": message}


ACCOUNT_ID = 1
"""The twin is one Kantata account."""
PHOTO_PATH = "https://app.mavenlink.com/images/default_profile_photo/default.png"
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CAD": "$", "AUD": "$"}
_NO_MINOR_UNITS = {"JPY", "KRW"}


def _symbol(currency: str) -> str:
    return _SYMBOLS.get(currency, currency)


def _base_unit(currency: str) -> int:
    return 1 if currency in _NO_MINOR_UNITS else 100


def formatted(minor: int | None, currency: str, *, none: str = "TBD") -> str:
    """Kantata's display form of an amount: `"$21,375"`, `"$25.50"`; `none` without one."""
    if minor is None:
        return none
    base = _base_unit(currency)
    whole, part = divmod(abs(minor), base)
    sign = "-" if minor < 0 else ""
    cents = f".{part:0{len(str(base)) - 1}d}" if part else ""
    return f"{sign}{_symbol(currency)}{whole:,}{cents}"


def _money_shape(currency: str) -> dict[str, Any]:
    return {"currency_symbol": _symbol(currency), "currency_base_unit": _base_unit(currency)}


def _workspaces(session: Session, rows: Sequence[Any]) -> dict[int, dict[str, Any]]:
    extras: dict[int, dict[str, Any]] = {}
    for ws in rows:
        extras[ws.id] = {
            "effective_due_date": ws.due_date.isoformat() if ws.due_date else "",
            "consultant_role_name": "Consultants",
            "client_role_name": "Clients",
            "can_create_line_items": not ws.archived,
            "default_rate": "0.00",
            **_money_shape(ws.currency),
            "can_invite": True,
            "has_budget_access": True,
            "price": formatted(ws.price_in_cents or None, ws.currency),
            "budget_used": formatted(0, ws.currency),
            "over_budget": False,
            "creator_id": None,
            "account_id": ACCOUNT_ID,
        }
    return extras


def _entries(session: Session, rows: Sequence[Any]) -> dict[int, dict[str, Any]]:
    return {
        row.id: {
            **_money_shape(row.currency),
            "user_can_edit": not (row.approved or row.is_invoiced),
        }
        for row in rows
    }


def _stories(session: Session, rows: Sequence[Any]) -> dict[int, dict[str, Any]]:
    ids = [row.id for row in rows]
    children = dict(
        session.exec(
            select(PsaStory.parent_id, func.count())
            .where(col(PsaStory.parent_id).in_(ids))
            .group_by(col(PsaStory.parent_id))
        ).all()
    )
    logged = dict(
        session.exec(
            select(PsaTimeEntry.story_id, func.sum(PsaTimeEntry.time_in_minutes))
            .where(col(PsaTimeEntry.story_id).in_(ids), col(PsaTimeEntry.billable).is_(True))
            .group_by(col(PsaTimeEntry.story_id))
        ).all()
    )
    return {
        row.id: {
            "start_date": None,
            "due_date": None,
            "archived": False,
            "deleted_at": None,
            "sub_story_count": int(children.get(row.id, 0)),
            "percentage_complete": 100 if row.state == "completed" else 0,
            "budget_used_in_cents": 0,
            "logged_billable_time_in_minutes": int(logged.get(row.id) or 0),
        }
        for row in rows
    }


def _users(session: Session, rows: Sequence[Any]) -> dict[int, dict[str, Any]]:
    return {row.id: {"photo_path": PHOTO_PATH, "headline": None} for row in rows}


def _assignments(session: Session, rows: Sequence[Any]) -> dict[int, dict[str, Any]]:
    today = datetime.now(UTC).date()
    return {
        row.id: {
            "estimated_minutes": row.allocated_minutes,
            "current": row.end_date >= today,
            "resource_id": row.user_id,
        }
        for row in rows
    }


def _custom_field_values(session: Session, rows: Sequence[Any]) -> dict[int, dict[str, Any]]:
    wanted = {row.custom_field_id for row in rows}
    fields = {
        f.id: f
        for f in session.exec(select(PsaCustomField).where(col(PsaCustomField.id).in_(wanted)))
    }
    extras: dict[int, dict[str, Any]] = {}
    for row in rows:
        field = fields.get(row.custom_field_id)
        extras[row.id] = {
            "account_id": ACCOUNT_ID,
            "can_edit": True,
            "custom_field_name": field.name if field else None,
            "display_value": row.value,
            "type": field.value_type if field else "string",
        }
    return extras


EXTRAS: dict[str, Callable[[Session, Sequence[Any]], dict[int, dict[str, Any]]]] = {
    "workspaces": _workspaces,
    "time_entries": _entries,
    "expenses": _entries,
    "stories": _stories,
    "users": _users,
    "assignments": _assignments,
    "custom_field_values": _custom_field_values,
}
"""Per collection key: the published fields of each row (by id) the table does not hold."""

INTEGER_FIELDS: dict[str, frozenset[str]] = {
    "workspaces": frozenset({"rate_card_id"}),
    "custom_field_values": frozenset({"subject_id"}),
}
"""`*_id` fields Kantata sends as JSON integers, not id strings (published Workspace and
custom field value schemas)."""

ONLY_WHEN_INCLUDED: dict[str, frozenset[str]] = {
    "custom_fields": frozenset({"custom_field_set_id"}),
    "custom_field_values": frozenset({"custom_field_id"}),
}
"""Columns Kantata names only when the related record is included (`include=custom_field_set`,
`include=custom_field`): left out of the rendered record, the include puts them back."""


def add_published_fields(
    session: Session, key: str, rows: Sequence[SQLModel], objects: dict[str, dict[str, Any]]
) -> None:
    """Add the published fields of `rows` (collection `key`) to their rendered `objects`."""
    build = EXTRAS.get(key)
    ints = INTEGER_FIELDS.get(key, frozenset())
    extras = build(session, rows) if build is not None and rows else {}
    for row in rows:
        obj = objects[str(row.id)]  # type: ignore[attr-defined]
        for name in ONLY_WHEN_INCLUDED.get(key, ()):
            obj.pop(name, None)
        if key == "workspaces" and isinstance(obj.get("status"), str):
            obj["status"] = status_object(obj["status"])
        for name in ints:
            if obj.get(name) is not None:
                obj[name] = int(obj[name])
        for name, value in extras.get(row.id, {}).items():  # type: ignore[attr-defined]
            obj.setdefault(name, value)
