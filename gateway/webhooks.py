"""Signed webhooks in: verification, inbox dedupe and a routing table per source.

    receiver = WebhookReceiver(store, metrics, {"crm": WebhookSource(verifier, routes)})
    response = await receiver.receive("crm", request)

One machinery for every source, in this order, so nothing unauthenticated reaches the store and
nothing unparsed reaches Temporal:

1. size: over `max_body_bytes` (declared, or counted while it streams in; the body is never
   held beyond the limit) -> 413; JSON nested deeper than `max_json_depth` -> 400
   `json_too_deep` (`gateway.limits` refuses both before the route runs, and the receiver
   checks again), then the Standard Webhooks headers `webhook-id`, `webhook-timestamp`,
   `webhook-signature`: missing, malformed, stale or future timestamp, or no matching `v1`
   signature over the *raw* body -> **401** (stale/future are 401 too: the delivery is not
   authentic *now*; the reason is in the error code and the refusal metric);
2. JSON (400 `invalid_json`), the envelope `{"type", "timestamp", "data"}` and the route's data
   model (422 `invalid_payload`, naming the field); an event type without a route -> 202
   `{"status": "ignored"}` (vendors send many kinds);
3. the inbox: `store.inbox_accept_many` (the accept of concurrent deliveries in one transaction,
   `gateway.group_commit`) records `(source, webhook-id, sha256(body), event_type, body)`, keeping
   the verified raw body and the event type (what a replay needs), `pending`. A delivery whose
   id was processed before -> 200 `{"status": "duplicate", "workflow_id"}` and *nothing is
   started* (200, not 409, so a sender stops retrying). The same id with another body -> 422
   `event_id_reused`;
4. the route's action (e.g. start a workflow), then the inbox row is marked `processed` with
   the workflow id. An action's 4xx (a business refusal) marks the row `failed` and is the
   answer. If the action finds Temporal down, the event is already stored, so the answer is
   **202 `{"status": "queued"}`** and the inbox relay (`gateway.relay`) replays the row, in
   arrival order, once Temporal is back; while the relay knows Temporal is down, deliveries are
   stored and answered 202 `queued` without calling Temporal at all.

   Why 202 and not 503: a 2xx tells a Standard Webhooks sender "received, durably; stop" and
   the sender has nothing more to give (the event is stored verbatim). A 503 would make every
   sender retry for as long as Temporal is down — and senders give up (after a few attempts, or
   a day) or disable an endpoint that keeps failing — while our answer would depend on whether
   they retried at all. With the relay, what happens to an accepted event no longer depends on
   the sender. 503 + Retry-After remains for when nothing could be stored (the store is down)
   or no relay runs (an app served without its lifespan): then only the sender's retry helps.

   A sender's retry of a `pending` (or `failed`) event runs the action again; the relay re-reads
   a row before replaying it and skips it once processed. Both are safe because actions are
   idempotent by business key (workflow id with USE_EXISTING, signal-with-start), which is also
   what makes concurrent copies of one delivery join one run.

Must never: import workflows, activities or connectors; start anything for a refused or
duplicate delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from standardwebhooks import Webhook

from contracts.ids import PsaId, SalesforceId, Tenant
from gateway.errors import GatewayError, RequestRefused, validation_error
from gateway.group_commit import GroupCommit
from gateway.limits import json_too_deep, too_deep_error, too_large_error
from gateway.metrics import GatewayMetrics
from store import InboxEvent, InboxProcessed, InboxRow, InboxState, Store

T = TypeVar("T")

MAX_BODY_BYTES = 1 << 20
"""The default of `max_body_bytes` (`settings.limits.webhook_max_body_bytes` in the app)."""
MAX_JSON_DEPTH = 64
"""The default of `max_json_depth` (`settings.limits.max_json_depth` in the app)."""
MAX_EVENT_ID_LENGTH = 255


# --------------------------------------------------------------------------- payload models


class WebhookEnvelope(BaseModel):
    """The thin event every source sends; unknown top-level fields are tolerated."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(min_length=1, max_length=200)
    timestamp: str | None = None
    """Informational only (freshness is the signed `webhook-timestamp` header's job)."""
    data: dict[str, Any]


class OpportunityWon(BaseModel):
    """CRM `opportunity.won`: which deal reached the contracted stage (the saga re-reads it).

    Identity is canonical from here on (`contracts.ids`): the tenant case-folded, the id in its
    18-character form; control characters, NUL or a malformed id are a 422 naming the field.
    Whether the tenant is one pssync serves is the route's `check` (it needs the settings)."""

    model_config = ConfigDict(extra="ignore")

    tenant: Tenant
    object: Literal["Opportunity"]
    id: SalesforceId
    stage: str | None = None


