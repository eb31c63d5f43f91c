"""Operations: the trace fields on every line of a traced invocation, and the one summary line per invocation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.process.logs import (
    SPAN_ID,
    TRACE,
    TRACE_SAMPLED,
    Trace,
    gcp_project,
    parse_cloud_trace_context,
    parse_traceparent,
    request_trace,
    trace_fields,
)
from sim import CdfSimulator, Step, make_run
from tests.conftest import GCP_PROJECT, binary_event, load_app, pubsub_message

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN}-01"
SUMMARY_FIELDS = {"outcome", "reason", "polls", "retries", "events", "seconds"}


@pytest.fixture
def app(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The function on a Cloud Run-like instance: no ``GOOGLE_CLOUD_PROJECT`` unless a test sets it."""
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    return load_app().test_client()


def invoke(
    client: Any, capfd: pytest.CaptureFixture[str], body: Any, headers: dict[str, str] | None = None, **message: Any
) -> tuple[int, list[dict[str, Any]]]:
    """Deliver one trigger (binary mode) with extra request ``headers``; its status and its log lines."""
    capfd.readouterr()
    event_headers, data = binary_event(pubsub_message(body, **message))
    response = client.post("/", headers={**event_headers, **(headers or {})}, data=data)
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert lines
    return response.status_code, lines


# --- parsing the headers (pure) -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (TRACEPARENT, Trace(TRACE_ID, SPAN, True)),
        (f"00-{TRACE_ID}-{SPAN}-00", Trace(TRACE_ID, SPAN, False)),
        (f"00-{TRACE_ID}-{SPAN}-03", Trace(TRACE_ID, SPAN, True)),
        (f" {TRACEPARENT}\t", Trace(TRACE_ID, SPAN, True)),
        (f"cc-{TRACE_ID}-{SPAN}-01-what-the-future-adds", Trace(TRACE_ID, SPAN, True)),
    ],
)
def test_parse_traceparent_reads_trace_span_and_sampled(header: str, expected: Trace) -> None:
    """A well-formed ``traceparent`` gives its trace id, parent span id and sampled flag."""
    assert parse_traceparent(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "00",
        TRACEPARENT.upper(),
        f"00-{TRACE_ID[:-1]}-{SPAN}-01",
        f"00-{TRACE_ID}0-{SPAN}-01",
        f"00-{TRACE_ID}-{SPAN[:-1]}-01",
        f"00-{TRACE_ID}-{SPAN}-1",
        f"00-{'0' * 32}-{SPAN}-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"ff-{TRACE_ID}-{SPAN}-01",
        f"00-{TRACE_ID}-{SPAN}-01-extra",
        f"cc-{TRACE_ID}-{SPAN}-01extra",
        f"00-{TRACE_ID[:-1]}g-{SPAN}-01",
        f"00_{TRACE_ID}_{SPAN}_01",
        f"00-{TRACE_ID}-{SPAN}-01\n{{}}",
        f"00-{TRACE_ID}-{SPAN}-01" + "-x" * 1000,
    ],
)
def test_parse_traceparent_rejects_malformed(header: str) -> None:
    """A ``traceparent`` with a wrong length, case, character, version or all-zero id is no trace."""
    assert parse_traceparent(header) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"{TRACE_ID}/1;o=1", Trace(TRACE_ID, "0000000000000001", True)),
        (f"{TRACE_ID}/18446744073709551615;o=0", Trace(TRACE_ID, "ffffffffffffffff", False)),
        (f"{TRACE_ID}/{int(SPAN, 16)}", Trace(TRACE_ID, SPAN, None)),
        (TRACE_ID, Trace(TRACE_ID, None, None)),
        (TRACE_ID.upper() + "/7;o=1", Trace(TRACE_ID, "0000000000000007", True)),
    ],
)
def test_parse_cloud_trace_context_reads_and_converts_span(header: str, expected: Trace) -> None:
    """``X-Cloud-Trace-Context`` gives the trace id (lower case) and its decimal span id as 16 hex digits."""
    assert parse_cloud_trace_context(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        f"{TRACE_ID}/0;o=1",
        f"{TRACE_ID}/18446744073709551616;o=1",
        f"{TRACE_ID}/-1;o=1",
        f"{TRACE_ID}/{SPAN};o=1",
        f"{TRACE_ID}/1;o=2",
        f"{TRACE_ID}/1;o=1;extra",
        f"{TRACE_ID[:-1]}/1;o=1",
        f"{'0' * 32}/1;o=1",
        f"{TRACE_ID}/1;o=1\r\nX-Injected: yes",
        "projects/evil/traces/" + TRACE_ID,
    ],
)
def test_parse_cloud_trace_context_rejects_malformed(header: str) -> None:
    """An ``X-Cloud-Trace-Context`` with a wrong trace id, a span out of range or anything extra is no trace."""
    assert parse_cloud_trace_context(header) is None


