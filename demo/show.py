"""What the demo prints: the subscriber's view of the events, and (``--verbose``) the logs."""

from __future__ import annotations

import json
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from demo.bus import Received

DATA_WIDTH = 160
KIND_ORDER = ("match", "suggestedrule", "generatedrule", "run.completed", "run.linked", "run.failed")


def compact(data: Any, width: int = DATA_WIDTH) -> str:
    """``data`` as one line of compact JSON, cut at ``width`` characters."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # Keep it one line on any terminal: escape what JSON leaves raw but is not printable (U+2028, C1, ...).
    text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _order(event: Received) -> tuple[Any, ...]:
    def number(name: str) -> int:
        value = event.attributes.get(name, "")
        return int(value) if value.isdecimal() else -1

    kind = KIND_ORDER.index(event.short_type) if event.short_type in KIND_ORDER else len(KIND_ORDER)
    subject = [int(p) if p.isdecimal() else -1 for p in re.split(r"/", event.attributes.get("ce-subject", ""))]
    return number("ce-pipelineid"), number("ce-runid"), kind, subject, event.id


def distinct(received: Iterable[Received]) -> tuple[list[Received], Counter[str]]:
    """One message per ``ce-id`` (what a subscriber keeps), sorted by run and subject; and copies per id."""
    copies: Counter[str] = Counter()
    first: dict[str, Received] = {}
    for event in received:
        copies[event.id] += 1
        first.setdefault(event.id, event)
    return sorted(first.values(), key=_order), copies


def shown(event: Received) -> Any:
    """The data, less the coordinates the ``ce-id`` already shows (project, pipelineId, runId)."""
    if not isinstance(event.data, dict):
        return event.data
    same = {"project": "ce-cdfproject", "pipelineId": "ce-pipelineid", "runId": "ce-runid"}
    return {
        k: v
        for k, v in event.data.items()
        if not (k in same and v is not None and str(v) == event.attributes.get(same[k]))
    }


def event_line(event: Received, widths: Sequence[int] = (0, 0, 0), copies: int = 1) -> str:
    """``ce-type  ce-subject  ce-id  data``, and how often it came when more than once."""
    columns = (event.type, event.attributes.get("ce-subject", ""), event.id)
    head = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    return f"  {head}  {compact(shown(event))}" + (f"  (received {copies}x)" if copies > 1 else "")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def report(received: list[Received], topics: Iterable[str]) -> list[str]:
    """Per topic, one line per event (``ce-id``), sorted by run and subject; repeats counted."""
    events, copies = distinct(received)
    lines = ["data is shown without project, pipelineId and runId: the ce-id carries them"]
    for topic in topics:
        mine = [e for e in events if e.topic == topic]
        total = sum(copies[e.id] for e in mine)
        lines.append(f"{topic}: {_plural(len(mine), 'event')} ({_plural(total, 'message')})")
        if mine:
            columns = [(e.type, e.attributes.get("ce-subject", ""), e.id) for e in mine]
            widths = [max(len(c[i]) for c in columns) for i in range(3)]
            lines += [event_line(e, widths, copies[e.id]) for e in mine]
    return lines


def summary(received: list[Received]) -> str:
    """One closing line: distinct events per type, and how many messages were repeats."""
    events, _ = distinct(received)
    per_type = Counter(e.short_type for e in events)
    kinds = sorted(per_type, key=lambda k: KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER))
    counts = ", ".join(f"{kind} {per_type[kind]}" for kind in kinds)
    repeats = len(received) - len(events)
    return (
        f"summary: {_plural(len(events), 'event')} received ({counts}); "
        f"{_plural(len(received), 'message')}, {repeats} of them with a ce-id already received"
    )


class LogStream:
    """``--verbose``: copy the lines the processes write to their logs onto ``out``, prefixed by their name."""

    def __init__(self, logs: dict[str, Path], out: TextIO = sys.stderr) -> None:
        self._logs, self._out = logs, out
        self._offsets = dict.fromkeys(logs, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-logs", daemon=True)

    def start(self) -> LogStream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._copy()  # the last lines written before the processes ended

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._copy()

    def _copy(self) -> None:
        for name, path in self._logs.items():
            try:
                with path.open("rb") as log:
                    log.seek(self._offsets[name])
                    chunk = log.read()
            except OSError:
                continue
            complete = chunk[: chunk.rfind(b"\n") + 1]  # whole lines only; the rest next time
            self._offsets[name] += len(complete)
            for line in complete.decode(errors="replace").splitlines():
                self._out.write(f"[{name}] {line}\n")
            self._out.flush()
