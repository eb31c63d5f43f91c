"""Read a run's results body for the link: the run's fields, then each item of ``matches``, as the body arrives.

The relay's ``RunBody`` (``handlers.cdf.results``) gives every event of the body
to Python, about 25 per match. The link needs only the matches, whole, so here
Python walks the body's top level (the run's fields, the arrays' brackets and
commas) and the items are read in slabs: the text from an item's start to the
last ``}`` ``,`` ``{`` in reach is handed to ``orjson`` as one array, so a chunk
of the body costs one call rather than Python's work per item. That text parses
as an array only if the cut falls between two items (a cut inside a string or
a nested value leaves it unbalanced), so a slab that parses is the items
themselves. A slab ``orjson`` refuses is read again item by item by ``json``'s
C scanner, which also reads the run's own fields and every item the slabs leave. The body is read front to back once, a
chunk at a time; an item cut by a chunk's end is read again with the next chunk
(at least twice the text each time, so a large item costs linear time).

It answers as ``RunBody`` does: ``header`` reads up to the first item once the
run's status, jobId and statusTime are known (items met before that are held,
which only a body with its fields last does); anything that is not a JSON object
of the documented shape raises ``MalformedResponse``. The grammar is JSON's
(RFC 8259): ``NaN`` and ``Infinity`` are not numbers, whitespace is space, tab,
CR and LF (the relay's parser also takes a form feed or vertical tab between
tokens). Where the relay's parser is narrower than JSON (integers beyond 64
bits, numbers beyond a double's range, lone surrogate escapes), the run's own
fields are read as narrowly; in an item this reader takes the value as JSON
gives it (``orjson`` gives an integer beyond 64 bits as a float): the link reads
only ids, scores and match types of an item, and such an id is no CDF id, such
a score no finite score.
"""

from __future__ import annotations

import codecs
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from json.scanner import make_scanner
from typing import Any, NoReturn, cast

import orjson

from handlers.cdf.results import ARRAYS, NEEDED
from handlers.core.errors import MalformedResponse
from handlers.core.pairs import CONFIRMED, REJECTED, Pairs

_INK = re.compile(r"[^ \t\n\r]")  # JSON's whitespace is these four
_NEAR_END = 64  # a scanner error this close to the text's end may be an item cut by the chunk's end
_BOUNDARY = re.compile(r"\}[ \t\n\r]*,[ \t\n\r]*\{")  # between two items that are objects, as matches are
_REACH = 4096  # the last boundary is looked for this far back from the text's end: a few items at least


def _not_a_number(name: str) -> NoReturn:
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


def _int64(text: str) -> int:
    value = int(text)
    if abs(value) > _INT64:
        raise json.JSONDecodeError("integer overflow", text, 0)
    return value


def _double(text: str) -> float:
    value = float(text)
    if value - value != 0.0:
        raise json.JSONDecodeError("numeric (floating point) overflow", text, 0)
    return value


_INT64 = 2**63 - 1
PAIR_LISTS = {"confirmedMatches": CONFIRMED, "rejectedMatches": REJECTED, "trueMatches": 0}  # a pipeline's
_ITEM = json.JSONDecoder(parse_constant=_not_a_number).raw_decode
_ITEM_SCAN = make_scanner(cast(Any, json.JSONDecoder(parse_constant=_not_a_number)))  # raw_decode without its frame
# The run's own fields are read with the relay's number ranges, so the link never reports a run the relay refuses.
_FIELD = json.JSONDecoder(parse_constant=_not_a_number, parse_int=_int64, parse_float=_double).raw_decode