def test_request_trace_prefers_traceparent_and_falls_back() -> None:
    """``traceparent`` wins when valid; a malformed one falls back to ``X-Cloud-Trace-Context``."""
    other = "0af7651916cd43dd8448eb211c80319c"
    assert request_trace(TRACEPARENT, f"{other}/1;o=1") == Trace(TRACE_ID, SPAN, True)
    assert request_trace("garbage", f"{other}/1;o=1") == Trace(other, "0000000000000001", True)
    assert request_trace(None, None) is None


@pytest.mark.parametrize(
    ("configured", "paths", "expected"),
    [
        ("acme-gcp", ["//pubsub.googleapis.com/projects/other-gcp/topics/t"], "acme-gcp"),
        (None, ["//pubsub.googleapis.com/projects/acme-gcp/topics/trigger"], "acme-gcp"),
        (None, ["//pubsub.googleapis.com/", "projects/acme-gcp/subscriptions/s"], "acme-gcp"),
        ("Not A Project", ["projects/acme-gcp/topics/t"], "acme-gcp"),
        ("example.com:acme-gcp", [], "example.com:acme-gcp"),
        (None, ["//pubsub.googleapis.com/projects/ACME/topics/t", "projects/a b c/subscriptions/s"], None),
        (None, ["projects/acme-gcp/buckets/b", 42, None], None),
    ],
)
def test_gcp_project_from_setting_or_trigger_path(
    configured: str | None, paths: list[Any], expected: str | None
) -> None:
    """The trace's project is ``GOOGLE_CLOUD_PROJECT``, else the trigger topic's or subscription's, if well-formed."""
    assert gcp_project(configured, *paths) == expected


def test_trace_fields_need_a_trace_and_a_project() -> None:
    """Without a trace or a project there are no trace fields; with both, Cloud Logging's three."""
    trace = Trace(TRACE_ID, SPAN, False)
    assert trace_fields(None, "acme-gcp") == {}
    assert trace_fields(trace, None) == {}
    assert trace_fields(trace, "acme-gcp") == {
        TRACE: f"projects/acme-gcp/traces/{TRACE_ID}",
        SPAN_ID: SPAN,
        TRACE_SAMPLED: False,
    }
    assert trace_fields(Trace(TRACE_ID), "acme-gcp") == {TRACE: f"projects/acme-gcp/traces/{TRACE_ID}"}


# --- through the function -------------------------------------------------------------------------------------------


def test_logs_traceparent_traces_every_line_of_the_invocation(
    app: Any, sim: CdfSimulator, capfd: pytest.CaptureFixture[str]
) -> None:
    """With a ``traceparent`` every line carries the trace (named by the trigger topic's project) and the span."""
    sim.set_run(1, 456, [Step.status("Queued"), Step.status("Running"), Step.run(make_run(2))])
    status, lines = invoke(app, capfd, {"pipelineId": 1, "runId": 456}, {"traceparent": TRACEPARENT})
    assert status == 200
    assert len(lines) >= 3
    for line in lines:
        assert line[TRACE] == f"projects/{GCP_PROJECT}/traces/{TRACE_ID}"
        assert (line[SPAN_ID], line[TRACE_SAMPLED]) == (SPAN, True)


def test_logs_cloud_trace_context_traces_every_line_of_the_invocation(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, capfd: pytest.CaptureFixture[str]
) -> None:
    """With ``X-Cloud-Trace-Context`` every line carries the trace, named by ``GOOGLE_CLOUD_PROJECT`` when set."""
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "acme-gcp")
    client = load_app().test_client()
    sim.set_run(1, 456, [Step.status("Running"), Step.run(make_run(1))])
    headers = {"X-Cloud-Trace-Context": f"{TRACE_ID}/{int(SPAN, 16)};o=0"}
    status, lines = invoke(client, capfd, {"pipelineId": 1, "runId": 456}, headers)
    assert status == 200
    assert len(lines) >= 2
    for line in lines:
        assert (line[TRACE], line[SPAN_ID], line[TRACE_SAMPLED]) == (
            f"projects/acme-gcp/traces/{TRACE_ID}",
            SPAN,
            False,
        )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"traceparent": f"00-{TRACE_ID.upper()}-{SPAN}-01"},
        {"traceparent": f"00-{TRACE_ID}-{SPAN}-01-injected-text"},
        {"X-Cloud-Trace-Context": f"{TRACE_ID}/{SPAN};o=1"},
        {"X-Cloud-Trace-Context": f"{TRACE_ID}zz/1;o=1"},
        {"traceparent": "<script>alert(1)</script>", "X-Cloud-Trace-Context": "'; DROP TABLE logs; --"},
    ],
)
def test_logs_malformed_trace_headers_give_no_trace(
    app: Any, sim: CdfSimulator, capfd: pytest.CaptureFixture[str], headers: dict[str, str]
) -> None:
    """Without a well-formed trace header no line has a trace field, and no header text reaches the logs."""
    sim.set_run(1, 456, [Step.status("Running"), Step.run(make_run(1))])
    status, lines = invoke(app, capfd, {"pipelineId": 1, "runId": 456}, headers)
    assert status == 200
    assert all(not {TRACE, SPAN_ID, TRACE_SAMPLED} & set(line) for line in lines)
    text = json.dumps(lines)
    assert all(value not in text for value in headers.values())


