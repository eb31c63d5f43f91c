"""What a flow reports as it goes, for whoever watches: the ``Progress`` protocol and its no-op.

The flows (polling, publishing, a sweep, a link) are handed a ``Progress`` and call it;
they never know what draws it. ``NO_PROGRESS`` is the default everywhere, so the
function's path costs one empty call per poll. The terminal's display lives in
``handlers.cli``, which depends on this module and never the other way round.
Every count is an increment, "n more", so callers on several threads can report
without adding up.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Protocol


class Progress(Protocol):
    """What the flow reports as it goes; every count is an increment."""

    def waiting(self, status: str, polls: int, next_in_s: float) -> None:
        """The run is ``status`` after ``polls`` polls; the next poll comes in ``next_in_s`` seconds."""
        ...

    def published(self, n: int) -> None:
        """``n`` more events (or triggers) handed to the sink."""
        ...

    def confirmed(self, n: int) -> None:
        """``n`` more confirmed by the sink (Pub/Sub, or printed under ``--stdout``)."""
        ...

    def found(self, pipelines: int = 0, runs: int = 0) -> None:
        """A sweep read ``pipelines`` more pipelines and found ``runs`` more runs."""
        ...

    def linking(self, matches: int = 0, sources: int = 0, written: int = 0) -> None:
        """A link read ``matches`` more of the run's matches, the links in place of ``sources`` more sources, and
        wrote ``written`` more links."""
        ...

    def decided(self, counts: Mapping[str, int]) -> None:
        """More of a link's sources decided: how many more per outcome, under ``run.linked``'s names."""
        ...

    def done(self, outcome: str, polls: int | None = None, detail: str = "") -> None:
        """The command ended with ``outcome`` (an ``Outcome.kind``, or a link's)."""
        ...


class NoProgress:
    """Reports nowhere: what the function's path is handed, and a command's display off a terminal.

    It is also a display that does nothing (a context manager, ``take_logs``), so a
    command holds it exactly as it holds the terminal's.
    """

    def waiting(self, status: str, polls: int, next_in_s: float) -> None:
        pass

    def published(self, n: int) -> None:
        pass

    def confirmed(self, n: int) -> None:
        pass

    def found(self, pipelines: int = 0, runs: int = 0) -> None:
        pass

    def linking(self, matches: int = 0, sources: int = 0, written: int = 0) -> None:
        pass

    def decided(self, counts: Mapping[str, int]) -> None:
        pass

    def done(self, outcome: str, polls: int | None = None, detail: str = "") -> None:
        pass

    def take_logs(self, level: str) -> None:
        """Log lines stay JSON lines."""

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        pass


NO_PROGRESS = NoProgress()
