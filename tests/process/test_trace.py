"""Trace context: events carry ``ce-traceparent`` with the trigger's trace-id, and only when there is a trace."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.process.logs import Trace, traceparent_of
from sim import CdfSimulator, Step, make_run
from tests.conftest import PubSub, Topics, binary_event, pubsub_message

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("trace", "expected"),
    [
        (Trace(TRACE_ID, SPAN, True), f"00-{TRACE_ID}-{SPAN}-01"),
        (Trace(TRACE_ID, SPAN, False), f"00-{TRACE_ID}-{SPAN}-00"),
        (Trace(TRACE_ID, None, None), f"00-{TRACE_ID}-1111111111111111-00"),  # no span given: a new one
    ],
)
def test_traceparent_of_keeps_the_trace_id_and_the_callers_span(trace: Trace, expected: str) -> None:
    """The outgoing ``traceparent`` keeps the trace-id, takes the caller's span as parent and its sampled flag."""
    assert traceparent_of(trace, new_span=lambda: "1" * 16) == expected


CASES = [
    pytest.param({"traceparent": f"00-{TRACE_ID}-{SPAN}-01"}, {}, f"00-{TRACE_ID}-{SPAN}-01", id="traceparent"),
    pytest.param(
        {"X-Cloud-Trace-Context": f"{TRACE_ID.upper()}/1;o=1"},
        {},
        f"00-{TRACE_ID}-0000000000000001-01",
        id="cloud-trace",
    ),
    pytest.param({}, {"traceparent": f"00-{TRACE_ID}-{SPAN}-00"}, f"00-{TRACE_ID}-{SPAN}-00", id="attribute"),
    pytest.param(
        {"traceparent": f"00-{TRACE_ID}-{SPAN}-01"},
        {"traceparent": f"00-{'a' * 32}-{SPAN}-01"},
        f"00-{TRACE_ID}-{SPAN}-01",
        id="header-before-attribute",
    ),
    pytest.param({"traceparent": "00-zz-00-01"}, {"traceparent": "garbage"}, None, id="malformed"),
    pytest.param({}, {}, None, id="none"),
]


@pytest.mark.parametrize(("headers", "attributes", "expected"), CASES)
def test_events_carry_the_triggers_trace(
    headers: dict[str, str],
    attributes: dict[str, str],
    expected: str | None,
    client: Any,
    sim: CdfSimulator,
    pubsub: PubSub,
    topics: Topics,
) -> None:
    """Every event of a run has ``ce-traceparent`` from the request's headers or the message, or none at all."""
    sim.set_run(1, 456, [Step.run(make_run(2, 1, job_id=456))])
    message = pubsub_message({"pipelineId": 1, "runId": 456}, attributes=attributes)
    event_headers, body = binary_event(message)
    assert client.post("/", headers=event_headers | headers, data=body).status_code == 200
    events = pubsub.drain(topics.events_sub, at_least=4)
    assert len(events) == 4
    assert {e.attributes.get("ce-traceparent") for e in events} == {expected}


def test_invalid_trigger_carries_the_trace(client: Any, pubsub: PubSub, topics: Topics) -> None:
    """The run.failed of an invalid trigger is traced like any other event."""
    headers, body = binary_event(pubsub_message({"pipelineId": 0, "runId": 456}))
    traced = headers | {"traceparent": f"00-{TRACE_ID}-{SPAN}-01"}
    assert client.post("/", headers=traced, data=body).status_code == 200
    (failed,) = pubsub.drain(topics.errors_sub, at_least=1)
    assert failed.attributes["ce-traceparent"] == f"00-{TRACE_ID}-{SPAN}-01"