def test_logs_trace_ends_with_its_invocation(app: Any, sim: CdfSimulator, capfd: pytest.CaptureFixture[str]) -> None:
    """The next invocation on the same instance, without a trace header, logs no trace."""
    sim.set_run(1, 456, [Step.run(make_run(1))])
    invoke(app, capfd, {"pipelineId": 1, "runId": 456}, {"traceparent": TRACEPARENT})
    _, lines = invoke(app, capfd, {"pipelineId": 1, "runId": 456})
    assert all(TRACE not in line for line in lines)


def test_logs_invalid_trigger_is_traced(app: Any, sim: CdfSimulator, capfd: pytest.CaptureFixture[str]) -> None:
    """An invalid trigger's lines (a WARNING and its summary) carry the trace too."""
    status, lines = invoke(app, capfd, {"pipelineId": 0, "runId": 456}, {"traceparent": TRACEPARENT})
    assert status == 200
    assert [line["severity"] for line in lines] == ["WARNING", "WARNING"]
    assert all(line[TRACE] == f"projects/{GCP_PROJECT}/traces/{TRACE_ID}" for line in lines)
    assert sim.requests == []


def _summaries(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if "outcome" in line]


@pytest.mark.parametrize(
    ("steps", "body", "expected"),
    [
        pytest.param([Step.status("Running"), Step.run(make_run(3, 1, 1))], None, (200, "completed", None, "INFO", 6)),
        pytest.param([Step.status("Failed", error_message="empty")], None, (200, "failed", "run_failed", "WARNING", 1)),
        pytest.param([Step.error(404)], None, (200, "failed", "run_not_found", "WARNING", 1)),
        pytest.param([], {"pipelineId": "x", "runId": 1}, (200, "failed", "invalid_trigger", "WARNING", 1)),
    ],
    ids=["completed", "run_failed", "run_not_found", "invalid_trigger"],
)
def test_logs_summary_line_once_per_invocation(
    app: Any,
    sim: CdfSimulator,
    capfd: pytest.CaptureFixture[str],
    steps: list[Step],
    body: Any,
    expected: tuple[int, str, str | None, str, int],
) -> None:
    """Each invocation ends with exactly one summary line: outcome, reason, polls, retries, events, seconds."""
    if steps:
        sim.set_run(1, 456, steps)
    status, lines = invoke(app, capfd, body or {"pipelineId": 1, "runId": 456}, {"traceparent": TRACEPARENT})
    summaries = _summaries(lines)
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary is lines[-1]
    assert set(summary) >= SUMMARY_FIELDS
    assert (status, summary["outcome"], summary["reason"], summary["severity"], summary["events"]) == expected
    assert summary["polls"] == len(sim.cdf_requests())
    assert isinstance(summary["retries"], int)
    assert isinstance(summary["seconds"], float | int)
    assert summary[TRACE] == f"projects/{GCP_PROJECT}/traces/{TRACE_ID}"


def test_logs_summary_of_a_running_job_handed_back_is_info(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, capfd: pytest.CaptureFixture[str]
) -> None:
    """A job still running when the budget ends is handed back with one INFO summary (budget_exhausted)."""
    monkeypatch.setenv("POLL_BUDGET_S", "0.3")
    client = load_app().test_client()
    sim.set_run(1, 456, [Step.status("Running")])
    status, lines = invoke(client, capfd, {"pipelineId": 1, "runId": 456})
    summaries = _summaries(lines)
    assert status == 503
    assert [(s["outcome"], s["reason"], s["severity"], s["events"]) for s in summaries] == [
        ("handed_back", "budget_exhausted", "INFO", 0)
    ]
    assert summaries[0]["polls"] >= 2
    assert all(line["severity"] == "INFO" for line in lines)


def test_logs_summary_of_a_publish_failure_is_error(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, capfd: pytest.CaptureFixture[str]
) -> None:
    """Events that Pub/Sub does not confirm hand the message back with one ERROR summary."""
    monkeypatch.setenv("RELAY_TOPIC", f"projects/{GCP_PROJECT}/topics/missing-{id(sim)}")
    client = load_app().test_client()
    sim.set_run(1, 456, [Step.run(make_run(2))])
    status, lines = invoke(client, capfd, {"pipelineId": 1, "runId": 456})
    summaries = _summaries(lines)
    assert status == 503
    assert [(s["outcome"], s["severity"], s["events"]) for s in summaries] == [("handed_back", "ERROR", 0)]
    assert summaries[0]["reason"] == "publish_failed"


def test_logs_each_invocation_has_its_own_summary(
    app: Any, sim: CdfSimulator, capfd: pytest.CaptureFixture[str]
) -> None:
    """Two deliveries of one trigger give two summary lines, one each, with their own message ids."""
    sim.set_run(1, 456, [Step.run(make_run(1))])
    _, first = invoke(app, capfd, {"pipelineId": 1, "runId": 456}, message_id="101")
    _, second = invoke(app, capfd, {"pipelineId": 1, "runId": 456}, message_id="102")
    assert [s["messageId"] for s in _summaries(first)] == ["101"]
    assert [s["messageId"] for s in _summaries(second)] == ["102"]