class PsaEvent(BaseModel):
    """PSA events: the workspace, the changed object's id under its own key, its version.
    Every id is a canonical PSA id (`contracts.ids.PsaId`): a malformed one is a 422."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    workspace_id: PsaId
    version: int | None = None
    time_entry_id: PsaId | None = None
    expense_id: PsaId | None = None
    billing_milestone_id: PsaId | None = None
    change_order_id: PsaId | None = None
    assignment_id: PsaId | None = None


class PsaRateCardEvent(BaseModel):
    """PSA `rate_card_version.published`: a rate card and its new version (a revision)."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    rate_card_id: PsaId
    rate_card_version_id: PsaId


# --------------------------------------------------------------------------- routing


@dataclass(frozen=True)
class WebhookEvent:
    """An authentic, parsed, first-seen (or not yet processed) delivery."""

    source: str
    event_id: str
    event_type: str
    data: BaseModel
    payload_hash: str


@dataclass(frozen=True)
class Outcome:
    """What an action did; `status` goes into the response body."""

    status: str
    result: str
    """Metric label: started, joined, queued, already_completed; deferred (stored for the
    relay because Temporal is down)."""
    http_status: int = 202
    workflow_id: str | None = None
    run_id: str | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status}
        if self.workflow_id is not None:
            body["workflow_id"] = self.workflow_id
        if self.run_id is not None:
            body["run_id"] = self.run_id
        return body


Action = Callable[[WebhookEvent], Awaitable[Outcome]]


async def queue_only(_event: WebhookEvent) -> Outcome:
    """Recorded in the inbox, nothing started yet (the process is wired by a later issue)."""
    return Outcome(status="queued", result="queued")


@dataclass(frozen=True)
class EventRoute:
    """How one event type is handled: its data model and the action run on first delivery.

    `starts_workflow` routes record the workflow id in the inbox; a delivery seen before whose
    inbox row has no workflow id yet runs the (idempotent) action again.
    """

    data_model: type[BaseModel]
    action: Action = queue_only
    starts_workflow: bool = False
    check: Callable[[BaseModel], None] | None = None
    """Refuses a parsed delivery before the inbox by raising `GatewayError` (e.g. 422
    `unknown_tenant`): what the data model cannot know without the settings."""


@dataclass
class WebhookSource:
    verifier: SignatureVerifier
    routes: dict[str, EventRoute] = field(default_factory=dict)


TEMPORAL_UNAVAILABLE = "temporal_unavailable"
"""The `GatewayError` code of an action that could not reach Temporal (`gateway.processes`)."""


class Replayer(Protocol):
    """What the receiver asks of the relay (`gateway.relay.InboxRelay`)."""

    @property
    def running(self) -> bool:
        """The relay is draining the inbox: a stored event will be replayed."""
        ...

    @property
    def deferring(self) -> bool:
        """Temporal was found unavailable and has not answered since: do not even try."""
        ...

    def temporal_unavailable(self, reason: str) -> None:
        """An action found Temporal unavailable (the relay backs off and takes over)."""
        ...


# --------------------------------------------------------------------------- verification


