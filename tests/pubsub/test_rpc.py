"""The Publish RPC path on the real emulator: the same bytes as Google's client, a stopped Pub/Sub handed back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from handlers.core.deadline import Deadline
from handlers.core.encode import MAX_DATA_BYTES
from handlers.core.errors import PublishFailed
from handlers.core.events import Event, RunRef
from handlers.core.models import RunSummary
from handlers.core.normalize import completed_event, counts, failed_event, match_event, results_events
from handlers.core.rules import generated_rule_events
from handlers.pubsub.publish import PubSubSink
from sim import make_run
from sim.emulator import Emulator
from sim.rules import heavy_rule
from tests.conftest import ROOT, PubSub
from tests.support.contract import PUBSUB_MAX_MESSAGE, RULE_DEFINITION_FIELDS, rule_problems

REF = RunRef("https://westeurope-1.cognitedata.com", "demo", 7, 456)
SUMMARY = RunSummary.model_validate(
    {"status": "Completed", "createdTime": 1, "startTime": 2, "statusTime": 1730204406000, "jobId": 456}
)


def every_kind() -> list[Event]:
    """Matches (unicode, escapes, large ids), rules of both shapes split into parts, run.completed and run.failed."""
    body = make_run(300, 3, 3, rule_size=40)
    events = list(results_events(REF, SUMMARY, body, max_bytes=2000))
    assert any("/part/" in e.attributes["ce-subject"] for e in events)
    assert any(b'"extractors":' in e.data and b'"part":' in e.data for e in events)  # a definition on a part
    odd = {"matchType": "精确 ✓" * 200, "score": 1e-05, "source": {"id": 1, "name": "\ud800 lone"}, "target": {}}
    events.append(match_event(REF, SUMMARY, 300, odd))
    events.append(completed_event(REF, SUMMARY, counts(body)))
    events.append(failed_event(REF, "run_failed", "ø failed", SUMMARY, 1730204406000))
    return events


def received(pubsub: PubSub, subscription: str, n: int) -> list[tuple[str, bytes, dict[str, str]]]:
    got = pubsub.drain(subscription, at_least=n)
    return sorted((m.attributes["ce-id"], m.raw, m.attributes) for m in got)


def test_publish_wire_messages_are_byte_identical_to_the_clients(pubsub: PubSub) -> None:
    """Every kind of event arrives with the same data bytes and attributes as through google-cloud-pubsub."""
    events = every_kind()
    old_topic, old_sub = pubsub.topic("old")
    new_topic, new_sub = pubsub.topic("new")
    futures = [pubsub.publisher.publish(old_topic, e.data, **e.attributes) for e in events]
    for future in futures:
        future.result(60)
    assert PubSubSink().publish(new_topic, iter(events)) == len(events)
    old, new = received(pubsub, old_sub, len(events)), received(pubsub, new_sub, len(events))
    assert len(new) == len(events)
    assert new == old
    assert new == sorted((e.attributes["ce-id"], e.data, e.attributes) for e in events)


def test_publish_wire_rule_whose_definition_fills_a_message_arrives_in_parts(pubsub: PubSub) -> None:
    """A rule that fits one message without its definition but not with it arrives in parts under Pub/Sub's limit,
    byte-identical to the client's, that rebuild CDF's rule."""
    rule = heavy_rule(MAX_DATA_BYTES)
    events = generated_rule_events(REF, SUMMARY, 0, rule)
    assert len(events) >= 2
    old_topic, old_sub = pubsub.topic("heavy-old")
    new_topic, new_sub = pubsub.topic("heavy-new")
    for event in events:
        pubsub.publisher.publish(old_topic, event.data, **event.attributes).result(120)
    assert PubSubSink().publish(new_topic, iter(events)) == len(events)
    old, new = received(pubsub, old_sub, len(events)), received(pubsub, new_sub, len(events))
    assert new == old
    assert all(len(data) <= PUBSUB_MAX_MESSAGE for _, data, _ in new)
    datas = [json.loads(data) for _, data, _ in sorted(new, key=lambda m: int(m[0].rsplit("/", 1)[1]))]
    assert all(set(d) >= RULE_DEFINITION_FIELDS for d in datas)
    assert rule_problems("generatedrule", datas, rule) == []


def test_publish_wire_stopped_pubsub_hands_back_before_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator stopped part-way: PublishFailed, by the deadline's end, and no count returned."""
    own = Emulator()  # not the session's: stopping that one would break the other tests
    own.start(tmp_path / "emulator.log")
    try:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", own.host)
        pubsub = PubSub(own.host)
        topic, _ = pubsub.topic("stopped")
        sink = PubSubSink()

        def stopping() -> Iterator[Event]:
            for i in range(200_000):
                if i == 5_000:
                    own.stop()
                yield match_event(REF, SUMMARY, i, {"score": 0.5, "source": {"id": i}, "target": {"id": i}})

        deadline = Deadline.after(8.0, time.monotonic(), time.monotonic)
        with pytest.raises(PublishFailed):
            sink.publish(topic, stopping(), deadline)
        assert time.monotonic() < deadline.end
    finally:
        own.stop()


def test_publish_wire_sink_loads_no_grpc_until_the_first_publish() -> None:
    """Building the sink (as the runtime does at import) loads no gRPC and opens no channel."""
    probe = "import sys; from handlers.pubsub.publish import PubSubSink; PubSubSink(); print('grpc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
