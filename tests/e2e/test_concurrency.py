"""Many runs at once in one process: 120 (then 150) triggers to one functions-framework instance, THREADS above that.

The runs wait, meet faults, fail in CDF, are refused, or are large, while CDF's
tokens expire by time and all at once; each run gets exactly its own events and
its own answer, whatever the others do. Then 150 runs while CDF stops accepting
every token 2 s after it was issued, however long the identity provider said it
lives: tokens fetched just now are refused under load, and are tried again.
"""

from __future__ import annotations

import os
import random
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sim import CdfSimulator, Step, make_run, stream_run_body
from tests.conftest import SECRET, PubSub, binary_event, pubsub_message, wait_for
from tests.e2e.test_crash import Collector, _children, instance

RUNS = 120
LARGE = 8_000  # matches in each large run
SEED = 11


@dataclass(frozen=True)
class Plan:
    """One run of the load: how CDF answers it and which ce-ids it owes (events topic, errors topic)."""

    run_id: int
    steps: list[Step]
    events: frozenset[str]
    errors: frozenset[str]


def _completed(run_id: int, n: int, rules: int, generated: int = 0) -> frozenset[str]:
    prefix = f"demo/1/{run_id}/"
    ids = {f"{prefix}match/{i}" for i in range(n)} | {f"{prefix}suggestedrule/{i}" for i in range(rules)}
    ids |= {f"{prefix}generatedrule/{i}" for i in range(generated)}
    return frozenset(ids | {prefix + "run"})


def plan(i: int, rng: random.Random, refused: bool = True) -> Plan:
    """Run ``i``: large (every 30th), failed in CDF (every 10th), refused (every 15th, unless not ``refused``), else
    waits and faults, with suggested and generated rules of both shapes."""
    run_id = 1000 + i
    # Every 7th run waits long (12 polls, 2.4 s at the least), so runs still poll when old tokens are revoked.
    waits = [Step.status("Running", job_id=run_id)] * (12 if i % 7 == 3 else rng.randint(1, 4))
    if i % 30 == 0:
        chunks = list(stream_run_body(LARGE, job_id=run_id))
        return Plan(run_id, [*waits, Step.stream(lambda: iter(chunks))], _completed(run_id, LARGE, 0), frozenset())
    if i % 10 == 0:
        failed = Step.run(make_run(0, status="Failed", job_id=run_id, error_message="no sources"))
        return Plan(run_id, [*waits, failed], frozenset(), frozenset({f"demo/1/{run_id}/run/failed/run_failed"}))
    if i % 15 == 0 and refused:
        return Plan(run_id, [Step.error(403)], frozenset(), frozenset({f"demo/1/{run_id}/run/failed/access_denied"}))
    faults = rng.sample([Step.throttle(), Step.error(503), Step.drop(), Step.error(500)], rng.randint(0, 2))
    n, rules, generated = rng.randint(0, 30), rng.randint(0, 2), rng.randint(0, 2)
    body = Step.run(make_run(n, rules, generated, job_id=run_id))
    events = _completed(run_id, n, rules, generated)
    return Plan(run_id, [*waits[:1], *faults, *waits[1:], body], events, frozenset())


@pytest.fixture
def short_tokens() -> Iterator[CdfSimulator]:
    """A simulator whose tokens live 3 s, so the worker renews them by time while the runs are in flight."""
    with CdfSimulator(project="demo", client_id="matchrelay", client_secret=SECRET, token_ttl_s=3) as simulator:
        yield simulator


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


def test_concurrent_runs_in_one_process_keep_their_own_events_and_answers(
    env: dict[str, str], short_tokens: CdfSimulator, pubsub: PubSub, tmp_path: Path
) -> None:
    """120 runs at once in one process: every event arrives, each run has only its own ending, every answer is 200."""
    sim, rng = short_tokens, random.Random(SEED)
    plans = [plan(i, rng) for i in range(RUNS)]
    for p in plans:
        sim.set_run(1, p.run_id, p.steps)
    events, events_sub = pubsub.topic("events")
    errors, errors_sub = pubsub.topic("errors")
    process_env = (
        os.environ
        | env
        | {
            "CDF_URL": sim.url,
            "IDP_TOKEN_URL": sim.token_url,
            "RELAY_TOPIC": events,
            "RELAY_ERROR_TOPIC": errors,
            "THREADS": "128",
            "POLL_INITIAL_DELAY_S": "0.2",
            "POLL_MAX_DELAY_S": "1",
            "LOG_LEVEL": "WARNING",
        }
    )
    got_events, got_errors = Collector(pubsub, events_sub), Collector(pubsub, errors_sub)
    try:
        with instance(process_env, tmp_path / "function.log") as (process, url):
            with ThreadPoolExecutor(RUNS) as pool:
                answers = pool.map(lambda p: _post(url, p.run_id), plans)
                # Revoke the tokens older than 1 s, while runs wait: those holding one renew it through a 401.
                # A younger one is spared: CDF refusing a token fetched just now is access_denied by contract.
                wait_for(lambda: sim.expire_tokens(older_than_s=1.0) > 0, 180)
                statuses = list(answers)
            peak = max(_peak_rss_mb(pid) for pid in [process.pid, *_children(process.pid)])
        want_events = frozenset().union(*(p.events for p in plans))
        want_errors = frozenset().union(*(p.errors for p in plans))
        assert statuses == [200] * RUNS
        got_events.settle(set(want_events))
        got_errors.settle(set(want_errors))
        assert got_events.ids() == want_events
        assert got_errors.ids() == want_errors
        assert len(sim.token_requests()) >= 2  # renewed by time or by 401, not one token for the whole load
        print(f"\n{RUNS} concurrent runs in one process: peak RSS {peak:.0f} MB", file=sys.__stderr__)
    finally:
        got_events.stop()
        got_errors.stop()


