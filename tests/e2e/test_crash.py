"""Crashes while publishing: the instance killed, the Pub/Sub emulator stopped; the redelivery completes the set.

A real functions-framework process (gunicorn) relays a large run while a
subscriber pulls; the instance is killed with SIGKILL, or the emulator is
stopped and started again, at a random point of the publishing. The same
trigger is then delivered again and a subscriber that deduplicates by ``ce-id``
must end with exactly the run's complete set.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sim import CdfSimulator, Step, stream_run_body
from sim.emulator import Emulator
from tests.conftest import PubSub, binary_event, function_process, pubsub_message, wait_for

MATCHES = 30_000
RULES = 5  # suggested and generated each
SEED = 4
HOLD_S = 300  # at most this long a body's end waits for the test: a failing test never hangs


def expected_ids(run_id: int) -> set[str]:
    """Every ce-id of a completed run of pipeline 1 with ``MATCHES`` matches and ``RULES`` rules of each kind."""
    prefix = f"demo/1/{run_id}/"
    ids = {f"{prefix}match/{i}" for i in range(MATCHES)}
    ids |= {f"{prefix}{kind}/{i}" for kind in ("suggestedrule", "generatedrule") for i in range(RULES)}
    return ids | {prefix + "run"}


def serve_large_run(sim: CdfSimulator, run_id: int, held: threading.Event) -> None:
    """Run ``run_id`` of pipeline 1 answers Completed with a large body, streamed over about 4 s, its end held.

    The body's last chunk waits for ``held`` to be set: until the test has killed the instance or stopped the
    emulator, the run can never be finished, however far the relay is ahead of the subscriber that watches it.
    """
    chunks = list(stream_run_body(MATCHES, RULES, RULES, job_id=run_id, chunk_size=16 * 1024))

    def paced() -> Iterator[bytes]:
        for chunk in chunks[:-1]:
            time.sleep(0.01)
            yield chunk
        held.wait(HOLD_S)
        yield chunks[-1]

    sim.set_run(1, run_id, [Step.stream(paced)])


class Collector:
    """A subscriber pulling in the background and deduplicating by ce-id, as downstream consumers do."""

    def __init__(self, pubsub: PubSub, subscription: str) -> None:
        self._pubsub, self._subscription = pubsub, subscription
        self.received = 0
        self.events: dict[str, dict[str, Any]] = {}  # ce-id -> data of the first copy
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self._pubsub.subscriber.pull(
                    request={"subscription": self._subscription, "max_messages": 1000, "return_immediately": True},
                    timeout=10,
                    retry=None,  # one attempt: the loop is the retry, and stop() is never stuck behind a backoff
                )
            except Exception:  # the emulator is down or restarting: a subscriber keeps trying
                self._stop.wait(0.2)
                continue
            if not response.received_messages:
                self._stop.wait(0.02)
                continue
            with self._lock:
                for m in response.received_messages:
                    self.received += 1
                    self.events.setdefault(m.message.attributes["ce-id"], json.loads(m.message.data))
            with contextlib.suppress(Exception):
                self._pubsub.subscriber.acknowledge(
                    request={
                        "subscription": self._subscription,
                        "ack_ids": [m.ack_id for m in response.received_messages],
                    }
                )

    def ids(self) -> set[str]:
        with self._lock:
            return set(self.events)

    def settle(self, want: set[str], seconds: float = 120.0) -> None:
        """Wait until every wanted ce-id is in, then a little more for anything extra."""
        wait_for(lambda: want <= self.ids(), seconds)
        quiet = self.received
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if self.received != quiet:
                quiet, deadline = self.received, time.monotonic() + 1.0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (gunicorn's workers), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, ppid in parents.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def kill_instance(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the whole instance at once: gunicorn's master and its workers, nothing gets to clean up."""
    workers = _children(process.pid)
    for pid in [process.pid, *workers]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(30)
    wait_for(lambda: not any(_alive(pid) for pid in workers), 30)


@contextlib.contextmanager
def instance(env: dict[str, str], log: Path) -> Any:
    """A function process that is always killed whole (master and workers) when the block ends."""
    with function_process(env, log) as (process, url):
        try:
            yield process, url
        finally:
            if process.poll() is None:
                kill_instance(process)


def post_in_background(url: str, message: dict[str, Any], answers: list[Any]) -> threading.Thread:
    headers, body = binary_event(message)

    def post() -> None:
        try:
            answers.append(httpx.post(url, headers=headers, content=body, timeout=300).status_code)
        except httpx.HTTPError as exc:
            answers.append(type(exc).__name__)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def post(url: str, message: dict[str, Any]) -> int:
    headers, body = binary_event(message)
    return httpx.post(url, headers=headers, content=body, timeout=300).status_code


