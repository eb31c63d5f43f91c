"""Continuations: a run too large for one invocation goes on in triggers the worker publishes for itself.

The format and the walk over a body are tested alone; then the function, loaded
in-process, continuing or handing back. Through real functions-framework
processes: ``tests/e2e/test_continuation.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from handlers.core.continuation import FIRST, Continuation, Segment, continuation_message, parse_continuation
from handlers.core.deadline import Deadline
from handlers.core.errors import InvalidResponse
from sim import CdfSimulator, Step, stream_run_body
from tests.conftest import GCP_PROJECT, PubSub, Topics, binary_event, load_app, pubsub_message

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"segment": 1, "skip": 0}, Continuation(1, 0)),
        ({"skip": 400000, "segment": 3}, Continuation(3, 400000)),
        ({"segment": 9007199254740991, "skip": 9007199254740991}, Continuation(9007199254740991, 9007199254740991)),
        ({"segment": 0, "skip": 5}, None),  # segment 0 is the original trigger's
        ({"segment": 1, "skip": -1}, None),
        ({"segment": 1, "skip": 9007199254740992}, None),
        ({"segment": "1", "skip": 5}, None),  # the worker writes integers, never strings
        ({"segment": True, "skip": 5}, None),
        ({"segment": 1.0, "skip": 5}, None),
        ({"segment": 1}, None),
        ({"segment": 1, "skip": 5, "cursor": "x"}, None),
        ([1, 5], None),
        ("1/5", None),
        (None, None),
    ],
)
def test_continuation_parses_only_what_the_worker_writes(value: Any, expected: Continuation | None) -> None:
    """``continuation`` is two integers in range under exactly two keys; anything else is a problem."""
    problems: list[str] = []
    assert parse_continuation(value, problems) == expected
    assert bool(problems) is (expected is None)


def test_continuation_message_is_a_run_trigger_with_one_more_field() -> None:
    """The continuation trigger names the run, the next segment and the items to skip, and carries the trace."""
    message = continuation_message("acme", 1, 456, Continuation(2, 1000), TRACEPARENT)
    body = {"pipelineId": 1, "runId": 456, "project": "acme", "continuation": {"segment": 2, "skip": 1000}}
    assert (json.loads(message.data), message.attributes) == (body, {"traceparent": TRACEPARENT})
    assert continuation_message("acme", 1, 456, Continuation(1, 0), None).attributes == {}


class Items:
    def __init__(self, n: int) -> None:
        self.n = n

    def items(self) -> Iterator[tuple[str, int, Any]]:
        for i in range(self.n):
            yield "matches", i, {"i": i}


class Ticking:
    """A clock that advances one second every time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_segment_skips_confirmed_items_then_stops_at_the_margin() -> None:
    """A segment skips what earlier segments confirmed and stops producing when only the margin is left."""
    clock = Ticking()
    deadline = Deadline(end=6.0, margin=2.0, clock=clock)  # producing while the clock reads 1, 2 and 3
    segment = Segment(Items(10), Continuation(1, 4), deadline)
    assert [i for _, i, _ in segment.items()] == [4, 5, 6]
    assert (segment.stopped, segment.produced, segment.next) == (True, 3, Continuation(2, 7))


def test_segment_stops_while_skipping_when_time_runs_out() -> None:
    """Skipping watches the deadline too: a segment that cannot get past what it skips stops, producing nothing."""
    clock = Ticking()
    deadline = Deadline(end=4.0, margin=2.0, clock=clock)  # the clock is read every 1024 skipped items
    segment = Segment(Items(5000), Continuation(1, 3000), deadline)
    assert list(segment.items()) == []
    assert (segment.stopped, segment.produced, clock.now) == (True, 0, 2.0)


def test_segment_without_deadline_reads_to_the_end() -> None:
    """Without a deadline a segment yields every item after the skipped ones and does not stop."""
    segment = Segment(Items(5), FIRST, Deadline.never(Ticking()))
    assert [i for _, i, _ in segment.items()] == [0, 1, 2, 3, 4]
    assert (segment.stopped, segment.produced) == (False, 5)


def test_segment_beyond_the_run_is_an_invalid_response() -> None:
    """A continuation that skips more items than the run has is refused, never completed with wrong counts."""
    segment = Segment(Items(3), Continuation(1, 5), Deadline.never(Ticking()))
    with pytest.raises(InvalidResponse):
        list(segment.items())


