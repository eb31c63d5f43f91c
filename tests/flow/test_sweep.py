"""Sweeps (contract, section 2b): a window of run creation times in, one run trigger per run out.

Through functions-framework (the real app in-process, and once as a real
process) against the CDF simulator and the Pub/Sub emulator. The run triggers a
sweep publishes are delivered back to the function the way Eventarc would (the
``Eventarc`` bridge below), so a test can follow a sweep to the events of every
run it found.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from handlers.cdf.listing import ListedRun, listed_runs, page_of, pipeline_ids
from handlers.core.errors import InvalidTrigger
from handlers.core.trigger import Sweep, parse_event
from handlers.core.window import Rolling, Window, epoch_ms, parse_span, resolve
from sim import CdfSimulator, Step, make_run
from tests.conftest import (
    GCP_PROJECT,
    ROOT,
    PubSub,
    Topics,
    binary_event,
    deliver,
    function_process,
    load_app,
    pubsub_message,
    push_body,
)

FROM, TO = 1_730_199_600_000, 1_730_203_200_000  # 2024-10-29T11:00Z to 12:00Z
FAILED = "com.cognite.entitymatching.run.failed"
ALLOWED = ("demo", "other")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


# --- the window (pure) -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "published", "window"),
    [
        pytest.param(900, "2024-10-29T12:19:06.123Z", ("12:00", "12:15"), id="quarter-hour"),
        pytest.param(900, "2024-10-29T12:15:00.000Z", ("12:00", "12:15"), id="exactly-on-the-boundary"),
        pytest.param(900, "2024-10-29T12:14:59.999Z", ("11:45", "12:00"), id="a-millisecond-before"),
        pytest.param(3600, "2024-10-29T12:00:00.300Z", ("11:00", "12:00"), id="scheduler-a-little-late"),
        pytest.param(60, "2024-10-29T12:19:06.000Z", ("12:18", "12:19"), id="one-minute"),
        pytest.param(86400, "2024-10-29T12:19:06.000Z", ("2024-10-28T00:00", "2024-10-29T00:00"), id="one-day"),
    ],
)
def test_rolling_window_is_the_last_whole_window_before_publish_time(
    seconds: int, published: str, window: tuple[str, str]
) -> None:
    """from = (⌊t/W⌋ - 1)·W·1000 and to = ⌊t/W⌋·W·1000, with t the publish time."""
    got = resolve(Rolling(seconds), _at(published), now_s=0.0)
    assert (got.start, got.end) == tuple(_ms(w) for w in window)


def test_rolling_window_without_publish_time_counts_from_receipt() -> None:
    """No publishTime: the window is the last whole one before the injected wall clock's now."""
    now = _ms("12:19") / 1000 + 6.5
    assert resolve(Rolling(900), None, now_s=now) == Window(_ms("12:00"), _ms("12:15"))


@pytest.mark.parametrize(
    ("created", "held"),
    [(FROM - 1, False), (FROM, True), (FROM + 1, True), (TO - 1, True), (TO, False), (TO + 1, False)],
)
def test_window_includes_from_and_excludes_to(created: int, held: bool) -> None:
    """[from, to): a run created exactly at from is in, one created exactly at to is in the next window."""
    assert Window(FROM, TO).holds(created) is held


VALID_SWEEPS = [
    pytest.param({"runsCreated": {"windowS": 3600}}, ("demo", None, Rolling(3600)), id="project-rolling"),
    pytest.param({"pipelineId": 123, "runsCreated": {"windowS": 900}}, ("demo", 123, Rolling(900)), id="rolling"),
    pytest.param(
        {"pipelineId": 123, "runsCreated": {"from": FROM, "to": TO}, "project": "other"},
        ("other", 123, Window(FROM, TO)),
        id="fixed",
    ),
    pytest.param({"pipelineId": "123", "runsCreated": {"windowS": 60}}, ("demo", 123, Rolling(60)), id="id-string"),
    pytest.param({"runsCreated": {"windowS": 2678400}}, ("demo", None, Rolling(2678400)), id="31-days"),
    pytest.param({"runsCreated": {"from": 0, "to": 2678400000}}, ("demo", None, Window(0, 2678400000)), id="max-span"),
    pytest.param({"runsCreated": {"from": 5, "to": 6}, "extra": 1}, ("demo", None, Window(5, 6)), id="unknown-field"),
]


@pytest.mark.parametrize(("body", "expected"), VALID_SWEEPS)
def test_parse_event_reads_a_sweep(body: dict[str, Any], expected: tuple[Any, ...]) -> None:
    """A body with runsCreated is a sweep: the pipeline (or every one), the project, the window."""
    sweep = _parse(body)
    assert isinstance(sweep, Sweep)
    assert (sweep.project, sweep.pipeline_id, sweep.span) == expected


