"""pssync's log lines: text for a terminal, or one JSON object per line for a log pipeline, with
the trace they belong to, the business keys, and no secrets (docs/observability.md "Tracing and
logs").

    configure_logging(settings.telemetry)     # once, by a process's composition root

A JSON line holds `time` (UTC, ISO 8601), `level`, `logger`, `message`; `trace_id` and
`span_id` when a span is active (`plumbing.telemetry`); and the business keys when known:
`enterprise_id`, `process`, `workflow_id`, `activity_type` — from the record's `extra`
(`extra={"enterprise_id": ..., "business_process": ...}`: a LogRecord's own `process` is the
process id), from the running activity (`temporalio.activity.info()`: the workflow type is the
process), or from the Temporal workflow logger's own `temporal_workflow` extra (kept as it is).

Secrets never reach a line: values under keys named like token, secret, password,
authorization, cookie or API key are replaced, at any depth of the record's arguments and
extras; an httpx request is logged as its method and URL only (no headers); `Bearer …` and
`token=…` in the message text are masked too. Business keys are ids, never names or e-mail
addresses: put people's data in no log call.

httpx and httpcore log every request at INFO; they are set to WARNING here.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

import httpx
from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter
from temporalio import activity

from contracts.settings import TelemetrySettings

REDACTED = "[redacted]"
SECRET_KEY = re.compile(
    r"token|secret|passw|authorization|cookie|api[-_]?key|private[-_]?key|credential|signature",
    re.IGNORECASE,
)
"""Keys whose values are never logged."""
_SECRET_IN_TEXT = re.compile(
    r"(?P<key>[\w-]*(?:token|secret|passw\w*|authorization|cookie|api[-_]?key))"
    r"(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<scheme>(?:bearer|basic)\s+)?[^\s\"',;&}]+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_MAX_DEPTH = 8
QUIET_LOGGERS = ("httpx", "httpcore")
"""Libraries that log every request at INFO: WARNING and above only."""

BUSINESS_KEYS = ("enterprise_id", "business_process", "workflow_id", "activity_type")
"""Record attributes of the business keys (`business_process` is `process` in a JSON line)."""
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def redact_text(text: str) -> str:
    """`text` with secret-looking assignments and bearer credentials masked."""
    text = _SECRET_IN_TEXT.sub(lambda m: f"{m['key']}{m['sep']}{REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m[1]} {REDACTED}", text)


def redact(value: Any, depth: int = 0) -> Any:
    """`value` with secrets masked: mappings by key (at any depth), httpx requests and headers
    without their credentials, strings by `redact_text`."""
    if depth > _MAX_DEPTH:
        return "[…]"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, httpx.Request):
        return f"{value.method} {redact_text(str(value.url))}"
    if isinstance(value, httpx.Headers):
        value = dict(value.multi_items())
    if isinstance(value, Mapping):
        return {
            k: REDACTED if SECRET_KEY.search(str(k)) else redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v, depth + 1) for v in value]
    return value


_TRACEBACKS = logging.Formatter()


class RedactSecrets(logging.Filter):
    """Masks secrets in a record's message, arguments and extras (see the module's doc).

    The message is formatted here, from redacted arguments, so no formatter sees the raw ones."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args
            safe: Any = (
                redact(args) if isinstance(args, Mapping) else tuple(redact(a) for a in args)
            )
            try:
                message = str(record.msg) % safe
            except (TypeError, ValueError, KeyError):
                message = f"{record.msg} {safe}"
        else:
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info:  # a traceback as text, masked; formatters print `exc_text`
            record.exc_text = redact_text(_TRACEBACKS.formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(record.__dict__.items()):
            if key in _STANDARD:
                continue
            record.__dict__[key] = REDACTED if SECRET_KEY.search(key) else redact(value)
        return True


class BusinessContext(logging.Filter):
    """Adds `trace_id`/`span_id` of the active span and the business keys it can find."""

    def filter(self, record: logging.LogRecord) -> bool:
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = format(span.trace_id, "032x")
            record.span_id = format(span.span_id, "016x")
        keys: dict[str, Any] = {}
        if activity.in_activity():
            info = activity.info()
            keys = {
                "workflow_id": info.workflow_id,
                "business_process": info.workflow_type,
                "activity_type": info.activity_type,
            }
        workflow_extra = getattr(record, "temporal_workflow", None)
        if isinstance(workflow_extra, Mapping):
            keys.setdefault("workflow_id", workflow_extra.get("workflow_id"))
            keys.setdefault("business_process", workflow_extra.get("workflow_type"))
        for key, value in keys.items():
            if value is not None and getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


class _JsonLines(JsonFormatter):
    """python-json-logger's formatter with the time first, in UTC, ISO 8601 to the
    millisecond."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def json_formatter() -> logging.Formatter:
    """One JSON object per line: time, level, logger, message, then every extra (python-json-
    logger: extras of any type, exceptions as text)."""
    return _JsonLines(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={
            "asctime": "time",
            "levelname": "level",
            "name": "logger",
            "business_process": "process",
        },
        json_ensure_ascii=False,
    )


def text_formatter() -> logging.Formatter:
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")


def handler(settings: TelemetrySettings, stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (stderr by default) in `settings.log_format`, redacting, with trace ids
    and business keys."""
    out = logging.StreamHandler(stream or sys.stderr)
    out.addFilter(BusinessContext())
    out.addFilter(RedactSecrets())
    out.setFormatter(json_formatter() if settings.log_format == "json" else text_formatter())
    return out


def configure_logging(settings: TelemetrySettings, stream: IO[str] | None = None) -> None:
    """Send the process's logs to one handler (`handler`) at `settings.log_level`, replacing the
    plain stream handlers already there (`logging.basicConfig`'s, as the CLI sets up, or an
    earlier call's; others, such as a test runner's, are left alone), and quiet httpx."""
    root = logging.getLogger()
    plain = [h for h in root.handlers if type(h) is logging.StreamHandler]
    for old in plain:
        root.removeHandler(old)
    root.addHandler(handler(settings, stream))
    root.setLevel(settings.log_level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
