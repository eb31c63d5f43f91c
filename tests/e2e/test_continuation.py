"""Continuations through real functions-framework processes: a run too large for one invocation, continued.

A short ``INVOCATION_TIMEOUT_S``, the trigger topic delivered back to the
function as Eventarc would (``tests.support.eventarc``); then SIGKILL in the
middle of a continuation. The format and the walk over a body, and the function
in-process: ``tests/core/test_continuation.py``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from sim import CdfSimulator, Step, stream_run_body
from tests.conftest import PubSub, wait_for
from tests.core.test_continuation import TRACE_ID, TRACEPARENT, _slow
from tests.e2e.test_crash import Collector, instance, kill_instance
from tests.support.eventarc import Bridge

MATCHES = 6_000
TIMEOUT_S = 5.0


def _expected() -> set[str]:
    return {f"demo/1/456/match/{i}" for i in range(MATCHES)} | {"demo/1/456/run"}


def _process_env(env: dict[str, str], events: str) -> dict[str, str]:
    return (
        os.environ
        | env
        | {
            "RELAY_TOPIC": events,
            "INVOCATION_TIMEOUT_S": str(TIMEOUT_S),
            "POLL_BUDGET_S": "3",
            "THREADS": "4",
            "LOG_LEVEL": "INFO",
        }
    )


def test_large_run_completes_over_continuations_without_overrunning(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, tmp_path: Path
) -> None:
    """Every event arrives once a run spans several invocations, none answers late, run.completed comes last."""
    chunks = list(stream_run_body(MATCHES, job_id=456, chunk_size=16 * 1024))
    sim.set_run(1, 456, [_slow(chunks, 8.0), Step.stream(lambda: iter(chunks))])
    events, events_sub = pubsub.topic("events")
    trigger, trigger_sub = pubsub.topic("trigger")
    pubsub.publisher.publish(trigger, json.dumps({"pipelineId": 1, "runId": 456}).encode(), traceparent=TRACEPARENT)
    received: list[Any] = []
    with instance(_process_env(env, events), tmp_path / "function.log") as (_, url):
        bridge = Bridge(pubsub, trigger, trigger_sub, url)
        with bridge.running():
            deadline = time.monotonic() + 120
            while not _expected() <= {r.attributes["ce-id"] for r in received} and time.monotonic() < deadline:
                received += pubsub.drain(events_sub, seconds=5)
            wait_for(lambda: any(d.status == 200 and "continuation" in d.body for d in bridge.deliveries), 30)
    by_id = {r.attributes["ce-id"]: r for r in received}
    assert set(by_id) == _expected()
    assert all(d.seconds < TIMEOUT_S for d in bridge.deliveries), [d.seconds for d in bridge.deliveries]
    continuations = [d for d in bridge.deliveries if "continuation" in d.body]
    assert continuations
    assert all(d.attributes.get("traceparent", "").split("-")[1] == TRACE_ID for d in continuations)
    completed = by_id["demo/1/456/run"]
    assert completed.data["matchCount"] == MATCHES
    assert [r for r in received if r.attributes["ce-subject"] == "run"] == [completed]  # published once
    assert completed.publish_time >= max(r.publish_time for r in received)
    assert {r.attributes["ce-traceparent"].split("-")[1] for r in received} == {TRACE_ID}


def test_sigkill_during_a_continuation_then_redelivery_loses_nothing(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, tmp_path: Path
) -> None:
    """An instance killed while serving a continuation loses nothing: the continuation comes back and completes."""
    chunks = list(stream_run_body(MATCHES, job_id=456, chunk_size=16 * 1024))
    sim.set_run(1, 456, [_slow(chunks, 8.0), _slow(chunks, 8.0), Step.stream(lambda: iter(chunks))])
    events, events_sub = pubsub.topic("events")
    trigger, trigger_sub = pubsub.topic("trigger")
    pubsub.publisher.publish(trigger, json.dumps({"pipelineId": 1, "runId": 456}).encode())
    collector = Collector(pubsub, events_sub)
    process_env = _process_env(env, events)
    try:
        with instance(process_env, tmp_path / "first.log") as (process, url):
            bridge = Bridge(pubsub, trigger, trigger_sub, url)
            with bridge.running():
                wait_for(lambda: len(sim.cdf_requests()) >= 2 and collector.received > 0, 60)
                time.sleep(1.0)  # into the continuation's segment (its body takes 8 s), then pull the plug
                kill_instance(process)
                with instance(process_env, tmp_path / "second.log") as (_, second):
                    bridge.point_at(second)
                    collector.settle(_expected())
        assert collector.ids() == _expected()
        assert None in bridge.answers()  # the continuation's first delivery was cut off by the kill
        assert collector.events["demo/1/456/run"]["matchCount"] == MATCHES
    finally:
        collector.stop()
