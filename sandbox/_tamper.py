"""What the twins' tamper endpoints share (`/_admin/tamper/...`, no auth, like every `/_admin`
route): losing outbound webhooks the way a vendor that never sent them would.

Tampering changes a twin's data behind pssync's back, the way real life does (a person edits
the ERP by hand, deletes a time entry, a webhook never comes), so tests and the
reconciliation bench can inject drift. Each twin's own tampers live in its `routes/tamper.py`;
none of them sends an event, and none leaves a mark the vendor API would show: afterwards
the record reads exactly as the vendor shows such a change.

`POST /_admin/tamper/drop-webhooks {"type": "<event type>" | "*", "count": N}` makes the next
N events of that type (any type for `*`) never leave: they are not delivered, retried nor
listed in `/_admin/webhooks/deliveries` — as if the vendor had never sent them. `GET` the
same path for the rules left and what was dropped; `DELETE` it to cancel the rules left.
Twins that send webhooks (CRM, PSA) make their sender a `DroppingWebhookSender`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from sandbox._twin import TwinState, WebhookSender

ANY_TYPE = "*"


class DropWebhooks(BaseModel):
    """`POST /_admin/tamper/drop-webhooks`: lose the next `count` events of `type`."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=100)
    """An event type (`time_entry.approved`, `opportunity.won`, ...) or `*` for any."""
    count: int = Field(ge=1, le=1_000_000)


class DroppedWebhook(BaseModel):
    event_id: str
    event_type: str
    data: dict[str, Any]
    dropped_at: datetime


class DropRule(BaseModel):
    type: str
    remaining: int


class DropReport(BaseModel):
    """The rules left (in the order they apply) and every event dropped so far."""

    rules: list[DropRule]
    dropped: int
    dropped_by_type: dict[str, int]
    events: list[DroppedWebhook]


@dataclass
class WebhookDrops:
    """The drop rules of one twin and the events they dropped. The first rule that matches an
    event takes it (and counts down); a rule at zero is gone."""

    rules: list[DropRule] = field(default_factory=list)
    events: list[DroppedWebhook] = field(default_factory=list)

    def add(self, rule: DropWebhooks) -> None:
        self.rules.append(DropRule(type=rule.type, remaining=rule.count))

    def take(self, event_type: str) -> bool:
        """Drop this event? (Counts the matching rule down.)"""
        for rule in self.rules:
            if rule.type in (event_type, ANY_TYPE):
                rule.remaining -= 1
                if rule.remaining == 0:
                    self.rules.remove(rule)
                return True
        return False

    def report(self) -> DropReport:
        by_type: dict[str, int] = {}
        for event in self.events:
            by_type[event.event_type] = by_type.get(event.event_type, 0) + 1
        return DropReport(
            rules=[r.model_copy() for r in self.rules],
            dropped=len(self.events),
            dropped_by_type=by_type,
            events=list(self.events),
        )


class DroppingWebhookSender(WebhookSender):
    """A `WebhookSender` that loses the events its `drops` rules name: they are never queued,
    delivered or listed among the deliveries (the vendor never sent them)."""

    def __init__(self, url: str | None, secret: str, **options: Any) -> None:
        super().__init__(url, secret, **options)
        self.drops = WebhookDrops()

    def emit(self, event_type: str, data: dict[str, Any], event_id: str | None = None) -> str:
        event_id = event_id or f"evt_{secrets.token_hex(12)}"
        if self.drops.take(event_type):
            self.drops.events.append(
                DroppedWebhook(
                    event_id=event_id,
                    event_type=event_type,
                    data=data,
                    dropped_at=datetime.now(UTC),
                )
            )
            return event_id
        return super().emit(event_type, data, event_id)


def _drops(request: Request) -> WebhookDrops:
    state: TwinState = request.app.state.twin
    if not isinstance(state.webhooks, DroppingWebhookSender):
        raise HTTPException(404, "this twin sends no webhooks")
    return state.webhooks.drops


def drop_webhooks_router(prefix: str = "/_admin/tamper") -> APIRouter:
    """`{prefix}/drop-webhooks` (POST, GET, DELETE) for a twin whose sender is a
    `DroppingWebhookSender`; a twin without one answers 404. Give `prefix=""` to include it
    in a router that already has the tamper prefix."""
    router = APIRouter(prefix=prefix, tags=["tamper"])

    @router.post(
        "/drop-webhooks",
        summary="Lose the next N outbound events of a type ('*': any), as never sent",
    )
    async def drop(body: DropWebhooks, request: Request) -> DropReport:
        drops = _drops(request)
        drops.add(body)
        return drops.report()

    @router.get("/drop-webhooks", summary="Drop rules left and the events dropped")
    async def dropped(request: Request) -> DropReport:
        return _drops(request).report()

    @router.delete("/drop-webhooks", summary="Cancel the drop rules left")
    async def cancel(request: Request) -> DropReport:
        drops = _drops(request)
        drops.rules.clear()
        return drops.report()

    return router
