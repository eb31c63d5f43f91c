"""Streaming a results body: the same events as loading it whole, in bounded memory."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from handlers.cdf.results import RunBody
from handlers.core.errors import MalformedResponse
from handlers.core.events import RunRef
from handlers.core.normalize import completed_event, counts, results_events, stream_events
from handlers.core.poll import summary_of
from sim import make_run, stream_run_body

REF = RunRef("https://westeurope-1.cognitedata.com", "demo", 1, 456)


def chunked(body: bytes, size: int) -> Iterator[bytes]:
    return (body[i : i + size] for i in range(0, len(body), size))


def plain(body: dict[str, Any]) -> list[tuple[dict[str, str], bytes]]:
    summary = summary_of(body)
    events = [*results_events(REF, summary, body), completed_event(REF, summary, counts(body))]
    return [(e.attributes, e.data) for e in events]


def streamed(raw: bytes, chunk: int) -> list[tuple[dict[str, str], bytes]]:
    run = RunBody(chunked(raw, chunk))
    summary = summary_of(run.header())
    events = list(stream_events(REF, summary, run))
    n = run.counts
    final = completed_event(REF, summary_of(run.fields), (n["matches"], n["suggestedRules"], n["generatedRules"]))
    return [(e.attributes, e.data) for e in [*events, final]]


def _odd_run() -> dict[str, Any]:
    body = make_run(3, 1, 1)
    body["matches"][0]["source"] = {"name": "Ventil Ø-12 ∆ “quoted” \\ \u2028 😀", "meta": {"a": [1, {"b": None}]}}
    del body["matches"][1]["target"]
    body["matches"][2]["score"] = 1
    body["suggestedRules"][0].pop("inputPattern")
    body["generatedRules"][0]["matches"] = []
    return body


def _fields_last() -> dict[str, Any]:
    body = make_run(4, 1, 1, errors=["late"])
    results = {k: body.pop(k) for k in ("matches", "suggestedRules", "generatedRules")}
    return {**results, **body}  # CDF documents the run's fields first; this answer puts them last


BODIES = {
    "documented": make_run(5, 2, 1),
    "unicode, nested, missing fields": _odd_run(),
    "empty lists": make_run(0, 0, 0),
    "null lists": {**make_run(0), "matches": None, "suggestedRules": None, "generatedRules": None},
    "absent lists": {k: v for k, v in make_run(0).items() if k not in ("matches", "suggestedRules", "generatedRules")},
    "run fields after the results": _fields_last(),
    "errors": make_run(2, errors=["target 7 skipped", "ünïcode"]),
}


@pytest.mark.parametrize("chunk", [1, 7, 65536])
@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_results_streaming_gives_the_same_events_as_loading(body: dict[str, Any], chunk: int) -> None:
    """Whatever the chunking, the streamed body gives byte-identical events to the body loaded whole."""
    raw = json.dumps(body, ensure_ascii=False).encode()
    assert streamed(raw, chunk) == plain(body)


def test_results_simulator_stream_matches_its_loaded_form() -> None:
    """The simulator's streamed large body relays exactly as its in-memory form."""
    raw = b"".join(stream_run_body(300, 3, 3))
    assert streamed(raw, 4096) == plain(make_run(300, 3, 3))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b"{",
        b'{"status": "Completed", "matches": [{"score": 1}',
        b'{"status": "Completed"} trailing',
        b'{"status": "Completed", "matches": {"a": 1}}',
        b"\xff\xfe",
    ],
    ids=["empty", "array", "open", "truncated", "trailing", "matches-object", "not-utf8"],
)
def test_results_malformed_body_raises_malformed_response(raw: bytes) -> None:
    """Bodies that are not a JSON object of the documented shape raise MalformedResponse, never anything else."""

    def read() -> None:
        run = RunBody(chunked(raw, 3))
        run.header()
        run.drain()

    with pytest.raises(MalformedResponse):
        read()


def test_results_header_stops_before_the_first_item() -> None:
    """header() reads the run's fields and leaves every item to items()."""
    run = RunBody(stream_run_body(50, 1, 1))
    assert run.header()["status"] == "Completed"
    assert run.counts == {"matches": 0, "suggestedRules": 0, "generatedRules": 0}
    assert sum(1 for _ in run.items()) == 52
    assert run.counts == {"matches": 50, "suggestedRules": 1, "generatedRules": 1}


def peak_bytes(n: int) -> tuple[int, int]:
    """Peak memory traced while relaying a streamed body of ``n`` matches (events dropped as produced)."""
    size = sum(len(c) for c in stream_run_body(n))
    tracemalloc.start()
    try:
        run = RunBody(stream_run_body(n))
        summary = summary_of(run.header())
        produced = sum(1 for _ in stream_events(REF, summary, run))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert produced == n
    return peak, size


def test_results_memory_does_not_grow_with_the_run() -> None:
    """Relaying 20,000 matches holds no more memory than relaying 2,000 (plus 1 MB), far below the body."""
    small, _ = peak_bytes(2_000)
    large, body_bytes = peak_bytes(20_000)
    assert large < small + 1_000_000
    assert large < body_bytes / 4
