"""The pipeline's ``confirmedMatches`` and ``rejectedMatches`` (contract, section 8.3), held compactly. Pure.

A pipeline may hold a million pairs, each side named by an id or an external id.
A Python set of them would cost a hundred bytes or more a pair; here a pair
costs its own text once (``12:9001`` for two ids; ``5#12=pump-7`` where an
external id takes part) in one ``bytearray``, its hash and offset (16 bytes), a
4-byte slot of an open-addressing table and two bits of a filter that answers
most misses at once: about the pair's own JSON in all.

A match is *that pair* when each side the pair names equals the match's
``source``/``target`` ``id`` or ``externalId`` (a side the pair names both ways
is taken by its id, which names one item in CDF). ``Pairs.of`` asks only in the
forms (id or external id, each side) that the lists hold at all, and only for a
source that some pair names, so most matches cost one look at the filter.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Any

from handlers.core.models import MAX_ID

CONFIRMED, REJECTED = 1, 2  # what a pair is, as bits (a pair in both lists is both)
_FILL = 0.7  # at most this share of the table's slots in use: a miss meets an empty slot within a few probes
_BITS = 16  # filter bits per slot: a miss passes the filter about once in 16
_MIX, _M64 = 0x9E3779B97F4A7C15, (1 << 64) - 1  # Fibonacci hashing: a slot is the top bits of hash * _MIX


def _key(source: int | str, target: int | str) -> int | str:
    """A pair's key: one int for two ids (exact: ids are below 2**53); else text, ``#`` before an id and ``=``
    before an external id, the source's length first, so that no two pairs share a text."""
    if type(source) is int and type(target) is int:
        return source << 53 | target
    s = f"#{source}" if type(source) is int else f"={source}"
    return f"{len(s)}{s}{'#' if type(target) is int else '='}{target}"


def _text(key: int | str) -> bytes:
    return f"{key >> 53}:{key & MAX_ID}".encode() if type(key) is int else str(key).encode()


