"""Notifications to people (resource managers, approvers) behind one small port.

    notifier = FakeNotifier()
    await notifier.notify(Notification(notification_id="n1", audience="resource_managers",
                                       subject="...", body="..."))

Email and Slack adapters are later work; today the deployment records every notification in
the store's outbox, where operators and the demo see it, and posts the ones about a project
(`psa_project_id`) to that workspace's activity feed in the PSA
(`activities.change_order.OutboxNotifier`). Each notification carries a deterministic id,
so a retried send is one notification (and one post).
`Notification` itself is a canonical model (`contracts.v1.notifications`), re-exported here.
No Temporal imports.
"""

from __future__ import annotations

from typing import Protocol

from contracts.v1.notifications import Notification


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


__all__ = ["FakeNotifier", "Notification", "NotifierPort"]
