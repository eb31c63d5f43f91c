"""The link end to end through real processes (contract, section 8): functions-framework, the emulator, the simulator.

The relay and the link are each a functions-framework process. The link hears
the events topic as deployed: a push subscription filtered to ``run.completed``
(the emulator accepts the filter but delivers every message, so the link's own
"ack every other type untouched" is exercised too). Where a test needs each
delivery's answer and duration, or to point deliveries at a fresh process,
``tests/support/eventarc.py``'s bridge delivers instead. A link scenario of
sim/linkworld.py says what every source should look like afterwards; the
simulator's write record says what each write request carried.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from handlers.core.decision import OUTCOMES
from sim import CdfSimulator
from sim.framework import StartError, serve
from sim.linkworld import LinkWorld, link_world
from tests.conftest import GCP_PROJECT, ROOT, PubSub, Received, Topics, binary_event, pubsub_message, wait_for
from tests.support.eventarc import Bridge

PIPELINE, RUN = 7, 700
LINKED = "com.cognite.entitymatching.run.linked"
COMPLETED_FILTER = 'attributes.ce-type = "com.cognite.entitymatching.run.completed"'
TIMEOUT_S = 5.0
DEFAULT_SHAPE: dict[str, Any] = {"linked": 0.1, "conflicts": 0.05, "confirmed": 10, "ambiguous": 5, "runners_up": 5}
DEFAULT_SHAPE |= {"unlinkable": 6, "missing_sources": 3, "missing_targets": 3}
DEFAULT_SHAPE |= {"rules": 4, "listed": 4, "rejected": 4, "rejected_best": 4, "noise": (40, 10)}  # the lists


def scenario(sim: CdfSimulator, matches: int = 1000, **shape: Any) -> LinkWorld:
    """A completed run of time series with every case a link meets (one request's worth of sources by default)."""
    return link_world(sim, PIPELINE, RUN, "time_series", matches, **{**DEFAULT_SHAPE, **shape})


def process_env(env: dict[str, str], **more: str) -> dict[str, str]:
    """The processes' environment; the link's link.review events go to the events topic (unless a test says), apart
    from a LINK_TOPIC a test reads run.linked from."""
    reviews = {"REVIEW_TOPIC": env["RELAY_TOPIC"]} if "RELAY_TOPIC" in env else {}
    return os.environ | env | {"PYTHONUNBUFFERED": "1"} | reviews | more


@contextlib.contextmanager
def function(target: str, env: dict[str, str], log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``main.<target>`` served by functions-framework until the block ends; (process, url)."""
    with contextlib.ExitStack() as stack:
        try:
            process, url = stack.enter_context(serve(ROOT, target, env, log))
        except StartError as exc:
            pytest.fail(f"{target}: {exc}")
        yield process, url


def push_to(pubsub: PubSub, topic: str, endpoint: str) -> None:
    """The link's subscription as deployed: push to ``endpoint``, run.completed only, 600 s per request."""
    name = pubsub.subscriber.subscription_path(GCP_PROJECT, f"link-{uuid.uuid4().hex[:12]}")
    pubsub.subscriber.create_subscription(
        request={
            "name": name,
            "topic": topic,
            "push_config": {"push_endpoint": endpoint},
            "ack_deadline_seconds": 600,
            "filter": COMPLETED_FILTER,
        }
    )


def relay(url: str) -> int:
    """The run's trigger, delivered to the relay's process as Eventarc does; its answer (200 once all is out)."""
    headers, body = binary_event(pubsub_message({"pipelineId": PIPELINE, "runId": RUN}))
    return httpx.post(url, headers=headers, content=body, timeout=120).status_code


def relayed_completed(env: dict[str, str]) -> tuple[dict[str, str], bytes]:
    """The run's run.completed as the relay publishes it (its ``run --stdout``, last line): attributes and data."""
    result = subprocess.run(
        [sys.executable, "main.py", "run", "--pipeline-id", str(PIPELINE), "--run-id", str(RUN), "--stdout"],
        cwd=ROOT,
        env=process_env(env, LOG_LEVEL="WARNING"),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    last = json.loads(result.stdout.splitlines()[-1])
    assert last["attributes"]["ce-subject"] == "run"
    return last["attributes"], json.dumps(last["data"]).encode()


def publish(pubsub: PubSub, topic: str, message: tuple[dict[str, str], bytes]) -> None:
    attributes, data = message
    pubsub.publisher.publish(topic, data, **attributes).result(timeout=30)


def counts(event: Received) -> dict[str, int]:
    """run.linked's count per outcome (``written`` aside: each delivery counts its own writes)."""
    return {name: event.data[name] for name in OUTCOMES}


def expected(world: LinkWorld) -> dict[str, int]:
    """The counts per outcome a clean link of ``world`` reports."""
    return {name: world.expected().counts()[name] for name in OUTCOMES}


def written_now(world: LinkWorld, sim: CdfSimulator) -> set[int]:
    """The time series whose provenance names the world's run."""
    states = sim.item_states("timeseries")
    return {n for n, state in states.items() if state.metadata.get("matchrelay:run") == world.provenance}


def summaries(log: Path) -> list[dict[str, Any]]:
    """The link process's summary lines (one per run.completed it acted on)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and "outcome" in entry and "seconds" in entry:
                found.append(entry)
    return found


@contextlib.contextmanager
def chain(env: dict[str, str], pubsub: PubSub, topics: Topics, logs: Path) -> Iterator[tuple[str, str]]:
    """The relay and the link as processes, the link pushed the events topic; yields (relay url, linked sub)."""
    linked_topic, linked_sub = pubsub.topic("linked")
    review_topic, _ = pubsub.topic("reviews")  # link.review events: their own topic, as a review tool reads them
    served = process_env(env, LINK_TOPIC=linked_topic, REVIEW_TOPIC=review_topic, LOG_LEVEL="INFO")
    with (
        function("on_run_message", served, logs / "relay.log") as (_, relay_url),
        function("on_run_completed", served, logs / "link.log") as (_, link_url),
    ):
        push_to(pubsub, topics.events, link_url)
        yield relay_url, linked_sub


def test_link_e2e_a_completed_run_is_linked_through_the_events_topic(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics, tmp_path: Path
) -> None:
    """A run completes: the link links exactly its confident matches, with provenance, and says so in run.linked;
    the link's CDF requests are the fewest it can make (one pipeline, one results, one byids, the update and its
    retry without the missing asset)."""
    world = scenario(sim)
    with chain(env, pubsub, topics, tmp_path) as (relay_url, linked_sub):
        assert relay(relay_url) == 200
        events = pubsub.drain(linked_sub, at_least=1, seconds=120)
    assert {e.attributes["ce-type"] for e in events} == {LINKED}
    assert len({e.attributes["ce-id"] for e in events}) == 1
    assert counts(events[0]) == expected(world)
    assert events[0].data["written"] == world.expected().written
    assert world.differences(sim) == []
    assert written_now(world, sim) == {world.source_id(s) for s, _, link in world.decisions() if link is not None}
    requests = sim.request_counts()
    assert {k: requests.get(k, 0) for k in ("pipeline", "results", "byids", "update")} == {
        "pipeline": 1,
        "results": 3,  # the relay's, the link's, and the link's second reading for its link.review candidates
        "byids": 1,
        "update": 2,
    }


def test_link_e2e_redeliveries_and_a_replay_change_nothing(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics, tmp_path: Path
) -> None:
    """The same run.completed three more times (twice by hand, once by replaying the run): the same run.linked
    with nothing written, CDF unchanged, and no write request sends an item already in place."""
    world = scenario(sim)
    with chain(env, pubsub, topics, tmp_path) as (relay_url, linked_sub):
        assert relay(relay_url) == 200
        [first] = pubsub.drain(linked_sub, at_least=1, seconds=120)
        [completed] = [e for e in pubsub.drain(topics.events_sub) if e.type == "run.completed"]
        state, writes = sim.item_states("timeseries"), len(sim.writes())
        for _ in range(2):
            publish(pubsub, topics.events, (completed.attributes, completed.raw))
        assert relay(relay_url) == 200
        again = pubsub.drain(linked_sub, at_least=3, seconds=120)
    assert len(again) >= 3
    assert {e.attributes["ce-id"] for e in again} == {first.attributes["ce-id"]}
    assert all(e.data == {**first.data, "written": 0} for e in again)
    assert sim.item_states("timeseries") == state
    later = sim.writes()[writes:]
    assert not any(w.applied for w in later)
    missing_targets = {world.source_id(s) for s in world.cases.missing_target_indices()}
    assert {item["id"] for w in later for item in w.items or []} == missing_targets  # refused again, nothing else
    assert all(w.unchanged == () for w in sim.writes())


def test_link_e2e_a_link_longer_than_the_deadline_ends_over_redeliveries(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, tmp_path: Path
) -> None:
    """INVOCATION_TIMEOUT_S=5, 20,000 matches, a slow CDF: no delivery outlasts 5 s, each hands back after its
    last confirmed write, and the redeliveries finish from what CDF holds, as a clean link would have left it.

    Each chunk takes at least 0.8 s (a byids of 0.05 s, a write of 0.75 s) and starts only while more than the 2 s
    margin is left, so one delivery starts at most 4 rounds of 4 chunks: the 20 chunks need two deliveries or more."""
    world = scenario(sim, 20_000, below=0.0, linked=0.05, conflicts=0.0)
    completed = relayed_completed(env)
    sim.classic.write_latency_s, sim.classic.byids_latency_s, sim.classic.write_limit = 0.75, 0.05, 4
    linked_topic, linked_sub = pubsub.topic("linked")
    topic, subscription = pubsub.topic("completed")
    log = tmp_path / "link.log"
    review_topic, _ = pubsub.topic("reviews")
    served = process_env(
        env, LINK_TOPIC=linked_topic, REVIEW_TOPIC=review_topic, INVOCATION_TIMEOUT_S=str(TIMEOUT_S), LOG_LEVEL="INFO"
    )
    with function("on_run_completed", served, log) as (_, url):
        bridge = Bridge(pubsub, topic, subscription, url)
        with bridge.running(workers=1):
            publish(pubsub, topic, completed)
            [event] = pubsub.drain(linked_sub, at_least=1, seconds=300)
    answers = bridge.answers()
    assert len(answers) >= 2
    assert answers[-1] == 200
    assert all(status == 503 for status in answers[:-1]), answers
    assert all(d.seconds < TIMEOUT_S for d in bridge.deliveries), [d.seconds for d in bridge.deliveries]
    lines = summaries(log)
    assert [line["outcome"] for line in lines] == ["handed_back"] * (len(answers) - 1) + ["linked"]
    assert all(line["seconds"] < TIMEOUT_S for line in lines), [line["seconds"] for line in lines]
    assert counts(event) == expected(world)
    assert world.differences(sim) == []
    applied = [item["id"] for w in sim.writes() if w.applied for item in w.items or []]
    assert len(applied) == len(set(applied)) == world.expected().written
    assert all(w.unchanged == () for w in sim.writes())


def test_link_e2e_a_link_killed_mid_writes_is_finished_by_a_fresh_process(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, tmp_path: Path
) -> None:
    """SIGKILL while four writes are in flight (they land afterwards, unanswered); the redelivery to a fresh
    process ends as a clean link would, sending no item already in place."""
    world = scenario(sim, 8000, below=0.2, missing_targets=0)  # every held write then lands
    completed = relayed_completed(env)
    linked_topic, linked_sub = pubsub.topic("linked")
    topic, subscription = pubsub.topic("completed")
    served = process_env(env, LINK_TOPIC=linked_topic, LOG_LEVEL="INFO")
    sim.hold_writes()
    with function("on_run_completed", served, tmp_path / "first.log") as (first, url):
        bridge = Bridge(pubsub, topic, subscription, url)
        with bridge.running(workers=1):
            publish(pubsub, topic, completed)
            assert sim.wait_writes_in_flight(4)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(30)
            sim.release_writes()
            wait_for(lambda: sim.classic.in_flight == 0)
            held = [w for w in sim.writes() if w.applied]
            with function("on_run_completed", served, tmp_path / "fresh.log") as (_, fresh):
                bridge.point_at(fresh)
                [event] = pubsub.drain(linked_sub, at_least=1, seconds=120)
    assert len(held) == 4
    assert bridge.answers()[0] is None
    assert bridge.answers()[-1] == 200
    assert counts(event) == expected(world)
    assert event.data["written"] == world.expected().written - sum(len(w.items or []) for w in held)
    assert world.differences(sim) == []
    assert all(w.unchanged == () for w in sim.writes())


def test_link_e2e_a_dry_run_writes_nothing_and_counts_as_the_real_link(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, tmp_path: Path
) -> None:
    """LINK_DRY_RUN=true on the process: no write request, CDF untouched, and the counts the real link then
    reports, under its own ce-id."""
    world = scenario(sim)
    completed = relayed_completed(env)
    reports = []
    for dry, log in (("true", "dry.log"), ("false", "real.log")):
        linked_topic, linked_sub = pubsub.topic("linked")
        topic, _ = pubsub.topic("completed")
        served = process_env(env, LINK_TOPIC=linked_topic, LINK_DRY_RUN=dry, LOG_LEVEL="INFO")
        with function("on_run_completed", served, tmp_path / log) as (_, url):
            push_to(pubsub, topic, url)
            publish(pubsub, topic, completed)
            [event] = pubsub.drain(linked_sub, at_least=1, seconds=120)
        reports.append(event)
        if dry == "true":
            assert sim.writes() == []
            assert world.differences(sim, untouched=True) == []
    dry_run, real = reports
    assert (dry_run.data["dryRun"], dry_run.data["written"], real.data["dryRun"]) == (True, 0, False)
    assert counts(dry_run) == counts(real) == expected(world)
    assert dry_run.attributes["ce-id"] != real.attributes["ce-id"]
    assert world.differences(sim) == []
