"""One way to retry a request that is not a poll: a read of links, a write, a pipeline (contract, sections 4, 8).

A poll waits for a run to finish (``handlers.core.poll``); everything else the
link, and the flows after it, send to CDF is tried until CDF answers, with
section 4's backoff between transient answers (``Retry-After`` only ever
lengthening the wait), until the next try could not start before ``cutoff``:
then ``OutOfTime``, which hands the message back. Three malformed answers in a
row are ``InvalidResponse``, as for a poll. Clock and sleep are injected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from handlers.core.errors import InvalidResponse, MalformedResponse, OutOfTime, ShuttingDown, TransientError
from handlers.core.poll import MAX_MALFORMED_RETRIES, Backoff, Clock

log = logging.getLogger("matchrelay.poll")
T = TypeVar("T")


def retried(call: Callable[[], T], backoff: Backoff, clock: Clock, cutoff: float | None, late: str) -> T:
    """What ``call`` answers, tried again after each ``TransientError`` while a try can start before ``cutoff``
    (None: for ever); ``late`` says what ``OutOfTime`` is about when it cannot."""
    attempt, malformed = 0, 0
    while True:
        try:
            return call()
        except TransientError as exc:
            malformed = malformed + 1 if isinstance(exc, MalformedResponse) else 0
            if malformed > MAX_MALFORMED_RETRIES:
                raise InvalidResponse(f"{exc} ({malformed} times in a row)") from None
            log.warning("%s; retrying", exc)
            delay = backoff.delay(attempt, clock.rng)
            if exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
        if cutoff is not None and clock.monotonic() + delay > cutoff:
            raise OutOfTime(late)
        if clock.sleep(delay):
            raise ShuttingDown("the instance is shutting down")
        attempt += 1
