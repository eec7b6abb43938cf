"""The exception desk: how every workflow hands an exception item to a person and takes it back.

    desk = ExceptionDesk(
        process=PROCESS_OPPORTUNITY_TO_PROJECT, roles=RESOLVER_ROLES[...], escalate_to="ops",
        escalation_after=timedelta(hours=4), activity_timeout=timedelta(minutes=1),
    )
    item = await desk.open(scope="validating", cause_code="MISSING_RATE_CARD", detail=...,
                           owner="delivery_manager", actions=[RETRY, ABANDON])
    resolution = await desk.wait(item.item_id)            # escalates once on time

    @workflow.update(name=RESOLVE_EXCEPTION_UPDATE)
    async def resolve_exception(self, r): return await self._desk.accept(r)
    @resolve_exception.validator
    def _validate(self, r): self._desk.validate(r, scope_keys=self._scope_keys)

One implementation of the hand-off, so its races are closed once:

- **One id scheme**: `exc_` + uuid5 of the workflow id, a scope (the step or the cause) and the
  count of items the run has opened. Deterministic on replay and URL-safe (ids travel in the
  gateway's paths). An item whose id comes from elsewhere (the time pipeline's activity opens
  entry items itself) is `adopt`ed.
- **Claim before await**: `accept` takes the item out of the open set *synchronously*, before
  its store activity, so of two updates validated in the same workflow task exactly one wins and
  the other gets a typed refusal (`AlreadyResolved`), never a `KeyError`.
- **Wait until recorded**: `wait` returns only once the accepting handler has recorded the
  resolution in the store (`all_handlers_finished`), so the run never acts on a decision the
  store does not know.
- **Escalation is idempotent**: escalating an item that was resolved (or escalated) a moment ago
  is a no-op, also when the timer fires while the resolution's store activity is in flight.
- **Withdraw at the end**: a run that ends (rescind, compensation, cancellation) withdraws the
  items it still holds, so no person is left deciding for a run that is gone.
- **Carried across continue-as-new**: `snapshot()` is a `DeskState`; pass it back to the
  constructor of the next run.

The `ExceptionOpen` search attribute is upserted whenever an item opens and whenever the last
open item closes (`flag`), so a list filter finds exactly the runs waiting for a person.

Deterministic: no I/O; activities run through the workflow API only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from workflows._common import EXCEPTION_OPEN, RETRY

with workflow.unsafe.imports_passed_through():
    from activities.store import (
        EscalateExceptionItem,
        OpenExceptionItem,
        ResolveExceptionItem,
        StoreActivities,
    )
    from contracts.v1.processes import (
        ClosedException,
        DeskState,
        ExceptionResolution,
        OpenException,
        ResolutionAccepted,
        ResolutionAction,
    )

CLOSED_KEPT = 200
"""How many closed items a desk remembers (and carries) to refuse late duplicates by name."""


def item_id_for(workflow_id: str, scope: str, number: int | None = None) -> str:
    """The one exception item id scheme (deterministic, URL-safe): the workflow id, where
    the item arose and, for items that may recur there, the run's count of items opened.
    Without a number the id is keyed by its content: the same refusal is the same item."""
    key = f"{workflow_id}/{scope}" + (f"/{number}" if number is not None else "")
    return "exc_" + uuid.uuid5(uuid.NAMESPACE_URL, key).hex


class ExceptionDesk:
    """A run's open exception items: open, validate, accept, wait, escalate, withdraw."""

    def __init__(
        self,
        *,
        process: str,
        roles: frozenset[str],
        escalate_to: str,
        escalation_after: timedelta,
        activity_timeout: timedelta,
        retry_policy: RetryPolicy = RETRY,
        state: DeskState | None = None,
    ) -> None:
        self.process = process
        self.roles = roles
        self.escalate_to = escalate_to
        self.escalation_after = escalation_after
        self._timeout = activity_timeout
        self._retry = retry_policy
        self._state = state.model_copy(deep=True) if state is not None else DeskState()
        self._accepted: dict[str, ExceptionResolution] = {}
        self._waiting: set[str] = set()
        self._flagged: bool | None = None

    # ------------------------------------------------------------------ reading

    @property
    def open_items(self) -> list[OpenException]:
        return list(self._state.open.values())

    def get(self, item_id: str) -> OpenException | None:
        return self._state.open.get(item_id)

    def is_open(self, item_id: str) -> bool:
        return item_id in self._state.open

    @property
    def has_open(self) -> bool:
        return bool(self._state.open)

    def snapshot(self) -> DeskState:
        """The desk's state for continue-as-new (accepted-but-unconsumed decisions are not
        carried: a run continues as new only once its handlers have finished and consumed)."""
        return self._state.model_copy(deep=True)

    # ------------------------------------------------------------------ opening

    def next_item_id(self, scope: str) -> str:
        self._state.opened += 1
        return item_id_for(workflow.info().workflow_id, scope, self._state.opened)

    def content_item_id(self, scope: str) -> str:
        """The id of the item for `scope` itself (one item however often it recurs)."""
        return item_id_for(workflow.info().workflow_id, scope)

    async def open(
        self,
        *,
        cause_code: str,
        detail: str,
        owner: str,
        actions: Iterable[ResolutionAction],
        scope: str | None = None,
        field: str | None = None,
        correctable: Iterable[str] = (),
        context: dict[str, Any] | None = None,
        item_id: str | None = None,
        flag: bool = True,
    ) -> OpenException:
        """Record a new item in the store, hold it open, set `ExceptionOpen`.

        `scope` names where the item arose (a step, a cause) and keys its id; `item_id` is for
        an id agreed elsewhere. `context` is stored for the person (what, where, what next).
        """
        info = workflow.info()
        actions = list(actions)
        item_id = item_id or self.next_item_id(scope or cause_code)
        await workflow.execute_activity_method(
            StoreActivities.open_exception,
            OpenExceptionItem(
                item_id=item_id,
                workflow_id=info.workflow_id,
                run_id=info.run_id,
                process=self.process,
                cause_code=cause_code,
                field=field,
                detail=detail,
                owner=owner,
                context={**(context or {}), "allowed_actions": [a.value for a in actions]},
            ),
            start_to_close_timeout=self._timeout,
            retry_policy=self._retry,
            summary=f"exception {cause_code}",
        )
        item = OpenException(
            item_id=item_id,
            cause_code=cause_code,
            field=field,
            detail=detail,
            opened_at=workflow.now(),
            allowed_actions=actions,
            correctable=sorted(correctable),
            owner=owner,
        )
        self.adopt(item, flag=flag)
        return item

    def adopt(self, item: OpenException, *, flag: bool = True) -> None:
        """Hold open an item already recorded in the store (by an activity, or a past run)."""
        self._state.open[item.item_id] = item
        self._accepted.pop(item.item_id, None)
        if flag:
            self.flag(force=True)

    # ------------------------------------------------------------------ resolving

    def validate(
        self, resolution: ExceptionResolution, *, scope_keys: set[str] | None = None
    ) -> OpenException:
        """Refuse, before anything reaches history, what may not be accepted.

        Typed refusals (the gateway maps them to HTTP): `AlreadyResolved` / `NoOpenException`
        (409), `NotAuthorized` / `NotInScope` (403), `ActionNotAllowed` / `InvalidCorrection`
        (422). `scope_keys`: the business keys this run covers; the actor needs one of them
        in `actor_scopes` (`*` is every scope).
        """
        item = self._state.open.get(resolution.item_id)
        if item is None:
            self._refuse_closed(resolution.item_id)
        assert item is not None
        if not self.roles.intersection(resolution.actor_roles):
            needs = ", ".join(sorted(self.roles))
            raise ApplicationError(
                f"{resolution.actor} may not resolve this item: needs one of {needs}",
                type="NotAuthorized",
            )
        if scope_keys is not None and not scope_keys.intersection(resolution.actor_scopes):
            raise ApplicationError(
                f"{resolution.actor} has no scope over this run's business", type="NotInScope"
            )
        if item.allowed_actions and resolution.action not in item.allowed_actions:
            raise ApplicationError(
                f"{resolution.action.value} is not allowed for {item.cause_code} (allowed: "
                f"{', '.join(a.value for a in item.allowed_actions)})",
                type="ActionNotAllowed",
            )
        if resolution.action is ResolutionAction.RETRY_WITH_DATA:
            given = set(resolution.corrections)
            allowed = set(item.correctable)
            if not given or not given <= allowed:
                raise ApplicationError(
                    f"{item.cause_code} takes corrections of "
                    f"{', '.join(sorted(allowed)) or 'nothing (retry instead)'}; "
                    f"got {', '.join(sorted(given)) or 'none'}",
                    type="InvalidCorrection",
                )
        return item

    def claim(self, resolution: ExceptionResolution) -> OpenException:
        """Take the item out of the open set at once (no await before this): the first
        update for an item wins, a second one validated in the same task is refused."""
        item = self._state.open.pop(resolution.item_id, None)
        if item is None:
            self._refuse_closed(resolution.item_id)
        assert item is not None
        self._accepted[resolution.item_id] = resolution
        self._remember(resolution.item_id, resolution.action.value, resolution.actor)
        return item

    def release(self, item: OpenException) -> None:
        """Give a claimed item back (its resolution could not be carried out)."""
        self._state.open[item.item_id] = item
        self._accepted.pop(item.item_id, None)
        self._state.closed = [c for c in self._state.closed if c.item_id != item.item_id]

    async def record(self, resolution: ExceptionResolution) -> ResolutionAccepted:
        """Record a claimed item's resolution in the store."""
        await self._resolve_in_store(
            resolution.item_id, resolution.actor, resolution.model_dump(mode="json")
        )
        return ResolutionAccepted(
            item_id=resolution.item_id, action=resolution.action, accepted_at=workflow.now()
        )

    async def accept(
        self, resolution: ExceptionResolution, *, flag: bool | None = None
    ) -> ResolutionAccepted:
        """The update handler's body: claim, then record.

        `ExceptionOpen` is cleared by `wait` once the run has taken the decision, so the flag
        never says "settled" before the run acted; an item nobody waits on (acknowledged
        conflicts) is flagged here. `flag=False`: the workflow flags when it has settled the
        item itself (a retry still under way)."""
        waited = resolution.item_id in self._waiting
        self.claim(resolution)
        accepted = await self.record(resolution)
        if flag if flag is not None else not waited:
            self.flag()
        return accepted

    async def close(self, item_id: str, *, actor: str, resolution: dict[str, Any]) -> None:
        """The run closes an item itself (superseded, no longer relevant). The caller flags."""
        if self._state.open.pop(item_id, None) is None:
            return
        self._remember(item_id, str(resolution.get("action", "closed")), actor)
        await self._resolve_in_store(item_id, actor, resolution)

    # ------------------------------------------------------------------ waiting

    async def wait(
        self, item_id: str, *, interrupted: Callable[[], bool] | None = None
    ) -> ExceptionResolution | None:
        """Wait for a person's decision on `item_id`, escalating once when it is due.

        Returns the resolution once its handler has recorded it, or None when `interrupted()`
        turned true first (a rescind, say; the item stays open for `withdraw_all`).
        """

        def decided() -> bool:
            if interrupted is not None and interrupted():
                return True
            return item_id in self._accepted and workflow.all_handlers_finished()

        item = self._state.open.get(item_id)
        self._waiting.add(item_id)
        try:
            return await self._wait(item_id, item, decided)
        finally:
            self._waiting.discard(item_id)

    async def _wait(
        self, item_id: str, item: OpenException | None, decided: Callable[[], bool]
    ) -> ExceptionResolution | None:
        due = self.escalation_after
        if item is not None:
            due = max(item.opened_at + self.escalation_after - workflow.now(), timedelta(0))
        if item is not None and not item.escalated and due > timedelta(0):
            try:
                await workflow.wait_condition(decided, timeout=due)
            except TimeoutError:
                await self.escalate(item_id)
                await workflow.wait_condition(decided)
        else:
            if item is not None and not item.escalated:
                await self.escalate(item_id)
            await workflow.wait_condition(decided)
        resolution = self._accepted.pop(item_id, None)
        if resolution is not None:
            self.flag()
        return resolution

    def next_escalation(self) -> datetime | None:
        """When the earliest open, unescalated item falls due (None: nothing to escalate)."""
        due = [
            i.opened_at + self.escalation_after
            for i in self._state.open.values()
            if not i.escalated
        ]
        return min(due) if due else None

    async def escalate_due(self) -> int:
        """Escalate every open item that is due now; returns how many were escalated."""
        now = workflow.now()
        escalated = 0
        for item in list(self._state.open.values()):
            if not item.escalated and item.opened_at + self.escalation_after <= now:
                if await self.escalate(item.item_id):
                    escalated += 1
        return escalated

    async def escalate(self, item_id: str) -> bool:
        """Hand an open item to the escalation role. A no-op (False) for an item that was
        resolved, withdrawn or escalated meanwhile; the store, too, leaves a resolved item
        as it is."""
        item = self._state.open.get(item_id)
        if item is None or item.escalated:
            return False
        item.escalated = True
        item.owner = self.escalate_to
        await workflow.execute_activity_method(
            StoreActivities.escalate_exception,
            EscalateExceptionItem(item_id=item_id, owner=self.escalate_to),
            start_to_close_timeout=self._timeout,
            retry_policy=self._retry,
            summary=f"escalate {item.cause_code} to {self.escalate_to}",
        )
        return True

    # ------------------------------------------------------------------ ending

    async def withdraw_all(self, reason: str, *, always_flag: bool = False) -> list[str]:
        """Close every item still open: nobody is left to decide for a run that ends.
        `ExceptionOpen` is cleared if anything was withdrawn (or `always_flag`)."""
        withdrawn = list(self._state.open)
        for item_id in withdrawn:
            await self.close(
                item_id, actor="pssync", resolution={"action": "withdrawn", "reason": reason}
            )
        if withdrawn or always_flag:
            self.flag(force=True)
        return withdrawn

    # ------------------------------------------------------------------ bookkeeping

    def flag(self, *, force: bool = False) -> None:
        """Upsert `ExceptionOpen` when it changes (or always, with `force`)."""
        has_open = bool(self._state.open)
        if force or has_open != self._flagged:
            workflow.upsert_search_attributes([EXCEPTION_OPEN.value_set(has_open)])
            self._flagged = has_open

    def _refuse_closed(self, item_id: str) -> None:
        closed = next((c for c in self._state.closed if c.item_id == item_id), None)
        if closed is not None:
            raise ApplicationError(
                f"exception item {item_id} was already resolved ({closed.action} by "
                f"{closed.actor})",
                type="AlreadyResolved",
            )
        raise ApplicationError(
            f"exception item {item_id} is not open in this run", type="NoOpenException"
        )

    def _remember(self, item_id: str, action: str, actor: str) -> None:
        self._state.closed.append(ClosedException(item_id=item_id, action=action, actor=actor))
        del self._state.closed[:-CLOSED_KEPT]

    async def _resolve_in_store(self, item_id: str, actor: str, resolution: dict[str, Any]) -> None:
        await workflow.execute_activity_method(
            StoreActivities.resolve_exception,
            ResolveExceptionItem(item_id=item_id, actor=actor, resolution=resolution),
            start_to_close_timeout=self._timeout,
            retry_policy=self._retry,
        )
