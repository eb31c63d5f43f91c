"""The entry points as users meet them: import, first event, logs."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from sim import CdfSimulator, Step, make_run
from tests.conftest import ROOT, PubSub, Topics, deliver, load_app, pubsub_message

PROBE = """
import sys, main
print(json.dumps({"grpc": "grpc" in sys.modules, "pubsub": "google.cloud.pubsub_v1" in sys.modules,
                  "runtime": main._runtime is not None}))
"""


def test_main_import_builds_no_client(env: dict[str, str]) -> None:
    """Importing main loads no gRPC, no Pub/Sub client and builds no runtime (gunicorn forks after import)."""
    result = subprocess.run(
        [sys.executable, "-c", "import json\n" + PROBE],
        cwd=ROOT,
        env=env | _base_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout.splitlines()[-1]) == {"grpc": False, "pubsub": False, "runtime": False}


def test_main_import_sets_aside_what_it_imported(env: dict[str, str]) -> None:
    """Importing main freezes what it imported: a full collection then walks a few objects, not tens of thousands."""
    probe = "import gc, json, main\nprint(json.dumps([gc.get_freeze_count(), len(gc.get_objects())]))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env | _base_env(), capture_output=True, text=True, timeout=60
    )
    frozen, walked = json.loads(result.stdout.splitlines()[-1])
    assert frozen > 20_000
    assert walked < frozen / 10


def test_main_runtime_is_built_once_per_process(client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics) -> None:
    """Two messages on one instance share one runtime: one token fetch serves both."""
    sim.set_run(1, 456, [Step.run(make_run(1))])
    for _ in range(2):
        assert deliver(client, pubsub_message({"pipelineId": 1, "runId": 456})).status_code == 200
    assert len(sim.token_requests()) == 1
    assert len(pubsub.drain(topics.events_sub, at_least=4)) == 4


def test_main_logs_are_structured_with_coordinates(
    client: Any, sim: CdfSimulator, capfd: pytest.CaptureFixture[str]
) -> None:
    """Every stdout line is one JSON object with severity and message; run lines carry the coordinates."""
    sim.set_run(1, 456, [Step.status("Running"), Step.run(make_run(1))])
    message = pubsub_message({"pipelineId": 1, "runId": 456}, message_id="4242")
    deliver(client, message)
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert lines
    assert all({"severity", "message"} <= set(line) for line in lines)
    summary = [line for line in lines if line.get("outcome") == "completed"]
    assert len(summary) == 1
    assert {k: summary[0][k] for k in ("project", "pipelineId", "runId", "messageId", "polls", "events")} == {
        "project": "demo",
        "pipelineId": 1,
        "runId": 456,
        "messageId": "4242",
        "polls": 2,
        "events": 2,
    }
    assert any(line["message"].startswith("run is Running") and line["severity"] == "INFO" for line in lines)


def test_main_non_json_cloudevent_is_an_invalid_trigger(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A CloudEvent whose data is not a Pub/Sub message is answered with invalid_trigger and 200."""
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/x",
        "ce-id": "77",
        "Content-Type": "text/plain",
    }
    response = client.post("/", headers=headers, data=b"hello")
    assert response.status_code == 200
    errors = pubsub.drain(topics.errors_sub, at_least=1)
    assert [e.attributes["ce-id"] for e in errors] == ["invalid-trigger/77"]
    assert sim.requests == []


def test_main_fresh_instance_reads_settings_at_start(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings are read when the function loads, so a later change to the environment does not leak in."""
    app = load_app()
    monkeypatch.setenv("CDF_PROJECT", "changed")
    assert sys.modules["main"]._settings.cdf_project == "demo"
    assert app is not None


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