def _post(url: str, run_id: int) -> int:
    headers, body = binary_event(pubsub_message({"pipelineId": 1, "runId": run_id}))
    try:
        return httpx.post(url, headers=headers, content=body, timeout=300).status_code
    except httpx.HTTPError:  # reported as an answer, so one broken request fails the test legibly
        return -1


LOAD_RUNS = 150
TOKEN_LIFE_S = 2.0  # CDF stops accepting a token this long after it was issued


@contextmanager
def tokens_refused_after(sim: CdfSimulator, seconds: float) -> Iterator[None]:
    """CDF refusing every token ``seconds`` after its issue, whatever ``expires_in`` said (1 h here)."""
    stop = threading.Event()

    def revoke() -> None:
        while not stop.wait(0.05):  # the simulator's clock, sampled: a token lives 2 s to 2.05 s
            sim.expire_tokens(older_than_s=seconds)

    thread = threading.Thread(target=revoke, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


@pytest.fixture
def long_tokens() -> Iterator[CdfSimulator]:
    """A simulator whose token endpoint says a token lives an hour, so the worker keeps it until CDF refuses it."""
    with CdfSimulator(project="demo", client_id="matchrelay", client_secret=SECRET) as simulator:
        yield simulator


def test_concurrent_runs_outlive_tokens_refused_two_seconds_after_issue(
    env: dict[str, str], long_tokens: CdfSimulator, pubsub: PubSub, tmp_path: Path
) -> None:
    """150 runs at once, CDF refusing each token 2 s after its issue: all answers 200, every event, no access_denied."""
    sim, rng = long_tokens, random.Random(SEED + 1)
    plans = [plan(i, rng, refused=False) for i in range(LOAD_RUNS)]
    for p in plans:
        sim.set_run(1, p.run_id, p.steps)
    events, events_sub = pubsub.topic("events")
    errors, errors_sub = pubsub.topic("errors")
    process_env = os.environ | env | {"CDF_URL": sim.url, "IDP_TOKEN_URL": sim.token_url, "RELAY_TOPIC": events}
    process_env |= {"RELAY_ERROR_TOPIC": errors, "THREADS": "160", "POLL_INITIAL_DELAY_S": "0.2"}
    process_env |= {"POLL_MAX_DELAY_S": "1", "LOG_LEVEL": "WARNING"}
    got_events, got_errors = Collector(pubsub, events_sub), Collector(pubsub, errors_sub)
    log = tmp_path / "function.log"
    try:
        with (
            instance(process_env, log) as (_, url),
            tokens_refused_after(sim, TOKEN_LIFE_S),
            ThreadPoolExecutor(LOAD_RUNS) as pool,
        ):
            statuses = list(pool.map(lambda p: _post(url, p.run_id), plans))
        want_events = frozenset().union(*(p.events for p in plans))
        want_errors = frozenset().union(*(p.errors for p in plans))
        assert statuses == [200] * LOAD_RUNS
        got_events.settle(set(want_events))
        got_errors.settle(set(want_errors))
        assert got_events.ids() == want_events
        assert got_errors.ids() == want_errors
        assert {data["reason"] for data in got_errors.events.values()} == {"run_failed"}
        assert len(sim.token_requests()) >= 2  # CDF refused the first token while runs were still polling
        retried = log.read_text().count("fetched just now, so another follows")
        print(
            f"\n{LOAD_RUNS} runs, tokens refused after 2 s: {len(sim.token_requests())} token fetches, "
            f"{retried} fresh tokens refused and tried again",
            file=sys.__stderr__,
        )
    finally:
        got_events.stop()
        got_errors.stop()
