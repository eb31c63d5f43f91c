"""Progress on a terminal for ``python main.py run``, ``sweep`` and ``link``.

The flow says what it is doing through a ``Progress``: the poller before each
wait (``waiting``), a wrapping sink as events are handed on and once the inner
sink confirms them (``published``, ``confirmed``), a sweep as it finds runs
(``found``), a link as it reads, checks and writes (``linking``, ``decided``), the
command at its end (``done``). Every count is an increment:
"n more", so callers on several threads can report without adding up.

``NO_PROGRESS`` is the default everywhere: a no-op, so the function's path is
unchanged and costs one empty call per poll. This module imports ``rich`` only
when a ``TerminalProgress`` is built, never on the function's path (httpx,
though, imports its own CLI, rich included, whenever rich is installed).

A command shows progress in four steps: ``shown = on_terminal(title, ...)``;
``settings_for(shown, ...)`` (logs set up and handed to the display, settings read);
``attach(relay, shown)`` (the poller's waits and the sink's events then report by
themselves; a sweep adds ``relay.progress.found(pipelines=1, runs=n)`` per
pipeline read), or ``linker.progress = shown`` for a link; and
``with shown: ...; shown.done(outcome.kind, ...)``.

``on_terminal`` picks for the CLI: when stderr is not a terminal, ``NO_PROGRESS``
and the JSON log lines of contract section 7, exactly as ever. When it is, a
``TerminalProgress`` on stderr: a live line (the run's status, the poll count and
a countdown to the next poll; then events published and confirmed, with rates;
for a sweep, pipelines and runs found; for a link, matches read, sources checked,
links written and the decisions so far), a plain line at each status change and a
summary at the end. Log lines, when they would have gone to that terminal, are
printed through rich above the live line, WARNING and above only (everything
with ``LOG_LEVEL=DEBUG``): the display replaces the INFO lines. When they go
elsewhere (``run > logs.jsonl``), they stay JSON. Under ``--stdout`` with stdout
on the terminal too, the events are the output and scroll past: no live line,
the plain lines only.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import IO, Any, Protocol

from handlers.core.deadline import Deadline
from handlers.core.errors import ConfigError, InvalidDecision, InvalidTrigger
from handlers.core.events import Event
from handlers.core.progress import NO_PROGRESS, Progress
from handlers.flow.relay import Relay
from handlers.process.logs import setup_logging
from handlers.process.settings import Settings, load_settings
from handlers.pubsub.publish import Sink


class Display(Progress, Protocol):
    """A command's display: a ``Progress`` that also takes the log lines and is entered for the command's span."""

    def take_logs(self, level: str) -> None:
        """Route log lines to this display (after each ``setup_logging``)."""
        ...

    def __enter__(self) -> Display: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class ProgressSink:
    """A sink that passes events through to ``inner`` and reports them: ``published`` as each one is pulled,
    ``confirmed`` when the inner ``publish`` returns (it returns only once every event is confirmed)."""

    def __init__(self, inner: Sink, progress: Progress) -> None:
        self.inner, self.progress = inner, progress

    def publish(self, topic: str, events: Iterable[Event], deadline: Deadline | None = None) -> int:
        count = self.inner.publish(topic, self._counted(events), deadline)
        self.progress.confirmed(count)
        return count

    def _counted(self, events: Iterable[Event]) -> Iterator[Event]:
        report = self.progress.published
        for event in events:
            report(1)
            yield event


def attach(relay: Relay, progress: Progress) -> None:
    """Have ``relay`` report to ``progress``: its poller's waits, and its sink's events (nothing for a no-op)."""
    if progress is NO_PROGRESS:
        return
    relay.progress = progress
    relay.sink = ProgressSink(relay.sink, progress)


def on_terminal(
    title: str, events_to_stdout: bool, stderr: IO[str] | None = None, stdout: IO[str] | None = None
) -> Display:
    """The CLI's display: a ``TerminalProgress`` on ``stderr`` when it is a terminal, else ``NO_PROGRESS``.

    ``events_to_stdout`` is ``--stdout``: the logs go to stderr then, to stdout otherwise (contract section 7).
    """
    err, out = stderr or sys.stderr, stdout or sys.stdout
    if not _isatty(err) or importlib.util.find_spec("rich") is None:  # without rich: JSON lines, as ever
        return NO_PROGRESS
    from rich.console import Console

    from handlers.cli.terminal import TerminalProgress

    logs = err if events_to_stdout else out
    live = not (events_to_stdout and _isatty(out))  # events scrolling on the same screen would tear a live line
    return TerminalProgress(Console(file=err), title, live=live, take_logs=_isatty(logs))


def settings_for(shown: Display, to_stderr: bool) -> Settings:
    """Logs set up (JSON lines, or readable ones above the display), then the settings read; ``to_stderr`` is
    ``--stdout``, which needs no topic."""
    setup_logging("INFO", to_stderr=to_stderr)
    shown.take_logs("INFO")  # on a terminal: readable lines, WARNING and above
    settings = load_settings(publishing=not to_stderr)
    setup_logging(settings.log_level, to_stderr=to_stderr)
    shown.take_logs(settings.log_level)
    return settings


def usage(exc: ConfigError | InvalidTrigger | InvalidDecision) -> int:
    """A configuration or usage error: one CRITICAL line, exit 2."""
    logging.getLogger("matchrelay").critical("configuration error: %s" if isinstance(exc, ConfigError) else "%s", exc)
    return 2


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False
