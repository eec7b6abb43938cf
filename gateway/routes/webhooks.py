"""`POST /webhooks/crm`, `POST /webhooks/psa`: Standard Webhooks deliveries (`gateway.webhooks`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.routes._deps import ReceiverDep

router = APIRouter(tags=["webhooks"])


@router.post("/webhooks/crm", status_code=202)
async def crm_webhook(request: Request, receiver: ReceiverDep) -> JSONResponse:
    """A CRM event (Standard Webhooks signed). `opportunity.won` starts the saga."""
    return await receiver.receive("crm", request)


@router.post("/webhooks/psa", status_code=202)
async def psa_webhook(request: Request, receiver: ReceiverDep) -> JSONResponse:
    """A PSA event (Standard Webhooks signed): time, milestones, change orders, staffing."""
    return await receiver.receive("psa", request)
