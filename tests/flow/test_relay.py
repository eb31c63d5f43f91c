"""A whole run relayed: events, order, ids, redelivery, splitting, secrets.

Through the function as deployed (functions-framework), the CDF simulator and
the real Pub/Sub emulator, checking what a subscriber receives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from sim import CdfSimulator, Step, make_run
from tests.conftest import ROOT, SECRET, PubSub, Topics, deliver, load_app, pubsub_message
from tests.support.contract import COMMON_ATTRIBUTES, DATA_FIELDS, TYPE_PREFIX


def kind(event: Any) -> str:
    return str(event.attributes["ce-type"]).removeprefix(TYPE_PREFIX)


def test_relay_events_carry_every_attribute_and_field(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """Each event of a run with matches and both kinds of rules has the contract's attributes, ids and data."""
    body = make_run(4, 2, 1, job_id=456)
    sim.set_run(1, 456, [Step.run(body)])
    assert deliver(client, pubsub_message({"pipelineId": 1, "runId": 456})).status_code == 200
    events = pubsub.drain(topics.events_sub, at_least=8)
    source = f"{sim.url}/api/v1/projects/demo/context/entitymatching/pipelines/1/runs/456"
    assert len(events) == 8
    for event in events:
        a, k = event.attributes, kind(event)
        assert set(a) == COMMON_ATTRIBUTES | ({"ce-matchtype"} if k == "match" else set())
        assert (a["ce-specversion"], a["content-type"], a["ce-source"]) == ("1.0", "application/json", source)
        assert a["ce-id"] == f"demo/1/456/{a['ce-subject']}"
        assert (a["ce-cdfproject"], a["ce-pipelineid"], a["ce-runid"]) == ("demo", "1", "456")
        assert a["ce-time"] == "2024-10-29T12:20:06.000Z"
        assert set(event.data) == DATA_FIELDS[k]
        assert (event.data["project"], event.data["pipelineId"], event.data["runId"], event.data["jobId"]) == (
            "demo",
            1,
            456,
            456,
        )
    matches = sorted((e for e in events if kind(e) == "match"), key=lambda e: e.data["matchIndex"])
    for i, event in enumerate(matches):
        cdf = body["matches"][i]
        assert event.attributes["ce-subject"] == f"match/{i}"
        assert event.attributes["ce-matchtype"] == cdf["matchType"]
        assert (event.data["source"], event.data["target"], event.data["score"]) == (
            cdf["source"],
            cdf["target"],
            cdf["score"],
        )
        assert event.data["sourceId"] == cdf["source"].get("id")
        assert event.data["sourceExternalId"] == cdf["source"].get("externalId")
        assert event.data["targetExternalId"] == cdf["target"].get("externalId")
    rules = {e.attributes["ce-subject"]: e.data for e in events if "rule" in kind(e)}
    assert rules["suggestedrule/1"]["matches"] == body["suggestedRules"][1]["matches"]
    assert rules["suggestedrule/1"]["matchIndex"] == body["suggestedRules"][1]["matchIndex"]
    assert rules["generatedrule/0"]["numConflicts"] == body["generatedRules"][0]["numConflicts"]
    completed = next(e for e in events if kind(e) == "run.completed").data
    assert (completed["matchCount"], completed["suggestedRuleCount"], completed["generatedRuleCount"]) == (4, 2, 1)
    assert (completed["status"], completed["createdTime"], completed["errors"]) == (
        "Completed",
        body["createdTime"],
        [],
    )


def test_relay_run_completed_is_published_last(client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics) -> None:
    """run.completed is published after every match and rule event is confirmed."""
    sim.set_run(1, 456, [Step.run(make_run(300, 5, 5))])
    deliver(client, pubsub_message({"pipelineId": 1, "runId": 456}))
    events = pubsub.drain(topics.events_sub, at_least=311)
    completed = [e for e in events if kind(e) == "run.completed"]
    assert len(events) == 311
    assert len(completed) == 1
    assert completed[0].publish_time >= max(e.publish_time for e in events if e is not completed[0])


