"""The sinks: every event confirmed before an answer, a failure handed back early, stdout lines."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from handlers.core.errors import PublishFailed
from handlers.core.events import Event
from handlers.pubsub.publish import IN_FLIGHT_MESSAGES, MAX_REQUEST_MESSAGES, PubSubSink, StdoutSink
from handlers.pubsub.rpc import Budget


class FakeRpc:
    """A Publish RPC on real request protobufs: answers at once, unless ``answer`` says otherwise."""

    def __init__(self, answer: Callable[[Any, int], None] | None = None) -> None:
        from google.pubsub_v1.types import PublishRequest

        self._request = PublishRequest.pb()
        self.requests: list[Any] = []
        self._answer = answer
        self._lock = threading.Lock()

    def new_request(self, topic: str) -> Any:
        return self._request(topic=topic)

    def send(self, request: Any, timeout: float) -> int:
        with self._lock:
            self.requests.append(request)
            number = len(self.requests) - 1
        if self._answer is not None:
            self._answer(request, number)
        return len(request.messages)

    def messages(self) -> list[tuple[str, bytes, dict[str, str]]]:
        with self._lock:
            return [(r.topic, m.data, dict(m.attributes)) for r in self.requests for m in r.messages]


def events(n: int, produced: list[int] | None = None, size: int = 0) -> Iterator[Event]:
    for i in range(n):
        if produced is not None:
            produced.append(i)
        yield Event(json.dumps({"i": i, "pad": "x" * size}).encode(), {"ce-id": f"p/1/2/match/{i}", "ce-type": "t"})


def sink_with(rpc: FakeRpc, **options: Any) -> PubSubSink:
    return PubSubSink(factory=lambda: rpc, confirm_timeout_s=5, **options)


def not_found(request: Any, number: int) -> None:
    from google.api_core.exceptions import NotFound

    raise NotFound("topic gone")


def test_publish_returns_the_count_once_all_are_confirmed() -> None:
    """Every event goes out with its data and attributes, in order, and the count comes back."""
    rpc = FakeRpc()
    assert sink_with(rpc).publish("projects/p/topics/t", events(2500)) == 2500
    assert [(t, json.loads(d)["i"], a["ce-id"]) for t, d, a in rpc.messages()] == [
        ("projects/p/topics/t", i, f"p/1/2/match/{i}") for i in range(2500)
    ]
    assert all(len(r.messages) <= MAX_REQUEST_MESSAGES for r in rpc.requests)


def test_publish_failure_stops_producing_and_hands_back() -> None:
    """A request Pub/Sub refuses stops the call's producing soon and raises PublishFailed."""
    produced: list[int] = []
    sink = sink_with(FakeRpc(not_found), budget=Budget(1000, 10**9))
    with pytest.raises(PublishFailed, match="NotFound"):
        sink.publish("t", events(100_000, produced))
    assert len(produced) <= 1002  # the failure is seen once the first request's room is given back
    assert (sink.budget.messages, sink.budget.bytes) == (0, 0)


def test_publish_retries_within_the_deadline_then_hands_back() -> None:
    """An unavailable Pub/Sub is retried, and the call hands back before its deadline's end."""
    import time

    from google.api_core.exceptions import ServiceUnavailable

    from handlers.core.deadline import Deadline

    attempts: list[int] = []

    def unavailable(request: Any, number: int) -> None:
        attempts.append(number)
        raise ServiceUnavailable("down")

    deadline = Deadline.after(3.0, time.monotonic(), time.monotonic)
    with pytest.raises(PublishFailed, match=r"RetryError|ServiceUnavailable"):
        sink_with(FakeRpc(unavailable)).publish("t", events(10), deadline)
    assert len(attempts) > 1
    assert time.monotonic() < deadline.end