def check_complete(collector: Collector, run_id: int) -> None:
    want = expected_ids(run_id)
    collector.settle(want)
    assert collector.ids() == want
    completed = collector.events[f"demo/1/{run_id}/run"]
    counts = (completed["matchCount"], completed["suggestedRuleCount"], completed["generatedRuleCount"])
    assert (completed["status"], counts) == ("Completed", (MATCHES, RULES, RULES))


@pytest.mark.parametrize("trial", [0, 1])
def test_crash_sigkill_while_publishing_then_redelivery_completes_the_set(
    trial: int, env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, tmp_path: Path
) -> None:
    """An instance SIGKILLed mid-publishing loses nothing: the redelivery gives a deduplicating subscriber the set."""
    rng = random.Random(SEED * 100 + trial)
    run_id = 456 + trial
    kill_at = rng.randint(1_000, MATCHES * 2 // 3)
    held = threading.Event()
    serve_large_run(sim, run_id, held)
    events, events_sub = pubsub.topic("crash")
    process_env = os.environ | env | {"RELAY_TOPIC": events, "LOG_LEVEL": "WARNING"}
    message = pubsub_message({"pipelineId": 1, "runId": run_id})
    collector = Collector(pubsub, events_sub)
    try:
        answers: list[Any] = []
        with instance(process_env, tmp_path / "first.log") as (process, url):
            thread = post_in_background(url, message, answers)
            wait_for(lambda: collector.received >= kill_at, 120)
            kill_instance(process)
            held.set()  # the second instance gets the whole body
            thread.join(30)
        before = collector.ids()
        print(f"\ntrial {trial}: killed after {kill_at} received; {len(before)} distinct before the redelivery")
        assert answers != [200]  # the kill interrupted the invocation: it never acked
        assert f"demo/1/{run_id}/run" not in before  # run.completed never precedes its events
        assert len(before) < len(expected_ids(run_id))
        with instance(process_env, tmp_path / "second.log") as (_, url):
            assert post(url, message) == 200
        check_complete(collector, run_id)
        assert collector.received > len(expected_ids(run_id))  # the redelivery published the same ids again
    finally:
        held.set()
        collector.stop()


def test_crash_emulator_restart_while_publishing_hands_back_then_completes(
    env: dict[str, str], sim: CdfSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pub/Sub going away mid-publishing answers non-2xx; after its restart the redelivery completes the set."""
    rng = random.Random(SEED)
    stop_at = rng.randint(1_000, MATCHES // 3)
    run_id = 789
    held = threading.Event()
    serve_large_run(sim, run_id, held)
    own = Emulator()  # not the session's: stopping that one would break the other tests
    own.start(tmp_path / "emulator.log")
    try:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", own.host)
        pubsub = PubSub(own.host)
        events, events_sub = pubsub.topic("restart")
        errors, errors_sub = pubsub.topic("restart-errors")
        process_env = (
            os.environ
            | env
            | {
                "PUBSUB_EMULATOR_HOST": own.host,
                "RELAY_TOPIC": events,
                "RELAY_ERROR_TOPIC": errors,
                "LOG_LEVEL": "WARNING",
            }
        )
        message = pubsub_message({"pipelineId": 1, "runId": run_id})
        with instance(process_env, tmp_path / "function.log") as (_, url):
            first = Collector(pubsub, events_sub)
            try:
                answers: list[Any] = []
                thread = post_in_background(url, message, answers)
                wait_for(lambda: first.received >= stop_at, 120)
            finally:
                first.stop()
            own.stop()
            held.set()  # now the relay reads the rest and finds Pub/Sub gone
            stopped = time.monotonic()
            before = first.ids()
            time.sleep(1.0)
            own.start(tmp_path / "emulator.log")  # same port; topics and subscriptions are gone with the old one
            thread.join(200)
            handed_back = time.monotonic() - stopped
            print(f"\nstopped after {stop_at} received; answer {answers} {handed_back:.1f} s after the stop")
            assert answers == [503], (tmp_path / "function.log").read_text()[-3000:]
            assert f"demo/1/{run_id}/run" not in before
            for topic, sub in ((events, events_sub), (errors, errors_sub)):
                pubsub.publisher.create_topic(name=topic)
                pubsub.subscriber.create_subscription(name=sub, topic=topic, ack_deadline_seconds=60)
            second = Collector(pubsub, events_sub)
            try:
                assert post(url, message) == 200
                check_complete(second, run_id)
            finally:
                second.stop()
            assert before <= second.ids()
            assert pubsub.drain(errors_sub) == []
    finally:
        held.set()
        own.stop()
