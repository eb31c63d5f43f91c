"""A sweep's window of run creation times (contract, section 2b). Pure: no clock, no I/O.

``runsCreated`` names the window in one of two forms, and nothing else:

- ``{"windowS": W}``: the last whole window of W seconds (60 to 31 days) before a
  moment, aligned to multiples of W since the Unix epoch;
- ``{"from": F, "to": T}``: epoch milliseconds, ``0 <= F < T``, at most 31 days.

A window ``[from, to)`` includes ``from`` and excludes ``to``, so consecutive
windows cover every millisecond exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from handlers.core.models import MAX_ID, is_integer

FIELD = "runsCreated"
MIN_WINDOW_S, MAX_WINDOW_S = 60, 2_678_400  # one minute, 31 days
MAX_SPAN_MS = MAX_WINDOW_S * 1000
ROLLING, FIXED = frozenset({"windowS"}), frozenset({"from", "to"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in epoch milliseconds: the contract's ``from`` and ``to``."""

    start: int
    end: int

    def holds(self, created_ms: int) -> bool:
        return self.start <= created_ms < self.end

    @property
    def text(self) -> str:
        """``{from}-{to}``, as a sweep's ``ce-subject`` and ``ce-id`` write it."""
        return f"{self.start}-{self.end}"

    def as_data(self) -> dict[str, int]:
        return {"from": self.start, "to": self.end}


@dataclass(frozen=True)
class Rolling:
    """``{"windowS": W}``: which window it is depends on when the message was published."""

    seconds: int

    def before(self, moment_ms: int) -> Window:
        """The last whole window of ``seconds`` before ``moment_ms``: ``[(k-1)·W, k·W)`` with ``k = ⌊t/W⌋``."""
        width = self.seconds * 1000
        k = moment_ms // width
        return Window(max(0, (k - 1) * width), k * width)


Span = Window | Rolling


def epoch_ms(moment: datetime) -> int:
    """``moment`` in whole epoch milliseconds, exactly (timedelta arithmetic, no float rounding)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def resolve(span: Span, published: datetime | None, now_s: float) -> Window:
    """The window a sweep covers: ``Rolling`` counts from the publish time, else from ``now_s`` (receipt)."""
    if isinstance(span, Window):
        return span
    moment = epoch_ms(published) if published is not None else int(now_s * 1000)
    return span.before(moment)


def parse_span(value: Any, problems: list[str]) -> Span | None:
    """``runsCreated`` exactly as the contract writes it (one form, its keys only, JSON integers); else a problem."""
    keys = frozenset(value) if isinstance(value, Mapping) else frozenset()
    if keys == ROLLING and isinstance(value, Mapping):
        seconds = value["windowS"]
        if is_integer(seconds, MIN_WINDOW_S, MAX_WINDOW_S):
            return Rolling(seconds)
        problems.append(
            f"{FIELD}.windowS must be an integer from {MIN_WINDOW_S} to {MAX_WINDOW_S}, got {_show(seconds)}"
        )
        return None
    if keys == FIXED and isinstance(value, Mapping):
        return _fixed(value["from"], value["to"], problems)
    problems.append(
        f"{FIELD} must be {{'windowS': W}} or {{'from': F, 'to': T}} (one form, nothing else), got {_show(value)}"
    )
    return None


def _fixed(start: Any, end: Any, problems: list[str]) -> Window | None:
    if not (is_integer(start, 0) and is_integer(end, 0)):
        problems.append(f"{FIELD}.from and .to must be integers from 0 to {MAX_ID} (epoch ms)")
    elif start >= end:
        problems.append(f"{FIELD}.from must be before .to, got {start} and {end}")
    elif end - start > MAX_SPAN_MS:
        problems.append(f"{FIELD} spans {end - start} ms, more than 31 days ({MAX_SPAN_MS} ms)")
    else:
        return Window(start, end)
    return None


def _show(value: Any) -> str:
    return json.dumps(value, default=str)[:64]
