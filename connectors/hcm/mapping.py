"""Workday REST <-> canonical: workers and their business-process events, error bodies,
worker references and moments. Workday field names appear only here, in `workday.py` (and in
the twin)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from connectors._http import VendorError
from connectors.hcm.port import WorkerChange, WorkerEventType
from contracts.errors import BusinessRuleViolation
from contracts.systems import System
from contracts.v1 import Worker, WorkerStatus

# --------------------------------------------------------------------------- mapping


def _wd_datetime(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _iso_moment(value: datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


def _descriptor(ref: Any) -> str | None:
    return str(ref["descriptor"]) if isinstance(ref, Mapping) and ref.get("descriptor") else None


def worker_from_workday(record: Mapping[str, Any]) -> Worker:
    """Canonical Worker from a Workday worker (status as of the tenant's today)."""
    status = record.get("workerStatus") or {}
    cost_center = record.get("costCenter") or {}
    if status.get("terminated"):
        canonical_status = WorkerStatus.TERMINATED
    elif status.get("onLeave"):
        canonical_status = WorkerStatus.LEAVE
    else:
        canonical_status = WorkerStatus.ACTIVE
    if not cost_center.get("id"):
        raise BusinessRuleViolation(
            "UNMAPPABLE_RECORD",
            f"worker {record.get('workerId')} has no cost center",
            field="costCenter",
            system=System.HCM,
        )
    try:
        return Worker(
            source_system=System.HCM,
            source_version=record.get("lastUpdated"),
            updated_at=_wd_datetime(record["lastUpdated"]),
            external_id=record["workerId"],
            name=record["descriptor"],
            email=record.get("primaryWorkEmail"),
            status=canonical_status,
            hire_date=date.fromisoformat(status["hireDate"]),
            termination_date=_date(status.get("terminationDate")),
            last_day_worked=_date(status.get("terminationLastDayOfWork")),
            cost_center=str(cost_center["id"]),
            location=_descriptor(record.get("location")),
            role=_descriptor(record.get("jobProfile")) or record.get("businessTitle"),
        )
    except (ValidationError, KeyError) as exc:
        where = (
            ".".join(str(p) for p in exc.errors()[0]["loc"])
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        raise BusinessRuleViolation(
            "UNMAPPABLE_RECORD",
            f"worker {record.get('workerId')} does not fit the canonical model: {exc}",
            field=where,
            system=System.HCM,
        ) from None


def changes_from_workday(record: Mapping[str, Any]) -> list[WorkerChange]:
    """One WorkerChange per event a windowed worker carries."""
    worker = worker_from_workday(record)
    return [
        WorkerChange(
            worker=worker,
            event_id=str(e["id"]),
            event_type=WorkerEventType(e["type"]),
            effective_date=date.fromisoformat(e["effectiveDate"]),
            entry_moment=_wd_datetime(e["entryMoment"]),
            termination_date=_date(e.get("terminationDate")),
            last_day_worked=_date(e.get("lastDayOfWork")),
        )
        for e in record.get("events") or []
    ]


def parse_error(response: httpx.Response) -> VendorError:
    """Workday-style errors: `{"error", "code"?, "errors": [{"error", "code"?, "field"?}]}`."""
    body = response.json()
    if not isinstance(body, dict):
        return VendorError(code=f"HTTP_{response.status_code}", message=str(body)[:500])
    details = body.get("errors") or []
    first = details[0] if details and isinstance(details[0], dict) else {}
    return VendorError(
        code=str(first.get("code") or body.get("code") or f"HTTP_{response.status_code}"),
        message=str(first.get("error") or body.get("error") or ""),
        field=first.get("field") or first.get("location"),
    )


def _worker_ref(worker_id: str) -> str:
    # Workday accepts a reference ID in place of a WID: `Employee_ID=21001`.
    return quote(f"Employee_ID={worker_id}", safe="=")
