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
(``handlers.core.decision`` has the rules: ``kind_of``, ``rank``, ``decide``): the
first best stays best, a better one replaces it, another target at the same rank
makes it ambiguous. What each match is (confirmed, a rule match, rejected by the
pipeline's lists) is settled as it is appended, so the lists are asked once a
match (``handlers.core.pairs``).
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from handlers.core.decision import (
    AMBIGUOUS,
    BELOW_THRESHOLD,
    DROPPED,
    LINK,
    MAX_ITEMS,
    TRUSTED,
    Counts,
    Link,
    decide,
    kind_of,
    rank,
)
from handlers.core.errors import MalformedResponse
from handlers.core.models import MAX_ID
from handlers.core.pairs import Pairs
from handlers.core.review_picks import Picks

MIN_PENDING = 1 << 20  # matches appended between reductions, at the least: one reduction for most runs
_NONE = 0  # a target without an integer id (CDF's ids start at 1)
_KIND, _AMBIGUOUS = 7, 8  # flag bits: the match's kind (``kind_of``), and a tie with another target


class Candidates:
    """The best match of each source of a run, fed one match at a time."""

    def __init__(self, pairs: Pairs | None = None, trust_rules: bool = True) -> None:
        self._pairs = pairs if pairs else None  # the pipeline's confirmed and rejected pairs, when it has any
        self._trust_rules = trust_rules
        self.without_source = 0  # matches whose source has no integer id: unlinkable, one count each
        self._reduced = 0  # the first _reduced entries are one per source, ascending; the rest are pending
        self._sources, self._targets, self._scores = array("q"), array("q"), array("d")  # a NaN score: none
        self._flags = bytearray()
        self._limit = MIN_PENDING  # reduce once this many entries are held
        self._last = -1  # the last source appended while each was above the one before (-1: none yet); 0 after not

    def __len__(self) -> int:
        """The sources seen so far (each counted once)."""
        self._reduce()
        return self._reduced

    def add(self, match: Any, index: int = 0) -> None:
        """One item of the run's ``matches``, its ``index``-th."""
        self.extend((match,), index)

    def extend(self, matches: Iterable[Any], first: int = 0) -> None:
        """Items of the run's ``matches``, the first of them its ``first``-th; a match that is not an object is not of
        the documented shape. One loop over a batch, with its appends looked up once: this runs for every match."""
        sources, targets, scores, flags = self._sources, self._targets, self._scores, self._flags
        add_source, add_target, add_score, add_flag = sources.append, targets.append, scores.append, flags.append
        nan, last, pairs, trust = math.nan, self._last, self._pairs, self._trust_rules
        for index, match in enumerate(matches, first):
            if type(match) is not dict:
                raise MalformedResponse(f"CDF answered a match {index} that is not of the documented shape")
            named, to = match.get("source"), match.get("target")
            source = named.get("id") if type(named) is dict else None
            if not (type(source) is int and 0 < source <= MAX_ID):
                self.without_source += 1
                continue
            target = to.get("id") if type(to) is dict else None
            score = match.get("score")
            if type(score) is int:
                score = float(score) if -1e308 < score < 1e308 else nan
            elif type(score) is not float or score - score != 0.0:  # not a number, or not a finite one: no score
                score = nan
            add_source(source)
            add_target(target if type(target) is int and 0 < target <= MAX_ID else _NONE)
            add_score(score)
            match_type, listed = match.get("matchType"), 0 if pairs is None else pairs.of(named, to)
            add_flag(0 if match_type == "model" and not listed else kind_of(match_type, listed, trust))
            last = source if last and source > last else 0  # -1 is true and below every source
        self._last = last
        if len(sources) >= self._limit:
            self._reduce()

    def plan(self, min_score: float, picks: Picks | None = None) -> Plan:
        """Decide every source (``decide``); the links to make, ascending by source id. ``picks`` notes the sources
        left below the threshold or ambiguous, for people to review."""
        self._reduce()
        plan, others, below = Plan(Counts(unlinkable=self.without_source)), Counter[str](), 0
        add, note = plan.appender(), picks.note if picks is not None and picks.max_events > 0 else None
        for source, target, score, flag in zip(self._sources, self._targets, self._scores, self._flags, strict=True):
            if not flag and target:  # most sources: a model match, not tied, with a target, so the score decides
                if score >= min_score:  # a NaN score (none) is not
                    add(source, target, score, False)
                else:
                    below += 1
                    if note is not None:
                        note(source, score, BELOW_THRESHOLD)
                continue
            kind, ambiguous = flag & _KIND, bool(flag & _AMBIGUOUS)
            trusted, dropped = bool(kind & TRUSTED), bool(kind & DROPPED)
            outcome = decide(target or None, _score(score), trusted, ambiguous, min_score, dropped)
            if outcome == LINK:
                add(source, target, score, trusted)
            else:
                others[outcome] += 1
                if note is not None and outcome in (BELOW_THRESHOLD, AMBIGUOUS):
                    note(source, score, outcome)  # NaN as it is, as above: a note takes it for none
        others[BELOW_THRESHOLD] += below
        for outcome, n in others.items():
            plan.counts.add(outcome, n)
        return plan

    def _reduce(self) -> None:
        """One entry per source, ascending by source id: the reduced block and the pending one read in order."""
        sources, targets, scores, flags = self._sources, self._targets, self._scores, self._flags
        n = len(sources)
        if n == self._reduced:
            return
        if self._last:  # every source above the one before it: one entry per source, ascending, as they came
            self._reduced = n
            self._limit = n + max(MIN_PENDING, n)
            return
        # A stable sort by source id (the reduced entries come first, so a source's earlier best meets its later
        # matches in stream order), and the columns taken in that order by C loops, not Python's.
        order = sorted(range(n), key=sources.__getitem__)
        sources = array("q", map(sources.__getitem__, order))
        targets = array("q", map(targets.__getitem__, order))
        scores = array("d", map(scores.__getitem__, order))
        flags = bytearray(map(flags.__getitem__, order))
        del order
        if len(set(sources)) != n:  # a source with more than one match: its best is kept
            sources, targets, scores, flags = _best_of_each(sources, targets, scores, flags)
        self._sources, self._targets, self._scores, self._flags = sources, targets, scores, flags
        self._reduced, self._last = len(sources), sources[-1] if sources else -1
        self._limit = self._reduced + max(MIN_PENDING, self._reduced)


def _best_of_each(
    sources: array[int], targets: array[int], scores: array[float], flags: bytearray
) -> tuple[array[int], array[int], array[float], bytearray]:
    """Entries sorted by source (stably), reduced to one per source, as reading its matches one by one decides."""
    out_s, out_t, out_c, out_f = array("q"), array("q"), array("d"), bytearray()
    previous, best_rank = -1, (0, 0.0)
    for source, target, score, flag in zip(sources, targets, scores, flags, strict=True):
        ranked = rank(flag & _KIND, score)
        if source != previous:
            out_s.append(source)
            out_t.append(target)
            out_c.append(score)
            out_f.append(flag)
            previous, best_rank = source, ranked
        elif ranked > best_rank:
            out_t[-1], out_c[-1], out_f[-1], best_rank = target, score, flag & _KIND, ranked
        elif ranked == best_rank and target != out_t[-1]:
            out_f[-1] |= _AMBIGUOUS
    return out_s, out_t, out_c, out_f


@dataclass
class Plan:
    """The sources to link, ascending by source id, in compact columns, and the counts of those that will not be."""

    counts: Counts

    def __post_init__(self) -> None:
        self._sources, self._targets, self._scores = array("q"), array("q"), array("d")
        self._trusted = bytearray()

    def add(self, source: int, target: int, score: float, trusted: bool) -> None:
        """A link to make (``score`` NaN: none); sources are added ascending."""
        self.appender()(source, target, score, trusted)

    def appender(self) -> Callable[[int, int, float, bool], None]:
        """``add`` with the columns' appends looked up once, for a loop over every source of a run."""
        sources, targets, scores, trusted = (
            self._sources.append,
            self._targets.append,
            self._scores.append,
            self._trusted.append,
        )

        def add(source: int, target: int, score: float, is_trusted: bool) -> None:
            sources(source)
            targets(target)
            scores(score)
            trusted(is_trusted)

        return add

    def __len__(self) -> int:
        return len(self._sources)

    def __iter__(self) -> Iterator[Link]:
        for chunk in self.chunks():
            yield from chunk

    def chunks(self, size: int = MAX_ITEMS) -> Iterator[list[Link]]:
        """The links in requests of at most ``size``, in order; their ``Link`` objects are made chunk by chunk."""
        sources, targets, scores, trusted = self._sources, self._targets, self._scores, self._trusted
        for start in range(0, len(sources), size):
            end = min(start + size, len(sources))
            # Link._make is tuple.__new__ itself: a namedtuple's own __new__ is a Python function per link (a million
            # links: 0.40 s made that way, 0.28 to 0.36 s this way)
            at = sources[start:end], targets[start:end], map(_score, scores[start:end]), map(bool, trusted[start:end])
            yield list(map(Link._make, zip(*at, repeat(None))))  # previous: None until CDF's state is read


def _score(score: float) -> float | None:
    """A link's score: None for the NaN that stands for none in the columns."""
    return None if score != score else score
