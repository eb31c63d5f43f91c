"""Structured logs for Cloud Logging: one JSON object a line (contract, section 7).

``severity`` and ``message`` plus the run's coordinates (``project``,
``pipelineId``, ``runId``, ``messageId``) from a context variable, so every line
written while a message is handled carries them without passing them around.

When the request carries a trace (W3C ``traceparent``, or Google's
``X-Cloud-Trace-Context``), ``trace_fields`` gives Cloud Logging's trace fields
for that context too, so the invocation's lines group under its request in the
Logs Explorer. Header values are validated strictly and never copied into a line.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("matchrelay_log", default={})  # noqa: B039


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log line written inside the block (unset ones are dropped)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


TRACE = "logging.googleapis.com/trace"
SPAN_ID = "logging.googleapis.com/spanId"
TRACE_SAMPLED = "logging.googleapis.com/trace_sampled"

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_CLOUD_TRACE = re.compile(r"([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([01]))?")
_GCP_PROJECT = re.compile(r"(?:[a-z0-9][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
_PROJECT_IN_PATH = re.compile(r"(?:^|/)projects/([^/]{1,100})/(?:topics|subscriptions)/")
_MAX_HEADER = 512  # longer values are not a trace context; not even parsed


@dataclass(frozen=True)
class Trace:
    """A request's trace context: 32 hex digits, and the caller's span (16 hex digits) when known."""

    trace_id: str
    span_id: str | None = None
    sampled: bool | None = None


def parse_traceparent(value: str) -> Trace | None:
    """W3C ``traceparent`` (``00-<trace-id>-<parent-id>-<flags>``); ``None`` unless every part is well-formed."""
    value = value.strip(" \t")
    match = _TRACEPARENT.match(value) if len(value) <= _MAX_HEADER else None
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    # Version ff is invalid; 00 has exactly four parts; a later version may append "-..." parts.
    if version == "ff" or (len(value) > 55 and (version == "00" or value[55] != "-")):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return Trace(trace_id, span_id, bool(int(flags, 16) & 1))


def parse_cloud_trace_context(value: str) -> Trace | None:
    """``X-Cloud-Trace-Context`` (``TRACE_ID[/SPAN_ID][;o=0|1]``, span decimal); ``None`` unless well-formed."""
    value = value.strip(" \t")
    match = _CLOUD_TRACE.fullmatch(value) if len(value) <= _MAX_HEADER else None
    if match is None:
        return None
    trace_id, span, sampled = match.groups()
    if trace_id.strip("0") == "":
        return None
    span_id = None
    if span is not None:
        if not 0 < int(span) < 2**64:
            return None
        span_id = f"{int(span):016x}"
    return Trace(trace_id.lower(), span_id, None if sampled is None else sampled == "1")


def request_trace(traceparent: str | None, cloud_trace_context: str | None) -> Trace | None:
    """A request's trace: its ``traceparent`` if valid, else its ``X-Cloud-Trace-Context`` if valid, else none."""
    trace = parse_traceparent(traceparent) if traceparent is not None else None
    if trace is None and cloud_trace_context is not None:
        trace = parse_cloud_trace_context(cloud_trace_context)
    return trace


def traceparent_of(trace: Trace, new_span: Callable[[], str] = lambda: secrets.token_hex(8)) -> str:
    """The W3C ``traceparent`` events and triggers carry for ``trace``: same trace-id, the caller's span as parent
    (a new one when the caller gave none), sampled or not as the caller said."""
    span = trace.span_id or new_span()
    return f"00-{trace.trace_id}-{span}-{'01' if trace.sampled else '00'}"


def gcp_project(configured: str | None, *paths: Any) -> str | None:
    """The Google Cloud project traces belong to: ``configured`` (``GOOGLE_CLOUD_PROJECT``) if valid, else the
    project of the first ``projects/P/topics/T`` or ``projects/P/subscriptions/S`` among ``paths``."""
    candidates = [configured]
    for path in paths:
        match = _PROJECT_IN_PATH.search(path) if isinstance(path, str) and len(path) <= _MAX_HEADER else None
        candidates.append(match.group(1) if match else None)
    return next((c for c in candidates if c is not None and _GCP_PROJECT.fullmatch(c)), None)


def trace_fields(trace: Trace | None, project: str | None) -> dict[str, Any]:
    """Cloud Logging's special fields for ``trace`` (nothing without a trace or a project to name it by)."""
    if trace is None or project is None:
        return {}
    fields: dict[str, Any] = {TRACE: f"projects/{project}/traces/{trace.trace_id}"}
    if trace.span_id is not None:
        fields[SPAN_ID] = trace.span_id
    if trace.sampled is not None:
        fields[TRACE_SAMPLED] = trace.sampled
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname if record.levelname != "WARN" else "WARNING",
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "logger": record.name,
        }
        entry.update(_context.get())
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["message"] += "\n" + self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _StdHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout``/``sys.stderr`` is at the time (test capture replaces them)."""

    def __init__(self, to_stderr: bool) -> None:
        super().__init__()
        self._to_stderr = to_stderr

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr if self._to_stderr else sys.stdout
        super().emit(record)


def setup_logging(level: str = "INFO", to_stderr: bool = False) -> None:
    """Route the worker's loggers (and the libraries') to one JSON stream."""
    handler = _StdHandler(to_stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request at INFO; the poller already says what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