INVALID_SWEEPS = [
    pytest.param({"windowS": 59}, id="window-below-60"),
    pytest.param({"windowS": 2678401}, id="window-over-31-days"),
    pytest.param({"windowS": 0}, id="window-zero"),
    pytest.param({"windowS": -900}, id="window-negative"),
    pytest.param({"windowS": 900.0}, id="window-float"),
    pytest.param({"windowS": "900"}, id="window-string"),
    pytest.param({"windowS": True}, id="window-bool"),
    pytest.param({"windowS": None}, id="window-null"),
    pytest.param({"from": TO, "to": FROM}, id="from-after-to"),
    pytest.param({"from": FROM, "to": FROM}, id="from-equals-to"),
    pytest.param({"from": 0, "to": 2678400001}, id="over-31-days"),
    pytest.param({"from": -1, "to": 5}, id="negative-from"),
    pytest.param({"from": float(FROM), "to": TO}, id="from-float"),
    pytest.param({"from": str(FROM), "to": TO}, id="from-string"),
    pytest.param({"from": FROM, "to": True}, id="to-bool"),
    pytest.param({"from": None, "to": TO}, id="from-null"),
    pytest.param({"from": FROM}, id="from-alone"),
    pytest.param({"from": FROM, "to": TO, "windowS": 900}, id="both-forms"),
    pytest.param({"windowS": 900, "offsetS": 60}, id="unknown-key"),
    pytest.param({}, id="empty-object"),
    pytest.param(None, id="null"),
    pytest.param(900, id="a-number"),
    pytest.param("PT1H", id="a-string"),
    pytest.param([FROM, TO], id="a-list"),
]


@pytest.mark.parametrize("runs_created", INVALID_SWEEPS)
def test_parse_event_invalid_window_is_an_invalid_trigger(runs_created: Any) -> None:
    """A runsCreated of the wrong type, out of range, of both forms or with unknown keys is invalid."""
    with pytest.raises(InvalidTrigger) as caught:
        _parse({"pipelineId": 7, "runsCreated": runs_created})
    assert caught.value.reason == "invalid_trigger"
    assert caught.value.pipeline_id == 7


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"pipelineId": 7, "runId": 8, "runsCreated": {"windowS": 900}}, id="runid-beside"),
        pytest.param({"runId": "latest", "runsCreated": {"windowS": 900}}, id="latest-beside"),
        pytest.param(
            {"pipelineId": 7, "runsCreated": {"windowS": 900}, "continuation": {"segment": 1, "skip": 0}},
            id="continuation-beside",
        ),
        pytest.param({"pipelineId": None, "runsCreated": {"windowS": 900}}, id="pipelineid-null"),
        pytest.param({"pipelineId": 0, "runsCreated": {"windowS": 900}}, id="pipelineid-zero"),
        pytest.param({"runsCreated": {"windowS": 900}, "project": "prod"}, id="project-not-allowed"),
        pytest.param({"runsCreated": {"windowS": 900}, "projectSweep": True}, id="handed-on-without-pipeline"),
        pytest.param({"pipelineId": 7, "runsCreated": {"windowS": 900}, "projectSweep": 1}, id="handed-on-not-true"),
        pytest.param({"pipelineId": 7, "runsCreated": {"windowS": 900}, "projectSweep": False}, id="handed-on-false"),
    ],
)
def test_parse_event_sweep_beside_a_run_is_invalid(body: dict[str, Any]) -> None:
    """A sweep names no run and no continuation; its pipelineId and project follow the run triggers' rules."""
    with pytest.raises(InvalidTrigger):
        _parse(body)


def test_parse_span_problems_are_bounded() -> None:
    """The error message quotes what was sent only in a short form."""
    problems: list[str] = []
    assert parse_span({"windowS": "x" * 100_000}, problems) is None
    assert len(problems[0]) < 300


# --- the list pages (pure) -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-items"),
        pytest.param({"items": {}}, id="items-not-a-list"),
        pytest.param({"items": [], "nextCursor": 5}, id="cursor-not-a-string"),
        pytest.param({"items": [], "nextCursor": "x" * 5000}, id="cursor-too-long"),
    ],
)
def test_page_of_malformed_page(body: dict[str, Any]) -> None:
    """A page without an items list, or with a cursor that is not a short string, is malformed (retried)."""
    from handlers.core.errors import MalformedResponse

    with pytest.raises(MalformedResponse):
        page_of(body)


@pytest.mark.parametrize(
    ("items", "parse"),
    [
        pytest.param([{"id": 0}], pipeline_ids, id="pipeline-id-zero"),
        pytest.param([{"id": "7"}], pipeline_ids, id="pipeline-id-string"),
        pytest.param([{"id": True}], pipeline_ids, id="pipeline-id-bool"),
        pytest.param([7], pipeline_ids, id="pipeline-not-an-object"),
        pytest.param([{"jobId": 1, "createdTime": 5}], listed_runs, id="run-without-status"),
        pytest.param([{"status": "Completed", "jobId": -1, "createdTime": 5}], listed_runs, id="run-job-id-negative"),
        pytest.param([{"status": "Completed", "jobId": 1, "createdTime": "5"}], listed_runs, id="run-created-string"),
    ],
)
def test_list_items_malformed(items: list[Any], parse: Callable[[list[Any]], Any]) -> None:
    """Only ids go into URLs: a pipeline id or a jobId that is not one makes the page malformed."""
    from handlers.core.errors import MalformedResponse

    with pytest.raises(MalformedResponse):
        parse(items)


