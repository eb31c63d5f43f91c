"""One measurement in a fresh process, so its peak RSS is its own.

``python -m bench.one MODE N`` with ``CDF_URL``/``CDF_TOKEN``/``RELAY_TOPIC``/
``PUBSUB_EMULATOR_HOST`` set; prints one JSON line: events, seconds, peak RSS.

- ``relay``: matchrelay as deployed: the trigger POSTed to the function (loaded by
  functions-framework, warmed by one small run) until it answers 200.
- ``client``: the same messages in a bare loop through google-cloud-pubsub's
  high-level ``PublisherClient`` (matchrelay's old batch and flow settings); only
  the publishing is timed.
- ``requests``: the same messages as raw Publish requests through the client's own
  GAPIC ``api.publish``, 1,000 messages a request, four in flight; building the
  requests is timed with them (a caller has to).
- ``naive``: load the whole body, build every event, publish one at a time and
  wait for each (stopped after ``NAIVE_LIMIT`` events, then extrapolated).
- ``stages``: CPU µs per event of each stage alone (parse, build, publish), in this
  process, threads included.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from handlers.cdf.results import RunBody
from handlers.core.events import Event, RunRef
from handlers.core.normalize import completed_event, stream_events
from handlers.core.poll import summary_of
from handlers.process.settings import load_settings
from handlers.pubsub.publish import PubSubSink

NAIVE_LIMIT = 5_000
WARM_RUN = 1  # run 1 of pipeline 1: a small run the relay mode publishes before timing


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: on Linux that keeps the high-water mark of the
    parent's forked image across exec, so it showed the bench driver's in-memory bodies, not ours."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trigger(client: Any, run_id: int) -> int:
    """POST run ``run_id``'s trigger as Eventarc does (binary mode); the status code."""
    import base64

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    data = base64.b64encode(json.dumps({"pipelineId": 1, "runId": run_id}).encode()).decode()
    message = {"data": data, "attributes": {}, "messageId": f"bench-{run_id}-{time.time_ns()}", "publishTime": stamp}
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/matchrelay-bench/topics/trigger",
        "ce-id": message["messageId"],
        "ce-time": stamp,
        "Content-Type": "application/json",
    }
    body = {"message": message, "subscription": "projects/matchrelay-bench/subscriptions/eventarc"}
    return int(client.post("/", headers=headers, data=json.dumps(body)).status_code)


def relay(n: int) -> dict[str, float]:
    from functions_framework import create_app as create

    make: Any = create
    app = make(target="on_run_message", source="main.py", signature_type="cloudevent").test_client()
    assert trigger(app, WARM_RUN) == 200  # an instance that has served a run: client and channel built
    started, cpu = time.perf_counter(), time.process_time()
    assert trigger(app, n) == 200
    seconds = time.perf_counter() - started
    return {"events": n + 2 * max(1, n // 10_000) + 1, "seconds": seconds, "cpu_s": time.process_time() - cpu}


def body_chunks(n: int) -> list[bytes]:
    settings = load_settings()
    url = f"{settings.base_url}/api/v1/projects/demo/context/entitymatching/pipelines/1/runs/{n}"
    token = settings.cdf_token.get_secret_value() if settings.cdf_token else ""
    content = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=600).content
    return [content[i : i + 65536] for i in range(0, len(content), 65536)]


def build(chunks: list[bytes], n: int) -> Iterator[Event]:
    """The run's events as matchrelay builds them, ``run.completed`` last."""
    body = RunBody(iter(chunks))
    summary = summary_of(body.header())
    ref = RunRef(load_settings().base_url, "demo", 1, n)
    yield from stream_events(ref, summary, body)
    c = body.counts
    yield completed_event(ref, summary_of(body.fields), (c["matches"], c["suggestedRules"], c["generatedRules"]))


def client(n: int) -> dict[str, float]:
    from bench.baselines import high_level_client

    events, topic = list(build(body_chunks(n), n)), load_settings().topic()
    publisher = high_level_client()
    publisher.publish(topic, b"{}").result()  # channel up
    started = time.perf_counter()
    futures = [publisher.publish(topic, e.data, **e.attributes) for e in events]
    for future in futures:
        future.result()
    return {"events": len(events), "seconds": time.perf_counter() - started}


def requests(n: int) -> dict[str, float]:
    from google.cloud import pubsub_v1
    from google.pubsub_v1 import types

    events, topic = list(build(body_chunks(n), n)), load_settings().topic()
    api = pubsub_v1.PublisherClient().api
    api.publish(request=types.PublishRequest(topic=topic, messages=[types.PubsubMessage(data=b"{}")]))
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        pending: list[Any] = []
        for k in range(0, len(events), 1000):
            messages = [types.PubsubMessage(data=e.data, attributes=e.attributes) for e in events[k : k + 1000]]
            pending.append(pool.submit(api.publish, request=types.PublishRequest(topic=topic, messages=messages)))
            if len(pending) >= 8:  # four sending, four built and waiting
                pending.pop(0).result()
        for future in pending:
            future.result()
    return {"events": len(events), "seconds": time.perf_counter() - started}


def naive(n: int) -> dict[str, float]:
    from bench.baselines import high_level_client

    publisher, topic = high_level_client(), load_settings().topic()
    started = time.perf_counter()
    events = list(build(body_chunks(n), n))
    sent = 0
    for event in events[:NAIVE_LIMIT]:
        publisher.publish(topic, event.data, **event.attributes).result()
        sent += 1
    seconds = time.perf_counter() - started
    # Extrapolate the per-event publish rate to the whole run (the load/build part was timed in full).
    return {"events": len(events), "seconds": seconds * len(events) / sent if sent < len(events) else seconds}


def stages(n: int) -> dict[str, float]:
    """CPU per event of parsing alone, parsing and building, and publishing built events (threads included)."""
    chunks, topic = body_chunks(n), load_settings().topic()
    cpu = time.process_time()
    body = RunBody(iter(chunks))
    body.header()
    items = sum(1 for _ in body.items())
    parse = time.process_time() - cpu
    cpu = time.process_time()
    events = list(build(chunks, n))
    built = time.process_time() - cpu
    sink = PubSubSink()
    sink.publish(topic, [])
    cpu = time.process_time()
    sink.publish(topic, iter(events))
    publish = time.process_time() - cpu
    per = 1e6 / len(events)
    return {
        "events": len(events),
        "items": items,
        "parse_us": parse * 1e6 / items,
        "build_us": (built - parse) * per,
        "publish_us": publish * per,
    }


def main() -> None:
    mode, n = sys.argv[1], int(sys.argv[2])
    result: dict[str, object] = {"mode": mode, "n": n}
    modes = {"relay": relay, "client": client, "requests": requests, "naive": naive, "stages": stages}
    result |= modes[mode](n)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
