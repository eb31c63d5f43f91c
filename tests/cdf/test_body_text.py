"""The one reader of a run's results body: what the ijson reader it replaced read, in less time, or MalformedResponse.

The relay's former reader (ijson's C backend, ``tests/support/ijson_reader.py``) is kept as an independent oracle:
the one reader gives the same fields and items, in the same key order, except where that reader strayed from JSON (a
form feed or vertical tab between tokens, a lone surrogate escape read as ``?``), which the one reader refuses."""

from __future__ import annotations

import json
import re
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.cdf.results import RunBody
from handlers.core.errors import MalformedResponse
from tests.cdf.test_results import BODIES, chunked
from tests.flow.test_fuzz import results_bodies, split
from tests.support.ijson_reader import RunBody as IjsonBody

Read = tuple[dict[str, Any], list[tuple[int, Any]], dict[str, Any]] | str


def by_ijson(chunks: Any) -> Read:
    """The run's fields at the header, its matches, and its fields at the end, as the former reader read them."""
    try:
        body = IjsonBody(chunks)
        header = dict(body.header())
        matches = [(index, item) for array, index, item in body.items() if array == "matches"]
        return header, matches, body.fields
    except MalformedResponse:
        return "malformed"


def by_link(chunks: Any) -> Read:
    """The same, as ``RunBody`` reads them for the link (its matches a batch at a time)."""
    try:
        body = RunBody(chunks)
        header = dict(body.header())
        return header, list(enumerate(item for batch in body.batches() for item in batch)), body.fields
    except MalformedResponse:
        return "malformed"


@pytest.mark.parametrize("chunk", [1, 7, 65536])
@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_link_matches_read_as_the_former_reader_read(body: dict[str, Any], chunk: int) -> None:
    """Whatever the chunking, the header, the matches and the fields are those the former reader gave, in order."""
    raw = json.dumps(body, ensure_ascii=False).encode()
    assert repr(by_link(chunked(raw, chunk))) == repr(by_ijson(chunked(raw, chunk)))


MALFORMED = {
    "empty": b"",
    "array": b"[]",
    "open": b"{",
    "truncated": b'{"status": "Completed", "matches": [{"score": 1}',
    "truncated number": b'{"status": "Completed", "matches": [1',
    "trailing": b'{"status": "Completed"} trailing',
    "two objects": b'{"status": "Completed"}{}',
    "matches an object": b'{"status": "Completed", "matches": {"a": 1}}',
    "rules a string": b'{"status": "Completed", "matches": [], "generatedRules": "x"}',
    "not utf-8": b"\xff\xfe",
    "cut utf-8": b'{"status": "Completed", "errorMessage": "\xc3',
    "NaN": b'{"status": "Completed", "matches": [{"score": NaN}]}',
    "-Infinity": b'{"status": "Completed", "matches": [-Infinity]}',
    "trailing comma": b'{"status": "Completed", "matches": [1,]}',
    "trailing comma in the object": b'{"status": "Completed",}',
    "missing colon": b'{"status" "Completed"}',
    "missing comma": b'{"status": "Completed", "matches": [1 2]}',
    "key not a string": b'{"status": "Completed", 1: 2}',
    "control character": b'{"status": "Comp\x01leted"}',
    "form feed between tokens": b'{"status": "Completed",\x0c"matches": []}',
    "jobId beyond 64 bits": b'{"status": "Completed", "jobId": 9223372036854775808}',
    "statusTime beyond a double": b'{"status": "Completed", "statusTime": 1e400}',
    "nested too deep": b'{"status": "Completed", "matches": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
}


@pytest.mark.parametrize("chunk", [1, 3, 65536])
@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_link_matches_malformed_body(raw: bytes, chunk: int) -> None:
    """A body that is not a JSON object of the documented shape raises MalformedResponse, never anything else."""
    if chunk < 10 and len(raw) > 1000:
        chunk = 4096  # the same body, in chunks that do not take minutes
    assert by_link(chunked(raw, chunk)) == "malformed"


