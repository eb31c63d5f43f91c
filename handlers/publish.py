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

from handlers.deadline import Deadline
from handlers.errors import PublishFailed
from handlers.normalize import Event

if TYPE_CHECKING:  # the client pulls in gRPC; import it only when a sink is built
    from google.api_core.retry import Retry
    from google.cloud.pubsub_v1 import PublisherClient

CONFIRM_TIMEOUT_S = 90.0  # how long to wait for the last confirmations before handing back
PUBLISH_DEADLINE_S = 60.0  # the client's retry deadline per message (its default is 600 s)
ATTEMPT_TIMEOUT_S = 20.0  # one publish request


class Sink(Protocol):
    def publish(self, topic: str, events: Iterable[Event], deadline: Deadline | None = None) -> int:
        """Publish ``events`` to ``topic``; return how many, once every one is confirmed.

        With a ``deadline``, retries and the wait for confirmations end in time for the invocation to answer
        (``Deadline.ending_s``); what is not confirmed by then is a ``PublishFailed``.
        """
        ...


def publish_retry(deadline_s: float = PUBLISH_DEADLINE_S) -> Retry:
    """The codes the client itself retries, with a deadline that fits an invocation.

    An outage must end in a hand-back (non-2xx) before the function's timeout, not after the client's 600 s.
    """
    from google.api_core import exceptions as gax
    from google.api_core.retry import Retry, if_exception_type

    retryable = (
        gax.Aborted,
        gax.Cancelled,
        gax.DeadlineExceeded,
        gax.InternalServerError,
        gax.ResourceExhausted,
        gax.ServiceUnavailable,
        gax.Unknown,
    )
    return Retry(initial=0.1, maximum=5.0, multiplier=2.0, timeout=deadline_s, predicate=if_exception_type(*retryable))


def make_publisher(deadline_s: float = PUBLISH_DEADLINE_S) -> PublisherClient:
    """A client tuned for bursts of small messages with bounded memory in flight."""
    from google.cloud.pubsub_v1 import PublisherClient, types

    batch = types.BatchSettings(max_messages=1000, max_bytes=9_000_000, max_latency=0.02)
    flow = types.PublishFlowControl(
        message_limit=10_000,
        byte_limit=64_000_000,
        limit_exceeded_behavior=types.LimitExceededBehavior.BLOCK,
    )
    options = types.PublisherOptions(flow_control=flow, retry=publish_retry(deadline_s), timeout=ATTEMPT_TIMEOUT_S)
    return PublisherClient(batch_settings=batch, publisher_options=options)


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

    def publish(self, topic: str, events: Iterable[Event], deadline: Deadline | None = None) -> int:
        client, pending = self.client, _Pending()
        options: dict[str, Any] = {}
        if deadline is not None and deadline.bounded:
            # Each message's retries end when the invocation must stop waiting (the batch that carries it keeps
            # the retry of the call that opened it, which is as tight for messages of other invocations).
            options["retry"] = publish_retry(deadline.ending_s(PUBLISH_DEADLINE_S))
        try:
            for event in events:
                if pending.failed:  # one message is lost for this invocation: stop producing, hand back
                    break
                try:
                    future = client.publish(topic, event.data, **options, **event.attributes)
                except Exception as exc:  # the client's own refusals (stopped, bad topic): translate once, here
                    raise PublishFailed(f"Pub/Sub refused an event on {topic}: {type(exc).__name__}: {exc}") from None
                pending.add(future)
        finally:
            # Whatever happened while producing events, wait for what is in flight before answering.
            failure = pending.wait(deadline.ending_s(self._timeout) if deadline else self._timeout)
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

    @property
    def failed(self) -> bool:
        return self._failure is not None

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

    def publish(self, topic: str, events: Iterable[Event], deadline: Deadline | None = None) -> int:
        count = 0
        for event in events:
            # The data is already UTF-8 JSON: splice it in rather than parse and write it again.
            head = json.dumps({"attributes": event.attributes}, ensure_ascii=False)[:-1]
            line = f'{head}, "data": {event.data.decode()}}}'
            with self._lock:
                self._stream.write(line + "\n")
            count += 1
        self._stream.flush()
        return count
