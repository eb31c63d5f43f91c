"""The simulator's JSON reader answers exactly as json.loads does, whichever reader took the text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.jsonread import loads

TEXTS = [
    b'{"items":[{"id":1,"update":{"assetId":{"set":2}}}]}',  # what orjson reads
    b'{"a":"\\ud800"}',  # a lone surrogate: orjson refuses it, json.loads takes it
    b'{"a":123456789012345678901234567890}',  # past 64 bits
    b'\xef\xbb\xbf{"a":1}',  # a byte order mark
    '{"a":"é"}'.encode("utf-16"),
    b'{"a":1e400}',
    b'{"a":1,"a":2}',  # a key twice: the last wins
    b'[1.0,-0,0.5e-3,"x"]',
]
REFUSED = [b"", b"{", b'{"a":NaN}', b"[Infinity]", b'{"a":1}x', b"\xff"]


@pytest.mark.parametrize("text", TEXTS)
def test_same_values_as_json_loads(text: bytes) -> None:
    """Each text reads to what json.loads makes of it, types included."""
    assert _typed(loads(text)) == _typed(json.loads(text))


@pytest.mark.parametrize("text", REFUSED)
def test_refuses_what_json_loads_refuses(text: bytes) -> None:
    """What json.loads refuses (NaN and Infinity too, under a parse_constant that refuses) raises ValueError."""

    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    with pytest.raises(ValueError):
        loads(text, parse_constant=refuse)


def test_nan_read_without_parse_constant() -> None:
    """Without parse_constant, NaN reads as json.loads reads it."""
    assert json.dumps(loads(b"[NaN]")) == "[NaN]"


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    )
)
def test_any_json_reads_alike(value: Any) -> None:
    """Any JSON document reads the same both ways."""
    text = json.dumps(value).encode()
    assert _typed(loads(text)) == _typed(json.loads(text))


def _typed(value: Any) -> Any:
    """``value`` with each scalar's type beside it: 1 and 1.0 and True compare unequal."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)
