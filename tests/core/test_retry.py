"""One way to retry a request that is not a poll (handlers/core/retry.py): backoff, Retry-After, the cutoff."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from handlers.core.errors import (
    AccessDenied,
    InvalidResponse,
    MalformedResponse,
    OutOfTime,
    ShuttingDown,
    TransientError,
)
from handlers.core.poll import Backoff, Clock
from handlers.core.retry import retried


class FakeClock:
    """Time that moves only when slept; ``stop_at`` makes a sleep say the instance is shutting down."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.now, self.slept, self.stop_at = 100.0, list[float](), stop_at

    def clock(self) -> Clock:
        return Clock(lambda: self.now, self.sleep, random.Random(3))

    def sleep(self, seconds: float) -> bool:
        self.slept.append(seconds)
        self.now += seconds
        return self.stop_at is not None and len(self.slept) >= self.stop_at


def answers(*outcomes: Any) -> Callable[[], Any]:
    """A call that raises or returns each of ``outcomes`` in turn."""
    pending = list(outcomes)

    def call() -> Any:
        outcome = pending.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return call


BACKOFF = Backoff(1.0, 8.0)


def test_retry_returns_the_first_answer_after_transient_ones() -> None:
    """Transient answers are tried again after growing waits, and the first answer is returned."""
    time = FakeClock()
    call = answers(TransientError("busy"), TransientError("busy"), "done")
    assert retried(call, BACKOFF, time.clock(), None, "late") == "done"
    assert len(time.slept) == 2
    assert all(1.0 <= s <= 8.0 for s in time.slept)


def test_retry_after_only_lengthens_the_wait() -> None:
    """A Retry-After longer than the backoff is waited; a shorter one is not."""
    time = FakeClock()
    call = answers(TransientError("slow down", retry_after=30.0), TransientError("now", retry_after=0.0), 1)
    assert retried(call, BACKOFF, time.clock(), None, "late") == 1
    assert time.slept[0] == 30.0
    assert time.slept[1] >= 1.0


def test_retry_stops_with_out_of_time_when_the_next_try_would_start_past_the_cutoff() -> None:
    """A wait that would end past the cutoff is not begun: OutOfTime, saying what was late."""
    time = FakeClock()
    with pytest.raises(OutOfTime, match="writes were late") as caught:
        retried(answers(TransientError("busy", retry_after=50.0)), BACKOFF, time.clock(), 120.0, "writes were late")
    assert time.slept == []
    assert caught.value.code == "deadline"


@pytest.mark.parametrize(("malformed", "error"), [(3, None), (4, InvalidResponse)])
def test_retry_gives_up_on_malformed_answers_after_three_in_a_row(malformed: int, error: type | None) -> None:
    """Three malformed answers in a row are retried; a fourth is invalid_response."""
    call = answers(*[MalformedResponse("not JSON")] * malformed, "ok")
    if error is None:
        assert retried(call, BACKOFF, FakeClock().clock(), None, "late") == "ok"
    else:
        with pytest.raises(error):
            retried(call, BACKOFF, FakeClock().clock(), None, "late")


def test_retry_counts_malformed_answers_in_a_row_only() -> None:
    """Another transient answer between malformed ones starts the count again."""
    bad, busy = MalformedResponse("not JSON"), TransientError("busy")
    call = answers(bad, bad, bad, busy, bad, bad, bad, "ok")
    assert retried(call, BACKOFF, FakeClock().clock(), None, "late") == "ok"


def test_retry_passes_a_permanent_error_at_once() -> None:
    """A permanent answer is not retried."""
    time = FakeClock()
    with pytest.raises(AccessDenied):
        retried(answers(AccessDenied("no")), BACKOFF, time.clock(), None, "late")
    assert time.slept == []


def test_retry_hands_back_when_the_instance_is_shutting_down() -> None:
    """A sleep woken by SIGTERM hands the message back."""
    with pytest.raises(ShuttingDown):
        retried(answers(TransientError("busy"), "never"), BACKOFF, FakeClock(stop_at=1).clock(), None, "late")
