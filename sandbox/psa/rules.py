"""The business rules the PSA twin's routes share: lookups, optimistic locks, open
workspaces, resources able to work on a date, rate-card rates, time limits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sqlmodel import Session, SQLModel, col, select

from sandbox._twin import TwinError
from sandbox.psa.responses import _parse_when, ids_in
from sandbox.psa.tables import PsaRateCardRole, PsaStory, PsaUser, PsaWorkspace, _now

MAX_MINUTES_PER_DAY = 24 * 60


def _invalid(message: str, field: str | None = None) -> TwinError:
    return TwinError(422, "validation", message, field)


def _not_found(what: str, ident: int | str) -> TwinError:
    return TwinError(404, "system", f"{what} {ident} not found")


def _get(session: Session, model: type[SQLModel], ident: int, what: str) -> Any:
    row = session.get(model, ident)
    if row is None:
        raise _not_found(what, ident)
    return row


def _touch(row: Any) -> None:
    row.updated_at = _now()
    if hasattr(row, "lock_version"):
        row.lock_version += 1


def _check_lock(row: Any, lock_version: int | None) -> None:
    if lock_version is not None and lock_version != row.lock_version:
        raise TwinError(
            409,
            "system",
            f"record changed since it was read (lock_version {lock_version} != {row.lock_version})",
            "lock_version",
        )


def _workspace_open(session: Session, workspace_id: int | None, *, for_time: bool = False) -> Any:
    if workspace_id is None:
        raise _invalid("Please choose a project", "workspace_id")
    ws = session.get(PsaWorkspace, workspace_id)
    if ws is None:
        raise _invalid(f"project {workspace_id} does not exist", "workspace_id")
    if ws.archived:
        raise _invalid(f"project {workspace_id} is archived", "workspace_id")
    if for_time and ws.closed_for_time_entry:
        raise _invalid(f"project {workspace_id} is closed for time entry", "workspace_id")
    return ws


def _resource_can_work(session: Session, user_id: int | None, on: date) -> Any:
    """The rule the PSA enforces: no time or expense for a resource inactive on that date."""
    if user_id is None:
        raise _invalid("Please choose a user", "user_id")
    user = session.get(PsaUser, user_id)
    if user is None:
        raise _invalid(f"user {user_id} does not exist", "user_id")
    if not user.active:
        raise _invalid(f"{user.full_name} is inactive", "user_id")
    if user.start_date is not None and on < user.start_date:
        raise _invalid(
            f"{user.full_name} starts on {user.start_date.isoformat()}", "date_performed"
        )
    if user.time_entry_closed_after is not None and on > user.time_entry_closed_after:
        raise _invalid(
            f"{user.full_name} is closed to time entry after "
            f"{user.time_entry_closed_after.isoformat()}",
            "date_performed",
        )
    return user


def _rate_for(session: Session, rate_card_id: int | None, role: str | None, on: date) -> int | None:
    if rate_card_id is None or role is None:
        return None
    return _rate_on(_card_roles(session, rate_card_id, role), on)


def _card_roles(session: Session, rate_card_id: int, role: str) -> Sequence[PsaRateCardRole]:
    return session.exec(
        select(PsaRateCardRole).where(
            PsaRateCardRole.rate_card_id == rate_card_id, PsaRateCardRole.role == role
        )
    ).all()


def _rate_on(rows: Iterable[PsaRateCardRole], on: date) -> int | None:
    for r in rows:
        if r.effective_from <= on and (r.effective_to is None or on <= r.effective_to):
            return r.rate_in_cents
    return None


def _entry_filters(
    model: Any,
    workspace_id: str | None,
    user_id: str | None,
    approved: bool | None,
    is_invoiced: bool | None,
    updated_after: str | None,
) -> list[Any]:
    clauses = [
        *ids_in(model.workspace_id, workspace_id, "workspace_id"),
        *ids_in(model.user_id, user_id, "user_id"),
    ]
    if approved is not None:
        clauses.append(model.approved == approved)
    if is_invoiced is not None:
        clauses.append(model.is_invoiced == is_invoiced)
    since = _parse_when(updated_after, "updated_after")
    if since is not None:
        clauses.append(col(model.updated_at) > since)
    return clauses


def _check_entry_edit(row: Any, changes: dict[str, Any], what: str) -> None:
    """What an update may change on a time entry or expense (`what`): nothing once invoiced,
    only `approved` once approved, never its workspace or user."""
    ident = row.id
    if row.is_invoiced:
        raise _invalid(f"{what} {ident} has been invoiced and cannot be edited", "is_invoiced")
    edits = set(changes) - {"approved"}
    if row.approved and edits and changes.get("approved") is not False:
        raise _invalid(f"{what} {ident} is approved and cannot be edited", "approved")
    if {"workspace_id", "user_id"} & edits:
        article = "an" if what[0] in "aeiou" else "a"
        raise _invalid(f"{article} {what} cannot move to another project or user", "workspace_id")


def _stamp_approval(row: Any, approved: bool | None) -> None:
    """`approved_at` of a time entry or expense an update approves (now) or unapproves."""
    if approved is True:
        row.approved_at = _now()
    elif approved is False:
        row.approved_at = None


def _check_minutes(minutes: int | None) -> None:
    if minutes is None:
        raise _invalid("Please enter the time spent", "time_in_minutes")
    if minutes <= 0 or minutes > MAX_MINUTES_PER_DAY:
        raise _invalid(
            f"time must be more than 0 and at most {MAX_MINUTES_PER_DAY} minutes a day",
            "time_in_minutes",
        )


def _check_story(session: Session, story_id: int | None, workspace_id: int) -> None:
    if story_id is None:
        return
    story = session.get(PsaStory, story_id)
    if story is None or story.workspace_id != workspace_id:
        raise _invalid(f"task {story_id} is not in project {workspace_id}", "story_id")
