"""Traces from the real functions-framework process, sent with OTLP/HTTP as deployed.

A tiny OTLP/HTTP collector on 127.0.0.1, written here, receives what the
function's exporter sends: the span tree of a run, flushed before the answer.
Pointed at a closed port instead, the exporter retries on its own thread and the
invocation answers once the flush bound is spent. A wrong ``OTEL_TRACES_EXPORTER``
stops start-up with one line.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from sim import CdfSimulator, Step, make_run
from tests.conftest import ROOT, SECRET, PubSub, Topics, binary_event, function_process, pubsub_message

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN}-01"
SERVER, CLIENT = 2, 3  # OTLP's span kinds


@dataclass(frozen=True)
class Received:
    """A span as the collector received it."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent: str
    attributes: dict[str, Any]


class Collector(http.server.ThreadingHTTPServer):
    """OTLP/HTTP (protobuf) on ``/v1/traces``: keeps every span it is sent, answers 200."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[Received] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        request = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.spans += list(_spans(request))
        body = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _spans(request: ExportTraceServiceRequest) -> Iterator[Received]:
    for resource_spans in request.resource_spans:
        resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                attributes = {a.key: _value(a.value) for a in s.attributes}
                yield Received(
                    resource.get("service.name", ""),
                    s.name,
                    s.kind,
                    s.trace_id.hex(),
                    s.span_id.hex(),
                    s.parent_span_id.hex(),
                    attributes,
                )


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@contextlib.contextmanager
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released without listening)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def trigger(url: str, headers: dict[str, str] | None = None) -> int:
    event_headers, data = binary_event(pubsub_message({"pipelineId": 1, "runId": 456}))
    return httpx.post(url, headers=event_headers | (headers or {}), content=data, timeout=120).status_code


def lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_the_deployed_function_sends_the_run_tree_before_it_answers(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics, tmp_path: Path
) -> None:
    """Through gunicorn and OTLP/HTTP: by the answer, the collector holds the invocation and its children."""
    sim.set_run(1, 456, [Step.status("Running"), Step.run(make_run(2, job_id=456))])
    with collector() as otlp:
        traced = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.url,
            "OTEL_SERVICE_NAME": "matchrelay-test",
        }
        with function_process(os.environ | env | traced, tmp_path / "function.log") as (_, url):
            assert trigger(url, {"traceparent": TRACEPARENT}) == 200
            with otlp.lock:
                spans = list(otlp.spans)  # no waiting: the spans were flushed before the answer
    (root,) = [s for s in spans if s.kind == SERVER]
    assert (root.name, root.trace_id, root.parent, root.service) == (
        "on_run_message",
        TRACE_ID,
        SPAN,
        "matchrelay-test",
    )
    children = sorted((s.name.split(" ")[0], s.kind, s.parent == root.span_id) for s in spans if s is not root)
    assert children == [("GET", CLIENT, True)] * 2 + [("POST", CLIENT, True)] + [("publish", CLIENT, True)] * (
        len(children) - 3
    )
    assert {s.trace_id for s in spans} == {TRACE_ID}
    assert sum(s.attributes["messaging.batch.message_count"] for s in spans if s.name.startswith("publish")) == 3
    assert SECRET not in repr(spans)


def test_an_unreachable_collector_costs_an_invocation_the_flush_bound_only(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics, tmp_path: Path
) -> None:
    """With OTLP pointed at a closed port (retrying for 120 s), the invocation answers 200 once the bound is spent."""
    sim.set_run(1, 456, [Step.run(make_run(1, job_id=456))])
    traced = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{closed_port()}/v1/traces",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "120",  # the exporter's own retries would outlast the test
    }
    log = tmp_path / "function.log"
    with function_process(os.environ | env | traced, log) as (_, url):
        assert trigger(url, {"traceparent": TRACEPARENT}) == 200
        assert trigger(url, {"traceparent": TRACEPARENT}) == 200  # the next one too, while the exporter still retries
        written = lines(log)
    summaries = [line for line in written if "outcome" in line]
    assert [s["outcome"] for s in summaries] == ["completed", "completed"]
    unflushed = [line for line in written if line["message"].startswith("traces: spans not exported within")]
    assert [line["severity"] for line in unflushed] == ["WARNING"]  # said once, not at every invocation
    # The exporter has not given up yet (it gives up after about 30 s): the answers did not wait for it.
    assert not any("due to timeout, max retries" in line["message"] for line in written)


@pytest.mark.parametrize("value", ["zipkin", "otlp,gcp_trace"])
def test_a_wrong_exporter_stops_startup_with_one_line(
    value: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Loading the function with a wrong ``OTEL_TRACES_EXPORTER`` exits 2 with one CRITICAL line naming it."""
    from functions_framework import create_app

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    capfd.readouterr()
    with pytest.raises(SystemExit) as caught:
        create_app(target="on_run_message", source=str(ROOT / "main.py"), signature_type="cloudevent")
    out, err = capfd.readouterr()
    written = [line for line in (out + err).splitlines() if line.strip()]
    assert caught.value.code == 2
    assert len(written) == 1, written
    line = json.loads(written[0])
    assert line["severity"] == "CRITICAL"
    assert line["message"].startswith(f"configuration error: OTEL_TRACES_EXPORTER: {value!r}")
