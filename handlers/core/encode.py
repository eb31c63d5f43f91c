"""Event data as the bytes one Pub/Sub message carries. Pure.

Compact JSON (no spaces, UTF-8, not ASCII-escaped): the bytes are exactly what
google-cloud-pubsub would send for ``json.dumps(data, separators=(",", ":"),
ensure_ascii=False)``, so matchrelay's messages and the client's are identical.
Match events (``normalize``) and rule events (``rules``) are both encoded here.
"""

from __future__ import annotations

import json
from typing import Any

from handlers.core.errors import InvalidResponse, MalformedResponse

MAX_DATA_BYTES = 9_500_000  # Pub/Sub takes 10 MB a message; leave room for attributes and framing
MAX_ATTRIBUTE_BYTES = 1024  # Pub/Sub's limit on an attribute value

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)  # built once: hot path


def dumps(data: Any) -> bytes:
    try:
        text = _ENCODER.encode(data)
    except ValueError:
        raise MalformedResponse("CDF answered a number JSON cannot carry (NaN or Infinity)") from None
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate in CDF's text (JSON allows the escape, UTF-8 cannot carry it): keep it escaped.
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


def fit(data: bytes, what: str, max_bytes: int = MAX_DATA_BYTES) -> bytes:
    """``data`` if it fits one message; a single item larger than that cannot be split, and would fail for ever."""
    if len(data) > max_bytes:
        raise InvalidResponse(f"{what} is larger than one Pub/Sub message")
    return data


def clip(value: str) -> str:
    """``value`` cut to what one Pub/Sub attribute holds, on a character boundary."""
    return value.encode()[:MAX_ATTRIBUTE_BYTES].decode(errors="ignore")
