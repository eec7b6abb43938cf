"""Activities of the doctor workflow: prove a worker polls and can reach its dependencies."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity


class PingInput(BaseModel):
    message: str


class PingResult(BaseModel):
    message: str
    worker_identity: str


@activity.defn(name="doctor.ping")
async def ping(request: PingInput) -> PingResult:
    """Echo, naming the worker that ran it (shows in the Temporal UI's activity result)."""
    return PingResult(message=request.message, worker_identity=activity.info().workflow_id or "")
