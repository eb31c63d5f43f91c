"""Read a run's results body as it arrives, so memory does not grow with the run: the one reader of a run. Pure.

The relay and the link read the same bytes through the same grammar
(``handlers.cdf.body_text``): first the run's own fields (status, jobId,
statusTime, ...), then the items of ``matches``, ``suggestedRules`` and
``generatedRules``, as many at a time as the text read so far holds. CDF
documents the run's fields first; if an answer puts the results before them, the
items read so far are held until the fields are known, which stays correct at
the cost of memory. A pipeline's body is read the same way for its lists of
pairs (``read_pipeline``), so a million pairs never stand as one parsed document.
Anything that is not a JSON object of the documented shape raises
``MalformedResponse``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from handlers.cdf.body_text import BodyText
from handlers.core.errors import MalformedResponse
from handlers.core.pairs import CONFIRMED, REJECTED, Pairs

ARRAYS = ("matches", "suggestedRules", "generatedRules")
NEEDED = ("status", "jobId", "statusTime")  # what every event of the run carries
PAIR_LISTS = {"confirmedMatches": CONFIRMED, "rejectedMatches": REJECTED, "trueMatches": 0}  # a pipeline's
Item = tuple[str, int, Any]


class RunBody:
    """One results body, read once, front to back: ``header()``, then its items (``items``, ``batches``, ``lists``)
    or ``drain()``. ``counts`` says how many items of each array were read."""

    def __init__(self, chunks: Iterable[bytes], arrays: tuple[str, ...] = ARRAYS) -> None:
        self.fields: dict[str, Any] = {}
        self.counts = dict.fromkeys(arrays, 0)
        self._arrays = arrays
        self._text = BodyText(iter(chunks))
        self._top = self._entries()
        self._held: list[tuple[str, list[Any]]] = []

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

    def lists(self) -> Iterator[tuple[str, list[Any]]]:
        """Every item of the arrays as ``(array, [item, ...])`` in body order, the other fields kept."""
        held, self._held = self._held, []
        for key, items in itertools.chain(held, self._rest()):  # as they come: a run's items are never all held
            self.counts[key] += len(items)
            yield key, items
        for key in self._arrays:
            if self.fields.get(key) is not None and not isinstance(self.fields[key], list):
                raise MalformedResponse(f"CDF answered {key} that is not a list")

    def items(self) -> Iterator[Item]:
        """Every result item as ``(array, index, item)``, in body order."""
        for key, items in self.lists():
            yield from zip(itertools.repeat(key), range(self.counts[key] - len(items), self.counts[key]), items)

    def batches(self) -> Iterator[list[Any]]:
        """The items of ``matches`` in body order, as many at a time as the text read holds."""
        for key, items in self.lists():
            if key == "matches":
                yield items

    def drain(self) -> dict[str, Any]:
        """Read to the end, counting items without keeping them; the run's fields."""
        for _ in self.lists():
            pass
        return self.fields

    def _rest(self) -> Iterator[tuple[str, list[Any]]]:
        for kind, key, value in self._top:
            if kind == "field":
                self.fields[key] = value
            else:
                yield key, value

    def _entries(self) -> Iterator[tuple[str, str, Any]]:
        """``("field", key, value)`` for each of the object's fields, ``("items", array, [item, ...])`` for results."""
        text = self._text
        if text.peek() != "{":
            raise MalformedResponse("CDF answered a body that is not a JSON object")
        text.pos += 1
        if text.peek() == "}":
            text.pos += 1
        else:
            while True:
                if text.peek() != '"':
                    text.fail("expecting a field name")
                key = text.value()
                if text.peek() != ":":
                    text.fail("expecting ':'")
                text.pos += 1
                if key in self._arrays and text.peek() == "[":
                    text.pos += 1
                    yield from self._items(key)
                else:
                    yield "field", key, text.value()
                if not text.next_of("}"):
                    break
        if text.peek():
            raise MalformedResponse("CDF answered more than one JSON value")

    def _items(self, key: str) -> Iterator[tuple[str, str, Any]]:
        text = self._text
        if text.peek() == "]":
            text.pos += 1
            return
        while True:
            text.peek()
            slab = text.slab()
            if slab is not None:
                yield "items", key, slab  # the position is at the next item, after the comma
                continue
            if text.read_on():  # an item cut by the chunk's end: the next slab holds it
                continue
            yield "items", key, [text.item()]
            if not text.next_of("]"):
                return


def read_pipeline(chunks: Iterable[bytes]) -> tuple[dict[str, Any], Pairs]:
    """A pipeline's body: its fields, and its ``confirmedMatches`` and ``rejectedMatches`` held compactly. Its
    ``trueMatches`` (up to two million pairs, which the link does not use) are read past a slab at a time."""
    body, pairs = RunBody(chunks, tuple(PAIR_LISTS)), Pairs()
    for key, batch in body.lists():
        if PAIR_LISTS[key]:
            pairs.add(batch, PAIR_LISTS[key])
    return body.fields, pairs


def read_lists(chunks: Iterable[bytes]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """A pipeline's body: its fields, and its ``confirmedMatches`` and ``rejectedMatches`` as CDF gives them (to be
    merged and set whole); its ``trueMatches`` are read past."""
    body = RunBody(chunks, tuple(PAIR_LISTS))
    lists: dict[str, list[Any]] = {"confirmedMatches": [], "rejectedMatches": []}
    for key, batch in body.lists():
        if key in lists:
            lists[key] += batch
    return body.fields, lists


def read_fields(chunks: Iterable[bytes]) -> dict[str, Any]:
    """A pipeline's fields; its lists are read past a slab at a time."""
    return RunBody(chunks, tuple(PAIR_LISTS)).drain()
