"""The distinct metadata of one kind of classic resource, shared by its items (sim/classic.py).

A million items carry a handful of distinct metadata, or, once linked, as many
as there are runs and scores: each is kept once, numbered, and an item holds its
number in its block's `meta` array (0 is no metadata). A metadata is found by its
JSON with sorted keys (`sorted_json`), one text whatever order its keys came in,
and that JSON is kept beside it so that answers need not encode it again.
"""

from __future__ import annotations

from collections.abc import Mapping

from sim.names import sorted_json

_MERGED_CACHE = 100_000  # (metadata, removed) -> merged metadata; cleared when it grows past this
Added = tuple[tuple[str, str | None], ...]  # metadata to add, as pairs; a key paired with None is removed


class MetadataPool:
    """Metadata by number: ``intern`` a mapping, ``merge`` changes into a numbered one, read ``pairs`` and ``json``."""

    def __init__(self) -> None:
        self.pairs: list[tuple[tuple[str, str], ...]] = [()]  # each metadata's pairs, in the order first seen
        self.json: list[str] = ["{}"]  # each metadata as JSON, sorted by key
        self._numbers: dict[str, int] = {"{}": 0}  # by its JSON
        self._merged: dict[tuple[int, Added], int] = {}  # (meta, removed) -> meta

    def intern(self, metadata: Mapping[str, str]) -> int:
        """The number of ``metadata``, numbered anew if it is not pooled yet."""
        if not metadata:
            return 0
        text = sorted_json(metadata if type(metadata) is dict else dict(metadata))
        found = self._numbers.get(text)
        if found is None:
            found = self._numbers[text] = len(self.pairs)
            self.pairs.append(tuple(metadata.items()))
            self.json.append(text)
        return found

    def merge(self, meta: int, added: Added) -> int:
        """The metadata ``added`` makes of ``meta``. A link's values are new for nearly every item: not cached."""
        merged = dict(self.pairs[meta])
        for key, value in added:
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return self.intern(merged)

    def remove(self, meta: int, removed: Added) -> int:
        """The metadata left of ``meta`` once ``removed`` is: an unlink's removals repeat from item to item, so
        they are looked up (a key of nested tuples costs about what a merge does to hash)."""
        found = self._merged.get((meta, removed), -1)
        if found < 0:
            if len(self._merged) >= _MERGED_CACHE:
                self._merged.clear()
            found = self._merged[(meta, removed)] = self.merge(meta, removed)
        return found
