"""Traces in the function's process: the span tree of one run, a continuation in the same trace, the settings.

Spans go to OpenTelemetry's ``InMemorySpanExporter`` through ``tracing.use``, the
way the deployed function sends them to its exporter (the same export thread,
the same flush before the answer); the function is the one functions-framework
loads, CDF the simulator, Pub/Sub the emulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from handlers.core.errors import ConfigError
from handlers.process import tracing
from handlers.process.settings import load_settings
from sim import CdfSimulator, Step, make_run
from tests.conftest import ROOT, SECRET, PubSub, Topics, binary_event, load_app, pubsub_message
from tests.core.test_continuation import SLOW_POLLS

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN}-01"
RUN = "GET /api/v1/projects/{project}/context/entitymatching/pipelines/{id}/runs/{id}"


@pytest.fixture
def traced(env: dict[str, str]) -> Iterator[tuple[Any, InMemorySpanExporter]]:
    """The function loaded afresh, tracing to memory."""
    client = load_app().test_client()
    exporter = InMemorySpanExporter()
    tracing.use(lambda: exporter)
    yield client, exporter
    tracing.disable()


def hex_span(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def parent_of(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def invocations(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [s for s in spans if s.kind == SpanKind.SERVER]


def post(client: Any, body: Any, headers: dict[str, str] | None = None, **message: Any) -> int:
    event_headers, data = binary_event(pubsub_message(body, **message))
    return int(client.post("/", headers=event_headers | (headers or {}), data=data).status_code)


def test_one_run_is_one_tree_under_the_requests_trace(
    traced: tuple[Any, InMemorySpanExporter], sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """The invocation is a child of the caller's span; the token fetch, each poll and each Publish are its children."""
    client, exporter = traced
    sim.set_run(1, 456, [Step.status("Running"), Step.run(make_run(2, 1, job_id=456))])
    assert post(client, {"pipelineId": 1, "runId": 456}, {"traceparent": TRACEPARENT}) == 200
    spans = exporter.get_finished_spans()  # flushed before the answer: nothing to wait for
    (root,) = invocations(spans)
    assert (root.name, hex_trace(root), parent_of(root)) == ("on_run_message", TRACE_ID, SPAN)
    children = [s for s in spans if s is not root]
    assert {parent_of(s) for s in children} == {hex_span(root)}
    assert {hex_trace(s) for s in spans} == {TRACE_ID}
    http = [s for s in children if attrs(s).get("http.request.method")]
    assert sorted((s.name, attrs(s)["http.response.status_code"], attrs(s)["matchrelay.attempt"]) for s in http) == [
        (RUN, 200, 1),
        (RUN, 200, 2),
        ("POST /oauth2/token", 200, 1),
    ]
    published = [s for s in children if s not in http]
    assert {s.name for s in published} == {f"publish {topics.events.rsplit('/', 1)[-1]}"}
    assert sum(attrs(s)["messaging.batch.message_count"] for s in published) == 4
    (wait,) = root.events
    assert (wait.name, dict(wait.attributes or {}).keys()) == ("wait", {"status", "polls", "seconds"})
    assert (dict(wait.attributes or {})["status"], dict(wait.attributes or {})["polls"]) == ("Running", 1)
    assert attrs(root)["matchrelay.outcome"] == "completed"
    events = pubsub.drain(topics.events_sub, at_least=4)
    assert {e.attributes["ce-traceparent"] for e in events} == {f"00-{TRACE_ID}-{hex_span(root)}-01"}


