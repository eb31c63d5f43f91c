"""Stage 4: publish events and confirm every one (contract, section 5).

``PubSubSink`` publishes in CloudEvents binary mode (the data is the message
body, the context attributes are message attributes) through Google's client,
batched and flow-controlled, and returns only once Pub/Sub has confirmed every
message; any failure becomes ``PublishFailed`` so the trigger is handed back and
the same events (same ids) are published again. ``StdoutSink`` prints them instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any, Protocol

from handlers.errors import PublishFailed
from handlers.normalize import Event

if TYPE_CHECKING:  # the client pulls in gRPC; import it only when a sink is built
    from google.cloud.pubsub_v1 import PublisherClient

CONFIRM_TIMEOUT_S = 120.0  # how long to wait for the last confirmations before handing back
PUBLISH_TIMEOUT_S = 60.0  # the client's own retry deadline per message


class Sink(Protocol):
    def publish(self, topic: str, events: Iterable[Event]) -> int:
        """Publish ``events`` to ``topic``; return how many, once every one is confirmed."""
        ...


def make_publisher() -> PublisherClient:
    """A client tuned for bursts of small messages with bounded memory in flight."""
    from google.cloud.pubsub_v1 import PublisherClient, types

    batch = types.BatchSettings(max_messages=1000, max_bytes=9_000_000, max_latency=0.02)
    flow = types.PublishFlowControl(
        message_limit=10_000,
        byte_limit=64_000_000,
        limit_exceeded_behavior=types.LimitExceededBehavior.BLOCK,
    )
    return PublisherClient(batch_settings=batch, publisher_options=types.PublisherOptions(flow_control=flow))


class PubSubSink:
    """Publishes through one lazily built ``PublisherClient`` (no gRPC until the first event)."""

    def __init__(
        self, factory: Callable[[], PublisherClient] = make_publisher, confirm_timeout_s: float = CONFIRM_TIMEOUT_S
    ) -> None:
        self._factory, self._timeout = factory, confirm_timeout_s
        self._client: PublisherClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> PublisherClient:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    def publish(self, topic: str, events: Iterable[Event]) -> int:
        client, pending = self.client, _Pending()
        try:
            for event in events:
                try:
                    future = client.publish(topic, event.data, timeout=PUBLISH_TIMEOUT_S, **event.attributes)
                except Exception as exc:  # the client's own refusals (stopped, bad topic): translate once, here
                    raise PublishFailed(f"Pub/Sub refused an event on {topic}: {type(exc).__name__}: {exc}") from None
                pending.add(future)
        finally:
            # Whatever happened while producing events, wait for what is in flight before answering.
            failure = pending.wait(self._timeout)
        if failure is not None:
            raise PublishFailed(f"Pub/Sub did not confirm every event on {topic}: {failure}")
        return pending.count


class _Pending:
    """Counts unconfirmed futures without keeping them, so memory does not grow with the run."""

    def __init__(self) -> None:
        self.count, self._open = 0, 0
        self._failure: str | None = None
        self._done = threading.Condition()

    def add(self, future: Any) -> None:
        with self._done:
            self.count += 1
            self._open += 1
        future.add_done_callback(self._settle)

    def _settle(self, future: Any) -> None:
        error = future.exception()
        with self._done:
            self._open -= 1
            if error is not None and self._failure is None:
                self._failure = f"{type(error).__name__}: {error}"
            self._done.notify_all()

    def wait(self, timeout: float) -> str | None:
        with self._done:
            if not self._done.wait_for(lambda: self._open == 0, timeout):
                return f"{self._open} events unconfirmed after {timeout:.0f} s"
            return self._failure


class StdoutSink:
    """``--stdout``: each event as one JSON line ``{"attributes": ..., "data": ...}``."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def publish(self, topic: str, events: Iterable[Event]) -> int:
        count = 0
        for event in events:
            line = json.dumps({"attributes": event.attributes, "data": json.loads(event.data)}, ensure_ascii=False)
            with self._lock:
                self._stream.write(line + "\n")
            count += 1
        self._stream.flush()
        return count
