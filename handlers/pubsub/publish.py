"""Stage 4: publish events and confirm every one (contract, section 5).

``PubSubSink`` publishes in CloudEvents binary mode (the data is the message
body, the context attributes are message attributes) in Publish requests of up
to 1,000 messages it builds itself (``handlers.pubsub.rpc``: the high-level
client's per-message work was the bound), a few in flight on a small pool of
threads, within a per-process budget of messages and bytes. It returns only once
Pub/Sub has confirmed every message of the call; any failure becomes
``PublishFailed`` so the trigger is handed back and the same events (same ids)
are published again. ``StdoutSink`` prints them instead.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import IO, Protocol

from handlers.core.deadline import Deadline
from handlers.core.errors import PublishFailed
from handlers.core.events import Event
from handlers.pubsub.rpc import Batch, Budget, Factory, PublishRpc, Workers, connect, cost, describe, retry_for

CONFIRM_TIMEOUT_S = 90.0  # how long to wait for the last confirmations before handing back
PUBLISH_DEADLINE_S = 60.0  # the retry deadline of one request (Google's client defaults to 600 s)
ATTEMPT_TIMEOUT_S = 20.0  # one publish request
MAX_REQUEST_MESSAGES = 1000  # Pub/Sub's limit per Publish request
MAX_REQUEST_BYTES = 9_000_000  # Pub/Sub takes 10 MB a request; the estimate below may be short by a little
MAX_LATENCY_S = 0.02  # a request is sent once this old, even if a slow body has not filled it
IN_FLIGHT_MESSAGES = 10_000  # per process, over every invocation: what memory may hold unconfirmed
IN_FLIGHT_BYTES = 64_000_000
WORKERS = 4  # requests in flight at once, per process


class Sink(Protocol):
    def publish(self, topic: str, events: Iterable[Event], deadline: Deadline | None = None) -> int:
        """Publish ``events`` to ``topic``; return how many, once every one is confirmed.

        With a ``deadline``, retries and the wait for confirmations end in time for the invocation to answer
        (``Deadline.ending_s``); what is not confirmed by then is a ``PublishFailed``.
        """
        ...


class PubSubSink:
    """One publisher per process: the RPC and its threads are built at the first publish (no gRPC before)."""

    def __init__(
        self,
        factory: Factory = connect,
        confirm_timeout_s: float = CONFIRM_TIMEOUT_S,
        budget: Budget | None = None,
        workers: int = WORKERS,
    ) -> None:
        self._factory, self._timeout = factory, confirm_timeout_s
        self.budget = budget or Budget(IN_FLIGHT_MESSAGES, IN_FLIGHT_BYTES)
        self._workers = Workers(workers)
        self._rpc: PublishRpc | None = None
        self._lock = threading.Lock()

    @property
    def rpc(self) -> PublishRpc:
        with self._lock:
            if self._rpc is None:
                self._rpc = self._factory()
            return self._rpc

    def publish(self, topic: str, events: Iterable[Event], deadline: Deadline | None = None) -> int:
        rpc, call = self.rpc, Call()
        ending = (deadline or Deadline.never(time.monotonic)).ending_s  # without a deadline: every cap as it is
        try:
            self._produce(rpc, topic, events, call, ending)
        finally:
            # Whatever happened while producing events, wait for what is in flight before answering.
            failure = call.wait(ending(self._timeout))
        if failure is not None:
            raise PublishFailed(f"Pub/Sub did not confirm every event on {topic}: {failure}")
        return call.confirmed

    def _produce(
        self, rpc: PublishRpc, topic: str, events: Iterable[Event], call: Call, ending: Callable[[float], float]
    ) -> None:
        """Fill requests from ``events``; send each when full or stale, and what is left once done."""
        batch = Batch(rpc.new_request(topic))
        try:
            for event in events:
                if call.failed:  # one message is lost for this invocation: stop producing, hand back
                    return
                try:
                    size = cost(event)
                except TypeError as exc:  # attributes that are not text
                    raise _refused(event, exc, call) from None
                if batch.count and (
                    batch.count >= MAX_REQUEST_MESSAGES
                    or batch.size + size > MAX_REQUEST_BYTES
                    or time.monotonic() - batch.opened > MAX_LATENCY_S
                ):
                    batch = self._send(rpc, topic, batch, call, ending)
                if not self.budget.try_take(size):
                    # Send what this call holds first: waiting while holding budget could wait on ourselves.
                    batch = self._send(rpc, topic, batch, call, ending)
                    if not self.budget.take(size, ending(self._timeout), lambda: call.failed):
                        call.fail("no room in flight: Pub/Sub confirmed too little for too long")
                        return
                self._add(batch, event, size, call)
            batch = self._send(rpc, topic, batch, call, ending)
        finally:
            self.budget.give(batch.count, batch.size)  # a request never sent (a failure, an error producing)

    def _add(self, batch: Batch, event: Event, size: int, call: Call) -> None:
        try:
            batch.add(event, size)
        except Exception as exc:  # a message protobuf refuses (not bytes, not str): translate once, here
            self.budget.give(1, size)
            raise _refused(event, exc, call) from None

    def _send(self, rpc: PublishRpc, topic: str, batch: Batch, call: Call, ending: Callable[[float], float]) -> Batch:
        """Hand ``batch`` to the workers (its budget with it); a new, empty batch."""
        if not batch.count:
            return batch
        call.opened()
        self._workers.submit(lambda: self._run(rpc, batch, call, ending))
        return Batch(rpc.new_request(topic))

    def _run(self, rpc: PublishRpc, batch: Batch, call: Call, ending: Callable[[float], float]) -> None:
        """One request, retried within the call's deadline; its budget is given back whatever happens."""
        error: str | None = None
        try:
            if call.failed:  # another request of the call failed: this one would be published again anyway
                error = "skipped"
            else:
                limit = ending(PUBLISH_DEADLINE_S)
                end = time.monotonic() + limit

                def attempt() -> int:
                    return rpc.send(batch.request, max(0.01, min(ATTEMPT_TIMEOUT_S, end - time.monotonic())))

                ids = retry_for(limit)(attempt)()
                if ids != batch.count:
                    error = f"Pub/Sub answered {ids} ids for {batch.count} messages"
        except Exception as exc:  # the RPC's failures, translated once: the call hands back
            error = describe(exc)
        finally:
            if error is not None:
                call.fail(error)  # first, so a producer woken by the budget sees it
            self.budget.give(batch.count, batch.size)
            call.settle(batch.count, error)


def _refused(event: Event, exc: Exception, call: Call) -> PublishFailed:
    call.fail(f"Pub/Sub cannot carry an event: {type(exc).__name__}")
    return PublishFailed(f"Pub/Sub cannot carry event {event.attributes.get('ce-id')}: {type(exc).__name__}: {exc}")


class Call:
    """One publish call's own outcome: requests open, messages confirmed, its first failure."""

    def __init__(self) -> None:
        self.confirmed, self._open = 0, 0
        self._failure: str | None = None
        self._done = threading.Condition()

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def opened(self) -> None:
        with self._done:
            self._open += 1

    def fail(self, reason: str) -> None:
        with self._done:
            self._failure = self._failure or reason

    def settle(self, messages: int, error: str | None) -> None:
        with self._done:
            self._open -= 1
            if error is None:
                self.confirmed += messages
            else:
                self._failure = self._failure or error
            self._done.notify_all()

    def wait(self, timeout: float) -> str | None:
        """The first failure once every request has settled; a failure too if that takes over ``timeout``."""
        with self._done:
            if not self._done.wait_for(lambda: self._open == 0, timeout):
                self._failure = self._failure or f"{self._open} requests unconfirmed after {timeout:.1f} s"
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
