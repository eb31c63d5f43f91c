"""``python -m bench.handover [link matches] [reviews] [rounds]``: link.review events published against the relay's own
event rate, on the Pub/Sub emulator, in the same run (issue 23: at least 0.9 x the relay's events a second).

One emulator, one simulator (writes answered after 50 ms, 4 in flight, as the link
bench's). The emulator is warmed first (50,000 messages as raw Publish requests);
then each round measures both sides, their order alternating round by round:

- **relay**: matchrelay relaying a run of ``reviews`` matches to a topic, trigger to
  200, in a fresh process warmed by a small run, as ``bench/one.py relay`` measures
  it (the events: the matches, the suggested and generated rules, run.completed).
- **review**: ``python main.py link`` (not ``--stdout``) of a link scenario of
  ``link matches`` matches of time series, half of the sources below the threshold
  (scored 0.6 to 0.899, above ``REVIEW_MIN_SCORE``), 5 % linked already, in a
  process of its own with ``REVIEW_MAX_EVENTS`` = ``reviews`` and ``REVIEW_TOPIC``
  on the emulator. Its rate is the events ``PubSubSink.publish`` confirmed on
  ``REVIEW_TOPIC`` over the time that call took (building the events, publishing
  them, waiting for every confirmation), timed in the link's process around the
  call. As the relay side's instance has published a run before it is timed, the
  link's publisher publishes one message to that topic first, untimed (the
  channel and its connection built): that warm-up is reported beside it. The
  whole hand-over (choosing, reading the run's matches again for the chosen's
  candidates, publishing) is reported too, as is the link's peak RSS (VmHWM).

Neither topic has a subscription (the emulator keeps nothing, as in ``./dev bench``).
The scenario is built afresh for each link, and the harness's collector is frozen
while the link runs (bench/link.py says why); it is dropped before the relay side.
Each side's best round (most events a second) counts; the ratio of the two is
printed with every round's own.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import ROOT, run_child
from bench.link import LINKED, WRITE_LATENCY_S, WRITE_LIMIT
from sim import CdfSimulator, Step, stream_run_body
from sim.data import stream_json
from sim.emulator import Emulator
from sim.linkworld import link_world

LINK_MATCHES, REVIEWS, ROUNDS = 1_000_000, 100_000, 3
BELOW = 0.5  # of the sources: 500,000 of a million below the threshold, every one above REVIEW_MIN_SCORE
GOAL = 0.9  # review events a second, at least this times the relay's
WARM_RUN = 1  # bench/one.py's small run, with which the relay's instance is warmed
SIDES = ("relay", "review")

# Runs the command as ``python main.py link ...`` does, timing PubSubSink.publish on REVIEW_TOPIC (after one untimed
# message that builds the channel) and hand_over as a whole, and says its peak RSS on the way out (see bench/link.py).
_TIMED = """
import atexit, json, os, runpy, sys, time
from handlers.core.events import Event
from handlers.flow import link
from handlers.pubsub import publish
review_topic, figures = os.environ["REVIEW_TOPIC"], {}
whole_publish, whole_hand_over = publish.PubSubSink.publish, link.hand_over
def timed_publish(self, topic, events, deadline=None):
    if topic != review_topic:
        return whole_publish(self, topic, events, deadline)
    started = time.perf_counter()
    whole_publish(self, topic, [Event(b"{}", {"ce-type": "bench.warm-up"})], deadline)
    figures["warm_up_s"] = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    confirmed = whole_publish(self, topic, events, deadline)
    figures.update(publish_s=time.perf_counter() - started, publish_cpu_s=time.process_time() - cpu)
    figures["reviews"] = confirmed
    return confirmed
def timed_hand_over(*args, **kwargs):
    started = time.perf_counter()
    try:
        return whole_hand_over(*args, **kwargs)
    finally:
        figures["hand_over_s"] = time.perf_counter() - started
publish.PubSubSink.publish, link.hand_over = timed_publish, timed_hand_over
def report():
    with open("/proc/self/status") as status:
        figures["peak_rss_mb"] = int(status.read().split("VmHWM:")[1].split()[0]) / 1024
    print("handover-figures", json.dumps(figures), file=sys.stderr, flush=True)
