"""Activities of the change-order saga: read the change and its project, revise the ERP and
PSA budgets under optimistic concurrency (and revert them), raise and cancel staffing demand,
notify people. ERP ones (`ChangeOrderErpActivities`) run on the ERP task queue.

Every write is safe to repeat: budget revisions carry the version they were computed from and
recognise their own earlier success; demand is keyed `co:{change_order_id}:{role}`;
notifications carry a deterministic id. No business rules here: the workflow decides.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import BaseModel
from temporalio import activity

from activities._errors import translate_errors
from connectors.erp import ErpBudgetPort
from connectors.notifications import NotifierPort
from connectors.psa import PsaPort
from contracts.errors import (
    BusinessRuleViolation,
    ConflictError,
    PssyncError,
    StaleVersionError,
)
from contracts.money import Money
from contracts.v1 import Assignment, ChangeOrder, Project, RateCard
from contracts.v1.change_orders import ErpBudget
from contracts.v1.events import ChangeOrderDecided
from contracts.v1.models import ChangeOrderStatus
from contracts.v1.notifications import Notification
from store import Store

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- inputs, outputs


class ReadChangeOrder(BaseModel):
    psa_tenant: str
    change_order_id: str
    psa_project_id: str | None = None
    enterprise_id: str | None = None


class ChangeOrderContext(BaseModel):
    change_order: ChangeOrder
    project: Project
    psa_project_id: str
    enterprise_id: str
    rate_card: RateCard | None = None


class SetChangeOrderState(BaseModel):
    change_order_id: str
    state: ChangeOrderStatus


class PsaBudget(BaseModel):
    psa_project_id: str
    amount: Money
    version: str


class ReadPsaBudget(BaseModel):
    psa_project_id: str
    currency: str


class UpdatePsaBudget(BaseModel):
    psa_project_id: str
    amount: Money
    expected_version: str


class RevertPsaBudget(BaseModel):
    before: PsaBudget
    target: Money
    """What the forward step set; reverted only if the PSA still holds it."""


class ReadErpBudget(BaseModel):
    project: str


class ReviseErpBudget(BaseModel):
    project: str
    amount: Money
    expected_version: int


class RevertErpBudget(BaseModel):
    project: str
    before: ErpBudget
    target: Money


class ChangeDemand(BaseModel):
    psa_project_id: str
    demands: list[Assignment]
    """The same demands the forward step raised: re-raising them (idempotent by key) finds
    their request ids even when the forward step's answer was lost."""


class NotifyPeople(BaseModel):
    notification: Notification


# --------------------------------------------------------------------------- notifier adapter


class OutboxNotifier:
    """`NotifierPort` that records notifications in the store's outbox (event `notification`,
    keyed by the notification id) until email/Slack adapters exist; given the PSA, it also
    posts a notification that names a workspace (`psa_project_id`) to that workspace's
    activity feed, where resource managers see it.

    Safe to repeat: the post is keyed by the notification id (the connector finds an earlier
    post by its marker) and is made before the outbox row, so a retry after either step failed
    completes both, once. The result is the outbox's: True if recorded now. A PSA refusal that
    retrying cannot fix (workspace gone, not allowed) does not fail the notification: the
    outbox still records it, without a post.
    """

    def __init__(self, store: Store, psa: PsaPort | None = None) -> None:
        self.store = store
        self.psa = psa

    async def notify(self, notification: Notification) -> bool:
        if self.psa is not None and notification.psa_project_id:
            await self._post(self.psa, notification.psa_project_id, notification)
        return await asyncio.to_thread(
            self.store.add_outbox,
            "notification",
            notification.notification_id,
            notification.model_dump(mode="json"),
        )

    @staticmethod
    async def _post(psa: PsaPort, workspace_id: str, notification: Notification) -> None:
        message = notification.subject
        if notification.body:
            message += f"\n\n{notification.body}"
        try:
            await psa.post_notification(
                workspace_id, message, [notification.audience], key=notification.notification_id
            )
        except PssyncError as err:
            if err.retryable:
                raise
            log.warning(
                "notification %s not posted to PSA workspace %s: %s",
                notification.notification_id,
                workspace_id,
                err,
            )


# --------------------------------------------------------------------------- activities


