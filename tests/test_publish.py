"""The sinks: every event confirmed before an answer, a failure handed back early, stdout lines."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from handlers.errors import PublishFailed
from handlers.normalize import Event
from handlers.publish import PubSubSink, StdoutSink, make_publisher


class FakeClient:
    """A publisher whose futures settle at once; message ``fail_at`` (0-based) fails."""

    def __init__(self, fail_at: int | None = None, refuse: bool = False) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self._fail_at, self._refuse = fail_at, refuse

    def publish(self, topic: str, data: bytes, **attributes: str) -> Future[str]:
        if self._refuse:
            raise RuntimeError("publisher is stopped")
        future: Future[str] = Future()
        if len(self.published) == self._fail_at:
            future.set_exception(TimeoutError("deadline exceeded"))
        else:
            future.set_result(str(len(self.published)))
        self.published.append((topic, data, attributes))
        return future


def events(n: int, produced: list[int] | None = None) -> Iterator[Event]:
    for i in range(n):
        if produced is not None:
            produced.append(i)
        yield Event(json.dumps({"i": i}).encode(), {"ce-id": f"p/1/2/match/{i}", "ce-type": "t"})


def sink_with(client: FakeClient) -> PubSubSink:
    return PubSubSink(factory=lambda: client, confirm_timeout_s=5)  # type: ignore[arg-type, return-value]


def test_publish_returns_the_count_once_all_are_confirmed() -> None:
    """Every event goes out with its data and attributes, and the count comes back."""
    client = FakeClient()
    assert sink_with(client).publish("projects/p/topics/t", events(3)) == 3
    assert [(t, json.loads(d)["i"], a["ce-id"]) for t, d, a in client.published] == [
        ("projects/p/topics/t", i, f"p/1/2/match/{i}") for i in range(3)
    ]


def test_publish_failure_stops_producing_and_hands_back() -> None:
    """A message Pub/Sub did not take stops the run's publishing at once and raises PublishFailed."""
    produced: list[int] = []
    with pytest.raises(PublishFailed, match="TimeoutError"):
        sink_with(FakeClient(fail_at=2)).publish("t", events(1000, produced))
    assert len(produced) == 4  # the failure is seen before the next event is produced


def test_publish_refusal_is_publish_failed() -> None:
    """The client refusing a message (stopped, bad topic) becomes PublishFailed, never another exception."""
    with pytest.raises(PublishFailed, match="RuntimeError"):
        sink_with(FakeClient(refuse=True)).publish("t", events(2))


def test_publish_client_is_built_lazily_once() -> None:
    """No client exists before the first publish, and one serves every later publish."""
    built: list[FakeClient] = []

    def factory() -> Any:
        built.append(FakeClient())
        return built[-1]

    sink = PubSubSink(factory=factory)
    assert built == []
    sink.publish("t", events(1))
    sink.publish("t", events(1))
    assert len(built) == 1


def test_publish_stdout_prints_one_json_line_per_event() -> None:
    """--stdout prints {"attributes", "data"} per event, data as JSON, not bytes."""
    out = io.StringIO()
    assert StdoutSink(out).publish("-", events(2)) == 2
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines == [{"attributes": {"ce-id": f"p/1/2/match/{i}", "ce-type": "t"}, "data": {"i": i}} for i in range(2)]


def test_publish_client_settings_bound_memory_and_outages(emulator: Any) -> None:
    """The real client blocks past 10,000 in-flight messages and retries for 60 s, not the default 600 s."""
    client = make_publisher()
    options = client.publisher_options
    assert options.flow_control.message_limit == 10_000
    assert options.flow_control.limit_exceeded_behavior.name == "BLOCK"
    assert options.retry._timeout == 60.0
    assert client.batch_settings.max_messages == 1000
