"""Time accounting for one invocation (contract, section 4b). Pure: the clock is injected.

Cloud Run answers a request that outlives the function's timeout with 504 and
lets the code run on, throttled, so every invocation answers before
``INVOCATION_TIMEOUT_S``, counted from when the worker received the request.
``Deadline`` says how much of that is left and splits it into three phases:

- producing: new events may be started while more than ``margin`` is left;
- ending: what is in flight is waited for and a continuation is published, each
  wait bounded by ``ending_s()`` so that the answer goes out at least a quarter
  of the margin before the deadline;
- I/O: a CDF request is given at most the time left, and a read may stall at most
  half the margin, so a stalled answer cannot carry the invocation past the end.

The margin is 10 % of the timeout, between 2 s and 60 s: enough to confirm the
messages flow control lets be in flight and to publish one more, small against
the timeout, so a segment of a large run does most of its work.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

MARGIN_FRACTION = 0.1
MIN_MARGIN_S = 2.0
MAX_MARGIN_S = 60.0
MIN_REQUEST_S = 0.05  # a request is never given less: httpx treats 0 as "no timeout"


def margin_for(timeout_s: float) -> float:
    """The time an invocation keeps for ending: 10 % of ``timeout_s``, within [2 s, 60 s]."""
    return min(MAX_MARGIN_S, max(MIN_MARGIN_S, timeout_s * MARGIN_FRACTION))


@dataclass(frozen=True)
class Deadline:
    """The monotonic instant ``end`` by which an invocation answers, and the ``margin`` it keeps."""

    end: float
    margin: float
    clock: Callable[[], float]

    @classmethod
    def after(cls, timeout_s: float, received: float, clock: Callable[[], float]) -> Deadline:
        """The deadline of a request received at ``received`` (on ``clock``), timing out after ``timeout_s``."""
        return cls(received + timeout_s, margin_for(timeout_s), clock)

    @classmethod
    def never(cls, clock: Callable[[], float]) -> Deadline:
        """No deadline: the ``run`` command, or a run with nowhere to continue."""
        return cls(math.inf, 0.0, clock)

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.end)

    @property
    def cutoff(self) -> float | None:
        """The instant after which no new work may start (the margin kept for ending); None without a deadline."""
        return self.end - self.margin if self.bounded else None

    def until_cutoff(self) -> float | None:
        """How long work may still wait to start (a write for its turn): until the cutoff; None without a deadline."""
        return None if not self.bounded else max(0.0, self.left() - self.margin)

    def left(self) -> float:
        """Seconds until the invocation must have answered."""
        return self.end - self.clock()

    def producing(self) -> bool:
        """True while there is time to start another event: more than the margin left."""
        return self.left() > self.margin

    def ending_s(self, cap: float) -> float:
        """How long a closing wait may take, at most ``cap``: the time left but a quarter of the margin."""
        return max(0.0, min(cap, self.left() - self.margin / 4))

    def request_s(self, timeout_s: float) -> float:
        """A CDF request's timeout: ``timeout_s``, but never past the ending phase."""
        return max(MIN_REQUEST_S, min(timeout_s, self.left() - self.margin / 2))

    def read_s(self, timeout_s: float) -> float:
        """How long one read may stall: ``timeout_s``, at most half the margin (a read begun while producing
        then ends before the ending phase is over)."""
        return timeout_s if not self.bounded else max(MIN_REQUEST_S, min(timeout_s, self.margin / 2))
