"""Contract v2 figure (b): one run split by continuations, against the same run uncut.

A completed run of ``N`` matches, served by a functions-framework process with
INVOCATION_TIMEOUT_S=8 (POLL_BUDGET_S=6) and RELAY_TRIGGER_TOPIC set: each
continuation trigger it publishes is pulled from the trigger topic's
subscription and POSTed back as Eventarc would. Then the same run in a process
with the default timeout, uncut. The difference is what re-reading the body from
the start and skipping the confirmed items costs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx

from bench.instance import eventarc, serving
from sim import CdfSimulator, Step, stream_run_body

N = 1_000_000
RUN = 20_000_001
TIMEOUT_S, BUDGET_S = "8", "6"


def measure(sim: CdfSimulator, env: dict[str, str], n: int = N) -> dict[str, float]:
    from google.cloud import pubsub_v1

    body = b"".join(stream_run_body(n, max(1, n // 10_000), max(1, n // 10_000), job_id=RUN))
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    sim.set_run(1, RUN, [Step.stream(lambda: iter(chunks))])
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    trigger = publisher.topic_path("matchrelay-bench", f"trigger-{os.getpid()}")
    subscription = subscriber.subscription_path("matchrelay-bench", f"trigger-{os.getpid()}")
    publisher.create_topic(name=trigger)
    subscriber.create_subscription(name=subscription, topic=trigger, ack_deadline_seconds=60)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "matchrelay-bench-continued.log"
    cut = env | {"INVOCATION_TIMEOUT_S": TIMEOUT_S, "POLL_BUDGET_S": BUDGET_S, "RELAY_TRIGGER_TOPIC": trigger}
    with serving(cut, log) as (_, url):
        _warm(sim, url)
        segments, seconds = _segments(url, subscriber, subscription)
    with serving(env, log) as (_, url):
        _warm(sim, url)
        started = time.monotonic()
        assert _post(url, {"pipelineId": 1, "runId": RUN}, "uncut", {}) == 200
        uncut = time.monotonic() - started
    return {"n": n, "segments": segments, "seconds": seconds, "uncut_s": uncut}


def _segments(url: str, subscriber: Any, subscription: str) -> tuple[int, float]:
    """POST the trigger, then each continuation the function publishes; (segments served, seconds in all)."""
    started, segments = time.monotonic(), 0
    body: Any = {"pipelineId": 1, "runId": RUN}
    message_id, attributes = "segment-0", dict[str, str]()
    while body is not None:
        status = _post(url, body, message_id, attributes)
        segments += 1
        if status != 200:
            raise SystemExit(f"bench: segment {segments} answered {status}")
        body = None
        response = subscriber.pull(request={"subscription": subscription, "max_messages": 1}, timeout=10)
        for received in response.received_messages:
            body, message_id = received.message.data, received.message.message_id
            attributes = dict(received.message.attributes)
            subscriber.acknowledge(request={"subscription": subscription, "ack_ids": [received.ack_id]})
    return segments, time.monotonic() - started


def _warm(sim: CdfSimulator, url: str) -> None:
    sim.set_run(1, RUN - 1, [Step.stream(lambda: iter([b"".join(stream_run_body(10, job_id=RUN - 1))]))])
    assert _post(url, {"pipelineId": 1, "runId": RUN - 1}, f"warm-{time.time_ns()}", {}) == 200


def _post(url: str, body: Any, message_id: str, attributes: dict[str, str]) -> int:
    headers, content = eventarc(body, f"{message_id}-{time.time_ns()}", attributes)
    return httpx.post(url, headers=headers, content=content, timeout=600).status_code


def report(r: dict[str, float]) -> None:
    extra = r["seconds"] - r["uncut_s"]
    print(
        f"\ncontinuations: {r['n']:,.0f} matches with INVOCATION_TIMEOUT_S={TIMEOUT_S} (POLL_BUDGET_S={BUDGET_S}): "
        f"{r['segments']:.0f} segments, {r['seconds']:.1f} s in all (continuation round trips included); uncut "
        f"{r['uncut_s']:.1f} s; re-reading and skipping cost {extra:.1f} s ({extra / r['uncut_s']:.0%}), "
        f"{extra / max(1, r['segments'] - 1):.2f} s per continuation"
    )
