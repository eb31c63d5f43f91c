"""The two small objects the tracing hands out: a request's client span, and an invocation's attempt counter.

Kept apart from ``handlers.process.tracing`` so that module reads as what the
edges call; nothing here imports OpenTelemetry until a span exists.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.trace import Span


class ClientSpan:
    """A request's span that its edge ends itself: the answer's status or the error, then the end (once)."""

    __slots__ = ("_ended", "_span")

    def __init__(self, span: Span) -> None:
        self._span, self._ended = span, False

    def respond(self, status: int) -> None:
        self._span.set_attribute("http.response.status_code", status)
        if status >= 400:
            self._failed(str(status))

    def fail(self, exc: BaseException) -> None:
        """The request broke off: the error's type only (a message could quote a URL)."""
        self._failed(type(exc).__name__)

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._span.end()

    def _failed(self, kind: str) -> None:
        from opentelemetry.trace import StatusCode

        self._span.set_attribute("error.type", kind)
        self._span.set_status(StatusCode.ERROR, kind)


class Attempts:
    """How many times this invocation has sent each request (method and URL): a poll's count, a 401's retry."""

    def __init__(self) -> None:
        self._sent: dict[str, int] = {}
        self._lock = threading.Lock()

    def next(self, key: str) -> int:
        with self._lock:
            self._sent[key] = n = self._sent.get(key, 0) + 1
            return n
