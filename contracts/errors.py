"""The error taxonomy every layer speaks.

Connectors raise these; activities translate them into Temporal `ApplicationError` types by
`kind` (retryable or not); workflows turn `BusinessRuleViolation` into exception items. No I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class ErrorKind(StrEnum):
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    BUSINESS_RULE = "business_rule"
    CONFLICT = "conflict"
    NOT_FOUND = "not_found"
    AUTH = "auth"


RETRYABLE_KINDS: frozenset[ErrorKind] = frozenset({ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED})


class ErrorInfo(BaseModel):
    """Serializable description of an error (in activity failures and exception items)."""

    model_config = ConfigDict(frozen=True)

    kind: ErrorKind
    message: str
    system: str | None = None
    code: str | None = None
    field: str | None = None
    detail: str | None = None
    retry_after_s: float | None = None
    evidence: dict[str, Any] | None = None
    """What was sent and what the system answered, when a vendor refused a request: redacted
    of credentials and bounded in size (`connectors._evidence`). None for pssync's own checks
    and in histories recorded before it existed."""


class PssyncError(Exception):
    """Base of every typed error pssync raises about a system of record."""

    kind: ErrorKind = ErrorKind.TRANSIENT
    evidence: dict[str, Any] | None = None
    """The vendor request and response behind the error (redacted, bounded), when the error
    came from a vendor's answer; set by the connector that read it."""

    def __init__(self, message: str, *, system: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.system = system

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS

    def info(self) -> ErrorInfo:
        return ErrorInfo(
            kind=self.kind, message=self.message, system=self.system, evidence=self.evidence
        )


class TransientError(PssyncError):
    """Timeouts, 5xx, outages: retry with backoff."""

    kind = ErrorKind.TRANSIENT


class RateLimitedError(PssyncError):
    """429 / quota / concurrency limit: retry after `retry_after_s` when the vendor says so."""

    kind = ErrorKind.RATE_LIMITED

    def __init__(
        self, message: str, *, system: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, system=system)
        self.retry_after_s = retry_after_s

    def info(self) -> ErrorInfo:
        return ErrorInfo(
            kind=self.kind,
            message=self.message,
            system=self.system,
            retry_after_s=self.retry_after_s,
            evidence=self.evidence,
        )


class BusinessRuleViolation(PssyncError):
    """The system refused on business grounds (closed period, unknown cost center, ...).

    Never retried as-is: it becomes an exception item a person resolves.
    """

    kind = ErrorKind.BUSINESS_RULE

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        system: str | None = None,
    ) -> None:
        super().__init__(
            f"{code}: {detail}" + (f" (field {field})" if field else ""), system=system
        )
        self.code = code
        self.field = field
        self.detail = detail

    def info(self) -> ErrorInfo:
        return ErrorInfo(
            kind=self.kind,
            message=self.message,
            system=self.system,
            code=self.code,
            field=self.field,
            detail=self.detail,
            evidence=self.evidence,
        )


class ConflictError(PssyncError):
    """A stale version or a concurrent change: re-read, then decide."""

    kind = ErrorKind.CONFLICT


class StaleVersionError(ConflictError):
    """The write carried an older version than the system holds."""


class NotFoundError(PssyncError):
    kind = ErrorKind.NOT_FOUND


class AuthError(PssyncError):
    """Credentials refused: not retryable, alert an operator."""

    kind = ErrorKind.AUTH


class OwnershipViolation(BusinessRuleViolation):
    """A system tried to write a field another system of record owns."""

    def __init__(self, system: str, entity: str, field: str, owner: str) -> None:
        super().__init__(
            "FIELD_NOT_OWNED",
            f"{system} may not write {entity}.{field}; {owner} owns it",
            field=field,
            system=system,
        )
        self.owner = owner


ERROR_TYPES: dict[ErrorKind, type[PssyncError]] = {
    ErrorKind.TRANSIENT: TransientError,
    ErrorKind.RATE_LIMITED: RateLimitedError,
    ErrorKind.BUSINESS_RULE: BusinessRuleViolation,
    ErrorKind.CONFLICT: ConflictError,
    ErrorKind.NOT_FOUND: NotFoundError,
    ErrorKind.AUTH: AuthError,
}


class UnmappableRecord(BusinessRuleViolation):
    """A vendor record pssync cannot read: a field it needs is missing or has a shape it does
    not know (a bare `KeyError`/`ValueError`/`TypeError` from the mapping, made typed).

    Not retried as-is (the same record would fail the same way): a person fixes the record in
    the vendor, or the mapping is extended for a shape the vendor really sends."""

    CODE = "UNMAPPABLE_RECORD"

    def __init__(
        self,
        record: str,
        detail: str,
        *,
        record_id: str | None = None,
        field: str | None = None,
        system: str | None = None,
    ) -> None:
        where = f"{record} {record_id}" if record_id else record
        super().__init__(self.CODE, f"{where}: {detail}", field=field, system=system)
        self.record = record
        self.record_id = record_id
