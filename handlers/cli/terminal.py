"""The CLI's display on a terminal, drawn by rich (``handlers.cli.display`` picks it; see there for what it shows).

Imported only when stderr is a terminal, so neither the function nor a piped
command loads rich through matchrelay.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from handlers.core.progress import NoProgress

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live
    from rich.spinner import Spinner
    from rich.text import Text


class TerminalProgress(NoProgress):
    """Progress drawn by rich on ``console``: a live line while the command runs, plain lines for what lasts."""

    REFRESH_PER_SECOND = 8

    def __init__(
        self,
        console: Console,
        title: str = "",
        *,
        live: bool = True,
        take_logs: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console, self.title, self._clock, self.takes_logs = console, title, clock, take_logs
        self._lock = threading.Lock()
        self._status: str | None = None
        self._polls = 0
        self._next_at: float | None = None
        self._published = self._confirmed = self._pipelines = self._runs = 0
        self._first_published: float | None = None
        self._last_confirmed: float | None = None
        self._matches = self._sources = self._written = 0  # a link's
        self._decided: Counter[str] = Counter()
        self._link_started: float | None = None
        self._last_written: float | None = None
        self._handler: logging.Handler | None = None
        self._live: Live | None = None
        self._spinner: Spinner | None = None
        if live:
            from rich.live import Live

            self._live = Live(
                console=console,
                get_renderable=self.__rich__,
                refresh_per_second=self.REFRESH_PER_SECOND,
                transient=True,  # the summary line replaces it
                redirect_stdout=False,  # stdout carries the events under --stdout: never through rich
                redirect_stderr=False,
            )

    @property
    def animated(self) -> bool:
        """Whether a live line is drawn (not under ``--stdout`` with stdout on the terminal too)."""
        return self._live is not None

    # -- what the flow reports

    def waiting(self, status: str, polls: int, next_in_s: float) -> None:
        with self._lock:
            changed = status != self._status
            self._status, self._polls, self._next_at = status, polls, self._clock() + next_in_s
        if changed:
            self._say(f"{self.title}: {status}" if self.title else status, f"(poll {polls})")
        if self._live is not None and self._live.is_started:
            self._live.refresh()  # each poll shows at once, not at the next tick

    def published(self, n: int) -> None:
        with self._lock:
            if self._first_published is None:
                self._first_published = self._clock()
            self._published += n

    def confirmed(self, n: int) -> None:
        with self._lock:
            self._confirmed += n
            self._last_confirmed = self._clock()

    def found(self, pipelines: int = 0, runs: int = 0) -> None:
        with self._lock:
            self._pipelines += pipelines
            self._runs += runs

    def linking(self, matches: int = 0, sources: int = 0, written: int = 0) -> None:
        with self._lock:
            now = self._clock()
            self._link_started = now if self._link_started is None else self._link_started
            self._matches += matches
            self._sources += sources
            self._written += written
            self._last_written = now if written else self._last_written

    def decided(self, counts: Mapping[str, int]) -> None:
        with self._lock:
            self._decided.update(counts)  # zeros too: the first report fixes the order, run.linked's

    def done(self, outcome: str, polls: int | None = None, detail: str = "") -> None:
        from rich.text import Text

        mark, style = _MARKS.get(outcome, ("!", "yellow"))
        line = Text.assemble((f"{mark} {outcome}", f"bold {style}"))
        if self.title:
            line.append(f" {self.title}")
        with self._lock:
            parts = self._counts(final=True)
        if polls:
            parts.append(f"{polls} poll{'s' if polls != 1 else ''}")
        if parts:
            line.append(": " + ", ".join(parts))
        if detail:
            line.append(f" ({detail})")
        self.console.print(line, soft_wrap=True)

    # -- the CLI's side

    def take_logs(self, level: str) -> None:
        """Swap the JSON handler ``setup_logging`` installed for a rich one above the live line."""
        if not self.takes_logs:
            return
        from rich.logging import RichHandler

        from handlers.process.logs import JsonFormatter

        root = logging.getLogger()
        for old in [h for h in root.handlers if isinstance(h.formatter, JsonFormatter) or h is self._handler]:
            root.removeHandler(old)
        threshold = logging.DEBUG if level.upper() == "DEBUG" else max(logging.WARNING, _level(level))
        self._handler = RichHandler(threshold, self.console, show_path=False, markup=False, log_time_format="%H:%M:%S")
        root.addHandler(self._handler)

    def __enter__(self) -> TerminalProgress:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.stop()

    # -- drawing

    def __rich__(self) -> RenderableType:
        """The live line, as of now: a spinner, the title, then what the command is doing."""
        from rich.spinner import Spinner

        if self._spinner is None:  # one spinner, so that it turns
            self._spinner = Spinner("dots", style="cyan")
        self._spinner.update(text=self.line())
        return self._spinner

    def line(self) -> Text:
        from rich.text import Text

        with self._lock:
            parts = self._counts(final=False)
            if self._first_published is None and self._status is not None:
                assert self._next_at is not None
                next_in = self._next_at - self._clock()
                soon = f"next poll in {next_in:.1f} s" if next_in >= 0.05 else "polling"
                parts[:0] = [self._status, f"poll {self._polls}", soon]
        if not parts:
            parts = ["asking CDF"]
        line = Text(self.title, style="bold") if self.title else Text()
        line.append((" · " if self.title else "") + " · ".join(parts))
        return line

    def _counts(self, final: bool) -> list[str]:
        """Pipelines and runs found, events published and confirmed with their rates (under ``self._lock``)."""
        parts = []
        if self._pipelines or self._runs:
            parts.append(f"{self._pipelines:,} pipelines, {self._runs:,} runs found")
        if self._first_published is not None:
            end = self._last_confirmed if final and self._last_confirmed is not None else self._clock()
            seconds = end - self._first_published
            parts.append(f"{self._published:,} published" + ("" if final else _rate(self._published, seconds)))
            confirmed = f"{self._confirmed:,} confirmed"
            if final and self._last_confirmed is not None:
                confirmed += f" in {seconds:.2f} s"
            parts.append(confirmed + _rate(self._confirmed, seconds))
        if self._link_started is not None:
            parts += self._link_counts(final)
        return parts

    def _link_counts(self, final: bool) -> list[str]:
        """A link's matches read, sources checked, links written with their rate, and its decisions so far."""
        assert self._link_started is not None
        end = self._last_written if final and self._last_written is not None else self._clock()
        seconds = end - self._link_started
        written = f"{self._written:,} links written"
        written += f" in {seconds:.2f} s" if final and self._written else _rate(self._written, seconds)
        parts = [f"{self._sources:,} sources checked", written]
        if self._matches or not self._sources:  # an unlink reads no matches: it lists the sources the run wrote
            parts.insert(0, f"{self._matches:,} matches read")
        parts += [f"{n:,} {_words(name)}" for name, n in self._decided.items() if n]
        return parts

    def _say(self, *words: str) -> None:
        from rich.text import Text

        self.console.print(Text(" ".join(words)), soft_wrap=True)


_DONE, _FAILED = ("✓", "green"), ("✗", "red")
_MARKS = {"completed": _DONE, "swept": _DONE, "linked": _DONE, "unlinked": _DONE, "failed": _FAILED, "refused": _FAILED}


def _words(name: str) -> str:
    """``belowThreshold`` as ``below threshold``: run.linked's count names, read aloud."""
    return "".join(f" {c.lower()}" if c.isupper() else c for c in name)


def _rate(n: int, seconds: float) -> str:
    return f" ({n / seconds:,.0f}/s)" if n and seconds > 0 else ""


def _level(name: str) -> int:
    value = logging.getLevelName(name.upper())
    return value if isinstance(value, int) else logging.INFO
