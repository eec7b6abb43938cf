"""The audit trail of people's decisions through the gateway.

A decision route is wrapped with `audited(<spec>)` under its `@router.post(...)`:

    @router.post("/api/exceptions/{item_id}/resolution")
    @audited(RESOLUTION)
    async def resolve_exception(item_id: str, body: ResolutionRequest, actor: ActorDep, ...):

Every call that reaches the handler (the actor is authenticated and the body is well formed)
leaves one `audit` row in the store: who (name and roles), what (`action`, the subject, the
tenant when the route knows it, the request body and the caller's `X-Request-ID`), when, and the
outcome as the gateway answered it — `accepted` with the status and the result, `refused` (any
4xx: not found, role or scope, already decided, the run's validator) or `failed` (a 5xx, e.g.
Temporal unreachable or the update timing out) with the error's code and message.

Fail closed, then complete: the row is written `attempted` *before* the handler runs. If that
write fails, the decision is not sent on and the caller gets 503 `audit_unavailable` (with
Retry-After): no decision takes effect unaudited. Once the handler has answered, the row is
completed; that write is retried a few times, and if it still fails the caller gets the
decision's real answer (it has taken effect, and a 5xx would invite a second one) while the row
stays `attempted`, the visible trace of a decision whose outcome the gateway could not record
(as it does when the gateway stops between the two writes). Look at the subject for the outcome.

What is recorded holds no secret: bearer tokens are never part of it (they are headers), and
the store redacts credential-named keys and bounds every JSON value (`store.repository.audit`).
Must never: import workflows, activities or connectors.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.settings import Actor, Settings
from gateway.errors import GatewayError
from store import AuditOutcome, NewAuditEntry, Store

log = logging.getLogger("pssync.gateway.audit")

AUDIT_ROLES = frozenset({"ops", "auditor"})
"""Who may read the audit trail (`GET /api/audit`)."""
REQUEST_ID_HEADERS = ("x-request-id", "x-correlation-id")
COMPLETE_ATTEMPTS = 3
_COMPLETE_BACKOFF_S = (0.05, 0.25)
REQUEST_PARAM = "audit_http_request"
"""The keyword `audited` adds to a route for the HTTP request (callers outside FastAPI, such
as the console, pass it themselves)."""

Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Any]])
Args = Mapping[str, Any]


@dataclass(frozen=True)
class AuditSpec:
    """How a decision route names what it decides, from the handler's arguments."""

    subject_kind: str
    subject_id: Callable[[Args], str]
    action: Callable[[Args], str]
    tenant: Callable[[Settings], str | None] = lambda _settings: None


def _body(args: Args) -> Any:
    return args.get("body")


RESOLUTION = AuditSpec(
    subject_kind="exception_item",
    subject_id=lambda a: str(a["item_id"]),
    action=lambda a: "exception.resolve",
)
CHANGE_ORDER_DECISION = AuditSpec(
    subject_kind="change_order",
    subject_id=lambda a: str(a["change_order_id"]),
    action=lambda a: (
        "change_order.approve" if getattr(_body(a), "approve", False) else "change_order.reject"
    ),
    tenant=lambda s: s.psa.tenant,
)
RESCIND = AuditSpec(
    subject_kind="termination",
    subject_id=lambda a: f"{a['worker_id']}/{a['termination_date']}",
    action=lambda a: "termination.rescind",
    tenant=lambda s: s.hcm.tenant,
)


def _billing_action(args: Args) -> str:
    body = _body(args)
    period, milestone = getattr(body, "period", None), getattr(body, "milestone_id", None)
    if period is not None and milestone is None:
        return "billing.close_period"
    if milestone is not None and period is None:
        return "billing.bill_milestone"
    return "billing.request"


BILLING = AuditSpec(
    subject_kind="project",
    subject_id=lambda a: str(a["psa_project_id"]),
    action=_billing_action,
    tenant=lambda s: s.psa.tenant,
)