@pytest.mark.parametrize(
    ("run", "relayable"),
    [
        (ListedRun(5, 1, "Completed"), True),
        (ListedRun(5, 1, "Queued"), True),
        (ListedRun(5, 1, "Skipped"), False),
        (ListedRun(5, 1, "SKIPPED"), False),
        (ListedRun(None, 1, "Completed"), False),
    ],
)
def test_listed_run_relayable(run: ListedRun, relayable: bool) -> None:
    """A skipped run, or one without a jobId, is left out: no trigger can name it usefully."""
    assert run.relayable is relayable


# --- through functions-framework -------------------------------------------------------------------------------


class Eventarc:
    """Delivers the trigger topic's messages to the function as Eventarc does; acks on 2xx, nacks otherwise."""

    def __init__(self, pubsub: PubSub, topic: str, subscription: str, post: Callable[..., int]) -> None:
        self.pubsub, self.topic, self.subscription, self.post = pubsub, topic, subscription, post
        self.delivered: list[dict[str, Any]] = []  # every message body delivered, in order

    def pull(self) -> list[Any]:
        response = self.pubsub.subscriber.pull(
            request={"subscription": self.subscription, "max_messages": 100, "return_immediately": True}, timeout=30
        )
        return list(response.received_messages)

    def run(self, rounds: int = 50) -> list[dict[str, Any]]:
        """Deliver until the subscription stays empty; the bodies delivered."""
        empty = 0
        for _ in range(rounds * 20):
            received = self.pull()
            if not received:
                empty += 1
                if empty >= 3:
                    return self.delivered
                continue
            empty = 0
            for m in received:
                self._deliver(m)
        raise AssertionError("the trigger topic never emptied")

    def _deliver(self, m: Any) -> None:
        message = {
            "data": base64.b64encode(m.message.data).decode(),
            "attributes": dict(m.message.attributes),
            "messageId": m.message.message_id,
            "publishTime": m.message.publish_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        headers, body = binary_event(message)
        headers["ce-source"] = f"//pubsub.googleapis.com/{self.topic}"
        status = self.post(headers, body)
        self.delivered.append(json.loads(m.message.data))
        sub = self.subscription
        if 200 <= status < 300:
            self.pubsub.subscriber.acknowledge(request={"subscription": sub, "ack_ids": [m.ack_id]})
        else:
            self.pubsub.subscriber.modify_ack_deadline(
                request={"subscription": sub, "ack_ids": [m.ack_id], "ack_deadline_seconds": 0}
            )


@pytest.fixture
def trigger(pubsub: PubSub, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """The trigger topic (RELAY_TRIGGER_TOPIC) and a subscription on it: (topic, subscription)."""
    topic, sub = pubsub.topic("trigger")
    monkeypatch.setenv("RELAY_TRIGGER_TOPIC", topic)
    env["RELAY_TRIGGER_TOPIC"] = topic
    return topic, sub


@pytest.fixture
def fn(trigger: tuple[str, str]) -> Any:
    """The function, loaded with the trigger topic set."""
    return load_app().test_client()


@pytest.fixture
def eventarc(fn: Any, pubsub: PubSub, trigger: tuple[str, str]) -> Eventarc:
    def post(headers: dict[str, str], body: bytes) -> int:
        return int(fn.post("/", headers=headers, data=body).status_code)

    return Eventarc(pubsub, trigger[0], trigger[1], post)


def sweep_message(body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return pubsub_message(body, **kw)


def triggers(pubsub: PubSub, sub: str, at_least: int = 0) -> list[dict[str, Any]]:
    """The bodies published to the trigger topic."""
    return [r.data for r in pubsub.drain(sub, at_least=at_least)]


def run_ids(bodies: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return sorted((b["pipelineId"], b["runId"]) for b in bodies if "runId" in b)


def test_sweep_one_pipeline_fixed_window_publishes_a_trigger_per_run(
    fn: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, trigger: tuple[str, str]
) -> None:
    """Every run created in [from, to) gets one run trigger, over several shuffled pages; nothing else is published."""
    edges = {1: FROM - 1, 2: FROM, 3: FROM + 1, 4: TO - 1, 5: TO, 6: TO + 1}
    for job_id, created in edges.items():
        sim.add_run(7, job_id, created)
    for job_id in range(100, 330):  # 230 more runs, one in ten inside the window
        sim.add_run(7, job_id, FROM + 5_000 if job_id % 10 == 0 else TO + job_id)
    body = {"pipelineId": 7, "runsCreated": {"from": FROM, "to": TO}}
    assert deliver(fn, sweep_message(body)).status_code == 200
    published = triggers(pubsub, trigger[1], at_least=26)
    expected = sorted([(7, 2), (7, 3), (7, 4)] + [(7, j) for j in range(100, 330) if j % 10 == 0])
    assert run_ids(published) == expected
    assert all(set(b) == {"pipelineId", "runId", "project"} and b["project"] == "demo" for b in published)
    lists = sim.list_requests(7)
    assert len(lists) == 3
    assert [r.query.get("limit") for r in lists] == ["100"] * 3
    assert "cursor" not in lists[0].query
    assert all("cursor" in r.query for r in lists[1:])
    assert pubsub.drain(topics.events_sub) == []
    assert pubsub.drain(topics.errors_sub) == []


def test_sweep_rolling_window_is_aligned_on_publish_time(
    fn: Any, sim: CdfSimulator, pubsub: PubSub, trigger: tuple[str, str]
) -> None:
    """windowS 900 published at 12:19:06 sweeps [12:00, 12:15): 12:00 is in, 12:15 and 11:59:59.999 are out."""
    edges = {1: _ms("11:59") + 59_999, 2: _ms("12:00"), 3: _ms("12:14") + 59_999, 4: _ms("12:15")}
    for job_id, created in edges.items():
        sim.add_run(3, job_id, created)
    message = sweep_message({"pipelineId": 3, "runsCreated": {"windowS": 900}}, publish_time="2024-10-29T12:19:06.5Z")
    assert deliver(fn, message).status_code == 200
    assert run_ids(triggers(pubsub, trigger[1], at_least=2)) == [(3, 2), (3, 3)]


def test_sweep_of_the_project_reads_every_page_of_pipelines(
    fn: Any, sim: CdfSimulator, pubsub: PubSub, trigger: tuple[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    """No pipelineId: every pipeline over two pages is swept; the summary line gives window, pipelines, triggers."""
    for pipeline_id in range(1, 151):
        sim.add_pipeline(pipeline_id, schedule_interval=3600)
        if pipeline_id % 25 == 0:
            sim.add_run(pipeline_id, 1000 + pipeline_id, FROM + pipeline_id)
            sim.add_run(pipeline_id, 2000 + pipeline_id, FROM - pipeline_id)
    assert deliver(fn, sweep_message({"runsCreated": {"from": FROM, "to": TO}})).status_code == 200
    assert run_ids(triggers(pubsub, trigger[1], at_least=6)) == [(p, 1000 + p) for p in range(25, 151, 25)]
    assert len(sim.list_requests(None)) == 2
    summary = _summary(capfd)
    assert summary["window"] == {"from": FROM, "to": TO}
    assert (summary["outcome"], summary["pipelines"], summary["runTriggers"]) == ("swept", 150, 6)
    assert f"[{FROM}-{TO})" in summary["message"]


def test_sweep_redelivered_publishes_the_same_triggers_again(
    fn: Any, sim: CdfSimulator, pubsub: PubSub, trigger: tuple[str, str]
) -> None:
    """The same sweep message twice publishes the same run triggers twice (subscribers deduplicate by ce-id)."""
    for job_id in (11, 12, 13):
        sim.add_run(4, job_id, FROM + job_id)
    message = sweep_message({"pipelineId": 4, "runsCreated": {"windowS": 3600}}, publish_time="2024-10-29T12:30:00Z")
    assert [deliver(fn, message).status_code for _ in range(2)] == [200, 200]
    published = triggers(pubsub, trigger[1], at_least=6)
    assert run_ids(published) == sorted([(4, 11), (4, 12), (4, 13)] * 2)


def test_sweep_triggers_carry_the_trace(fn: Any, sim: CdfSimulator, pubsub: PubSub, trigger: tuple[str, str]) -> None:
    """A sweep that came with a trace hands it on as the traceparent attribute of each run trigger."""
    sim.add_run(4, 11, FROM)
    message = sweep_message({"pipelineId": 4, "runsCreated": {"from": FROM, "to": TO}})
    headers, body = binary_event(message)
    assert fn.post("/", headers={**headers, "traceparent": TRACEPARENT}, data=body).status_code == 200
    [received] = pubsub.drain(trigger[1], at_least=1)
    assert received.attributes["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]


@pytest.mark.parametrize(
    "body",
    [
        *(pytest.param({"pipelineId": 7, "runsCreated": p.values[0]}, id=p.id) for p in INVALID_SWEEPS),
        pytest.param({"pipelineId": 7, "runId": 8, "runsCreated": {"windowS": 900}}, id="runid-beside"),
        pytest.param({"runsCreated": {"windowS": 900}, "continuation": {"segment": 1, "skip": 0}}, id="continuation"),
    ],
)
def test_sweep_invalid_is_answered_with_invalid_trigger_and_no_cdf_request(
    fn: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, trigger: tuple[str, str], body: dict[str, Any]
) -> None:
    """Every invalid form gets one run.failed invalid_trigger and 200, and CDF is never asked."""
    message = sweep_message(body, message_id="31337")
    assert deliver(fn, message).status_code == 200
    [event] = pubsub.drain(topics.errors_sub, at_least=1)
    assert (event.attributes["ce-id"], event.data["reason"]) == ("invalid-trigger/31337", "invalid_trigger")
    assert sim.requests == []


def test_sweep_without_a_trigger_topic_is_invalid_naming_the_variable(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A raw push names no topic; without RELAY_TRIGGER_TOPIC a sweep is invalid and says which variable to set."""
    headers, body = push_body(sweep_message({"runsCreated": {"windowS": 900}}))
    assert client.post("/", headers=headers, data=body).status_code == 200
    [event] = pubsub.drain(topics.errors_sub, at_least=1)
    assert event.data["reason"] == "invalid_trigger"
    assert "RELAY_TRIGGER_TOPIC" in event.data["errorMessage"]
    assert sim.requests == []


@pytest.mark.parametrize(
    ("pipeline", "refusal", "reason"),
    [
        pytest.param(None, Step.error(403), "access_denied", id="project-403"),
        pytest.param(None, Step.error(400), "invalid_request", id="project-400"),
        pytest.param(7, Step.error(404), "run_not_found", id="one-pipeline-404"),
        pytest.param(7, Step.error(403), "access_denied", id="one-pipeline-403"),
    ],
)
def test_sweep_refused_publishes_one_run_failed_keyed_by_the_window(
    fn: Any,
    sim: CdfSimulator,
    pubsub: PubSub,
    topics: Topics,
    trigger: tuple[str, str],
    pipeline: int | None,
    refusal: Step,
    reason: str,
) -> None:
    """A refusal ends the sweep with one run.failed: subject sweep/{from}-{to}/failed/{reason}, window in its data."""
    sim.add_pipeline(7)
    sim.script_list(7, [refusal])
    body = {"runsCreated": {"from": FROM, "to": TO}} | ({"pipelineId": pipeline} if pipeline else {})
    assert deliver(fn, sweep_message(body)).status_code == 200
    [event] = pubsub.drain(topics.errors_sub, at_least=1)
    a = event.attributes
    scope = pipeline or "all"
    assert a["ce-subject"] == f"sweep/{FROM}-{TO}/failed/{reason}"
    assert a["ce-id"] == f"demo/{scope}/sweep/{FROM}-{TO}/failed/{reason}"
    assert a["ce-source"].endswith("/pipelines/7/runs" if pipeline else "/pipelines")
    assert "ce-runid" not in a
    assert (event.data["runId"], event.data["window"]) == (None, {"from": FROM, "to": TO})
    assert triggers(pubsub, trigger[1]) == []


def test_sweep_of_the_project_skips_a_vanished_pipeline_with_a_warning(
    fn: Any,
    sim: CdfSimulator,
    pubsub: PubSub,
    topics: Topics,
    trigger: tuple[str, str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A pipeline listed but gone when its runs are read (404) is skipped with a WARNING; the others are swept."""
    for pipeline_id in (1, 2, 3):
        sim.add_run(pipeline_id, 10 + pipeline_id, FROM)
    sim.script_list(2, [Step.error(404, "Pipeline not found")])
    assert deliver(fn, sweep_message({"runsCreated": {"from": FROM, "to": TO}})).status_code == 200
    assert run_ids(triggers(pubsub, trigger[1], at_least=2)) == [(1, 11), (3, 13)]
    lines = _lines(capfd)
    warnings = [line for line in lines if line["severity"] == "WARNING" and "gone" in line["message"]]
    assert [w.get("pipelineId") for w in warnings] == [2]
    assert pubsub.drain(topics.errors_sub) == []


def test_sweep_handed_on_by_a_project_sweep_skips_its_vanished_pipeline(
    fn: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, capfd: pytest.CaptureFixture[str]
) -> None:
    """A pipeline handed on by a project sweep and gone when read is skipped with a WARNING, as in the project."""
    sim.script_list(2, [Step.error(404, "Pipeline not found")])
    body = {"pipelineId": 2, "runsCreated": {"from": FROM, "to": TO}, "projectSweep": True}
    assert deliver(fn, sweep_message(body)).status_code == 200
    assert [line["pipelineId"] for line in _lines(capfd) if "gone" in line["message"]] == [2]
    assert pubsub.drain(topics.errors_sub) == []


def test_parse_event_publish_time_without_offset_is_utc() -> None:
    """A publishTime written without an offset is read as UTC, so a rolling window is computed, not a crash."""
    data = base64.b64encode(json.dumps({"runsCreated": {"windowS": 900}}).encode()).decode()
    message = {"data": data, "attributes": {}, "messageId": "1", "publishTime": "2024-10-29T12:19:06.123"}
    sweep = parse_event("1", {"message": message}, default_project="demo", allowed=("demo",))
    assert isinstance(sweep, Sweep)
    window = resolve(sweep.span, sweep.publish_time, 0.0)
    assert window.end == epoch_ms(datetime(2024, 10, 29, 12, 15, tzinfo=UTC))


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param([Step.throttle(), Step.error(503), Step.drop()], id="429-503-drop"),
        pytest.param([Step.raw(200, b"{not json")] * 3, id="three-malformed"),
        pytest.param([Step.run({"items": [{"id": "x"}]}), Step.error(502)], id="bad-item-then-502"),
    ],
)
def test_sweep_list_faults_are_retried(
    fn: Any, sim: CdfSimulator, pubsub: PubSub, trigger: tuple[str, str], faults: list[Step]
) -> None:
    """Transient answers on either list (even on a later page) are retried with backoff, as polls of a run are."""
    for job_id in range(1, 151):
        sim.add_run(5, job_id, FROM + job_id)
    sim.script_list(None, list(faults))
    sim.script_list(5, [None, *faults])  # the second page of runs
    assert deliver(fn, sweep_message({"runsCreated": {"from": FROM, "to": TO}})).status_code == 200
    assert run_ids(triggers(pubsub, trigger[1], at_least=150)) == [(5, j) for j in range(1, 151)]
    assert len(sim.list_requests(5)) == 2 + len(faults)


def test_sweep_fourth_malformed_page_is_invalid_response(
    fn: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, trigger: tuple[str, str]
) -> None:
    """Four malformed answers in a row end the sweep with run.failed invalid_response."""
    sim.add_pipeline(5)
    sim.script_list(None, [Step.raw(200, b"[]")] * 4)
    assert deliver(fn, sweep_message({"runsCreated": {"from": FROM, "to": TO}})).status_code == 200
    [event] = pubsub.drain(topics.errors_sub, at_least=1)
    assert event.attributes["ce-id"] == f"demo/all/sweep/{FROM}-{TO}/failed/invalid_response"


def test_sweep_cursor_repeated_is_invalid_response(
    fn: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, trigger: tuple[str, str]
) -> None:
    """A list whose cursor comes back would page forever: invalid_response."""
    looping = Step.run({"items": [], "nextCursor": "again"})
    sim.add_pipeline(5)
    sim.script_list(5, [looping] * 5)
    assert deliver(fn, sweep_message({"pipelineId": 5, "runsCreated": {"from": FROM, "to": TO}})).status_code == 200
    [event] = pubsub.drain(topics.errors_sub, at_least=1)
    assert event.data["reason"] == "invalid_response"
    assert len(sim.list_requests(5)) == 2


def test_sweep_budget_spent_hands_back(
    sim: CdfSimulator, pubsub: PubSub, topics: Topics, trigger: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CDF answering 503 until POLL_BUDGET_S would run out: 503, nothing published."""
    monkeypatch.setenv("POLL_BUDGET_S", "0.3")
    sim.add_pipeline(5)
    sim.script_list(5, [Step.error(503)] * 1000)
    fn = load_app().test_client()
    assert deliver(fn, sweep_message({"pipelineId": 5, "runsCreated": {"from": FROM, "to": TO}})).status_code == 503
    assert pubsub.drain(topics.errors_sub) == []
    assert triggers(pubsub, trigger[1]) == []


def test_sweep_token_refreshed_on_401(fn: Any, sim: CdfSimulator, pubsub: PubSub, trigger: tuple[str, str]) -> None:
    """A token that expired between two pages is renewed once, and the sweep goes on."""
    for job_id in range(1, 121):
        sim.add_run(5, job_id, FROM)
    sim.script_list(5, [None, Step.error(401)])
    assert deliver(fn, sweep_message({"pipelineId": 5, "runsCreated": {"from": FROM, "to": TO}})).status_code == 200
    assert len(triggers(pubsub, trigger[1], at_least=120)) == 120
    assert len(sim.token_requests()) == 2


def test_sweep_skipped_runs_are_left_out(fn: Any, sim: CdfSimulator, pubsub: PubSub, trigger: tuple[str, str]) -> None:
    """A skipped run has no results: no trigger for it; Queued and Running runs get one (the relay waits for them)."""
    for job_id, status in ((1, "Completed"), (2, "Skipped"), (3, "Queued"), (4, "Running"), (5, "Failed")):
        sim.add_run(5, job_id, FROM, status)
    assert deliver(fn, sweep_message({"pipelineId": 5, "runsCreated": {"from": FROM, "to": TO}})).status_code == 200
    assert run_ids(triggers(pubsub, trigger[1], at_least=4)) == [(5, 1), (5, 3), (5, 4), (5, 5)]


# --- end to end: the triggers delivered back, the runs relayed -------------------------------------------------


def scheduled(sim: CdfSimulator, pipelines: int, runs: int, matches: int = 2) -> list[tuple[int, int]]:
    """Scheduled pipelines with ``runs`` completed runs each in the window and one outside; the runs inside."""
    inside = []
    for p in range(1, pipelines + 1):
        sim.add_pipeline(p, schedule_interval=900)
        for k in range(runs + 1):
            job_id = p * 100 + k
            created = FROM + k * 900_000 if k < runs else TO
            sim.add_run(p, job_id, created, steps=[Step.run(make_run(matches, job_id=job_id, created=created))])
            if k < runs:
                inside.append((p, job_id))
    return inside


def completed(pubsub: PubSub, topics: Topics, count: int) -> list[tuple[int, int]]:
    events = pubsub.drain(topics.events_sub, at_least=count)
    return sorted((e.data["pipelineId"], e.data["runId"]) for e in events if e.type == "run.completed")


def test_sweep_end_to_end_every_run_found_is_relayed(
    fn: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, eventarc: Eventarc
) -> None:
    """One project sweep; its triggers delivered back as Eventarc would; every run's events arrive."""
    inside = scheduled(sim, pipelines=3, runs=3)
    assert deliver(fn, sweep_message({"runsCreated": {"from": FROM, "to": TO}})).status_code == 200
    delivered = eventarc.run()
    assert run_ids(delivered) == inside
    assert completed(pubsub, topics, count=len(inside) * 3) == inside


def test_sweep_out_of_time_hands_the_rest_on_as_sweeps_of_one_pipeline(
    sim: CdfSimulator, pubsub: PubSub, topics: Topics, trigger: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project sweep that cannot read every pipeline before its deadline forwards the rest, and all runs arrive."""
    monkeypatch.setenv("INVOCATION_TIMEOUT_S", "5")  # margin 2 s: producing stops 3 s in
    inside = scheduled(sim, pipelines=8, runs=1, matches=1)
    for p in range(1, 9):  # the first read of each pipeline's runs takes 0.6 s: 8 take longer than 3 s
        sim.script_list(p, [Step.slow(0.6, Step.run({"items": sim.catalog.run_items(p)}))])
    fn = load_app().test_client()

    def post(headers: dict[str, str], body: bytes) -> int:
        return int(fn.post("/", headers=headers, data=body).status_code)

    bridge = Eventarc(pubsub, trigger[0], trigger[1], post)
    assert deliver(fn, sweep_message({"runsCreated": {"from": FROM, "to": TO}})).status_code == 200
    delivered = bridge.run()
    forwarded = [b for b in delivered if "runsCreated" in b]
    assert forwarded, "the deadline should have come before the eighth slow pipeline"
    assert all(b["runsCreated"] == {"from": FROM, "to": TO} and "pipelineId" in b for b in forwarded)
    assert all(b["projectSweep"] is True for b in forwarded)
    assert run_ids(delivered) == inside
    assert completed(pubsub, topics, count=len(inside) * 2) == inside


def test_sweep_of_one_pipeline_out_of_time_hands_back(
    sim: CdfSimulator,
    pubsub: PubSub,
    trigger: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """One pipeline whose runs cannot all be read before the deadline: 503 with an ERROR line, to start over."""
    monkeypatch.setenv("INVOCATION_TIMEOUT_S", "5")  # producing stops 3 s in; five pages of 0.8 s take 4 s
    for job_id in range(1, 501):
        sim.add_run(5, job_id, FROM)
    runs = sim.catalog.run_items(5)
    sim.script_list(5, [Step.slow(0.8, Step.run({"items": runs[:100], "nextCursor": f"c{k}"})) for k in range(5)])
    fn = load_app().test_client()
    assert deliver(fn, sweep_message({"pipelineId": 5, "runsCreated": {"from": FROM, "to": TO}})).status_code == 503
    assert triggers(pubsub, trigger[1]) == []
    summary = _summary(capfd)
    assert (summary["severity"], summary["reason"]) == ("ERROR", "sweep_too_large")


def test_sweep_end_to_end_in_a_real_process(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics, trigger: tuple[str, str], tmp_path: Any
) -> None:
    """functions-framework as deployed: a rolling project sweep, its triggers back over HTTP, every run relayed."""
    inside = scheduled(sim, pipelines=2, runs=2)
    import os

    with function_process({**os.environ, **env}, tmp_path / "function.log") as (_, url), httpx.Client() as http:

        def post(headers: dict[str, str], body: bytes) -> int:
            return http.post(url, headers=headers, content=body, timeout=60).status_code

        headers, body = binary_event(sweep_message({"runsCreated": {"windowS": 3600}}, publish_time=_iso(TO + 1)))
        assert post(headers, body) == 200
        delivered = Eventarc(pubsub, trigger[0], trigger[1], post).run()
    assert run_ids(delivered) == inside
    assert completed(pubsub, topics, count=len(inside) * 3) == inside


# --- the command -----------------------------------------------------------------------------------------------


def sweep_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import os

    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "main.py", "sweep", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_sweep_stdout_prints_one_json_line_per_trigger(env: dict[str, str], sim: CdfSimulator) -> None:
    """--stdout: each run trigger is one line {"attributes": ..., "data": ...}; exit 0; logs on stderr."""
    for job_id in (1, 2, 3):
        sim.add_run(9, job_id, FROM + job_id if job_id < 3 else TO)
    result = sweep_command(env, "--pipeline-id", "9", "--from", str(FROM), "--to", str(TO), "--stdout")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(line["data"]["runId"] for line in lines) == [1, 2]
    assert all(line["attributes"] == {} and line["data"]["pipelineId"] == 9 for line in lines)
    assert any("swept" in json.loads(line)["message"] for line in result.stderr.splitlines())


def test_cli_sweep_window_s_takes_the_last_whole_window(env: dict[str, str], sim: CdfSimulator) -> None:
    """--window-s W sweeps the last whole window of W seconds before now."""
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    last = (now_ms // 86_400_000 - 1) * 86_400_000  # yesterday, 00:00 UTC
    sim.add_run(9, 1, last + 1)
    sim.add_run(9, 2, last - 1)
    result = sweep_command(env, "--pipeline-id", "9", "--window-s", "86400", "--stdout")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["data"]["runId"] for line in result.stdout.splitlines()] == [1]


def test_cli_sweep_publishes_to_the_trigger_topic(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, trigger: tuple[str, str]
) -> None:
    """Without --stdout, the run triggers go to RELAY_TRIGGER_TOPIC, with no trace attribute; exit 0."""
    for p in (1, 2):
        sim.add_run(p, 10 + p, FROM)
    result = sweep_command(env, "--from", str(FROM), "--to", str(TO))
    assert result.returncode == 0, result.stderr
    received = pubsub.drain(trigger[1], at_least=2)
    assert run_ids([r.data for r in received]) == [(1, 11), (2, 12)]
    assert all(r.attributes == {} for r in received)


@pytest.mark.parametrize(
    ("args", "needs_topic"),
    [
        pytest.param(["--window-s", "900"], True, id="no-trigger-topic"),
        pytest.param(["--window-s", "59", "--stdout"], False, id="window-too-short"),
        pytest.param(["--from", str(TO), "--to", str(FROM), "--stdout"], False, id="from-after-to"),
        pytest.param(["--from", str(FROM), "--stdout"], False, id="from-without-to"),
        pytest.param(["--window-s", "900", "--from", "1", "--to", "2", "--stdout"], False, id="both-forms"),
        pytest.param(["--stdout"], False, id="no-window"),
        pytest.param(["--window-s", "900", "--pipeline-id", "0", "--stdout"], False, id="bad-pipeline-id"),
        pytest.param(["--window-s", "900", "--project", "prod", "--stdout"], False, id="project-not-allowed"),
    ],
)
def test_cli_sweep_usage_and_config_errors_exit_2(
    env: dict[str, str], sim: CdfSimulator, args: list[str], needs_topic: bool
) -> None:
    """A bad window, id or project, or no RELAY_TRIGGER_TOPIC without --stdout, exits 2 before asking CDF."""
    result = sweep_command(env, *args)
    assert result.returncode == 2, result.stderr
    if needs_topic:
        assert "RELAY_TRIGGER_TOPIC" in result.stdout + result.stderr
    assert sim.requests == []


def test_cli_sweep_refused_exits_1(env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics) -> None:
    """CDF refusing the sweep: its run.failed is emitted and the command exits 1."""
    sim.add_pipeline(9)
    sim.script_list(9, [Step.error(403)])
    result = sweep_command(env, "--pipeline-id", "9", "--from", str(FROM), "--to", str(TO), "--stdout")
    assert result.returncode == 1, result.stderr
    [line] = [json.loads(line) for line in result.stdout.splitlines()]
    assert line["attributes"]["ce-id"] == f"demo/9/sweep/{FROM}-{TO}/failed/access_denied"


def test_cli_sweep_unconfirmed_exits_3(env: dict[str, str], sim: CdfSimulator) -> None:
    """A trigger topic that does not exist: Pub/Sub confirms nothing, exit 3."""
    sim.add_run(9, 1, FROM)
    env = {**env, "RELAY_TRIGGER_TOPIC": f"projects/{GCP_PROJECT}/topics/no-such-topic"}
    result = sweep_command(env, "--pipeline-id", "9", "--from", str(FROM), "--to", str(TO))
    assert result.returncode == 3, result.stderr


# --- helpers ---------------------------------------------------------------------------------------------------


def _parse(body: dict[str, Any]) -> Any:
    message = pubsub_message(body)
    return parse_event("e", {"message": message}, default_project="demo", allowed=ALLOWED)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _ms(clock: str) -> int:
    """Epoch ms of ``HH:MM`` on 2024-10-29 (UTC), or of a full ISO date-time."""
    text = clock if "T" in clock else f"2024-10-29T{clock}"
    return epoch_ms(datetime.fromisoformat(text + ":00+00:00"))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _lines(capfd: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]


def _summary(capfd: pytest.CaptureFixture[str]) -> dict[str, Any]:
    [summary] = [line for line in _lines(capfd) if "outcome" in line]
    return summary
