"""The function behind a push subscription set as deploy/push.tf sets the trigger's: Pub/Sub (the emulator) pushes
each trigger message to the function's URL as a raw push body, with the module's ack deadline, retry policy and
dead-letter policy, exactly as a deployment with trigger = "push" delivers it. No Eventarc envelope anywhere."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

from sim import CdfSimulator, Step, make_run
from tests.conftest import GCP_PROJECT, ROOT, PubSub, Topics, function_process, wait_for


def _module_push_settings() -> dict[str, Any]:
    """push.tf's settings of the trigger's push subscription."""
    options = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
    with (ROOT / "deploy" / "push.tf").open() as f:
        parsed = hcl2.load(f, serialization_options=options)
    local_values = {key: value for entry in parsed["locals"] for key, value in entry.items()}
    return {
        "ack_deadline_seconds": local_values["push_ack_deadline_s"],
        "minimum_backoff_s": int(local_values["push_min_backoff"].removesuffix("s")),
        "maximum_backoff_s": int(local_values["push_max_backoff"].removesuffix("s")),
        "retention_s": int(local_values["push_retention"].removesuffix("s")),
    }


PUSH = _module_push_settings()


def push_subscription(pubsub: PubSub, topic: str, url: str, dead_letter_topic: str) -> str:
    """The trigger topic's push subscription to url, with push.tf's settings (OIDC as the invoker, as deployed)."""
    name: str = pubsub.subscriber.subscription_path(GCP_PROJECT, f"trigger-push-{uuid.uuid4().hex[:12]}")
    pubsub.subscriber.create_subscription(
        request={
            "name": name,
            "topic": topic,
            "push_config": {
                "push_endpoint": url,
                "oidc_token": {"service_account_email": f"matchrelay-invoker@{GCP_PROJECT}.iam.gserviceaccount.com"},
            },
            "ack_deadline_seconds": PUSH["ack_deadline_seconds"],
            "retry_policy": {
                "minimum_backoff": {"seconds": PUSH["minimum_backoff_s"]},
                "maximum_backoff": {"seconds": PUSH["maximum_backoff_s"]},
            },
            "dead_letter_policy": {"dead_letter_topic": dead_letter_topic, "max_delivery_attempts": 100},
            "message_retention_duration": {"seconds": PUSH["retention_s"]},
        }
    )
    return name


@pytest.fixture
def trigger_topic(pubsub: PubSub) -> tuple[str, str]:
    """A trigger topic and a dead-letter topic, as the deployment has them (without subscriptions of their own)."""
    topics = []
    for prefix in ("trigger", "dead-letter"):
        topic = pubsub.publisher.topic_path(GCP_PROJECT, f"{prefix}-{uuid.uuid4().hex[:12]}")
        pubsub.publisher.create_topic(name=topic)
        topics.append(topic)
    return topics[0], topics[1]


def summaries(log: Path) -> list[dict[str, Any]]:
    """The function's summary lines (one per invocation), in order."""
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"outcome"' in line:
            lines.append(json.loads(line))
    return lines


def test_push_subscription_settings_are_the_modules() -> None:
    """The subscription below takes push.tf's own values: 600 s, backoff from 10 s to 600 s, a day's retention."""
    assert PUSH == {
        "ack_deadline_seconds": 600,
        "minimum_backoff_s": 10,
        "maximum_backoff_s": 600,
        "retention_s": 86400,
    }


def test_push_delivers_raw_push_bodies_and_the_function_relays_the_run(
    env: dict[str, str],
    sim: CdfSimulator,
    pubsub: PubSub,
    topics: Topics,
    trigger_topic: tuple[str, str],
    tmp_path: Path,
) -> None:
    """A trigger published to the topic is pushed to the function, which publishes the run's events and acks it."""
    topic, dead_letter = trigger_topic
    body = make_run(12, 1, 1, job_id=456)
    sim.set_run(1, 456, [Step.run(body)])
    log = tmp_path / "function.log"
    with function_process({**env, "RELAY_TRIGGER_TOPIC": topic, "PYTHONUNBUFFERED": "1"}, log) as (_, url):
        push_subscription(pubsub, topic, url, dead_letter)
        message_id = pubsub.publisher.publish(topic, json.dumps({"pipelineId": 1, "runId": 456}).encode()).result(30)
        events = pubsub.drain(topics.events_sub, at_least=12 + 3)
        wait_for(lambda: any(line.get("outcome") == "completed" for line in summaries(log)), 60)
    ids = [event.attributes["ce-id"] for event in events]
    assert sorted(set(ids)) == sorted(ids), "one delivery, each event once"
    assert len(ids) == 12 + 1 + 1 + 1
    assert ids.index("demo/1/456/run") == len(ids) - 1, "run.completed comes after every other event is confirmed"
    (summary,) = summaries(log)
    assert (summary["outcome"], summary["messageId"], summary["events"]) == ("completed", message_id, 15)


def test_push_hands_a_running_run_back_and_pubsub_pushes_it_again_until_it_completes(
    env: dict[str, str],
    sim: CdfSimulator,
    pubsub: PubSub,
    topics: Topics,
    trigger_topic: tuple[str, str],
    tmp_path: Path,
) -> None:
    """A 503 for a run still going makes Pub/Sub push the same message again after its backoff; then it completes."""
    topic, dead_letter = trigger_topic
    body = make_run(3, job_id=457)
    sim.set_run(1, 457, [Step.status("Running", job_id=457), Step.run(body)])
    log = tmp_path / "function.log"
    settings = {**env, "RELAY_TRIGGER_TOPIC": topic, "POLL_BUDGET_S": "0.01", "PYTHONUNBUFFERED": "1"}
    with function_process(settings, log) as (_, url):
        push_subscription(pubsub, topic, url, dead_letter)
        message_id = pubsub.publisher.publish(topic, json.dumps({"pipelineId": 1, "runId": 457}).encode()).result(30)
        wait_for(lambda: any(line.get("outcome") == "completed" for line in summaries(log)), 120)
        events = pubsub.drain(topics.events_sub, at_least=3 + 1)
    outcomes = [(line["outcome"], line["reason"], line["messageId"]) for line in summaries(log)]
    assert outcomes[0] == ("handed_back", "budget_exhausted", message_id)
    assert outcomes[-1] == ("completed", None, message_id)
    assert {event.attributes["ce-id"] for event in events} == {
        *(f"demo/1/457/match/{i}" for i in range(3)),
        "demo/1/457/run",
    }
