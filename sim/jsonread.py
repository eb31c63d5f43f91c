"""JSON read exactly as ``json.loads`` reads it, by orjson wherever orjson can.

The simulator parses every body it serves at least once (sim/openapi.py), on the
cores the link's benchmark shares with it: ``json.loads`` of a link's 1000-item
update was a tenth of what the simulator spends answering it. orjson reads strict
JSON only, into the same values; what it refuses (NaN and Infinity, lone surrogates,
a byte order mark, UTF-16) falls back to ``json.loads``, and so does a text with a run of
19 digits or more: orjson reads an integer past 64 bits as a float (tests/sim/test_jsonread.py
found it), and a body that holds one must be refused as CDF refuses it. Ids are 16 digits
at most, so a product's bodies never hold one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

_DIGITS = bytes.maketrans(b"123456789", b"000000000")  # every digit a 0: a run of 19 is then one find, in C
_LONG = b"0" * 19  # a number orjson might not read as an integer


def loads(body: bytes, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """``json.loads(body, parse_constant=...)``, by orjson when it reads ``body`` (a request's, as it came)."""
    if _LONG not in body.translate(_DIGITS):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return json.loads(body, parse_constant=parse_constant)
