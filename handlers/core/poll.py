"""Stage 2: poll CDF until the run is finished (contract, section 4).

A small state machine over the answers ``handlers.cdf.api`` translates: a finished
run ends it, an unfinished one or a transient error waits and polls again, a
permanent error ends it with a reason. It stops early when the invocation's
budget would be overrun (hand the message back) or when the trigger has grown
older than ``RUN_MAX_WAIT_S`` (``wait_timeout``). Clock, sleep and randomness are
injected, so tests run the whole schedule without waiting.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from handlers.core.errors import (
    BudgetExhausted,
    InvalidResponse,
    MalformedResponse,
    ShuttingDown,
    TransientError,
    WaitTimeout,
)
from handlers.core.models import RunSummary
from handlers.core.progress import NO_PROGRESS, Progress

log = logging.getLogger("matchrelay.poll")
_flows = logging.getLogger("matchrelay")  # the line a flow writes of a run still going, under the flows' logger
MAX_MALFORMED_RETRIES = 3  # "at most 3 times in a row; then invalid_response"
T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits uniform(initial, min(cap, initial * 2**n))."""

    initial: float
    cap: float

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap, self.initial * 2 ** min(attempt, 64))
        return rng.uniform(self.initial, max(self.initial, ceiling))


@dataclass
class Clock:
    """The edges of time the poller needs; tests pass fakes."""

    monotonic: Callable[[], float]
    sleep: Callable[[float], bool]  # returns True when woken by shutdown
    rng: random.Random = field(default_factory=random.Random)


@dataclass
class Deadlines:
    """Monotonic instants: when this invocation must hand back, when the run is waited out."""

    budget: float | None
    wait: float


@dataclass
class PollStats:
    polls: int = 0
    retries: int = 0
    last: RunSummary | None = None  # the latest valid answer, for wait_timeout's event


@dataclass
class Poller:
    backoff: Backoff
    clock: Clock
    stats: PollStats = field(default_factory=PollStats)
    progress: Progress = NO_PROGRESS  # the CLI's display on a terminal; a no-op otherwise

    def until_done(self, step: Callable[[], T | None], deadlines: Deadlines) -> T:
        """Call ``step`` until it returns a result, waiting between calls.

        ``step`` returns ``None`` while the run is not finished and raises
        ``TransientError`` for answers worth retrying; a ``MalformedResponse``
        counts towards ``invalid_response``. Raises a ``PermanentError`` or a
        ``HandBack`` when the waiting must end.
        """
        attempt, malformed = 0, 0
        while True:
            retry_after: float | None = None
            self.stats.polls += 1
            try:
                result = step()
                malformed = 0
                if result is not None:
                    return result
            except TransientError as exc:
                malformed = malformed + 1 if isinstance(exc, MalformedResponse) else 0
                if malformed > MAX_MALFORMED_RETRIES:
                    raise InvalidResponse(f"{exc} ({malformed} times in a row)") from None
                self.stats.retries += 1
                retry_after = exc.retry_after
                log.warning("%s; retrying", exc)
            self._wait(retry_after, attempt, deadlines)
            attempt += 1

    def _wait(self, retry_after: float | None, attempt: int, deadlines: Deadlines) -> None:
        # Retry-After can only lengthen the wait: "0" or a date in the past must not make us hammer CDF.
        backoff = self.backoff.delay(attempt, self.clock.rng)
        delay = backoff if retry_after is None else max(retry_after, backoff)
        now = self.clock.monotonic()
        if now >= deadlines.wait:
            status = self.stats.last.status if self.stats.last else "unknown"
            raise WaitTimeout(f"the run did not finish within RUN_MAX_WAIT_S (last status: {status})")
        if deadlines.budget is not None and now + delay > deadlines.budget:
            raise BudgetExhausted("POLL_BUDGET_S would run out before the next poll")
        # Never sleep past the point where the trigger is waited out: poll once more then.
        pause = max(0.0, min(delay, deadlines.wait - now))
        self.progress.waiting(self.stats.last.status if self.stats.last else "unknown", self.stats.polls, pause)
        if self.clock.sleep(pause):
            raise ShuttingDown("the instance is shutting down")


def waits(now: float, wall: float, born: float | None, run_max_wait_s: float, budget: float | None) -> Deadlines:
    """A run's waiting, on the monotonic clock ``now``: until ``budget`` (None: no end for this invocation), and
    until the trigger born at ``born`` (epoch seconds; None: now) is ``run_max_wait_s`` old."""
    return Deadlines(budget, now + ((wall if born is None else born) + run_max_wait_s - wall))


def still_running(summary: RunSummary) -> bool:
    """True, with its INFO line, while CDF says the run is not finished: poll again later."""
    if summary.finished:
        return False
    _flows.info("run is %s; polling again later", summary.status)
    return True


def summary_of(body: dict[str, Any]) -> RunSummary:
    """The run fields of an answer; ``MalformedResponse`` when it is not a run."""
    try:
        return RunSummary.model_validate(body)
    except ValidationError as exc:
        raise MalformedResponse(f"CDF answered a body that is not a run ({exc.error_count()} problems)") from None
