"""The HCM twin's store helpers: find a worker by WID or reference ID, its termination, record
an event."""

from __future__ import annotations

import secrets
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, select

from sandbox._twin import TwinError
from sandbox.hcm.bodies import _refuse
from sandbox.hcm.tables import HcmEvent, HcmWorker


def _find(session: Session, worker_ref: str) -> HcmWorker:
    kind, sep, value = worker_ref.partition("=")
    if sep:
        if kind != "Employee_ID":
            raise TwinError(404, "NOT_FOUND", f"unknown reference ID type {kind}")
        row = session.exec(select(HcmWorker).where(HcmWorker.worker_id == value)).first()
    else:
        row = session.get(HcmWorker, worker_ref)
    if row is None:
        raise TwinError(404, "NOT_FOUND", "Resource not found")
    return row


def _termination_date(worker: HcmWorker, code: str, message: str) -> date:
    """The worker's termination date; refused with `code` when it has none."""
    if worker.termination_date is None:
        raise _refuse(code, message, "worker")
    return worker.termination_date


def _event(
    session: Session, worker: HcmWorker, kind: str, effective: date, entered: datetime, **data: Any
) -> HcmEvent:
    event = HcmEvent(
        id=secrets.token_hex(16),
        worker_wid=worker.wid,
        type=kind,
        effective_date=effective,
        entry_moment=entered,
        **data,
    )
    session.add(event)
    worker.last_updated = entered
    session.add(worker)
    return event