class ChangeOrderActivities:
    def __init__(self, psa: PsaPort, store: Store, notifier: NotifierPort) -> None:
        self.psa = psa
        self.store = store
        self.notifier = notifier

    @activity.defn(name="change_order.read")
    @translate_errors
    async def read_change_order(self, request: ReadChangeOrder) -> ChangeOrderContext:
        """The change order, its project and rate card, and the project's enterprise ID."""
        co = await self.psa.get_change_order(request.change_order_id)
        psa_id = request.psa_project_id or co.project_id
        project = await self.psa.get_project(psa_id)
        enterprise_id = request.enterprise_id or project.enterprise_id
        if enterprise_id is None:
            enterprise_id = await asyncio.to_thread(
                self.store.find_enterprise_id, "PSA", request.psa_tenant, "workspace", psa_id
            )
        if enterprise_id is None:
            raise BusinessRuleViolation(
                "PROJECT_NOT_LINKED",
                f"PSA workspace {psa_id} has no enterprise project ID",
                field="project_id",
                system="PSA",
            )
        rate_card = None
        if project.rate_card_id:
            rate_card = await self.psa.get_rate_card(project.rate_card_id)
        return ChangeOrderContext(
            change_order=co,
            project=project,
            psa_project_id=psa_id,
            enterprise_id=enterprise_id,
            rate_card=rate_card,
        )

    @activity.defn(name="change_order.set_state")
    @translate_errors
    async def set_state(self, request: SetChangeOrderState) -> None:
        """Set the change order's state in the PSA. A rejection is final here (the run's last
        step): its `change_order.rejected` event is recorded once the PSA holds it, keyed by
        the change order, so a retried attempt records one event. (An approval's events are
        recorded with the run's forecast adjustment, the step after which nothing is undone:
        `store.repository.records.derived_events`.)"""
        co = await self.psa.set_change_order_state(request.change_order_id, request.state)
        if request.state is ChangeOrderStatus.REJECTED:
            await self._record_rejection(co)

    async def _record_rejection(self, co: ChangeOrder) -> None:
        project = await self.psa.get_project(co.project_id)
        eid = project.enterprise_id
        data = ChangeOrderDecided(
            enterprise_id=eid,
            change_order_id=co.external_id,
            psa_project_id=co.project_id,
            decision="rejected",
            budget_delta=co.budget_delta.amount,
            hours_delta=co.hours_delta,
            currency=co.budget_delta.currency,
            title=co.title,
        )
        key = f"{eid}:{co.external_id}" if eid else f"psa:{co.project_id}:{co.external_id}"
        event = ("change_order.rejected", key, eid or co.project_id, data)
        await asyncio.to_thread(self.store.queue_domain_events, [event])

    @activity.defn(name="change_order.read_psa_budget")
    @translate_errors
    async def read_psa_budget(self, request: ReadPsaBudget) -> PsaBudget:
        project = await self.psa.get_project(request.psa_project_id)
        amount = await self.psa.get_project_budget(request.psa_project_id)
        return PsaBudget(
            psa_project_id=request.psa_project_id,
            amount=amount or Money.zero(request.currency),
            version=project.source_version or "",
        )

    @activity.defn(name="change_order.update_psa_budget")
    @translate_errors
    async def update_psa_budget(self, request: UpdatePsaBudget) -> PsaBudget:
        """Set the budget if the workspace is still at `expected_version`; a retry whose first
        attempt went through finds the target already there and succeeds."""
        try:
            version = await self.psa.update_project_budget(
                request.psa_project_id,
                request.amount,
                expected_version=request.expected_version or None,
            )
        except StaleVersionError:
            current = await self.psa.get_project_budget(request.psa_project_id)
            if current != request.amount:
                raise
            project = await self.psa.get_project(request.psa_project_id)
            version = project.source_version or ""
        return PsaBudget(
            psa_project_id=request.psa_project_id, amount=request.amount, version=version
        )

    @activity.defn(name="change_order.revert_psa_budget")
    @translate_errors
    async def revert_psa_budget(self, request: RevertPsaBudget) -> bool:
        """Compensation: put the budget back if it is still what the forward step set."""
        psa_id = request.before.psa_project_id
        current = await self.psa.get_project_budget(psa_id)
        if current == request.before.amount:
            return False  # never applied, or already reverted
        if current != request.target:
            raise ConflictError(
                f"PSA budget of {psa_id} changed since the change order ({current}); "
                "not reverting over someone else's change",
                system="PSA",
            )
        await self.psa.update_project_budget(psa_id, request.before.amount)
        return True

    @activity.defn(name="change_order.raise_demand")
    @translate_errors
    async def raise_demand(self, request: ChangeDemand) -> list[str]:
        return await self.psa.create_resource_requests(request.psa_project_id, request.demands)

    @activity.defn(name="change_order.cancel_demand")
    @translate_errors
    async def cancel_demand(self, request: ChangeDemand) -> int:
        """Compensation: cancel the requests raised for these demands (idempotent)."""
        if not request.demands:
            return 0
        ids = await self.psa.create_resource_requests(request.psa_project_id, request.demands)
        for request_id in ids:
            await self.psa.cancel_resource_request(request_id)
        return len(ids)

    @activity.defn(name="change_order.notify")
    @translate_errors
    async def notify(self, request: NotifyPeople) -> bool:
        return await self.notifier.notify(request.notification)


class ChangeOrderErpActivities:
    def __init__(self, erp: ErpBudgetPort) -> None:
        self.erp = erp

    @activity.defn(name="change_order.read_erp_budget")
    @translate_errors
    async def read_erp_budget(self, request: ReadErpBudget) -> ErpBudget:
        return await self.erp.get_budget(request.project)

    @activity.defn(name="change_order.revise_erp_budget")
    @translate_errors
    async def revise_erp_budget(self, request: ReviseErpBudget) -> ErpBudget:
        """Revise under optimistic concurrency on the budget version; a retry whose first
        attempt went through (version + 1, same amount) succeeds."""
        try:
            return await self.erp.revise_budget(
                request.project, amount=request.amount, expected_version=request.expected_version
            )
        except StaleVersionError:
            current = await self.erp.get_budget(request.project)
            if current.version == request.expected_version + 1 and current.amount == request.amount:
                return current
            raise

    @activity.defn(name="change_order.revert_erp_budget")
    @translate_errors
    async def revert_erp_budget(self, request: RevertErpBudget) -> bool:
        """Compensation: revert the revision if the ERP still holds it (a revision that never
        happened needs nothing; one changed since by someone else is refused)."""
        current = await self.erp.get_budget(request.project)
        if current.version == request.before.version or (
            current.amount == request.before.amount and current.version > request.before.version
        ):
            return False
        if current.amount != request.target:
            raise ConflictError(
                f"ERP budget of {request.project} changed since the change order "
                f"(version {current.version}, {current.amount}); not reverting",
                system="ERP",
            )
        await self.erp.revise_budget(
            request.project, amount=request.before.amount, expected_version=current.version
        )
        return True