def test_publish_wait_ends_by_the_deadline_when_pubsub_never_answers() -> None:
    """A request that never comes back is a PublishFailed by ``deadline.ending_s``, not after 90 s."""
    import time

    from handlers.core.deadline import Deadline

    release = threading.Event()
    sink = PubSubSink(factory=lambda: FakeRpc(lambda r, n: release.wait() and None), confirm_timeout_s=90)
    deadline = Deadline.after(2.5, time.monotonic(), time.monotonic)
    try:
        with pytest.raises(PublishFailed, match="unconfirmed"):
            sink.publish("t", events(10), deadline)
        assert time.monotonic() < deadline.end
    finally:
        release.set()


def test_publish_in_flight_is_bounded_by_messages_and_bytes() -> None:
    """With Pub/Sub silent, the producer blocks at the budget: never more messages or bytes held than it allows."""
    release = threading.Event()
    for budget in (Budget(2500, 10**9), Budget(10**6, 300_000)):
        rpc = FakeRpc(lambda r, n: release.wait() and None)
        sink, produced = sink_with(rpc, budget=budget), list[int]()
        worker = threading.Thread(target=sink.publish, args=("t", events(50_000, produced, size=500)), daemon=True)
        worker.start()
        _settled(produced.__len__)
        assert budget.messages <= budget.limits[0]
        assert budget.bytes <= budget.limits[1]
        assert len(produced) <= budget.messages + 2  # the producer waits for room: it is not buffering elsewhere
        assert len(produced) < 50_000
        release.set()
        worker.join(30)
        assert len(rpc.messages()) == 50_000
        release.clear()


def test_publish_concurrent_calls_keep_their_own_outcomes() -> None:
    """One call's failure never fails another call sharing the sink, and each gets its own count."""

    def refuse_bad(request: Any, number: int) -> None:
        if request.topic == "bad":
            not_found(request, number)

    sink, results = sink_with(FakeRpc(refuse_bad)), {}

    def run(topic: str, n: int) -> None:
        try:
            results[topic] = sink.publish(topic, events(n))
        except PublishFailed:
            results[topic] = -1

    threads = [threading.Thread(target=run, args=args) for args in (("bad", 5000), ("a", 7000), ("b", 3000))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {"bad": -1, "a": 7000, "b": 3000}
    assert sink.budget.messages == 0


def test_publish_refusal_is_publish_failed() -> None:
    """An event a message cannot carry (attributes not text) becomes PublishFailed, never another exception."""
    bad = Event(b"{}", {"ce-id": 7})  # type: ignore[dict-item]
    with pytest.raises(PublishFailed, match="cannot carry"):
        sink_with(FakeRpc()).publish("t", [bad])


def test_publish_rpc_is_built_lazily_once() -> None:
    """No RPC exists before the first publish, and one serves every later publish."""
    built: list[FakeRpc] = []

    def factory() -> Any:
        built.append(FakeRpc())
        return built[-1]

    sink = PubSubSink(factory=factory)
    assert built == []
    sink.publish("t", events(1))
    sink.publish("t", events(1))
    assert len(built) == 1


def test_publish_default_budget_is_per_process() -> None:
    """The no-argument sink holds at most 10,000 messages in flight, as the client's flow control did."""
    assert PubSubSink().budget.limits[0] == IN_FLIGHT_MESSAGES == 10_000


def test_publish_stdout_prints_one_json_line_per_event() -> None:
    """--stdout prints {"attributes", "data"} per event, data as JSON, not bytes."""
    out = io.StringIO()
    assert StdoutSink(out).publish("-", events(2)) == 2
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["attributes"], json.loads(json.dumps(line["data"]))["i"]) for line in lines] == [
        ({"ce-id": f"p/1/2/match/{i}", "ce-type": "t"}, i) for i in range(2)
    ]


def _settled(value: Callable[[], int], quiet_s: float = 0.3, seconds: float = 30.0) -> None:
    """Wait until ``value()`` stops changing for ``quiet_s``."""
    import time

    last, since, end = value(), time.monotonic(), time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
        if value() != last:
            last, since = value(), time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
    raise AssertionError("the producer never settled")