def test_relay_completed_run_with_errors_still_publishes(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A Completed run with errors publishes its results, and run.completed carries the errors."""
    sim.set_run(1, 456, [Step.run(make_run(2, errors=["target 7 skipped", "ünïcode ⚠"]))])
    assert deliver(client, pubsub_message({"pipelineId": 1, "runId": 456})).status_code == 200
    events = pubsub.drain(topics.events_sub, at_least=3)
    assert sorted(kind(e) for e in events) == ["match", "match", "run.completed"]
    assert next(e for e in events if kind(e) == "run.completed").data["errors"] == ["target 7 skipped", "ünïcode ⚠"]
    assert pubsub.drain(topics.errors_sub) == []


@pytest.mark.parametrize("mode", ["binary", "structured", "push"])
def test_relay_redelivered_trigger_gives_identical_ids(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, mode: str
) -> None:
    """The same trigger delivered twice publishes the same events with the same ce-ids and data."""
    sim.set_run(1, 456, [Step.run(make_run(3, 1, 1))])
    message = pubsub_message({"pipelineId": 1, "runId": 456})
    first = [deliver(client, message, mode).status_code, pubsub.drain(topics.events_sub, at_least=6)]
    second = [deliver(client, message, mode).status_code, pubsub.drain(topics.events_sub, at_least=6)]
    assert first[0] == second[0] == 200
    assert sorted((e.attributes["ce-id"], e.raw) for e in first[1]) == sorted(
        (e.attributes["ce-id"], e.raw) for e in second[1]
    )
    assert len({e.attributes["ce-id"] for e in first[1]}) == 6


def test_relay_publish_failure_hands_back_and_redelivery_completes(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, pubsub: PubSub
) -> None:
    """When Pub/Sub cannot take the events the function answers non-2xx; the redelivery publishes them all."""
    missing = f"projects/matchrelay-test/topics/late-{id(sim)}"
    monkeypatch.setenv("RELAY_TOPIC", missing)
    client = load_app().test_client()
    sim.set_run(1, 456, [Step.run(make_run(3))])
    message = pubsub_message({"pipelineId": 1, "runId": 456})
    assert deliver(client, message).status_code == 503
    pubsub.publisher.create_topic(name=missing)
    sub = missing.replace("/topics/", "/subscriptions/") + "-sub"
    pubsub.subscriber.create_subscription(name=sub, topic=missing)
    assert deliver(client, message).status_code == 200
    assert sorted(e.attributes["ce-subject"] for e in pubsub.drain(sub, at_least=4)) == [
        "match/0",
        "match/1",
        "match/2",
        "run",
    ]


def test_relay_oversized_rule_is_split_into_parts(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A suggested rule larger than one Pub/Sub message arrives as parts under 10 MB that rebuild it."""
    body = make_run(2, 1, 0)
    rule_match = {
        "sourceKeyField": "name",
        "targetKeyField": "name",
        "existingMatchType": "model",
        "consistentMatch": True,
        "source": {"name": "s" * 2000},
        "target": {"name": "t" * 2000},
    }
    body["suggestedRules"][0]["matches"] = [dict(rule_match, source={"id": i, "name": "s" * 2000}) for i in range(6000)]
    sim.set_run(1, 456, [Step.run(body)])
    assert deliver(client, pubsub_message({"pipelineId": 1, "runId": 456})).status_code == 200
    parts = sorted(
        (e for e in pubsub.drain(topics.events_sub, at_least=4) if kind(e) == "suggestedrule"),
        key=lambda e: e.data["part"],
    )
    assert len(parts) >= 3
    assert all(len(p.raw) < 10_000_000 for p in parts)
    assert [p.attributes["ce-subject"] for p in parts] == [f"suggestedrule/0/part/{k}" for k in range(len(parts))]
    assert {p.data["partCount"] for p in parts} == {len(parts)}
    assert [m for p in parts for m in p.data["matches"]] == body["suggestedRules"][0]["matches"]


def test_relay_latest_resolves_the_run_id(client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics) -> None:
    """runId "latest" asks for the latest (not skipped) run and publishes under its jobId."""
    sim.set_latest(1, [Step.status("Running", job_id=777)])
    sim.set_run(1, 777, [Step.run(make_run(1, job_id=777))])
    message = pubsub_message({"pipelineId": 1, "runId": "latest"})
    assert deliver(client, message).status_code == 200
    assert sim.cdf_requests()[0].path.endswith("/pipelines/1/runs/latest")
    assert sim.cdf_requests()[0].query == {"includeSkipped": "false"}
    events = pubsub.drain(topics.events_sub, at_least=2)
    assert sorted(e.attributes["ce-id"] for e in events) == ["demo/1/777/match/0", "demo/1/777/run"]


def test_relay_latest_without_runs_is_run_not_found(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A pipeline with no latest run gives run.failed with reason run_not_found."""
    sim.set_latest(1, [Step.error(404, "No runs")])
    message = pubsub_message({"pipelineId": 1, "runId": "latest"})
    assert deliver(client, message).status_code == 200
    errors = pubsub.drain(topics.errors_sub, at_least=1)
    assert [e.attributes["ce-reason"] for e in errors] == ["run_not_found"]
    assert "ce-runid" not in errors[0].attributes
    # Keyed by the message until resolved: distinct failures keep distinct ids, a redelivery the same one.
    assert errors[0].attributes["ce-id"] == f"demo/1/latest/{message['messageId']}/run/failed/run_not_found"
    assert errors[0].attributes["ce-source"].endswith("/pipelines/1/runs/latest")


def test_relay_secrets_never_reach_logs_or_events(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, capfd: pytest.CaptureFixture[str]
) -> None:
    """Neither the client secret nor any issued token appears in the logs or the events of a run."""
    sim.set_run(1, 456, [Step.error(503), Step.run(make_run(2))])
    sim.set_run(1, 457, [Step.error(403, "denied")])
    deliver(client, pubsub_message({"pipelineId": 1, "runId": 456}))
    deliver(client, pubsub_message({"pipelineId": 1, "runId": 457}))
    captured = capfd.readouterr()
    output = captured.out + captured.err
    published = b"".join(
        e.raw + json.dumps(e.attributes).encode()
        for e in pubsub.drain(topics.events_sub, at_least=3) + pubsub.drain(topics.errors_sub)
    )
    tokens = {r.headers["authorization"].split()[-1] for r in sim.cdf_requests()}
    assert tokens
    for secret in (SECRET, *tokens):
        assert secret not in output
        assert secret.encode() not in published
    assert all(json.loads(line)["severity"] for line in captured.out.splitlines())


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", "run", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_relay_cli_stdout_prints_events_and_exits_0(env: dict[str, str], sim: CdfSimulator) -> None:
    """`run --stdout` prints one JSON line per event, logs to stderr, and exits 0 on a completed run."""
    sim.set_run(1, 456, [Step.status("Running"), Step.run(make_run(2, 1))])
    result = run_cli(["--pipeline-id", "1", "--run-id", "456", "--stdout"], env | _path_env())
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0, result.stderr
    assert [line["attributes"]["ce-subject"] for line in lines] == ["match/0", "match/1", "suggestedrule/0", "run"]
    assert lines[0]["data"]["matchIndex"] == 0
    assert all(json.loads(line)["severity"] for line in result.stderr.splitlines())


def test_relay_cli_failed_run_exits_1(env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics) -> None:
    """`run` publishes run.failed to the error topic and exits 1 for a failed run."""
    sim.set_run(2, 789, [Step.run(make_run(0, status="Failed", error_message="boom"))])
    result = run_cli(["--pipeline-id", "2", "--run-id", "789"], env | _path_env())
    assert result.returncode == 1, result.stderr
    errors = pubsub.drain(topics.errors_sub, at_least=1)
    assert [(e.attributes["ce-id"], e.data["errorMessage"]) for e in errors] == [
        ("demo/2/789/run/failed/run_failed", "boom")
    ]


def test_relay_cli_replay_gives_the_same_ids(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """Running the command twice on a finished run publishes the same events with the same ids (a replay)."""
    sim.set_run(1, 456, [Step.run(make_run(2))])
    runs = [run_cli(["--pipeline-id", "1", "--run-id", "456"], env | _path_env()) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0]
    ids = sorted(e.attributes["ce-id"] for e in pubsub.drain(topics.events_sub, at_least=6))
    assert ids == sorted(["demo/1/456/match/0", "demo/1/456/match/1", "demo/1/456/run"] * 2)


def _path_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PUBSUB_EMULATOR_HOST")}


def test_relay_replay_after_access_denied_gets_its_own_ids(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A run refused with access_denied and replayed after the fix gets a run.completed no deduplicator drops."""
    sim.set_run(1, 456, [Step.error(403, "insufficient access")])
    assert deliver(client, pubsub_message({"pipelineId": 1, "runId": 456})).status_code == 200
    sim.set_run(1, 456, [Step.run(make_run(2, job_id=456))])
    assert deliver(client, pubsub_message({"pipelineId": 1, "runId": 456})).status_code == 200
    failed = pubsub.drain(topics.errors_sub, at_least=1)
    events = pubsub.drain(topics.events_sub, at_least=3)
    assert [e.attributes["ce-id"] for e in failed] == ["demo/1/456/run/failed/access_denied"]
    assert {e.attributes["ce-id"] for e in events} == {"demo/1/456/match/0", "demo/1/456/match/1", "demo/1/456/run"}
    assert [kind(e) for e in events if e.attributes["ce-subject"] == "run"] == ["run.completed"]
