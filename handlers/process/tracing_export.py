"""How spans leave the process: one export thread, and a flush that waits no longer than it is told.

OpenTelemetry's ``BatchSpanProcessor.force_flush`` exports on the caller's thread
and ignores its timeout, so an exporter whose endpoint does not answer would hold
an invocation for the exporter's own timeout and retries (10 s and more).
``Exporting`` keeps the export on its thread: a flush asks for everything ended
so far and waits for it at most the bound, then the invocation answers whatever
the exporter is doing. Imported only when tracing is on (it loads the SDK).
"""

from __future__ import annotations

import collections
import contextvars
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

log = logging.getLogger("matchrelay")
MAX_QUEUE = 4096  # spans held for export; beyond that new ones are dropped (an exporter that cannot keep up)
MAX_BATCH = 512  # spans in one export call
EXPORT_EVERY_S = 5.0  # a partial batch waits at most this long between flushes


class TraceIds(RandomIdGenerator):
    """Random ids, but the trace-id of a root span is the caller's when it gave one without a span."""

    def __init__(self, wanted: contextvars.ContextVar[int | None]) -> None:
        self._wanted = wanted

    def generate_trace_id(self) -> int:
        return self._wanted.get() or super().generate_trace_id()


class Exporting(SpanProcessor):
    """Ended spans queue here; one daemon thread, started at the first span of each process, exports them."""

    def __init__(self, make: Callable[[], SpanExporter], label: str) -> None:
        self._make, self._label = make, label
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._ended = 0  # spans queued, ever
        self._done = 0  # spans handed to the exporter and back (exported or not), ever
        self._asked = 0  # the count a flush waits for
        self._changed = threading.Condition()
        self._pid: int | None = None  # the process whose thread exports (gunicorn forks after import)
        self._closed = False
        self.dropped = 0

    @property
    def started(self) -> bool:
        """Whether this processor has an export thread (and so an exporter) yet."""
        return self._pid is not None

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        with self._changed:
            if self._closed:
                return
            self._started()
            if len(self._queue) >= MAX_QUEUE:
                self.dropped += 1
                return
            self._queue.append(span)
            self._ended += 1
            if len(self._queue) >= MAX_BATCH:
                self._changed.notify_all()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Ask for every span ended so far; True once they are through the exporter, False after the timeout."""
        with self._changed:
            target = self._ended
            if self._done >= target:
                return True
            self._started()
            self._asked = max(self._asked, target)
            self._changed.notify_all()
            return self._changed.wait_for(lambda: self._done >= target, max(0.0, timeout_millis / 1000))

    def shutdown(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _started(self) -> None:
        """The export thread of this process (held lock): spans queued before a fork stay with the parent."""
        if self._pid == os.getpid():
            return
        if self._pid is not None:
            self._queue.clear()
            self._done = self._asked = self._ended
        self._pid = os.getpid()
        threading.Thread(target=self._serve, name="matchrelay-traces", daemon=True).start()

    def _serve(self) -> None:
        exporter = self._exporter()
        while True:
            with self._changed:
                self._changed.wait_for(self._due, EXPORT_EVERY_S)
                if self._closed and not self._queue:
                    break
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            if batch and exporter is not None:
                try:
                    exporter.export(batch)
                except Exception as exc:  # an exporter's failure never reaches an invocation
                    log.warning("traces: the %s exporter failed: %s", self._label, type(exc).__name__)
            with self._changed:
                self._done += len(batch)
                self._changed.notify_all()
        if exporter is not None:
            exporter.shutdown()

    def _due(self) -> bool:
        return self._closed or len(self._queue) >= MAX_BATCH or self._asked > self._done

    def _exporter(self) -> SpanExporter | None:
        try:
            return self._make()
        except Exception as exc:  # e.g. no credentials for Cloud Trace: spans are dropped, invocations go on
            log.warning("traces: the %s exporter could not be built, spans are dropped: %s", self._label, exc)
            return None
