"""``examples/subscriber.py`` against the emulator: a run relayed by the function, read the way the guide says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from sim import CdfSimulator, Step, make_run
from tests.conftest import ROOT, PubSub, Topics, deliver, pubsub_message

EXAMPLE = ROOT / "examples" / "subscriber.py"
MIN_SCORE = 0.8


def run_example(env: dict[str, str], subscription: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The example as a user runs it, with ``PUBSUB_EMULATOR_HOST`` pointing at the emulator."""
    return subprocess.run(
        [sys.executable, str(EXAMPLE), subscription, "--min-score", str(MIN_SCORE), *args],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )


def printed_ids(stdout: str) -> list[str]:
    return [line.split("\t")[-1] for line in stdout.splitlines()]


def test_subscriber_example_prints_each_match_above_the_score_once(
    client: Any, env: dict[str, str], sim: CdfSimulator, topics: Topics
) -> None:
    """With the trigger delivered twice, the example prints every match scoring at least 0.8 exactly once, no other."""
    body = make_run(30, 2, 2, job_id=456, rule_size=4)
    sim.set_run(1, 456, [Step.status("Running"), Step.run(body)])
    message = pubsub_message({"pipelineId": 1, "runId": 456})
    assert deliver(client, message).status_code == 200
    assert deliver(client, message).status_code == 200  # a redelivery: the same 35 events again
    expected = {f"demo/1/456/match/{i}" for i, m in enumerate(body["matches"]) if m["score"] >= MIN_SCORE}
    assert expected
    assert len(expected) < len(body["matches"])  # some are below the score and must not be printed

    result = run_example(env, topics.events_sub, "--timeout", "90")

    assert result.returncode == 0, result.stderr
    ids = printed_ids(result.stdout)
    assert sorted(ids) == sorted(expected)
    assert len(ids) == len(set(ids))
    for line in result.stdout.splitlines():
        score, match_type, source, target, event_id = line.split("\t")
        match = body["matches"][int(event_id.rsplit("/", 1)[1])]
        assert float(score) >= MIN_SCORE
        assert (match_type, target) == (match["matchType"], match["target"]["externalId"])
        assert source == str(match["source"].get("externalId", match["source"]["id"]))
    assert "run demo/1/456 complete: 30 matches" in result.stderr


def test_subscriber_example_counts_a_run_complete_even_if_the_summary_comes_first(
    env: dict[str, str], pubsub: PubSub, topics: Topics
) -> None:
    """Events of a run that arrive after its run.completed (as on redelivery) are still awaited and printed."""
    base = {
        "ce-specversion": "1.0",
        "ce-source": "https://example.cognitedata.com/api/v1/projects/demo/context/entitymatching/pipelines/1/runs/9",
        "ce-time": "2024-10-29T12:20:06.000Z",
        "content-type": "application/json",
        "ce-cdfproject": "demo",
        "ce-pipelineid": "1",
        "ce-runid": "9",
    }
    coordinates = {"project": "demo", "pipelineId": 1, "runId": 9, "jobId": 9}
    completed = {
        **coordinates,
        "status": "Completed",
        "createdTime": 1,
        "startTime": 2,
        "statusTime": 3,
        "matchCount": 1,
        "suggestedRuleCount": 0,
        "generatedRuleCount": 0,
        "errors": [],
    }
    match = {
        **coordinates,
        "matchIndex": 0,
        "matchType": "model",
        "score": 0.9,
        "source": {"id": 5},
        "target": {"id": 6, "externalId": "asset-6"},
        "sourceId": 5,
        "sourceExternalId": None,
        "targetId": 6,
        "targetExternalId": "asset-6",
    }
    for kind, subject, data in (("run.completed", "run", completed), ("match", "match/0", match)):
        attributes = {**base, "ce-type": f"com.cognite.entitymatching.{kind}", "ce-subject": subject}
        attributes["ce-id"] = f"demo/1/9/{subject}"
        pubsub.publisher.publish(topics.events, json.dumps(data).encode(), **attributes).result(timeout=30)

    result = run_example(env, topics.events_sub, "--timeout", "90")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "0.900\tmodel\t5\tasset-6\tdemo/1/9/match/0\n"


def test_subscriber_example_times_out_on_an_incomplete_run(
    client: Any, env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """Without run.completed the example stops at --timeout with status 1, having printed what it saw."""
    body = make_run(6)
    sim.set_run(1, 456, [Step.run(body)])
    assert deliver(client, pubsub_message({"pipelineId": 1, "runId": 456})).status_code == 200
    # Take the run.completed event away, as if it had not arrived yet.
    events = pubsub.drain(topics.events_sub, at_least=7)
    for event in events:
        if event.attributes["ce-subject"] != "run":
            pubsub.publisher.publish(topics.events, event.raw, **event.attributes).result(timeout=30)

    result = run_example(env, topics.events_sub, "--timeout", "5")

    assert result.returncode == 1, result.stderr
    expected = {f"demo/1/456/match/{i}" for i, m in enumerate(body["matches"]) if m["score"] >= MIN_SCORE}
    assert set(printed_ids(result.stdout)) <= expected
    assert "0 runs complete" in result.stderr
