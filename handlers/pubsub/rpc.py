"""Pub/Sub's Publish RPC, called directly with raw protobuf messages.

The high-level ``google.cloud.pubsub_v1.PublisherClient`` spends more per
message (a future, a proto-plus wrapper, batching locks) than the rest of
matchrelay together, so the sink builds ``PublishRequest`` protobufs itself and
sends them on the channel of Google's own GAPIC client, built exactly as the
high-level client builds it: default credentials in production, anonymous on an
insecure channel when ``PUBSUB_EMULATOR_HOST`` is set. The call is wrapped by
``google.api_core`` as the GAPIC client wraps it (errors as ``google.api_core``
exceptions, the same metrics and routing headers); retries are the caller's.
Importing this module loads no gRPC: ``connect`` does, at the first publish.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from handlers.core.events import Event
from handlers.process.tracing import carry, publish_span

if TYPE_CHECKING:
    from google.api_core.retry import Retry

PUBLISH_METHOD = "/google.pubsub.v1.Publisher/Publish"
RETRYABLE = (  # the codes Google's client retries on Publish
    "Aborted",
    "Cancelled",
    "DeadlineExceeded",
    "InternalServerError",
    "ResourceExhausted",
    "ServiceUnavailable",
    "Unknown",
)


class PublishRpc(Protocol):
    """One Publish attempt, and the protobuf class of its request."""

    def new_request(self, topic: str) -> Any:
        """An empty ``google.pubsub.v1.PublishRequest`` protobuf for ``topic`` (messages added in place)."""
        ...

    def send(self, request: Any, timeout: float) -> int:
        """Send ``request`` once, within ``timeout`` s; how many message ids came back.

        Raises ``google.api_core.exceptions.GoogleAPICallError`` subclasses, as the GAPIC client does.
        """
        ...


class GrpcPublishRpc:
    """Publish on a GAPIC client's channel, with raw (upb) protobufs rather than proto-plus wrappers."""

    def __init__(self, client: Any) -> None:
        from google.api_core import gapic_v1
        from google.pubsub_v1.services.publisher.transports.base import DEFAULT_CLIENT_INFO
        from google.pubsub_v1.types import PublishRequest, PublishResponse

        self._request = PublishRequest.pb()
        stub = client._transport.grpc_channel.unary_unary(
            PUBLISH_METHOD,
            request_serializer=self._request.SerializeToString,
            response_deserializer=PublishResponse.pb().FromString,
        )
        # As the GAPIC transport wraps its own stub (errors translated, x-goog-api-client), but no retry of its own.
        wrap: Any = gapic_v1.method.wrap_method
        self._call: Any = wrap(stub, default_retry=None, client_info=DEFAULT_CLIENT_INFO)
        self._routing: Any = gapic_v1.routing_header.to_grpc_metadata
        self.client = client  # kept alive: it owns the channel

    def new_request(self, topic: str) -> Any:
        return self._request(topic=topic)

    def send(self, request: Any, timeout: float) -> int:
        metadata: Sequence[tuple[str, str]] = (self._routing((("topic", request.topic),)),)
        with publish_span(request.topic, len(request.messages)):  # one span per request, never per message
            response = self._call(request, timeout=timeout, metadata=metadata)
        return len(response.message_ids)


def gapic_client() -> Any:
    """Google's GAPIC ``PublisherClient``, with the arguments ``google.cloud.pubsub_v1.PublisherClient`` gives it."""
    from google.pubsub_v1 import PublisherClient

    kwargs: dict[str, Any] = {}
    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if host:  # as google.cloud.pubsub_v1.PublisherClient.__init__ does for the emulator
        from google.auth.credentials import AnonymousCredentials

        anonymous: Any = AnonymousCredentials
        kwargs = {"client_options": {"api_endpoint": host}, "credentials": anonymous()}
    return PublisherClient(**kwargs)


Factory = Callable[[], PublishRpc]


def connect() -> PublishRpc:
    """The production ``PublishRpc`` (builds the channel: call it after gunicorn has forked)."""
    return GrpcPublishRpc(gapic_client())


def retry_for(timeout_s: float) -> Retry:
    """The codes Google's client retries, with a deadline of ``timeout_s`` that fits an invocation.

    An outage must end in a hand-back (non-2xx) before the function's timeout, not after the client's 600 s.
    """
    from google.api_core import exceptions as gax
    from google.api_core.retry import Retry, if_exception_type

    retryable = tuple(getattr(gax, name) for name in RETRYABLE)
    return Retry(initial=0.1, maximum=5.0, multiplier=2.0, timeout=timeout_s, predicate=if_exception_type(*retryable))


def describe(exc: BaseException) -> str:
    """A one-line account of a failed publish (a RetryError names its last cause)."""
    cause: BaseException | None = getattr(exc, "cause", None) or exc.__cause__
    text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    return f"{text} (last: {type(cause).__name__})" if cause is not None and cause is not exc else text


class Budget:
    """What one process may hold unconfirmed, in messages and bytes, over every invocation."""

    def __init__(self, messages: int, size: int) -> None:
        self.limits = (messages, size)
        self.messages, self.bytes = 0, 0
        self._changed = threading.Condition()

    def try_take(self, size: int) -> bool:
        """Take room for one message of ``size`` if there is some now (a message alone always fits)."""
        with self._changed:
            if self.messages and (self.messages >= self.limits[0] or self.bytes + size > self.limits[1]):
                return False
            self.messages, self.bytes = self.messages + 1, self.bytes + size
            return True

    def take(self, size: int, timeout: float, give_up: Callable[[], bool]) -> bool:
        """Wait up to ``timeout`` for room for one message; False if none came or ``give_up()`` said so."""
        end = time.monotonic() + timeout
        with self._changed:
            while not self.try_take(size):
                left = end - time.monotonic()
                if left <= 0 or give_up():
                    return False
                self._changed.wait(min(left, 0.5))
            return True

    def give(self, messages: int, size: int) -> None:
        with self._changed:
            self.messages, self.bytes = self.messages - messages, self.bytes - size
            self._changed.notify_all()


class Workers:
    """A few daemon threads sending requests (daemons: a request stuck at exit must not hold the process)."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._started = False
        self._lock = threading.Lock()

    def submit(self, work: Callable[[], None]) -> None:
        with self._lock:
            if not self._started:  # started at the first request: after gunicorn has forked
                for i in range(self._count):
                    threading.Thread(target=self._serve, name=f"matchrelay-publish-{i}", daemon=True).start()
                self._started = True
        self._queue.put(carry(work))  # traced: the request's span is a child of the invocation's

    def _serve(self) -> None:
        while True:
            self._queue.get()()


def cost(event: Event) -> int:
    """An event's size in a request: its data and attributes, plus protobuf framing (characters for bytes)."""
    attributes = event.attributes
    return len(event.data) + sum(map(len, attributes)) + sum(map(len, attributes.values())) + 6 * len(attributes) + 12


class Batch:
    """One Publish request being filled, with its message count and estimated size."""

    __slots__ = ("_add", "count", "opened", "request", "size")

    def __init__(self, request: Any) -> None:
        self.request, self._add = request, request.messages.add
        self.count, self.size, self.opened = 0, 0, time.monotonic()

    def add(self, event: Event, size: int) -> None:
        self._add(data=event.data, attributes=event.attributes)
        if not self.count:
            self.opened = time.monotonic()
        self.count += 1
        self.size += size
