"""Stage 1: read the trigger message (contract, section 2).

Turns what functions-framework hands over (an Eventarc ``messagePublished``
CloudEvent, or a raw push body it converted into one) into a ``Trigger``, or
raises ``InvalidTrigger`` carrying whatever coordinates could be read. Pure: no
I/O, no clock; CDF is never asked about an invalid trigger.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from handlers.core.continuation import FIELD as CONTINUATION
from handlers.core.continuation import FIRST, Continuation, parse_continuation
from handlers.core.envelope import Envelope
from handlers.core.errors import InvalidTrigger
from handlers.core.models import MAX_ID
from handlers.core.window import FIELD as RUNS_CREATED
from handlers.core.window import Span, parse_span

MAX_BODY_BYTES = 1_000_000  # a run is named in a few dozen bytes; anything this big is not a trigger
LATEST = "latest"
WITHIN_PROJECT = "projectSweep"  # on the sweeps of one pipeline a project sweep hands on (handlers.flow.sweep)
_DECIMAL = re.compile(r"[0-9]{1,16}")


@dataclass(frozen=True)
class Trigger:
    """A run to relay: its coordinates and where the message came from."""

    project: str
    pipeline_id: int
    run_id: int | str  # an id, or "latest" until it is resolved
    message_id: str = ""
    publish_time: datetime | None = None
    continuation: Continuation = FIRST  # where publishing goes on; FIRST for an ordinary trigger
    traceparent: str | None = None  # the outgoing trace context, once the entry point has resolved it


@dataclass(frozen=True)
class Sweep:
    """A sweep (section 2b): the runs created in ``span`` in one pipeline, or in every one (``pipeline_id`` None)."""

    project: str
    pipeline_id: int | None
    span: Span
    message_id: str = ""
    publish_time: datetime | None = None
    traceparent: str | None = None
    within_project: bool = False  # a pipeline a project sweep handed on: if it vanished, it is skipped


def parse_event(event_id: str, data: Any, *, default_project: str, allowed: tuple[str, ...]) -> Trigger | Sweep:
    """Read a ``messagePublished`` event's data (``{"message": {...}, "subscription": ...}``), as ``read_trigger``."""
    return read_trigger(Envelope.read(event_id, data), default_project=default_project, allowed=allowed)


def read_trigger(envelope: Envelope, *, default_project: str, allowed: tuple[str, ...]) -> Trigger | Sweep:
    """The trigger a message carries; a body with ``runsCreated`` is a sweep."""
    message_id, publish_time = envelope.message_id, envelope.publish_time
    if envelope.message is None:
        raise InvalidTrigger("the event carries no Pub/Sub message", message_id=message_id)
    try:
        fields = _fields(envelope.data, envelope.attributes)
    except InvalidTrigger as exc:
        exc.message_id, exc.publish_time = message_id, publish_time
        raise
    if RUNS_CREATED in fields:
        return parse_sweep(
            fields, message_id=message_id, publish_time=publish_time, default_project=default_project, allowed=allowed
        )
    return parse_fields(
        fields, message_id=message_id, publish_time=publish_time, default_project=default_project, allowed=allowed
    )


def parse_fields(
    fields: Mapping[str, Any],
    *,
    message_id: str = "",
    publish_time: datetime | None = None,
    default_project: str,
    allowed: tuple[str, ...],
) -> Trigger:
    """Validate ``pipelineId``, ``runId`` and ``project``; report every readable coordinate."""
    problems: list[str] = []
    pipeline_id = _id("pipelineId", fields.get("pipelineId"), problems)
    run_id: int | str | None
    run_id = LATEST if fields.get("runId") == LATEST else _id("runId", fields.get("runId"), problems)
    project = _project(fields.get("project"), default_project, allowed, problems)
    continuation = FIRST
    if CONTINUATION in fields:
        continuation = parse_continuation(fields[CONTINUATION], problems) or FIRST
        if run_id == LATEST:
            problems.append(f"a {CONTINUATION} names its run by id, not 'latest'")
    if problems or pipeline_id is None or run_id is None or project is None:
        raise InvalidTrigger(
            "invalid trigger: " + "; ".join(problems),
            message_id=message_id,
            project=project,
            pipeline_id=pipeline_id,
            run_id=run_id if isinstance(run_id, int) else None,
            publish_time=publish_time,
        )
    return Trigger(project, pipeline_id, run_id, message_id, publish_time, continuation)


def parse_sweep(
    fields: Mapping[str, Any],
    *,
    message_id: str = "",
    publish_time: datetime | None = None,
    default_project: str,
    allowed: tuple[str, ...],
) -> Sweep:
    """Validate ``runsCreated``, the optional ``pipelineId`` and ``project``; nothing of a run may stand beside it."""
    problems: list[str] = []
    span = parse_span(fields.get(RUNS_CREATED), problems)
    # Absent means every pipeline; null is not absent (a template that lost its value must not sweep them all).
    pipeline_id = _id("pipelineId", fields["pipelineId"], problems) if "pipelineId" in fields else None
    project = _project(fields.get("project"), default_project, allowed, problems)
    for other in ("runId", CONTINUATION):
        if other in fields:
            problems.append(f"a sweep ({RUNS_CREATED}) has no {other} beside it")
    within = WITHIN_PROJECT in fields
    if within and (fields[WITHIN_PROJECT] is not True or pipeline_id is None):
        problems.append(f"{WITHIN_PROJECT} is true, and beside a pipelineId, as matchrelay writes it")
    if problems or span is None or project is None:
        raise InvalidTrigger(
            "invalid trigger: " + "; ".join(problems),
            message_id=message_id,
            project=project,
            pipeline_id=pipeline_id,
            publish_time=publish_time,
        )
    return Sweep(project, pipeline_id, span, message_id, publish_time, within_project=within)


def _fields(data: Any, attributes: Mapping[str, Any]) -> Mapping[str, Any]:
    """The body's JSON object; an empty body falls back to the attributes."""
    if data is None or data == "":
        return attributes
    if not isinstance(data, str) or len(data) > MAX_BODY_BYTES * 4 // 3 + 4:
        raise InvalidTrigger("the message body is too large or not base64", message_id="")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidTrigger("the message body is not base64", message_id="") from None
    if len(raw) > MAX_BODY_BYTES:  # the check above bounds the work; this one is exact
        raise InvalidTrigger("the message body is too large (over 1 MB)", message_id="")
    if not raw.strip():
        return attributes
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidTrigger("the message body is not UTF-8 JSON", message_id="") from None
    if not isinstance(body, dict):
        raise InvalidTrigger("the message body is not a JSON object", message_id="")
    return body


def _id(name: str, value: Any, problems: list[str]) -> int | None:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = int(value)
    if number is None or not 1 <= number <= MAX_ID:
        problems.append(f"{name} must be an integer from 1 to {MAX_ID}, got {_show(value)}")
        return None
    return number


def _project(value: Any, default: str, allowed: tuple[str, ...], problems: list[str]) -> str | None:
    if value is None:
        return default
    if isinstance(value, str) and value in allowed:
        return value
    problems.append(f"project {_show(value)} is not one of CDF_ALLOWED_PROJECTS")
    return None


def _show(value: Any) -> str:
    # Echo a short, safe rendering of what was sent, never an unbounded string.
    return "missing" if value is None else json.dumps(value, default=str)[:64]
