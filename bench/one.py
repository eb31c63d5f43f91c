"""One measurement in a fresh process, so its peak RSS is its own.

``python -m bench.one MODE N`` with ``CDF_URL``/``CDF_TOKEN``/``RELAY_TOPIC``/
``PUBSUB_EMULATOR_HOST`` set; prints one JSON line: events, seconds, peak RSS.

- ``relay``: matchrelay as deployed (streamed body, batched, flow-controlled).
- ``naive``: what today's peers do: load the whole body, build every event,
  publish one message at a time and wait for each (stopped after ``NAIVE_LIMIT``
  events, so the rate is measured without waiting an hour).
- ``ceiling``: the same pre-serialized messages published in a bare loop with the
  same client and batch settings; only the publishing is timed.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import httpx

from handlers.normalize import Event, RunRef, completed_event, counts, results_events
from handlers.poll import Clock, summary_of
from handlers.publish import PubSubSink, make_publisher
from handlers.relay import Relay
from handlers.runtime import Runtime
from handlers.settings import load_settings
from handlers.trigger import Trigger

NAIVE_LIMIT = 5_000


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: on Linux that keeps the high-water mark of the
    parent's forked image across exec, so it showed the bench driver's in-memory bodies, not ours."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def relay(n: int) -> dict[str, float]:
    runtime = Runtime.build(load_settings())
    runtime.relay.sink.publish(runtime.relay.topics.events, [])  # build the client outside the timing
    started = time.perf_counter()
    outcome = runtime.relay.relay(Trigger("demo", 1, n), budget_s=None)
    assert outcome.kind == "completed", outcome
    return {"events": outcome.events, "seconds": time.perf_counter() - started}


def _events(n: int) -> list[Event]:
    settings = load_settings()
    url = f"{settings.base_url}/api/v1/projects/demo/context/entitymatching/pipelines/1/runs/{n}"
    token = settings.cdf_token.get_secret_value() if settings.cdf_token else ""
    body = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=600).json()
    ref, summary = RunRef(settings.base_url, "demo", 1, n), summary_of(body)
    return [*results_events(ref, summary, body), completed_event(ref, summary, counts(body))]


def naive(n: int) -> dict[str, float]:
    publisher, topic = make_publisher(), load_settings().topic()
    started = time.perf_counter()
    events = _events(n)
    sent = 0
    for event in events[:NAIVE_LIMIT]:
        publisher.publish(topic, event.data, **event.attributes).result()
        sent += 1
    seconds = time.perf_counter() - started
    # Extrapolate the per-event publish rate to the whole run (the load/build part was timed in full).
    return {
        "events": len(events),
        "seconds": seconds * len(events) / sent if sent < len(events) else seconds,
        "measured_events": sent,
    }


def ceiling(n: int) -> dict[str, float]:
    events = _events(n)
    sink, topic = PubSubSink(), load_settings().topic()
    sink.publish(topic, [])
    started = time.perf_counter()
    count = sink.publish(topic, events)
    return {"events": count, "seconds": time.perf_counter() - started}


def main() -> None:
    mode, n = sys.argv[1], int(sys.argv[2])
    result: dict[str, object] = {"mode": mode, "n": n}
    result |= {"relay": relay, "naive": naive, "ceiling": ceiling}[mode](n)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    _ = Clock, Relay  # imported for their side effect of loading the same modules in every mode
    main()
