"""The wait between polls (contract, section 4): exponential backoff with jitter, from the initial delay to the cap."""

from __future__ import annotations

import random

import pytest

from handlers.core.models import RunSummary
from handlers.core.poll import Backoff, Deadlines, still_running, waits

SCHEDULES = [
    pytest.param(1.0, 30.0, id="defaults"),
    pytest.param(0.01, 0.05, id="tests"),
    pytest.param(2.5, 7.0, id="uneven"),
    pytest.param(5.0, 5.0, id="initial-is-cap"),
]


class _Top(random.Random):
    """A random source that always picks the top of the range."""

    def uniform(self, a: float, b: float) -> float:
        return b


class _Bottom(random.Random):
    """A random source that always picks the bottom of the range."""

    def uniform(self, a: float, b: float) -> float:
        return a


@pytest.mark.parametrize(("initial", "cap"), SCHEDULES)
def test_backoff_first_attempt_waits_initial(initial: float, cap: float) -> None:
    """Attempt 0 waits exactly ``POLL_INITIAL_DELAY_S``, whatever the random source."""
    backoff = Backoff(initial, cap)
    assert {backoff.delay(0, random.Random(seed)) for seed in range(50)} == {initial}


@pytest.mark.parametrize(("initial", "cap"), SCHEDULES)
def test_backoff_delay_within_exponential_bounds(initial: float, cap: float) -> None:
    """Attempt n waits between ``initial`` and ``min(cap, initial * 2**n)``."""
    backoff, rng = Backoff(initial, cap), random.Random(7)
    for attempt in range(40):
        ceiling = min(cap, initial * 2**attempt)
        for _ in range(20):
            assert initial <= backoff.delay(attempt, rng) <= ceiling


def test_backoff_ceiling_doubles_then_caps() -> None:
    """The upper bound doubles from ``initial`` each attempt until it reaches the cap, and stays there."""
    backoff, top = Backoff(1.0, 30.0), _Top()
    assert [backoff.delay(n, top) for n in range(8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_backoff_floor_is_initial() -> None:
    """The lower bound of every attempt is ``initial``, never less."""
    backoff, bottom = Backoff(0.5, 30.0), _Bottom()
    assert {backoff.delay(n, bottom) for n in range(20)} == {0.5}


@pytest.mark.parametrize("attempt", [10, 63, 64, 100, 10_000])
def test_backoff_cap_reached_for_large_attempts(attempt: int) -> None:
    """However many attempts, the wait reaches the cap without exceeding it or overflowing."""
    backoff = Backoff(1.0, 30.0)
    assert backoff.delay(attempt, _Top()) == 30.0
    delays = [backoff.delay(attempt, random.Random(seed)) for seed in range(200)]
    assert all(1.0 <= d <= 30.0 for d in delays)
    assert max(delays) > 25.0


def test_backoff_jitter_spreads_delays() -> None:
    """Past the first attempt, delays are jittered rather than all equal to the bound."""
    backoff, rng = Backoff(1.0, 30.0), random.Random(3)
    delays = [backoff.delay(6, rng) for _ in range(100)]
    assert len(set(delays)) > 90
    assert min(delays) < 10.0 < max(delays)


def test_backoff_deterministic_with_seeded_random() -> None:
    """The same seed gives the same schedule; another seed a different one."""
    backoff = Backoff(1.0, 30.0)

    def schedule(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [backoff.delay(n, rng) for n in range(12)]

    assert schedule(42) == schedule(42)
    assert schedule(42) != schedule(43)


def test_waits_count_from_the_trigger_or_from_now() -> None:
    """A run is waited for until its trigger is RUN_MAX_WAIT_S old, on the monotonic clock; budget as given."""
    assert waits(now=50.0, wall=1000.0, born=990.0, run_max_wait_s=60.0, budget=None) == Deadlines(None, 100.0)
    assert waits(now=50.0, wall=1000.0, born=None, run_max_wait_s=60.0, budget=80.0) == Deadlines(80.0, 110.0)


@pytest.mark.parametrize(("status", "running"), [("Queued", True), ("Running", True), ("Completed", False)])
def test_still_running_says_so_on_the_flows_line(status: str, running: bool, caplog: pytest.LogCaptureFixture) -> None:
    """An unfinished run is polled again later, with one INFO line under the flows' logger; a finished one is not."""
    summary = RunSummary.model_validate({"status": status, "jobId": 1, "statusTime": 1, "createdTime": 1})
    with caplog.at_level("INFO", logger="matchrelay"):
        assert still_running(summary) is running
    lines = [(r.name, r.getMessage()) for r in caplog.records]
    assert lines == ([("matchrelay", f"run is {status}; polling again later")] if running else [])
