"""The app's parts as FastAPI dependencies (built once by `create_app`, kept on `app.state`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from contracts.settings import Actor
from gateway.auth import current_actor
from gateway.metrics import GatewayMetrics
from gateway.processes import Processes
from gateway.relay import InboxRelay
from gateway.scoping import Scoper
from gateway.webhooks import WebhookReceiver
from store import Store


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _processes(request: Request) -> Processes:
    processes: Processes = request.app.state.processes
    return processes


def _metrics(request: Request) -> GatewayMetrics:
    metrics: GatewayMetrics = request.app.state.metrics
    return metrics


def _receiver(request: Request) -> WebhookReceiver:
    receiver: WebhookReceiver = request.app.state.webhooks
    return receiver


def _relay(request: Request) -> InboxRelay:
    relay: InboxRelay = request.app.state.relay
    return relay


def _scoper(request: Request) -> Scoper:
    """A fresh scoper per request (it caches the store's answers for that request only)."""
    return Scoper(request.app.state.store, request.app.state.client, request.app.state.settings)


StoreDep = Annotated[Store, Depends(_store)]
ProcessesDep = Annotated[Processes, Depends(_processes)]
MetricsDep = Annotated[GatewayMetrics, Depends(_metrics)]
ReceiverDep = Annotated[WebhookReceiver, Depends(_receiver)]
RelayDep = Annotated[InboxRelay, Depends(_relay)]
ActorDep = Annotated[Actor, Depends(current_actor)]
ScoperDep = Annotated[Scoper, Depends(_scoper)]