INVALID = [
    pytest.param({"pipelineId": 1, "runId": 456, "continuation": {"segment": 1}}, id="missing-skip"),
    pytest.param({"pipelineId": 1, "runId": 456, "continuation": {"segment": 1, "skip": "5"}}, id="string-skip"),
    pytest.param({"pipelineId": 1, "runId": 456, "continuation": None}, id="null"),
    pytest.param({"pipelineId": 1, "runId": "latest", "continuation": {"segment": 1, "skip": 5}}, id="latest"),
]


@pytest.mark.parametrize("body", INVALID)
def test_invalid_continuation_is_an_invalid_trigger(
    body: dict[str, Any], client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A continuation that does not read as the worker writes it gets invalid_trigger, and CDF is not asked."""
    headers, data = binary_event(pubsub_message(body))
    assert client.post("/", headers=headers, data=data).status_code == 200
    errors = pubsub.drain(topics.errors_sub, at_least=1)
    assert [e.attributes["ce-reason"] for e in errors] == ["invalid_trigger"]
    assert "continuation" in errors[0].data["errorMessage"]
    assert sim.cdf_requests() == []


def _deliver_from(client: Any, topic: str, body: dict[str, Any]) -> int:
    """POST a trigger as Eventarc delivers one from ``topic``."""
    headers, data = binary_event(pubsub_message(body))
    headers["ce-source"] = f"//pubsub.googleapis.com/{topic}"
    return int(client.post("/", headers=headers, data=data).status_code)


SLOW_POLLS = {"INVOCATION_TIMEOUT_S": "5", "POLL_BUDGET_S": "4.5", "POLL_INITIAL_DELAY_S": "1.1"}


@pytest.mark.parametrize(("segment", "answer"), [(0, 200), (2, 503)])
def test_segment_with_no_time_left_continues_or_hands_back(
    segment: int,
    answer: int,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    sim: CdfSimulator,
    pubsub: PubSub,
    topics: Topics,
) -> None:
    """A run found completed inside the margin continues from item 0; a continuation that cannot move on hands back."""
    for name, value in (SLOW_POLLS | {"POLL_MAX_DELAY_S": "1.1"}).items():
        monkeypatch.setenv(name, value)
    trigger_topic, trigger_sub = pubsub.topic("trigger")
    sim.set_run(1, 456, [Step.status("Running")] * 3 + [Step.run({**_completed(3)})])  # completes at about 3.3 s
    body: dict[str, Any] = {"pipelineId": 1, "runId": 456}
    if segment:
        body["continuation"] = {"segment": segment, "skip": 1}
    assert _deliver_from(load_app().test_client(), trigger_topic, body) == answer
    assert pubsub.drain(topics.events_sub) == []
    continued = [json.loads(r.raw) for r in pubsub.drain(trigger_sub)]
    expected = {"pipelineId": 1, "runId": 456, "project": "demo", "continuation": {"segment": 1, "skip": 0}}
    assert continued == ([expected] if segment == 0 else [])


def _completed(n: int) -> dict[str, Any]:
    from sim import make_run

    return make_run(n, job_id=456)


def test_no_trigger_topic_publishes_the_run_to_the_end(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    sim: CdfSimulator,
    pubsub: PubSub,
    topics: Topics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With nowhere to continue (a raw push, no RELAY_TRIGGER_TOPIC), a run is published whole, with a WARNING."""
    for name, value in (SLOW_POLLS | {"POLL_MAX_DELAY_S": "1.1"}).items():
        monkeypatch.setenv(name, value)
    chunks = list(stream_run_body(3, job_id=456, chunk_size=64))
    # Found completed at about 3.3 s of a 5 s timeout, its body takes 2.5 s more: run.completed goes out after the end.
    sim.set_run(1, 456, [Step.status("Running")] * 3 + [_slow(chunks, 2.5)])
    message = pubsub_message({"pipelineId": 1, "runId": 456})
    push = {"message": message, "subscription": f"projects/{GCP_PROJECT}/subscriptions/push-sub"}
    response = load_app().test_client().post("/", json=push)
    assert response.status_code == 200
    subjects = sorted(e.attributes["ce-subject"] for e in pubsub.drain(topics.events_sub, at_least=4))
    assert subjects == ["match/0", "match/1", "match/2", "run"]
    assert any("RELAY_TRIGGER_TOPIC" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def _slow(chunks: list[bytes], seconds: float) -> Step:
    """The body streamed over ``seconds``: longer than one invocation's producing time, whatever the machine."""
    pause = seconds / len(chunks)

    def generate() -> Iterator[bytes]:
        for chunk in chunks:
            time.sleep(pause)
            yield chunk

    return Step.stream(generate)
