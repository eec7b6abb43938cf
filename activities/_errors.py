"""Connector and store errors become Temporal `ApplicationError`s, typed by kind.

Transient and rate-limited errors stay retryable (a rate limit's Retry-After becomes the next
retry delay); business-rule violations, auth failures, not-found and conflicts are
non-retryable and carry an `ErrorInfo` as their first detail so the workflow can open an
exception item with code, field, detail and the vendor evidence (what was sent and answered,
redacted and bounded).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from temporalio.exceptions import ActivityError, ApplicationError

from contracts.errors import ErrorInfo, PssyncError, RateLimitedError

P = ParamSpec("P")
R = TypeVar("R")

BUSINESS_RULE_TYPE = "BusinessRuleViolation"


MAX_EVIDENCE_CHARS = 16_384
"""Evidence larger than this (as JSON) is left off the failure: `connectors._evidence` bounds
what a vendor's answer gives, this bounds anything else that set it."""


def to_application_error(err: PssyncError) -> ApplicationError:
    info = err.info()
    if info.evidence is not None and len(json.dumps(info.evidence, default=str)) > (
        MAX_EVIDENCE_CHARS
    ):
        info = info.model_copy(update={"evidence": {"left_off": "larger than the failure allows"}})
    delay = None
    if isinstance(err, RateLimitedError) and err.retry_after_s is not None:
        delay = timedelta(seconds=err.retry_after_s)
    error_type = BUSINESS_RULE_TYPE if info.kind.value == "business_rule" else type(err).__name__
    return ApplicationError(
        err.message,
        info.model_dump(mode="json"),
        type=error_type,
        non_retryable=not err.retryable,
        next_retry_delay=delay,
    )


def translate_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Decorate an activity so pssync's typed errors reach the workflow typed."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except PssyncError as err:
            raise to_application_error(err) from err

    return wrapper


def business_error_info(err: BaseException) -> ErrorInfo | None:
    """The `ErrorInfo` of a business-rule failure raised by an activity, else None."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type == BUSINESS_RULE_TYPE and cause.details:
        return ErrorInfo.model_validate(cause.details[0])
    return None


def error_evidence(err: BaseException) -> dict[str, Any] | None:
    """The vendor evidence (what was sent and answered) an activity failure carries in its
    `ErrorInfo`, whatever its kind; None when it has none."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if not isinstance(cause, ApplicationError) or not cause.details:
        return None
    first = cause.details[0]
    evidence = first.get("evidence") if isinstance(first, dict) else None
    return evidence if isinstance(evidence, dict) else None