class Pairs:
    """The pairs of both lists, each with what it is (``CONFIRMED``, ``REJECTED``), asked per match.

    ``add`` the lists as they are read, then ask ``of``: the table and its filter are made once, at the first
    question, when the number of pairs is known."""

    def __init__(self) -> None:
        self._hashes, self._starts = array("Q"), array("Q", [0])  # per pair; a text ends where the next starts
        self._sources: array[int] | None = array("q")  # each pair's source's hash, until the filter is made
        self._what, self._text = bytearray(), bytearray()
        self._slots, self._filter = array("I"), bytearray()  # slots: a pair's index + 1, 0 for an empty slot
        self._named = bytearray(1)  # a bit per source some pair names (by its hash's low bits)
        self._shift = 64  # a hash's slot is its top bits: 64 - log2(slots)
        self.forms = 0  # which forms the lists use: bit 1 id/id, 2 id/ext, 4 ext/id, 8 ext/ext

    def __len__(self) -> int:
        return len(self._what)

    def add(self, pairs: Iterable[Any], what: int) -> None:
        """Pairs of one list (``what`` says which); an entry that names no pair (not an object, a side missing)
        can match no match, so it is passed over."""
        if self._sources is None:
            raise RuntimeError("pairs are added before the first question")
        hashes, sources, whats, text, starts = self._hashes, self._sources, self._what, self._text, self._starts
        forms = self.forms
        for pair in pairs:  # a million pairs: _key and _text inlined
            if type(pair) is not dict:
                continue
            source: Any = pair.get("sourceId")
            target: Any = pair.get("targetId")
            by_id = type(source) is int and 0 < source <= MAX_ID
            to_id = type(target) is int and 0 < target <= MAX_ID
            if by_id and to_id:
                key: int | str = source << 53 | target  # most pairs: two ids, one int
                written = b"%d:%d" % (source, target)
                forms |= 1
            else:
                if not by_id:
                    source = pair.get("sourceExternalId")
                    if type(source) is not str:
                        continue
                if not to_id:
                    target = pair.get("targetExternalId")
                    if type(target) is not str:
                        continue
                s = f"#{source}" if by_id else f"={source}"
                key = f"{len(s)}{s}{'#' if to_id else '='}{target}"
                written = key.encode()
                forms |= 1 << ((not by_id) * 2 + (not to_id))
            hashes.append(hash(key) * _MIX & _M64)
            sources.append(hash(source))
            whats.append(what)
            text += written
            starts.append(len(text))
        self.forms = forms

    def of(self, source: Any, target: Any) -> int:
        """What the lists say of a match with these ``source`` and ``target`` objects: 0, or bits. This runs for
        every match of a run: a source no pair names costs a look at the filter for each way it is named."""
        forms = self.forms
        if not forms or type(source) is not dict or type(target) is not dict:
            return 0
        if self._sources is not None:
            self._index()
        # The sources' filter is indexed by the hash's low bits as it is: an id is its own hash (ids are below 2**61),
        # so neighbouring ids take neighbouring bits, which a bit array does not mind.
        found, flt, bits = 0, self._named, len(self._named) * 8 - 1
        if forms & 3:  # pairs whose source is named by id
            s = source.get("id")
            if type(s) is int and 0 < s <= MAX_ID and flt[(s & bits) >> 3] >> (s & 7) & 1:
                found = self._targets(s, target, forms)
        if forms & 12:  # pairs whose source is named by external id
            e = source.get("externalId")
            if type(e) is str:
                h = hash(e) & bits
                if flt[h >> 3] >> (h & 7) & 1:
                    found |= self._targets(e, target, forms >> 2)
        return found

    def _targets(self, source: int | str, target: dict[str, Any], forms: int) -> int:
        """What the lists say of ``source`` (named one way) paired with ``target`` named each way they use."""
        found = 0
        if forms & 1:
            t = target.get("id")
            if type(t) is int and 0 < t <= MAX_ID:
                found = self._get(_key(source, t))
        if forms & 2:
            e = target.get("externalId")
            if type(e) is str:
                found |= self._get(_key(source, e))
        return found

    def _index(self) -> None:
        """The table (at most ``_FILL`` full), the pairs' filter (a bit per pair's hash) and the sources' (a bit per
        source a pair names); a pair in both lists, or twice in one, becomes one entry that is what each said."""
        n, sources = len(self._what), self._sources
        assert sources is not None
        shift = 61  # 8 slots at the least
        while (1 << (64 - shift)) * _FILL < n:
            shift -= 1
        size = 1 << (64 - shift)
        slots, flt, named = array("I", bytes(4 * size)), bytearray(size * _BITS // 8), bytearray(size * _BITS // 8)
        mask, hashes, whats, bits = size - 1, self._hashes, self._what, size * _BITS - 1
        for s in sources:
            s &= bits
            named[s >> 3] |= 1 << (s & 7)
        for index, h in enumerate(hashes):
            slot = h >> shift
            while (entry := slots[slot]) != 0:
                if hashes[entry - 1] == h and self._bytes(entry - 1) == self._bytes(index):
                    whats[entry - 1] |= whats[index]
                    break
                slot = (slot + 1) & mask
            else:
                slots[slot] = index + 1
            bit = h >> (shift - 4)  # 16 filter bits a slot: 4 bits more of the hash than the slot's
            flt[bit >> 3] |= 1 << (bit & 7)
        self._slots, self._filter, self._named, self._sources, self._shift = slots, flt, named, None, shift

    def _get(self, key: int | str) -> int:
        h, slots, flt, shift = hash(key) * _MIX & _M64, self._slots, self._filter, self._shift
        bit = h >> (shift - 4)
        if not flt[bit >> 3] >> (bit & 7) & 1:
            return 0
        mask = len(slots) - 1
        slot = h >> shift
        while (entry := slots[slot]) != 0:
            if self._hashes[entry - 1] == h and self._bytes(entry - 1) == _text(key):
                return self._what[entry - 1]
            slot = (slot + 1) & mask
        return 0

    def _bytes(self, index: int) -> bytes:
        return bytes(self._text[self._starts[index] : self._starts[index + 1]])