def test_link_matches_a_large_item_cut_by_many_chunks() -> None:
    """An item far larger than a chunk is read whole, and the items around it too."""
    large = {"source": {"id": 2, "name": "x" * 2_000_000}, "target": {"id": 3}, "score": 0.5}
    body = {"status": "Completed", "matches": [{"source": {"id": 1}}, large, 12345678901234]}
    matches = list(enumerate(body["matches"]))
    assert by_link(chunked(json.dumps(body).encode(), 100)) == (
        {"status": "Completed"},
        matches,
        {"status": "Completed"},
    )


STRAYS = re.compile(rb"\\u[dD][89a-fA-F]|[\x0b\x0c]")  # where the former reader strayed from JSON


@settings(max_examples=400, deadline=None, derandomize=True)
@given(raw=results_bodies(), cuts=st.lists(st.integers(0, 10**6), max_size=6))
def test_link_matches_fuzz_as_the_former_reader_read(raw: bytes, cuts: list[int]) -> None:
    """Any body: the one reader reads what the former reader read, in the same order, or both refuse it; where that
    reader strayed from JSON (a lone surrogate, a form feed between tokens) the one reader may refuse alone."""
    former, link = by_ijson(split(raw, cuts)), by_link(split(raw, cuts))
    if STRAYS.search(raw):
        assert link == "malformed" or repr(link) == repr(former)
    else:
        assert repr(link) == repr(former)


def _body(items: str, n: int = 400) -> bytes:
    """A completed run whose ``matches`` are ``items`` (JSON text of one or more items) ``n`` times over."""
    return ('{"status": "Completed", "jobId": 1, "statusTime": 2, "matches": [' + ",".join([items] * n) + "]}").encode()


SLABS = {
    "compact": '{"source":{"id":1},"target":{"id":2},"score":0.9}',
    "spaced": '{ "source" : { "id" : 1 } } ,\n\t{ "score" : 0.5 }',
    "a boundary inside a string": '{"source": {"id": 1, "name": "a}, {b"}, "score": 0.9}',
    "a boundary inside a nested list": '{"source": {"id": 1}, "alternatives": [{"id": 2}, {"id": 3}]}',
    "a surrogate pair": '{"source": {"id": 1, "name": "\\ud83d\\ude00"}}',
    "an integer of 19 digits within 64 bits": '{"source": {"id": 9223372036854775807}, "score": -9223372036854775807}',
    "items that are not objects": '[1, 2], "x", {"source": {"id": 1}}, null',
}


@pytest.mark.parametrize("chunk", [5, 4096, 65536])
@pytest.mark.parametrize("items", SLABS.values(), ids=SLABS.keys())
def test_link_matches_slabs_read_what_json_reads(items: str, chunk: int) -> None:
    """Wherever a chunk cuts and whatever a slab holds, the items are those json reads, in order."""
    raw = _body(items)
    header, matches, fields = cast(tuple[Any, Any, Any], by_link(chunked(raw, chunk)))
    assert matches == list(enumerate(json.loads(raw)["matches"]))
    assert header == fields == {"status": "Completed", "jobId": 1, "statusTime": 2}


NARROW = {
    "a lone surrogate (json reads it)": '{"source": {"id": 1, "name": "\\ud800"}}',
    "a lone low surrogate": '{"source": {"id": 1, "name": "x\\udc00"}}',
    "a number beyond a double (json reads it as infinity)": '{"source": {"id": 1}, "score": 1e400}',
    "an integer beyond 64 bits (orjson reads it)": '{"source": {"id": 9223372036854775808}}',
    "an integer beyond 64 bits, negative": '{"source": {"id": 1}, "score": -9223372036854775809}',
    "an integer beyond unsigned 64 bits (orjson reads it as a float)": '{"source": {"id": 18446744073709551616}}',
}


@pytest.mark.parametrize("where", [0, 200, 399])
@pytest.mark.parametrize("chunk", [5, 4096, 65536])
@pytest.mark.parametrize("item", NARROW.values(), ids=NARROW.keys())
def test_link_matches_narrower_than_json_wherever_the_item_falls(item: str, chunk: int, where: int) -> None:
    """An item JSON allows but CDF never sends is refused, whether a slab, the scanner or the careful way reads it."""
    items = ['{"source":{"id":1},"target":{"id":2},"score":0.9}'] * 400
    items[where] = item
    raw = ('{"status": "Completed", "jobId": 1, "statusTime": 2, "matches": [' + ",".join(items) + "]}").encode()
    assert by_link(chunked(raw, chunk)) == "malformed"
