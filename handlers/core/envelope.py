"""One Pub/Sub message as it arrives (an Eventarc ``messagePublished`` event's data, or a raw push body), read once.

Every flow is handed this one value: the message, its attributes, the
subscription, the message id, the publish time and the message's data as
Pub/Sub sends it (base64 text). Nothing else picks the raw body apart. Pure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_BODY_BYTES = 1_000_000  # a message's data read as JSON: a run.completed or 1000 decisions is far less
_MESSAGE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # ids as Pub/Sub and push tools write them


@dataclass(frozen=True)
class Envelope:
    """The parts of one delivered message; ``message`` None when the body carries no Pub/Sub message."""

    event_id: str
    message: Mapping[str, Any] | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    subscription: str | None = None
    message_id: str = ""
    publish_time: datetime | None = None
    data: Any = None  # the message's ``data``: base64 text, as Pub/Sub sends it

    @classmethod
    def read(cls, event_id: str, body: Any) -> Envelope:
        """The envelope of a CloudEvent's data, or of a push body (JSON text or bytes when it came without a JSON
        content type); a body that is not one gives an envelope without a message."""
        if isinstance(body, bytes | str):
            body = _loads(body)
        message = body.get("message") if isinstance(body, Mapping) else None
        message = message if isinstance(message, Mapping) else None
        subscription = body.get("subscription") if isinstance(body, Mapping) else None
        attributes = message.get("attributes") if message is not None else None
        return cls(
            event_id,
            message,
            attributes if isinstance(attributes, Mapping) else {},
            subscription if isinstance(subscription, str) else None,
            message_id_of(event_id, message),
            publish_time_of(message.get("publishTime")) if message is not None else None,
            message.get("data") if message is not None else None,
        )

    def body(self) -> dict[str, Any] | None:
        """The message's data as the JSON object it carries (base64, UTF-8, at most 1 MB); None for anything else."""
        data = self.data
        if not isinstance(data, str) or len(data) > MAX_BODY_BYTES * 4 // 3 + 4:
            return None
        try:
            body = json.loads(base64.b64decode(data, validate=True).decode("utf-8"))
        except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
            return None
        return body if isinstance(body, dict) else None

    def attribute(self, name: str) -> str | None:
        """An attribute's value when it is text."""
        value = self.attributes.get(name)
        return value if isinstance(value, str) else None


def message_id_of(event_id: str, message: Any) -> str:
    """The message's Pub/Sub id, as it goes into ids and logs: Pub/Sub's own (digits) as it is, anything else (a
    hand-made push body) as a digest, so no text of unbounded length or shape reaches an attribute."""
    raw = message.get("messageId") if isinstance(message, Mapping) else None
    value = str(raw or event_id)
    if _MESSAGE_ID.fullmatch(value):
        return value
    return "sha256-" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32]


def publish_time_of(value: Any) -> datetime | None:
    """Pub/Sub's ``publishTime`` (RFC 3339, nanoseconds allowed, UTC when it names no offset), or None."""
    if not isinstance(value, str):
        return None
    # Pub/Sub may give nanoseconds; Python reads at most microseconds.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value.replace("Z", "+00:00"))
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Pub/Sub's times are UTC; one written without an offset is read as UTC, not compared naive with aware ones.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _loads(body: bytes | str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None