class SignatureVerifier:
    """Standard Webhooks verification with a configurable timestamp tolerance.

    `standardwebhooks.Webhook.verify` hard-codes a tolerance of +-5 minutes; to honour
    `settings.webhook_tolerance_s` (shorter *or* longer) the timestamp is checked here and the
    expected `v1` signature is computed with the library's `Webhook.sign` (HMAC-SHA256 over
    `id.timestamp.body`), compared in constant time with every `v1` signature sent.
    """

    def __init__(
        self,
        secret: str,
        tolerance_s: int,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._webhook = Webhook(secret)  # a malformed secret fails here, at start-up
        self.tolerance_s = tolerance_s
        self._clock = clock

    def verify(self, body: bytes, headers: Mapping[str, str]) -> str:
        """The delivery's event id, or GatewayError(401|400) with the refusal reason as code."""
        msg_id = headers.get("webhook-id", "")
        msg_timestamp = headers.get("webhook-timestamp", "")
        msg_signature = headers.get("webhook-signature", "")
        if not (msg_id and msg_timestamp and msg_signature):
            raise GatewayError(
                401,
                "missing_signature",
                "webhook-id, webhook-timestamp and webhook-signature headers are required",
            )
        try:
            ts = int(msg_timestamp)
        except ValueError:
            raise GatewayError(
                401, "invalid_timestamp", "webhook-timestamp must be integer Unix seconds"
            ) from None
        skew = ts - self._clock().timestamp()
        if skew < -self.tolerance_s:
            raise GatewayError(
                401,
                "stale_timestamp",
                f"webhook-timestamp is {int(-skew)} s old (tolerance {self.tolerance_s} s)",
            )
        if skew > self.tolerance_s:
            raise GatewayError(
                401,
                "future_timestamp",
                f"webhook-timestamp is {int(skew)} s ahead (tolerance {self.tolerance_s} s)",
            )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise GatewayError(400, "invalid_encoding", "the body must be UTF-8 JSON") from None
        expected = self._webhook.sign(msg_id, datetime.fromtimestamp(ts, UTC), text)
        expected_sig = expected.partition(",")[2].encode()
        for candidate in msg_signature.split():
            version, _, sig = candidate.partition(",")
            if version == "v1" and hmac.compare_digest(sig.encode(), expected_sig):
                break
        else:
            raise GatewayError(401, "bad_signature", "no matching webhook-signature")
        if len(msg_id) > MAX_EVENT_ID_LENGTH:
            raise GatewayError(
                400,
                "invalid_event_id",
                f"webhook-id is longer than {MAX_EVENT_ID_LENGTH} characters",
            )
        return msg_id


# --------------------------------------------------------------------------- the receiver


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a synchronous store call off the event loop; a database outage is a 503."""
    try:
        return await asyncio.to_thread(fn, *args)
    except SQLAlchemyError as exc:
        raise GatewayError.unavailable(
            "store_unavailable", f"the integration store is unavailable: {type(exc).__name__}"
        ) from exc


async def grouped(write: Awaitable[T]) -> T:
    """A group-committed store write (`GroupCommit.submit`); a database outage is a 503."""
    try:
        return await write
    except SQLAlchemyError as exc:
        raise GatewayError.unavailable(
            "store_unavailable", f"the integration store is unavailable: {type(exc).__name__}"
        ) from exc


class WebhookReceiver:
    """The generic machinery both webhook routes share (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        metrics: GatewayMetrics,
        sources: Mapping[str, WebhookSource],
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_json_depth: int = MAX_JSON_DEPTH,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self.sources = dict(sources)
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        # Inbox writes of concurrent deliveries share transactions (`gateway.group_commit`).
        self._accepts: GroupCommit[InboxEvent, bool] = GroupCommit(store.inbox_accept_many)
        self._processed: GroupCommit[InboxProcessed, None] = GroupCommit(store.inbox_processed_many)
        self.relay: Replayer | None = None
        """The relay that replays stored events (`gateway.relay.InboxRelay`); while it runs,
        a delivery that finds Temporal down is answered 202 `queued` instead of 503."""

    async def receive(self, source: str, request: Request) -> JSONResponse:
        started = time.perf_counter()
        self._metrics.webhooks_received.labels(source=source).inc()
        try:
            outcome = await self._process(source, request)
        except GatewayError as exc:
            self._metrics.webhooks_refused.labels(source=source, reason=exc.code).inc()
            raise
        finally:
            self._metrics.webhook_latency.labels(source=source).observe(
                time.perf_counter() - started
            )
        return JSONResponse(outcome.body(), status_code=outcome.http_status)

    async def _process(self, source: str, request: Request) -> Outcome:
        config = self.sources[source]
        body = await self._read_body(request)
        event_id = config.verifier.verify(body, request.headers)

        parsed = self._parse(config, body)
        if parsed is None:
            self._metrics.webhooks_ignored.labels(source=source).inc()
            return Outcome(status="ignored", result="ignored")
        event_type, route, data = parsed

        payload_hash = hashlib.sha256(body).hexdigest()
        first = await grouped(
            self._accepts.submit(
                InboxEvent(source, event_id, payload_hash, event_type, body.decode("utf-8"))
            )
        )
        if not first:
            row = await in_thread(self._store.inbox_get, source, event_id)
            if row is not None:
                if row.payload_hash != payload_hash:
                    raise GatewayError(
                        422,
                        "event_id_reused",
                        f"event {event_id!r} was received before with a different body",
                    )
                if row.state == InboxState.PROCESSED.value or not route.starts_workflow:
                    self._metrics.webhooks_duplicate.labels(source=source).inc()
                    return Outcome(
                        status="duplicate",
                        result="duplicate",
                        http_status=200,
                        workflow_id=row.workflow_id,
                    )
            # Seen but not processed: an earlier attempt found Temporal down (the relay has it
            # too) or is in flight right now. The action is idempotent by business key, so
            # running it again is safe.

        event = WebhookEvent(source, event_id, event_type, data, payload_hash)
        relay = self.relay
        if relay is not None and relay.running and relay.deferring:
            # Temporal is known to be down: the event is stored, the relay replays it in order.
            return self._queued(source, event_type)
        try:
            outcome = await route.action(event)
        except GatewayError as exc:
            if relay is not None and relay.running and exc.code == TEMPORAL_UNAVAILABLE:
                relay.temporal_unavailable(exc.message)
                return self._queued(source, event_type)
            if 400 <= exc.status < 500:
                # A business refusal: the sender gets it and stops; nothing replays the event.
                with contextlib.suppress(GatewayError):
                    await in_thread(
                        functools.partial(self._store.inbox_record_failure, permanent=True),
                        source,
                        event_id,
                        f"{exc.status} {exc.code}: {exc.message}",
                    )
            raise
        await self.record_processed(source, event_id, outcome)
        self._metrics.webhooks_accepted.labels(
            source=source, event_type=event_type, result=outcome.result
        ).inc()
        return outcome

    async def _read_body(self, request: Request) -> bytes:
        """The raw body (the signature covers it byte for byte), read chunk by chunk and
        refused 413 before it would hold more than `max_body_bytes`."""
        limit = self.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large_error(limit)
        body = bytearray()
        try:
            async for chunk in request.stream():
                if len(body) + len(chunk) > limit:
                    raise too_large_error(limit)
                body += chunk
        except RequestRefused as exc:  # gateway.limits stopped the stream first
            raise exc.error from None
        return bytes(body)

    def _queued(self, source: str, event_type: str) -> Outcome:
        self._metrics.webhooks_accepted.labels(
            source=source, event_type=event_type, result="deferred"
        ).inc()
        return Outcome(status="queued", result="deferred")

    def _parse(
        self, config: WebhookSource, body: bytes
    ) -> tuple[str, EventRoute, BaseModel] | None:
        """The event type, its route and its validated data; None for a type without a route.
        400 `json_too_deep`, 400 `invalid_json`, 422 `invalid_payload` (naming the field)."""
        if json_too_deep(body, self.max_json_depth):
            raise too_deep_error(self.max_json_depth)
        try:
            raw = json.loads(body)
        except RecursionError:  # nesting within the bound can still exhaust a small stack
            raise too_deep_error(self.max_json_depth) from None
        except ValueError as exc:
            raise GatewayError(400, "invalid_json", f"the body is not JSON: {exc}") from None
        try:
            envelope = WebhookEnvelope.model_validate(raw)
        except ValidationError as exc:
            raise validation_error(exc.errors(), code="invalid_payload") from None
        route = config.routes.get(envelope.type)
        if route is None:
            return None
        try:
            data = route.data_model.model_validate(envelope.data)
        except ValidationError as exc:
            raise validation_error(exc.errors(), code="invalid_payload", prefix="data") from None
        if route.check is not None:
            route.check(data)
        return envelope.type, route, data

    async def record_processed(self, source: str, event_id: str, outcome: Outcome) -> None:
        """The action took effect: record the workflow id (if any) and mark the event
        processed, so neither the relay nor a sender's retry runs it again."""
        await grouped(self._processed.submit(InboxProcessed(source, event_id, outcome.workflow_id)))

    async def replay(self, row: InboxRow) -> Outcome:
        """Run a stored event's route action again, as its delivery would have (the relay's
        path): the body is parsed and validated the same way, the action is the same, and the
        outcome is recorded the same way. Raises the action's `GatewayError`s; 422
        `not_replayable` for a row that cannot be replayed (no body, or its source or event
        type has no route any more)."""
        config = self.sources.get(row.source)
        if config is None or row.body is None:
            raise GatewayError(
                422,
                "not_replayable",
                f"event {row.source}/{row.event_id} has no stored body or no source route",
            )
        parsed = self._parse(config, row.body.encode("utf-8"))
        if parsed is None:
            raise GatewayError(
                422, "not_replayable", f"event type {row.event_type!r} has no route any more"
            )
        event_type, route, data = parsed
        event = WebhookEvent(row.source, row.event_id, event_type, data, row.payload_hash)
        outcome = await route.action(event)
        await self.record_processed(row.source, row.event_id, outcome)
        return outcome
