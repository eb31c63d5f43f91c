"""Continuations: a completed run published over several invocations (contract, section 4b).

A continuation trigger is a run trigger with one more field, written by the
worker for itself::

    {"pipelineId": 1, "runId": 456, "project": "acme", "continuation": {"segment": 2, "skip": 400000}}

``segment`` numbers the invocation that serves it (the original trigger's is 0);
``skip`` says how many of the run's result items (matches, then rules, in the
order the results body lists them; a split rule counts once) earlier segments
had confirmed. Pure: parsing, the message, and the walk over a body's items.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from handlers.core.deadline import Deadline
from handlers.core.errors import InvalidResponse
from handlers.core.events import Event
from handlers.core.models import MAX_ID, is_integer
from handlers.core.normalize import ItemSource

FIELD = "continuation"
SKIP_CHECK = 1024  # skipped items between two looks at the clock: cheap, and a few milliseconds apart
KEYS = frozenset({"segment", "skip"})


@dataclass(frozen=True)
class Continuation:
    """Where a run's publishing goes on: segment ``segment``, after ``skip`` confirmed items."""

    segment: int
    skip: int

    def after(self, produced: int) -> Continuation:
        """The continuation that follows this segment once ``produced`` more items are confirmed."""
        return Continuation(self.segment + 1, self.skip + produced)


FIRST = Continuation(0, 0)  # what an ordinary run trigger starts with


def parse_continuation(value: Any, problems: list[str]) -> Continuation | None:
    """``continuation`` exactly as the worker writes it: two JSON integers, nothing else; else a problem."""
    if isinstance(value, Mapping) and set(value) == KEYS:
        segment, skip = value["segment"], value["skip"]
        if is_integer(segment) and is_integer(skip, 0):
            return Continuation(segment, skip)
    problems.append(f"{FIELD} must be {{'segment': 1..{MAX_ID}, 'skip': 0..{MAX_ID}}} as matchrelay writes it")
    return None


def trigger_message(fields: Mapping[str, Any], traceparent: str | None) -> Event:
    """A trigger the worker publishes for itself: a JSON body, and the trace it belongs to as ``traceparent``."""
    attributes = {"traceparent": traceparent} if traceparent else {}
    return Event(json.dumps(dict(fields), separators=(",", ":")).encode(), attributes)


def continuation_message(
    project: str, pipeline_id: int, run_id: int, after: Continuation, traceparent: str | None
) -> Event:
    fields = {"pipelineId": pipeline_id, "runId": run_id, "project": project}
    return trigger_message({**fields, FIELD: {"segment": after.segment, "skip": after.skip}}, traceparent)


class Segment:
    """The items of one segment: those after ``start.skip``, while the deadline leaves time to produce.

    Skipped items are parsed (the body is read front to back) but no event is built for them; a segment whose
    skipping alone outlasts its producing time stops there, having produced nothing.
    """

    def __init__(self, body: ItemSource, start: Continuation, deadline: Deadline) -> None:
        self._body, self.start, self._deadline = body, start, deadline
        self.produced = 0
        self.stopped = False  # the deadline ended the segment before the body did

    def items(self) -> Iterator[tuple[str, int, Any]]:
        seen = 0
        for item in self._body.items():
            seen += 1
            if seen <= self.start.skip:
                if seen % SKIP_CHECK == 0 and not self._deadline.producing():
                    self.stopped = True  # skipping alone took the segment's time: nothing produced
                    return
                continue
            if not self._deadline.producing():
                self.stopped = True
                return
            self.produced += 1
            yield item
        if seen < self.start.skip:
            raise InvalidResponse(f"the run has {seen} result items, fewer than the {self.start.skip} to skip")

    @property
    def next(self) -> Continuation:
        return self.start.after(self.produced)
