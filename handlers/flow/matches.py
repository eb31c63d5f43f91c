"""A run's matches read from its body a batch at a time, under the invocation's deadline: the link's reading and
the hand-over's second reading share it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from handlers.cdf.results import RunBody
from handlers.core.deadline import Deadline
from handlers.core.errors import OutOfTime


def matches(body: RunBody, deadline: Deadline, what: str) -> Iterator[tuple[int, list[Any]]]:
    """Each batch of the run's matches with the place of its first in the run; once a batch has been dealt with and
    the deadline allows no new work, ``OutOfTime`` naming ``what`` was being read and how far it got."""
    for batch in body.batches():
        yield body.counts["matches"] - len(batch), batch
        if not deadline.producing():
            raise OutOfTime(f"the deadline came while reading {what} ({body.counts['matches']} read)")
