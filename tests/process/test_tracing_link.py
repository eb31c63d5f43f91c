"""Traces of the link: ``on_run_completed`` joins the trace its run.completed carries, its reads and writes beneath it.

Spans go to OpenTelemetry's ``InMemorySpanExporter`` through ``tracing.use``; the
world and the run.completed are the link tests' own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from handlers.process import tracing
from sim import CdfSimulator, Step
from sim.data import run_summary
from tests.conftest import PubSub, Topics, deliver
from tests.flow.test_link import EXTRA, PIPELINE, ROWS, RUN, build_world, completed, link_app, linked
from tests.process.test_tracing import SPAN, TRACE_ID, hex_span, parent_of


@pytest.fixture
def traced(env: dict[str, str]) -> Iterator[tuple[Any, InMemorySpanExporter]]:
    """``on_run_completed`` loaded afresh, tracing to memory."""
    client = link_app().test_client()
    exporter = InMemorySpanExporter()
    tracing.use(lambda: exporter)
    yield client, exporter
    tracing.disable()


def test_the_link_is_a_child_of_the_run_completed_it_serves(
    traced: tuple[Any, InMemorySpanExporter], sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """The link's span continues ``ce-traceparent``; every read and write, from every writing thread, is its child."""
    client, exporter = traced
    build_world(sim, "time_series")
    message = completed(**{"ce-traceparent": f"00-{TRACE_ID}-{SPAN}-01"})
    assert deliver(client, message).status_code == 200
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.kind == SpanKind.SERVER]
    assert (root.name, parent_of(root), dict(root.attributes or {})["matchrelay.outcome"]) == (
        "on_run_completed",
        SPAN,
        "linked",
    )
    requests = [s for s in spans if dict(s.attributes or {}).get("http.request.method")]
    assert len(requests) >= 3  # the run, the sources, the assets, the writes
    assert any(s.name.startswith("POST") and "update" in s.name for s in requests)
    assert {parent_of(s) for s in spans if s is not root} == {hex_span(root)}
    assert {f"{s.context.trace_id:032x}" for s in spans if s.context} == {TRACE_ID}
    (event,) = linked(pubsub, topics)
    assert event.attributes["ce-traceparent"] == f"00-{TRACE_ID}-{hex_span(root)}-01"


def test_events_that_are_not_run_completed_make_no_span(
    traced: tuple[Any, InMemorySpanExporter], sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """Each match event of a traced run reaches the link too: acked at once, it adds nothing to the trace."""
    client, exporter = traced
    message = completed(
        **{
            "ce-type": "com.cognite.entitymatching.match",
            "ce-subject": "match/0",
            "ce-traceparent": f"00-{TRACE_ID}-{SPAN}-01",
        }
    )
    assert deliver(client, message).status_code == 200
    assert exporter.get_finished_spans() == ()
    assert sim.requests == []


def test_the_links_poll_waits_are_events_on_its_span(
    traced: tuple[Any, InMemorySpanExporter], sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A run CDF still reports Running is waited for, and the wait is a ``wait`` event on the link's span."""
    client, exporter = traced
    build_world(sim, "time_series")
    matches = [match for _, _, ms, _, _ in ROWS for match in ms] + EXTRA
    done = Step.run({**run_summary("Completed", RUN), "matches": matches, "errors": []})
    sim.set_run(PIPELINE, RUN, [Step.status("Running", RUN), done])
    assert deliver(client, completed(**{"ce-traceparent": f"00-{TRACE_ID}-{SPAN}-01"})).status_code == 200
    (root,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    waits = [e for e in root.events if e.name == "wait"]
    assert [dict(e.attributes or {})["status"] for e in waits] == ["Running"]
    assert len(linked(pubsub, topics)) == 1