def audited(spec: AuditSpec) -> Callable[[Endpoint], Endpoint]:
    """Wrap a decision route so each call that reaches it is audited (see the module doc).

    The wrapper keeps the route's signature (FastAPI resolves the same parameters) and adds
    one, the `Request`, to reach the store and the headers; it finds the actor among the
    arguments by type and the body under `body`."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        try:
            signature = inspect.signature(endpoint, eval_str=True)
        except NameError:  # an annotation only for type checkers: FastAPI resolves it
            signature = inspect.signature(endpoint)
        parameters = [
            *signature.parameters.values(),
            inspect.Parameter(REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Request),
        ]

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            http_request: Request = kwargs.pop(REQUEST_PARAM)
            recorder = await AuditRecorder.begin(http_request, spec, kwargs)
            try:
                answer = await endpoint(*args, **kwargs)
            except GatewayError as exc:
                await recorder.complete(exc.status, {"code": exc.code, "message": exc.message})
                raise
            except StarletteHTTPException as exc:
                await recorder.complete(exc.status_code, {"message": str(exc.detail)})
                raise
            except Exception as exc:
                await recorder.complete(
                    500, {"code": "internal_error", "error": type(exc).__name__}
                )
                raise
            status, result = _answer(answer)
            await recorder.complete(status, result)
            return answer

        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


class AuditRecorder:
    """One decision's audit row: written `attempted` by `begin`, completed by `complete`."""

    def __init__(self, store: Store, audit_id: int, subject: str) -> None:
        self._store = store
        self._id = audit_id
        self._subject = subject

    @classmethod
    async def begin(cls, http_request: Request, spec: AuditSpec, args: Args) -> AuditRecorder:
        """Write the `attempted` row, or refuse the decision: 503 `audit_unavailable`."""
        store: Store = http_request.app.state.store
        settings: Settings = http_request.app.state.settings
        entry = audit_entry(http_request, spec, args, settings)
        try:
            row = await asyncio.to_thread(store.audit_begin, entry)
        except Exception as exc:  # any failure to record: the decision must not go on
            log.error(
                "audit trail unavailable, refused %s on %s %s by %s: %s",
                entry.action, entry.subject_kind, entry.subject_id, entry.actor, exc,
            )  # fmt: skip
            raise GatewayError.unavailable(
                "audit_unavailable",
                "the decision was not sent: it cannot be recorded in the audit trail now",
            ) from exc
        assert row.id is not None
        return cls(store, row.id, f"{entry.action} on {entry.subject_kind} {entry.subject_id}")

    async def complete(self, status: int, result: Mapping[str, Any] | None) -> None:
        """Record the outcome; retried, and logged (the row stays `attempted`) if it fails."""
        outcome = (
            AuditOutcome.ACCEPTED
            if status < 400
            else AuditOutcome.REFUSED
            if status < 500
            else AuditOutcome.FAILED
        )
        for attempt in range(COMPLETE_ATTEMPTS):
            try:
                await asyncio.to_thread(
                    self._store.audit_complete, self._id, outcome, status, result
                )
                return
            except Exception as exc:  # a store outage must not turn the answer into a 500
                if attempt + 1 == COMPLETE_ATTEMPTS:
                    log.error(
                        "audit row %s (%s) stays 'attempted': its outcome %s %s could not be "
                        "recorded: %s",
                        self._id, self._subject, outcome.value, status, exc,
                    )  # fmt: skip
                    return
                await asyncio.sleep(_COMPLETE_BACKOFF_S[min(attempt, len(_COMPLETE_BACKOFF_S) - 1)])


def audit_entry(
    http_request: Request, spec: AuditSpec, args: Args, settings: Settings
) -> NewAuditEntry:
    """What a decision's audit row says before its outcome is known."""
    actor = next((value for value in args.values() if isinstance(value, Actor)), None)
    if actor is None:  # a route wired wrong: refuse rather than record an anonymous decision
        raise TypeError("an audited route must take the actor (ActorDep)")
    body = _body(args)
    request = body.model_dump(mode="json") if isinstance(body, BaseModel) else {}
    return NewAuditEntry(
        actor=actor.name,
        actor_roles=list(actor.roles),
        action=spec.action(args),
        subject_kind=spec.subject_kind,
        subject_id=spec.subject_id(args),
        tenant=spec.tenant(settings),
        request=request,
        request_id=next(
            (http_request.headers[h] for h in REQUEST_ID_HEADERS if h in http_request.headers),
            None,
        ),
    )


def _answer(answer: Any) -> tuple[int, dict[str, Any] | None]:
    """The status and JSON a handler's return value is answered with."""
    if isinstance(answer, Response):
        try:
            body = json.loads(bytes(answer.body))
        except (ValueError, UnicodeDecodeError):
            body = None
        return answer.status_code, body if isinstance(body, dict) else None
    if isinstance(answer, BaseModel):
        return 200, answer.model_dump(mode="json")
    if isinstance(answer, Mapping):
        return 200, dict(answer)
    return 200, None
