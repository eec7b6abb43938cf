"""Notifications to people (resource managers, approvers) behind one small port.

    notifier = FakeNotifier()
    await notifier.notify(Notification(notification_id="n1", audience="resource_managers",
                                       subject="...", body="..."))

Email and Slack adapters are later work; today the deployment records every notification in
the store's outbox, where operators and the demo see it, and posts the ones about a project
(`psa_project_id`) to that workspace's activity feed in the PSA
(`activities.change_order.OutboxNotifier`). Each notification carries a deterministic id,
so a retried send is one notification (and one post).
No Temporal imports.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field


class Notification(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    notification_id: str = Field(min_length=1)
    audience: str
    """A role (resource_managers, delivery_manager, finance_controller) or a person."""
    subject: str
    body: str = ""
    context: dict[str, Any] = Field(default_factory=dict)
    psa_project_id: str | None = None
    """The PSA workspace it is about: it is also posted to that workspace's activity feed."""


class NotifierPort(Protocol):
    async def notify(self, notification: Notification) -> bool:
        """Send it; True if sent now, False if this id was sent before."""
        ...


class FakeNotifier:
    """In memory, idempotent by `notification_id`."""

    def __init__(self) -> None:
        self.sent: dict[str, Notification] = {}

    async def notify(self, notification: Notification) -> bool:
        if notification.notification_id in self.sent:
            return False
        self.sent[notification.notification_id] = notification
        return True


def _check_port() -> NotifierPort:  # pragma: no cover - a static check for mypy
    return FakeNotifier()
