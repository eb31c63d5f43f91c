"""The best match of each source of a run, kept in compact arrays, and the plan made from them. Pure.

A run of a million matches is a million sources to decide. One Python object per
source costs hundreds of bytes; here a source costs 25 (its id, its target, its
score and two flags in ``array`` columns), and ``Link`` objects exist for one
chunk of writes at a time.

``Candidates.add`` appends a match to a pending block; when that block is as
large as the reduced one (and at least ``MIN_PENDING``), both are reduced
together to one best match per source, ascending by source id. Memory therefore
grows with the sources, not with the matches. The reduction replays, source by
source and in stream order, exactly what reading the matches one by one decides
(``handlers.core.linking.decide`` has the rules): the first best stays best, a
better one replaces it, another target at the same rank makes it ambiguous.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from handlers.core.errors import MalformedResponse
from handlers.core.linking import CONFIRMED, LINK, MAX_ITEMS, Counts, Link, decide
from handlers.core.models import MAX_ID

MIN_PENDING = 1 << 20  # matches appended between reductions, at the least: one reduction for most runs
_NONE = 0  # a target without an integer id (CDF's ids start at 1)
_CONFIRMED, _AMBIGUOUS = 1, 2  # flag bits
_INF = math.inf


class Candidates:
    """The best match of each source of a run, fed one match at a time."""

    def __init__(self) -> None:
        self.without_source = 0  # matches whose source has no integer id: unlinkable, one count each
        self._reduced = 0  # the first _reduced entries are one per source, ascending; the rest are pending
        self._sources, self._targets, self._scores = array("q"), array("q"), array("d")  # a NaN score: none
        self._flags = bytearray()
        self._limit = MIN_PENDING  # reduce once this many entries are held

    def __len__(self) -> int:
        """The sources seen so far (each counted once)."""
        self._reduce()
        return self._reduced

    def add(self, match: Any, index: int = 0) -> None:
        """One item of the run's ``matches``; a match that is not an object is not of the documented shape."""
        if type(match) is not dict:
            raise MalformedResponse(f"CDF answered a match {index} that is not of the documented shape")
        source = match.get("source")
        source = source.get("id") if type(source) is dict else None
        if not (type(source) is int and 0 < source <= MAX_ID):
            self.without_source += 1
            return
        target = match.get("target")
        target = target.get("id") if type(target) is dict else None
        score = match.get("score")
        if type(score) is int:
            score = float(score) if -1e308 < score < 1e308 else math.nan
        elif type(score) is not float or score - score != 0.0:  # not a number, or not a finite one: no score
            score = math.nan
        self._sources.append(source)
        self._targets.append(target if type(target) is int and 0 < target <= MAX_ID else _NONE)
        self._scores.append(score)
        self._flags.append(_CONFIRMED if match.get("matchType") == CONFIRMED else 0)
        if len(self._sources) >= self._limit:
            self._reduce()

    def plan(self, min_score: float) -> Plan:
        """Decide every source (``decide``); the links to make, ascending by source id."""
        self._reduce()
        plan, others = Plan(Counts(unlinkable=self.without_source)), Counter[str]()
        for source, target, score, flag in zip(self._sources, self._targets, self._scores, self._flags, strict=True):
            confirmed, ambiguous = bool(flag & _CONFIRMED), bool(flag & _AMBIGUOUS)
            outcome = decide(target or None, None if score != score else score, confirmed, ambiguous, min_score)
            if outcome == LINK:
                plan.add(source, target, score, confirmed)
            else:
                others[outcome] += 1
        for outcome, n in others.items():
            plan.counts.add(outcome, n)
        return plan

    def _reduce(self) -> None:
        """One entry per source, ascending by source id: the reduced block and the pending one read in order."""
        sources, targets, scores, flags = self._sources, self._targets, self._scores, self._flags
        n = len(sources)
        if n == self._reduced:
            return
        shift = n.bit_length()
        mask = (1 << shift) - 1
        # A stable order by source: each key packs a source id above the entry's position (the reduced entries
        # come first, so a source's earlier best meets its later matches in stream order).
        order = [(source << shift) | i for i, source in enumerate(sources)]
        order.sort()
        out_s, out_t, out_c, out_f = array("q"), array("q"), array("d"), bytearray()
        previous = -1
        for key in order:
            i = key & mask
            source, target, score, flag = sources[i], targets[i], scores[i], flags[i]
            rank = _INF if flag & _CONFIRMED else (score if score == score else -_INF)
            if source != previous:
                out_s.append(source)
                out_t.append(target)
                out_c.append(score)
                out_f.append(flag)
                previous, best_rank = source, rank
            elif rank > best_rank:
                out_t[-1], out_c[-1], out_f[-1], best_rank = target, score, flag & _CONFIRMED, rank
            elif rank == best_rank and target != out_t[-1]:
                out_f[-1] |= _AMBIGUOUS
        del order
        self._sources, self._targets, self._scores, self._flags = out_s, out_t, out_c, out_f
        self._reduced = len(out_s)
        self._limit = self._reduced + max(MIN_PENDING, self._reduced)


@dataclass
class Plan:
    """The sources to link, ascending by source id, in compact columns, and the counts of those that will not be."""

    counts: Counts

    def __post_init__(self) -> None:
        self._sources, self._targets, self._scores = array("q"), array("q"), array("d")
        self._confirmed = bytearray()

    def add(self, source: int, target: int, score: float, confirmed: bool) -> None:
        """A link to make (``score`` NaN: none); sources are added ascending."""
        self._sources.append(source)
        self._targets.append(target)
        self._scores.append(score)
        self._confirmed.append(confirmed)

    def __len__(self) -> int:
        return len(self._sources)

    def __iter__(self) -> Iterator[Link]:
        for chunk in self.chunks():
            yield from chunk

    def chunks(self, size: int = MAX_ITEMS) -> Iterator[list[Link]]:
        """The links in requests of at most ``size``, in order; their ``Link`` objects are made chunk by chunk."""
        sources, targets, scores, confirmed = self._sources, self._targets, self._scores, self._confirmed
        for start in range(0, len(sources), size):
            end = min(start + size, len(sources))
            yield [
                Link(sources[i], targets[i], None if scores[i] != scores[i] else scores[i], bool(confirmed[i]))
                for i in range(start, end)
            ]
