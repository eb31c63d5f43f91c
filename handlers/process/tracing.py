"""Traces (OpenTelemetry), off unless ``OTEL_TRACES_EXPORTER`` names an exporter.

The edges call the small functions here and never OpenTelemetry itself: an
invocation is a server span (``invocation``), each HTTP request to CDF or the
token endpoint a client span (``client_span``), each Publish request a client
span (``publish_span``), each poll wait an event on the invocation's span
(``progress``). Off, every function returns at once and nothing of OpenTelemetry
is imported, so the function's path costs what it did without traces.

On, spans are queued and exported by one thread of their own (``handlers.process.tracing_export``):
the exporter is built there, at the first span, after gunicorn has forked. An
invocation flushes before it answers (Cloud Run throttles the CPU after the
answer), waiting at most ``FLUSH_S`` and never into the deadline's margin: an
exporter that cannot reach its endpoint costs an invocation that bound, no more.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from handlers.core.deadline import Deadline
from handlers.core.progress import NO_PROGRESS, NoProgress, Progress
from handlers.process.logs import Trace
from handlers.process.tracing_spans import Attempts, ClientSpan

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

log = logging.getLogger("matchrelay")
EXPORTERS = ("gcp_trace", "otlp", "none")  # OTEL_TRACES_EXPORTER's values; unset is none
DEFAULT_SERVICE = "matchrelay"
FLUSH_S = 2.0  # the longest an invocation waits for its spans to be exported before it answers
T = TypeVar("T")


_attempts: contextvars.ContextVar[Attempts | None] = contextvars.ContextVar("matchrelay_attempts", default=None)
_trace_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("matchrelay_trace_id", default=None)
_active: _Tracing | None = None
_NOTHING = contextlib.nullcontext()


def exporter_factory(name: str) -> Callable[[], SpanExporter]:
    """The exporter ``OTEL_TRACES_EXPORTER`` names, imported only when it is built (in the export thread)."""

    def gcp_trace() -> SpanExporter:
        from opentelemetry.exporter.cloud_trace import CloudTraceSpanExporter

        exporter: SpanExporter = CloudTraceSpanExporter()  # type: ignore[no-untyped-call]  # default credentials' project
        return exporter

    def otlp() -> SpanExporter:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_* as OpenTelemetry defines them

    return {"gcp_trace": gcp_trace, "otlp": otlp}[name]


def configure(exporter: str | None, service_name: str | None = None) -> None:
    """Start-up: traces to ``exporter`` (a value of ``EXPORTERS``, already validated), or none."""
    if exporter is None or exporter == "none":
        disable()
    else:
        use(exporter_factory(exporter), service_name, exporter)


def use(make: Callable[[], SpanExporter], service_name: str | None = None, label: str = "custom") -> None:
    """Trace to the exporter ``make`` builds (the tests and the bench pass an in-memory one)."""
    global _active
    disable()
    _active = _Tracing(make, service_name or DEFAULT_SERVICE, label)


def disable() -> None:
    global _active
    if _active is not None:
        _active.provider.shutdown()
    _active = None


def enabled() -> bool:
    return _active is not None


@contextlib.contextmanager
def invocation(
    name: str, trace: Trace | None, deadline: Deadline | None = None, received: float | None = None, record: bool = True
) -> Iterator[Trace | None]:
    """One invocation's server span, a child of ``trace``; yields the trace its events, triggers and log lines
    carry: this span when it is recorded, else ``trace`` as it came. Spans are flushed before the block ends.

    ``record`` False: no span (an invocation that only acks what is not for it would flood the trace).
    """
    active = _active
    if active is None or not record:
        yield trace
        return
    span = active.start(name, trace, received)
    from opentelemetry import context
    from opentelemetry import trace as otel

    token, attempts = context.attach(otel.set_span_in_context(span)), _attempts.set(Attempts())
    try:
        own = span.get_span_context()
        yield Trace(trace.trace_id, f"{own.span_id:016x}", True) if trace and span.is_recording() else trace
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(otel.StatusCode.ERROR)
        raise
    finally:
        _attempts.reset(attempts)
        context.detach(token)
        span.end()
        active.flush(deadline.ending_s(FLUSH_S) if deadline is not None and deadline.bounded else FLUSH_S)


def annotate(fields: Mapping[str, Any], error: str | None = None) -> None:
    """A log line's plain fields as ``matchrelay.*`` attributes of the current invocation's span; ``error`` marks
    it failed."""
    if _active is None:
        return
    from opentelemetry import trace as otel

    span = otel.get_current_span()
    span.set_attributes({f"matchrelay.{k}": v for k, v in fields.items() if isinstance(v, str | bool | int | float)})
    if error is not None:
        span.set_status(otel.Status(otel.StatusCode.ERROR, error))


def client_span(name: str, attributes: Mapping[str, Any]) -> ClientSpan | None:
    """A started client span (not made current) that the caller ends; ``None`` when tracing is off."""
    return None if _active is None else _active.client(name, attributes)


def attempt(key: str) -> int | None:
    """How many times this invocation has now sent ``key`` (this one included); ``None`` outside an invocation."""
    attempts = _attempts.get()
    return None if attempts is None else attempts.next(key)


def publish_span(topic: str, count: int) -> contextlib.AbstractContextManager[Any]:
    """One Publish request of ``count`` messages to ``topic``, as a client span around the call."""
    if _active is None:
        return _NOTHING
    attributes: dict[str, str | int] = {
        "messaging.system": "gcp_pubsub",
        "messaging.operation.name": "publish",
        "messaging.destination.name": topic,
        "messaging.batch.message_count": count,
    }
    tracer = _active.tracer
    from opentelemetry.trace import SpanKind

    return tracer.start_as_current_span(
        f"publish {topic.rsplit('/', 1)[-1]}", kind=SpanKind.CLIENT, attributes=attributes
    )


def carry(work: Callable[[], T]) -> Callable[[], T]:
    """``work`` bound to this thread's context (the invocation's span), to run on another thread."""
    if _active is None:
        return work
    current = contextvars.copy_context()
    return lambda: current.run(work)


def progress() -> Progress:
    """What the function's flows report to: each poll wait an event on the invocation's span (when tracing)."""
    return NO_PROGRESS if _active is None else _WaitEvents()


class _WaitEvents(NoProgress):
    def waiting(self, status: str, polls: int, next_in_s: float) -> None:
        from opentelemetry import trace as otel

        otel.get_current_span().add_event("wait", {"status": status, "polls": polls, "seconds": round(next_in_s, 3)})


class _Tracing:
    """The process's tracer provider and its export thread."""

    def __init__(self, make: Callable[[], SpanExporter], service_name: str, label: str) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        from handlers.process.tracing_export import Exporting, TraceIds

        self.exporting = Exporting(make, label)
        resource = Resource.create({"service.name": service_name})
        self.provider = TracerProvider(resource=resource, id_generator=TraceIds(_trace_id), shutdown_on_exit=False)
        self.provider.add_span_processor(self.exporting)
        self.tracer: Tracer = self.provider.get_tracer("matchrelay")
        self._unflushed = False  # the latest flush ran out of time: say so once, not at every invocation

    def start(self, name: str, trace: Trace | None, received: float | None) -> Any:
        from opentelemetry import context
        from opentelemetry import trace as otel

        parent = context.Context()
        if trace is not None and trace.span_id is not None:
            flags = otel.TraceFlags(otel.TraceFlags.SAMPLED if trace.sampled is not False else otel.TraceFlags.DEFAULT)
            caller = otel.SpanContext(int(trace.trace_id, 16), int(trace.span_id, 16), True, flags)
            parent = otel.set_span_in_context(otel.NonRecordingSpan(caller))
        started = None if received is None else time.time_ns() - int((time.monotonic() - received) * 1e9)
        # A trace without the caller's span (X-Cloud-Trace-Context may give none) still keeps its trace-id.
        wanted = _trace_id.set(int(trace.trace_id, 16) if trace is not None else None)
        try:
            return self.tracer.start_span(name, parent, otel.SpanKind.SERVER, start_time=started)
        finally:
            _trace_id.reset(wanted)

    def client(self, name: str, attributes: Mapping[str, Any]) -> ClientSpan:
        from opentelemetry.trace import SpanKind

        return ClientSpan(self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=dict(attributes)))

    def flush(self, bound_s: float) -> None:
        flushed = self.exporting.force_flush(int(bound_s * 1000))
        if not flushed and not self._unflushed:
            log.warning("traces: spans not exported within %.1f s; answering without them", bound_s)
        self._unflushed = not flushed
