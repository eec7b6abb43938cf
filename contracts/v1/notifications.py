"""Notifications to people (resource managers, approvers): the message the notifier port
sends. Pure data; it crosses workflow histories (the change-order saga builds it)."""

from __future__ import annotations

from typing import Any

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