class RunMatches:
    """One results body, read once, front to back: ``header()``, then ``matches()``.

    ``arrays`` names the top-level lists read in slabs; a pipeline's body is read the same way for its lists of
    pairs (``lists``), so a million pairs never stand as one parsed document."""

    def __init__(self, chunks: Iterable[bytes], arrays: tuple[str, ...] = ARRAYS) -> None:
        self.fields: dict[str, Any] = {}
        self._arrays = arrays
        self._chunks = iter(chunks)
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._text, self._pos, self._end = "", 0, False
        self._careful = 0  # the text before this is read item by item: a slab of it was refused
        self._top = self._entries()
        self._held: list[tuple[str, Any]] = []

    def header(self) -> dict[str, Any]:
        """The run's own fields, read up to the first result items (or the end)."""
        for kind, key, value in self._top:
            if kind == "field":
                self.fields[key] = value
                continue
            self._held.append((key, value))
            if all(name in self.fields for name in NEEDED):
                break
        return self.fields

    def matches(self) -> Iterator[tuple[int, Any]]:
        """Every item of ``matches`` as ``(index, item)``, in body order; fields read on the way are kept."""
        index = 0
        for batch in self.batches():
            for item in batch:
                yield index, item
                index += 1

    def batches(self) -> Iterator[list[Any]]:
        """The items of ``matches`` in body order, as many at a time as the text read holds; fields are kept."""
        held, self._held = self._held, []
        for key, items in itertools.chain(held, self.lists()):  # as they come: a run's items are never all held
            if key == "matches":
                yield items

    def lists(self) -> Iterator[tuple[str, list[Any]]]:
        """Every item of the ``arrays`` as ``(array, [item, ...])`` in body order, the other fields kept."""
        for kind, key, value in self._top:
            if kind == "field":
                self.fields[key] = value
            else:
                yield key, value
        for key in self._arrays:
            if self.fields.get(key) is not None and not isinstance(self.fields[key], list):
                raise MalformedResponse(f"CDF answered {key} that is not a list")

    def _entries(self) -> Iterator[tuple[str, str, Any]]:
        """``("field", key, value)`` for each of the object's fields, ``("items", array, [item, ...])`` for results."""
        if self._peek() != "{":
            raise MalformedResponse("CDF answered a body that is not a JSON object")
        self._pos += 1
        if self._peek() == "}":
            self._pos += 1
        else:
            while True:
                if self._peek() != '"':
                    self._fail("expecting a field name")
                key = self._value(_FIELD)
                if self._peek() != ":":
                    self._fail("expecting ':'")
                self._pos += 1
                if key in self._arrays and self._peek() == "[":
                    self._pos += 1
                    yield from self._items(key)
                else:
                    yield "field", key, self._value(_FIELD)
                if not self._next_of("}"):
                    break
        if self._peek():
            raise MalformedResponse("CDF answered more than one JSON value")

    def _items(self, key: str) -> Iterator[tuple[str, str, Any]]:
        if self._peek() == "]":
            self._pos += 1
            return
        while True:
            self._peek()
            slab = self._slab()
            if slab is not None:
                yield "items", key, slab  # the position is at the next item, after the comma
                continue
            # One item whole in the text is scanned at once. One cut by the chunk's end (or not JSON, or a number
            # that may go on) is read the careful way.
            text, start = self._text, self._pos
            try:
                value, end = _ITEM_SCAN(text, start)
            except (StopIteration, ValueError, RecursionError):
                end = len(text)
            if end < len(text):
                self._pos = end
            else:
                value = self._value(_ITEM)
            yield "items", key, [value]
            if not self._next_of("]"):
                return

    def _slab(self) -> list[Any] | None:
        """The items from the position to the last boundary in reach, read by ``orjson`` in one call; None when
        there is no boundary, or the slab is to be read item by item. The position moves to the next item."""
        text, pos = self._text, self._pos
        if pos < self._careful:
            return None
        last = None
        for last in _BOUNDARY.finditer(text, max(pos, len(text) - _REACH)):  # noqa: B007 (the last one is wanted)
            pass
        if last is None:
            return None
        cut = last.start() + 1
        try:
            items: list[Any] = orjson.loads("[" + text[pos:cut] + "]")
        except orjson.JSONDecodeError:
            self._careful = cut
            return None
        self._pos = last.end() - 1
        return items

    def _next_of(self, close: str) -> bool:
        """After a member: True at a comma (more follow), False at ``close``."""
        pos = self._pos
        found = self._text[pos] if pos < len(self._text) else ""
        if found != "," and found != close:  # whitespace first, the text's end, or not JSON
            found, pos = self._peek(), self._pos
        self._pos = pos + 1
        if found == ",":
            return True
        if found != close:
            self._fail(f"expecting ',' or '{close}'")
        return False

    def _peek(self) -> str:
        """The next character that is not whitespace, reading on as needed; empty at the body's end."""
        while True:
            found = _INK.search(self._text, self._pos)
            if found is not None:
                self._pos = found.start()
                return found.group()
            self._pos = len(self._text)
            if not self._more():
                return ""

    def _value(self, decode: Callable[[str, int], tuple[Any, int]]) -> Any:
        """The JSON value at the position, read whole; the text is read on while it may be cut."""
        self._peek()
        while True:
            try:
                value, end = decode(self._text, self._pos)
            except json.JSONDecodeError as exc:
                cut = exc.pos >= len(self._text) - _NEAR_END or exc.msg.startswith("Unterminated string")
                if self._end or not cut:
                    self._fail(exc.msg)
            except RecursionError:
                self._fail("nested too deep")
            else:
                if end < len(self._text) or self._end:  # a number at the text's end may go on in the next chunk
                    self._pos = end
                    return value
            self._more(len(self._text) - self._pos)  # twice the text: a large item is read again a few times only

    def _more(self, wanted: int = 1) -> bool:
        """Append at least ``wanted`` more characters (fewer at the body's end), dropping what was read; joined once,
        so a large item read on chunk after chunk is copied a few times, not once a chunk. False when none came."""
        parts, got = [], 0
        while got < wanted and not self._end:
            chunk = next(self._chunks, None)
            try:
                text = self._decoder.decode(chunk or b"", final=chunk is None)
            except UnicodeDecodeError:
                self._fail("not UTF-8")
            self._end = chunk is None
            parts.append(text)
            got += len(text)
        if got:
            self._careful -= self._pos
            self._text, self._pos = self._text[self._pos :] + "".join(parts), 0
        return got > 0

    def _fail(self, reason: str) -> NoReturn:
        raise MalformedResponse(f"CDF answered a body that is not JSON ({reason[:80]})")


def read_pipeline(chunks: Iterable[bytes]) -> tuple[dict[str, Any], Pairs]:
    """A pipeline's body: its fields, and its ``confirmedMatches`` and ``rejectedMatches`` held compactly. Its
    ``trueMatches`` (up to two million pairs, which the link does not use) are read past a slab at a time."""
    body, pairs = RunMatches(chunks, tuple(PAIR_LISTS)), Pairs()
    for key, batch in body.lists():
        if PAIR_LISTS[key]:
            pairs.add(batch, PAIR_LISTS[key])
    return body.fields, pairs
