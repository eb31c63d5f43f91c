"""The text of a CDF body as it arrives: one JSON grammar for every body the worker reads. Pure.

A body is decoded a chunk at a time and read front to back once. A value is read
whole by ``json``'s C scanner; the items of a long list are read in *slabs*: the
text from an item's start to the last ``}`` ``,`` ``{`` in reach is handed to
``orjson`` as one array, so a chunk costs one call rather than Python's work per
item. That text parses as an array only if the cut falls between two items (a
cut inside a string or a nested value leaves it unbalanced), so a slab that
parses is the items themselves. A slab ``orjson`` refuses, or one that holds a
number ``orjson`` reads more widely than this grammar, is read again item by
item by the scanner. An item cut by a chunk's end is read again with the next
chunk (at least twice the text each time, so a large item costs linear time).

The grammar is JSON's (RFC 8259), narrowed where CDF's answers never go: an
integer is at most 64 bits, a number is a finite double, and a string holds no
lone surrogate escape. Whitespace is space, tab, CR and LF; ``NaN`` and
``Infinity`` are not numbers. Anything else raises ``MalformedResponse``.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterator
from json.scanner import make_scanner
from typing import Any, NoReturn, cast

import orjson

from handlers.core.errors import MalformedResponse

Decode = Callable[[str, int], tuple[Any, int]]
_INK = re.compile(r"[^ \t\n\r]")  # JSON's whitespace is these four
_NEAR_END = 64  # a scanner error this close to the text's end may be a value cut by the chunk's end
_BOUNDARY = re.compile(r"\}[ \t\n\r]*,[ \t\n\r]*\{")  # between two items that are objects, as CDF's are
_REACH = 4096  # the last boundary is looked for this far back from the slab's end: a few items at least
_SLAB = 24576  # text a slab holds at most: its items as objects (some ten times the text) stay small beside a chunk
# A run of 19 digits may be a number beyond 64 bits, which orjson reads as an int or a float: the text it comes in
# is read item by item. The raw chunks are looked at once, every other byte of them (a run of 19 holds 9 in a row
# of either parity; CDF's ids have 16 digits at most, so 8), digits as "0" and the rest as ".": this costs little.
_DIGITS = bytes(48 if 48 <= b <= 57 else 46 for b in range(256))
_LONG = b"0" * 9
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")  # an escape that json reads alone, unpaired, where orjson refuses
_INT64 = 2**63 - 1


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


_DECODER = json.JSONDecoder(parse_constant=_not_a_number, parse_int=_int64, parse_float=_double)
VALUE: Decode = _DECODER.raw_decode  # one value, whitespace before it allowed
_SCAN = cast(Decode, make_scanner(cast(Any, _DECODER)))  # one value at the position, no frame


def _paired(value: Any) -> Any:
    """``value`` when none of its strings holds a lone surrogate (which UTF-8 cannot encode); else it is refused."""
    if isinstance(value, str):
        value.encode()
    elif isinstance(value, dict):
        for key, inner in value.items():
            _paired(key)
            _paired(inner)
    elif isinstance(value, list):
        for inner in value:
            _paired(inner)
    return value


class BodyText:
    """The body's text from the position on, read on chunk by chunk as values need it."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.text, self.pos, self._end = "", 0, False
        self._careful = 0  # the text before this is read item by item: a slab of it was refused
        self._tail = b""  # the last 18 bytes of the chunk before: a run of digits may span two chunks

    def peek(self) -> str:
        """The next character that is not whitespace, reading on as needed; empty at the body's end."""
        while True:
            found = _INK.search(self.text, self.pos)
            if found is not None:
                self.pos = found.start()
                return found.group()
            self.pos = len(self.text)
            if not self._more():
                return ""

    def value(self, decode: Decode = VALUE) -> Any:
        """The JSON value at the position, read whole; the text is read on while it may be cut."""
        self.peek()
        while True:
            try:
                value, end = decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                cut = exc.pos >= len(self.text) - _NEAR_END or exc.msg.startswith("Unterminated string")
                if self._end or not cut:
                    self.fail(exc.msg)
            except RecursionError:
                self.fail("nested too deep")
            else:
                if end < len(self.text) or self._end:  # a number at the text's end may go on in the next chunk
                    return self._checked(value, end)
            self._more(len(self.text) - self.pos)  # twice the text: a large item is read again a few times only

    def item(self) -> Any:
        """One item at the position: scanned at once when it is whole in the text, else read the careful way."""
        text, start = self.text, self.pos
        try:
            value, end = _SCAN(text, start)
        except (StopIteration, ValueError, RecursionError):
            return self.value()
        if end >= len(text):  # a number at the text's end may go on
            return self.value()
        return self._checked(value, end)

    def slab(self) -> list[Any] | None:
        """The items from the position to the last boundary in reach, read by ``orjson`` in one call; None when
        there is no boundary, or the slab is to be read item by item. The position moves to the next item."""
        text, pos = self.text, self.pos
        if pos < self._careful:
            return None
        stop = min(len(text), pos + _SLAB)
        cut, after = self._boundary(pos, stop)
        if cut < 0:
            return None
        try:
            items: list[Any] = orjson.loads("[" + text[pos:cut] + "]")
        except orjson.JSONDecodeError:
            self._careful = cut
            return None
        self.pos = after
        return items

    def _boundary(self, pos: int, stop: int) -> tuple[int, int]:
        """The last boundary between two items in ``[pos, stop)``: where the first ends and the second starts (-1
        when there is none in reach). The two spellings JSON writers use are found by ``rfind``; others by a regex."""
        text, start = self.text, max(pos, stop - _REACH)
        compact, spaced = text.rfind("},{", start, stop), text.rfind("}, {", start, stop)
        if compact >= 0 or spaced >= 0:
            return (compact + 1, compact + 2) if compact > spaced else (spaced + 1, spaced + 3)
        last = None
        for last in _BOUNDARY.finditer(text, start, stop):  # noqa: B007 (the last one is wanted)
            pass
        return (-1, -1) if last is None else (last.start() + 1, last.end() - 1)

    def read_on(self) -> bool:
        """Read the next chunk when the text ends inside an item that a slab of the next text will hold (no ``]``
        after it: a list may end there, and its last item is read item by item); False when there is none to read,
        or the item is large (read the careful way)."""
        if self._end or len(self.text) - self.pos > _SLAB or self.text.find("]", self.pos) >= 0:
            return False
        return self._more()

    def next_of(self, close: str) -> bool:
        """After a member: True at a comma (more follow), False at ``close``."""
        pos = self.pos
        found = self.text[pos] if pos < len(self.text) else ""
        if found != "," and found != close:  # whitespace first, the text's end, or not JSON
            found, pos = self.peek(), self.pos
        self.pos = pos + 1
        if found == ",":
            return True
        if found != close:
            self.fail(f"expecting ',' or '{close}'")
        return False

    def fail(self, reason: str) -> NoReturn:
        raise MalformedResponse(f"CDF answered a body that is not JSON ({reason[:80]})")

    def _checked(self, value: Any, end: int) -> Any:
        if _SURROGATE.search(self.text, self.pos, end):
            try:
                _paired(value)
            except UnicodeEncodeError:
                self.fail("a lone surrogate escape")
        self.pos = end
        return value

    def _more(self, wanted: int = 1) -> bool:
        """Append at least ``wanted`` more characters (fewer at the body's end), dropping what was read; joined once,
        so a large item read on chunk after chunk is copied a few times, not once a chunk. False when none came."""
        parts, got, long = [], 0, False
        while got < wanted and not self._end:
            chunk = next(self._chunks, None)
            if chunk:
                raw = self._tail + chunk
                long, self._tail = long or _LONG in raw[::2].translate(_DIGITS), raw[-18:]
            try:
                text = self._decoder.decode(chunk or b"", final=chunk is None)
            except UnicodeDecodeError:
                self.fail("not UTF-8")
            self._end = chunk is None
            parts.append(text)
            got += len(text)
        if got:
            self._careful -= self.pos
            self.text, self.pos = self.text[self.pos :] + "".join(parts), 0
            if long:
                self._careful = len(self.text)
        return got > 0
