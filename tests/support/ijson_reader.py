"""The relay's former reader of a run's body (ijson), kept only as an independent oracle for the one reader.

What it said of itself:

``RunBody`` parses the bytes incrementally (ijson's C backend): first the run's
own fields (status, jobId, statusTime, ...), then each item of ``matches``,
``suggestedRules`` and ``generatedRules`` one at a time. CDF documents the run's
fields first; if an answer puts the results before them, the items read so far
are held until the fields are known, which stays correct at the cost of memory.
Pure: bytes in, values out; parse errors become ``MalformedResponse``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import ijson

from handlers.core.errors import MalformedResponse

ARRAYS = ("matches", "suggestedRules", "generatedRules")
NEEDED = ("status", "jobId", "statusTime")  # what every event of the run carries
_OPEN = frozenset({"start_map", "start_array"})
Item = tuple[str, int, Any]


class _Chunks:
    """A file-like view of an iterator of byte chunks, which is what ijson reads."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson peeks with read(0) to tell bytes from text
            return b""
        return next(self._chunks, b"")


class RunBody:
    """One results body, read once, front to back."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.fields: dict[str, Any] = {}
        self.counts = dict.fromkeys(ARRAYS, 0)
        self._top = self._read(ijson.basic_parse(_Chunks(chunks), use_float=True))
        self._held: list[tuple[str, Any]] = []

    def header(self) -> dict[str, Any]:
        """The run's own fields, read up to the first result item (or the end)."""
        for kind, key, value in self._guarded():
            if kind == "field":
                self.fields[key] = value
                continue
            self._held.append((key, value))
            if all(name in self.fields for name in NEEDED):
                break
        return self.fields

    def items(self) -> Iterator[Item]:
        """Every result item as ``(array, index, item)``, in body order; fields read on the way are kept."""
        held, self._held = self._held, []
        for key, value in held:
            yield self._number(key, value)
        for kind, key, value in self._guarded():
            if kind == "field":
                self.fields[key] = value
            else:
                yield self._number(key, value)
        for key in ARRAYS:
            if self.fields.get(key) is not None and not isinstance(self.fields[key], list):
                raise MalformedResponse(f"CDF answered {key} that is not a list")

    def drain(self) -> dict[str, Any]:
        """Read to the end, counting items without keeping them; the run's fields."""
        for _ in self.items():
            pass
        return self.fields

    def _number(self, key: str, value: Any) -> Item:
        index = self.counts[key]
        self.counts[key] = index + 1
        return key, index, value

    def _guarded(self) -> Iterator[tuple[str, str, Any]]:
        # Not `yield from`: leaving header() early must not close the shared reader.
        while True:
            try:
                entry = next(self._top)
            except StopIteration:
                return
            except (ijson.JSONError, UnicodeError, RecursionError) as exc:
                # ijson's messages span lines; the first says what went wrong.
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:80]
                raise MalformedResponse(f"CDF answered a body that is not JSON ({reason})") from None
            yield entry

    def _read(self, events: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, str, Any]]:
        # basic_parse gives (event, value) without prefixes: the cheapest stream ijson's C backend offers.
        first = next(events, None)
        if first is None or first[0] != "start_map":
            raise MalformedResponse("CDF answered a body that is not a JSON object")
        for event, key in events:
            if event == "end_map":
                for _ in events:  # anything after the object makes the body not JSON (ijson raises)
                    raise MalformedResponse("CDF answered more than one JSON value")
                return
            event, value = next(events)
            if event == "start_array" and key in ARRAYS:
                for item_event, item_value in events:
                    if item_event == "end_array":
                        break
                    yield "item", key, _build(events, item_event, item_value)
            else:
                yield "field", key, _build(events, event, value)


def _build(events: Iterator[tuple[str, Any]], event: str, value: Any) -> Any:
    """The whole value that starts with ``event``, reading as many events as it spans."""
    if event == "start_map":
        obj: dict[str, Any] = {}
        for inner, key in events:
            if inner == "end_map":
                return obj
            inner, item = next(events)
            obj[key] = _build(events, inner, item) if inner in _OPEN else item
    elif event == "start_array":
        array: list[Any] = []
        for inner, item in events:
            if inner == "end_array":
                return array
            array.append(_build(events, inner, item) if inner in _OPEN else item)
    return value