atexit.register(report)
sys.argv = ["main.py", *sys.argv[1:]]
runpy.run_path("main.py", run_name="__main__")
"""


def measure(
    link_matches: int = LINK_MATCHES, reviews: int = REVIEWS, rounds: int = ROUNDS, emulator_host: str | None = None
) -> dict[str, Any]:
    """Every round's figures of both sides; ``emulator_host`` an emulator already running (else one is started)."""
    emulator = None
    if emulator_host is None:
        emulator = Emulator().start(Path(os.environ.get("TMPDIR", "/tmp")) / "matchrelay-bench-handover-emulator.log")
        emulator_host = emulator.host
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator_host  # the topics are made through it
    try:
        with CdfSimulator(project="demo", write_limit=WRITE_LIMIT, write_latency_s=WRITE_LATENCY_S) as sim:
            sim.static_tokens.add("bench-token")
            base = {"CDF_PROJECT": "demo", "CDF_URL": sim.url, "CDF_TOKEN": "bench-token", "LOG_LEVEL": "WARNING"}
            base["PUBSUB_EMULATOR_HOST"] = emulator_host
            relay_env = os.environ | base | {"RELAY_TOPIC": _topic("handover-relay")}
            link_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")} | base
            link_env |= {"RELAY_TOPIC": _topic("handover-linked"), "REVIEW_TOPIC": _topic("handover-reviews")}
            link_env |= {"REVIEW_MAX_EVENTS": str(reviews)}
            _serve_relay(sim, 50_000)
            run_child("bench.one", "requests", 50_000, relay_env)  # warm the emulator (its JIT) first
            done: list[dict[str, Any]] = []
            for r in range(rounds):
                order = SIDES[r % 2 :] + SIDES[: r % 2]
                row: dict[str, Any] = {"round": r + 1, "order": order}
                for side in order:
                    if side == "relay":
                        _serve_relay(sim, reviews)
                        row["relay"] = run_child("bench.one", "relay", reviews, relay_env)
                    else:
                        row["review"] = _review(sim, link_matches, link_env)
                    sim.reset()
                    gc.collect()
                print(_line(row), flush=True)
                done.append(row)
    finally:
        if emulator is not None:
            emulator.stop()
    return {"link_matches": link_matches, "reviews": reviews, "rounds": done}


def _topic(name: str) -> str:
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    path = str(publisher.topic_path("matchrelay-bench", name))
    with contextlib.suppress(AlreadyExists):
        publisher.create_topic(name=path)  # no subscription: the emulator keeps nothing
    return path