def test_spans_never_carry_the_secret_or_the_token(
    traced: tuple[Any, InMemorySpanExporter], sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """Neither the client secret nor the bearer token appears in any span's name, attributes or events."""
    client, exporter = traced
    sim.set_run(1, 456, [Step.run(make_run(1, job_id=456))])
    assert post(client, {"pipelineId": 1, "runId": 456}, {"traceparent": TRACEPARENT}) == 200
    token = sim.cdf_requests()[0].headers["authorization"].removeprefix("Bearer ")
    text = json.dumps([json.loads(s.to_json()) for s in exporter.get_finished_spans()])
    assert "on_run_message" in text
    assert SECRET not in text
    assert token not in text


def test_a_continuation_joins_the_same_trace(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    sim: CdfSimulator,
    pubsub: PubSub,
    topics: Topics,
) -> None:
    """The continuation trigger names the first invocation's span; the invocation it starts is that span's child."""
    for name, value in (SLOW_POLLS | {"POLL_MAX_DELAY_S": "1.1"}).items():
        monkeypatch.setenv(name, value)
    trigger, trigger_sub = pubsub.topic("trigger")
    # Found completed at about 3.3 s of a 5 s timeout, inside the margin: the run goes on in a continuation.
    sim.set_run(1, 456, [Step.status("Running")] * 3 + [Step.run(make_run(3, job_id=456))])
    client = load_app().test_client()
    exporter = InMemorySpanExporter()
    tracing.use(lambda: exporter)
    try:
        source = {"ce-source": f"//pubsub.googleapis.com/{trigger}"}
        assert post(client, {"pipelineId": 1, "runId": 456}, source | {"traceparent": TRACEPARENT}) == 200
        (continuation,) = pubsub.drain(trigger_sub, at_least=1)
        (first,) = invocations(exporter.get_finished_spans())
        assert continuation.attributes["traceparent"] == f"00-{TRACE_ID}-{hex_span(first)}-01"
        exporter.clear()
        # Delivered back as Eventarc would: the message's attributes, and no trace header of its own.
        assert post(client, json.loads(continuation.raw), source, attributes=continuation.attributes) == 200
    finally:
        tracing.disable()
    (second,) = invocations(exporter.get_finished_spans())
    assert (hex_trace(first), hex_trace(second)) == (TRACE_ID, TRACE_ID)
    assert parent_of(second) == hex_span(first)
    assert attrs(second)["matchrelay.segment"] == 1
    events = pubsub.drain(topics.events_sub, at_least=4)
    assert {e.attributes["ce-traceparent"] for e in events} == {f"00-{TRACE_ID}-{hex_span(second)}-01"}


def test_without_a_trace_spans_start_one_and_events_carry_none(
    traced: tuple[Any, InMemorySpanExporter], sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A request with no trace context is a trace of its own; its events still have no ``ce-traceparent``."""
    client, exporter = traced
    sim.set_run(1, 456, [Step.run(make_run(1, job_id=456))])
    assert post(client, {"pipelineId": 1, "runId": 456}) == 200
    (root,) = invocations(exporter.get_finished_spans())
    assert root.parent is None
    assert {hex_trace(s) for s in exporter.get_finished_spans()} == {hex_trace(root)}
    assert [e.attributes.get("ce-traceparent") for e in pubsub.drain(topics.events_sub, at_least=2)] == [None, None]


def test_an_unsampled_caller_gets_no_spans_and_keeps_its_span(
    traced: tuple[Any, InMemorySpanExporter], sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A caller that did not sample its trace gets no spans (the parent decides), and events name its span."""
    client, exporter = traced
    sim.set_run(1, 456, [Step.run(make_run(1, job_id=456))])
    assert post(client, {"pipelineId": 1, "runId": 456}, {"traceparent": f"00-{TRACE_ID}-{SPAN}-00"}) == 200
    assert exporter.get_finished_spans() == ()
    events = pubsub.drain(topics.events_sub, at_least=2)
    assert {e.attributes["ce-traceparent"] for e in events} == {f"00-{TRACE_ID}-{SPAN}-00"}


def test_tracing_off_changes_nothing(client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics) -> None:
    """Unconfigured, the function runs without a tracer and events carry the caller's span as before."""
    sim.set_run(1, 456, [Step.run(make_run(1, job_id=456))])
    assert not tracing.enabled()
    assert post(client, {"pipelineId": 1, "runId": 456}, {"traceparent": TRACEPARENT}) == 200
    assert {e.attributes["ce-traceparent"] for e in pubsub.drain(topics.events_sub, at_least=2)} == {TRACEPARENT}


PROBE = """
import json, sys, main
loaded = {m.split(".")[1] for m in sys.modules if m.startswith("opentelemetry.")}
print(json.dumps({"sdk": "sdk" in loaded, "exporter": "exporter" in loaded}))
"""


@pytest.mark.parametrize(
    ("exporter", "expected"),
    [
        (None, {"sdk": False, "exporter": False}),
        ("none", {"sdk": False, "exporter": False}),
        ("otlp", {"sdk": True, "exporter": False}),
        ("gcp_trace", {"sdk": True, "exporter": False}),
    ],
)
def test_importing_main_loads_no_exporter(exporter: str | None, expected: dict[str, bool], env: dict[str, str]) -> None:
    """Off, importing main loads nothing of OpenTelemetry; on, the SDK only: the exporter loads at the first span."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | env
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=environment | ({"OTEL_TRACES_EXPORTER": exporter} if exporter else {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout.splitlines()[-1]) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "none"),
        ("", "none"),
        ("none", "none"),
        ("otlp", "otlp"),
        ("gcp_trace", "gcp_trace"),
        (" OTLP ", "otlp"),
        ("zipkin", ConfigError),
        ("console", ConfigError),
        ("otlp,gcp_trace", ConfigError),
        ("gcp-trace", ConfigError),
    ],
)
def test_otel_traces_exporter_values(
    value: str | None, expected: str | type[Exception], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``OTEL_TRACES_EXPORTER`` is gcp_trace, otlp or none (unset: none); anything else is a ConfigError naming it."""
    if value is None:
        monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    else:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    if isinstance(expected, str):
        assert (load_settings().otel_traces_exporter or "none") == expected
        return
    with pytest.raises(expected) as caught:
        load_settings()
    assert str(caught.value).startswith("OTEL_TRACES_EXPORTER: ")
    assert repr(value.strip()) in str(caught.value)  # type: ignore[union-attr]


@pytest.mark.parametrize("exporter", ["otlp", "gcp_trace"])
def test_configuring_an_exporter_builds_nothing_before_the_first_span(exporter: str) -> None:
    """Start-up with an exporter sets up the tracer only: the exporter (and its client) waits for the first span."""
    try:
        tracing.configure(exporter, "matchrelay-test")
        assert tracing.enabled()
        assert tracing._active is not None
        assert not tracing._active.exporting.started
    finally:
        tracing.configure("none")
    assert not tracing.enabled()


def test_a_sweeps_run_triggers_name_the_sweeps_span(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, pubsub: PubSub
) -> None:
    """A sweep's list requests are children of its span, and each run trigger it publishes names that span."""
    trigger, trigger_sub = pubsub.topic("trigger")
    monkeypatch.setenv("RELAY_TRIGGER_TOPIC", trigger)
    sim.add_run(4, 11, 1_730_204_346_000)
    client = load_app().test_client()
    exporter = InMemorySpanExporter()
    tracing.use(lambda: exporter)
    try:
        window = {"pipelineId": 4, "runsCreated": {"from": 1_730_204_000_000, "to": 1_730_205_000_000}}
        assert post(client, window, {"traceparent": TRACEPARENT}) == 200
    finally:
        tracing.disable()
    spans = exporter.get_finished_spans()
    (sweep,) = invocations(spans)
    assert attrs(sweep)["matchrelay.outcome"] == "swept"
    lists = [s for s in spans if attrs(s).get("url.template", "").endswith("/pipelines/{id}/runs")]
    assert [parent_of(s) for s in lists] == [hex_span(sweep)]
    (run_trigger,) = pubsub.drain(trigger_sub, at_least=1)
    assert run_trigger.attributes["traceparent"] == f"00-{TRACE_ID}-{hex_span(sweep)}-01"