def _serve_relay(sim: CdfSimulator, n: int) -> None:
    """Run ``n`` of pipeline 1 answers Completed with ``n`` matches from memory (as ``./dev bench`` serves it), and
    run 1 a small run to warm the relay's instance with."""
    sim.set_run(1, WARM_RUN, [Step.stream(lambda: iter([b"".join(stream_run_body(10, job_id=WARM_RUN))]))])
    body = b"".join(stream_run_body(n, max(1, n // 10_000), max(1, n // 10_000), job_id=n))
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    sim.set_run(1, n, [Step.stream(lambda: iter(chunks))])


def _review(sim: CdfSimulator, n: int, env: dict[str, str]) -> dict[str, Any]:
    """The link of a fresh scenario of ``n`` matches, run ``n`` of pipeline 1: the figures its process reported."""
    world = link_world(sim, 1, n, "time_series", n, below=BELOW, linked=LINKED)
    body = b"".join(world.stream())
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    del body
    sim.set_run(1, n, [Step.stream(lambda: iter(chunks))])  # rendered once: the link reads it at wire speed
    pipeline = b"".join(stream_json(sim.catalog.pipeline_item(1)))
    sim.script_pipeline(1, [Step.stream(lambda: iter([pipeline]))])
    command = [sys.executable, "-c", _TIMED, "link", "--pipeline-id", "1", "--run-id", str(n)]
    gc.collect()
    gc.freeze()
    gc.disable()
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False)
    finally:
        gc.enable()
        gc.unfreeze()
    seconds = time.perf_counter() - started
    lines = [line for line in done.stderr.splitlines() if line.startswith("handover-figures ")]
    if done.returncode != 0 or not lines:
        output = (done.stderr + done.stdout)[-3000:]
        raise SystemExit(f"bench: the link of {n:,} matches exited {done.returncode}:\n{output}")
    figures: dict[str, Any] = json.loads(lines[-1].split(" ", 1)[1])
    if figures.get("reviews") != int(env["REVIEW_MAX_EVENTS"]):
        wanted = env["REVIEW_MAX_EVENTS"]
        raise SystemExit(f"bench: the link published {figures.get('reviews')} link.review events, not {wanted}")
    return figures | {"process_s": seconds}


def relay_rate(row: dict[str, Any]) -> float:
    return float(row["relay"]["events"]) / float(row["relay"]["seconds"])


def review_rate(row: dict[str, Any]) -> float:
    return float(row["review"]["reviews"]) / float(row["review"]["publish_s"])


def _line(row: dict[str, Any]) -> str:
    relay, review = relay_rate(row), review_rate(row)
    return (
        f"# round {row['round']} ({' then '.join(row['order'])}): relay {relay:,.0f} ev/s, "
        f"link.review {review:,.0f} ev/s, ratio {review / relay:.2f}"
    )


def report(result: dict[str, Any]) -> None:
    rows, n, reviews = result["rounds"], result["link_matches"], result["reviews"]
    print(
        f"\nlink.review published against the relay's events, on the Pub/Sub emulator: the relay of {reviews:,} "
        f"matches (trigger to 200), the link of {n:,} matches ({BELOW:.0%} of the sources below the threshold, "
        f"REVIEW_MAX_EVENTS={reviews:,}; its publish call on REVIEW_TOPIC, warm)"
    )
    print(
        "| round | first | relay events | s | relay ev/s | CPU µs/ev | reviews | publish s | review ev/s | CPU µs/ev "
        "| warm-up | hand-over s | link RSS | review/relay |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        a, b = row["relay"], row["review"]
        print(
            f"| {row['round']} | {row['order'][0]} | {a['events']:,} | {a['seconds']:.2f} | {relay_rate(row):,.0f} "
            f"| {1e6 * a['cpu_s'] / a['events']:.1f} | {b['reviews']:,} | {b['publish_s']:.2f} "
            f"| {review_rate(row):,.0f} | {1e6 * b['publish_cpu_s'] / b['reviews']:.1f} "
            f"| {1000 * b['warm_up_s']:.0f} ms | {b['hand_over_s']:.2f} | {b['peak_rss_mb']:.0f} MB "
            f"| {review_rate(row) / relay_rate(row):.2f} |"
        )
    relay = max(relay_rate(row) for row in rows)
    review = max(review_rate(row) for row in rows)
    cold = max(float(r["review"]["reviews"]) / (r["review"]["publish_s"] + r["review"]["warm_up_s"]) for r in rows)
    whole = max(float(r["review"]["reviews"]) / r["review"]["hand_over_s"] for r in rows)
    ratios = sorted(review_rate(row) / relay_rate(row) for row in rows)
    print(
        f"best of {len(rows)}: relay {relay:,.0f} ev/s, link.review {review:,.0f} ev/s: "
        f"{review / relay:.2f} x the relay's (goal >= {GOAL}; rounds' own ratios {ratios[0]:.2f} .. {ratios[-1]:.2f}, "
        f"median {ratios[len(ratios) // 2]:.2f})"
    )
    print(
        f"the warm-up counted in: {cold:,.0f} ev/s ({cold / relay:.2f} x); the whole hand-over (choosing, reading the "
        f"run's {n:,} matches again, publishing): {whole:,.0f} ev/s ({whole / relay:.2f} x); "
        f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    started = time.monotonic()
    given = [int(a) for a in sys.argv[1:4]]
    matches, reviews, rounds = given + [LINK_MATCHES, REVIEWS, ROUNDS][len(given) :]
    report(measure(matches, reviews, rounds))
    print(f"\nbench took {time.monotonic() - started:.0f} s")
