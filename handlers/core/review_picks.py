"""What the link hands to people (contract, section 10): the sources it left, each with its best candidates. Pure.

While deciding and writing, the link notes each source it leaves for a person
(``note``): below the threshold with a best score at or above
``REVIEW_MIN_SCORE``, ambiguous, or in conflict with the asset in place. Those
are kept as compact columns. ``chosen`` takes at most ``REVIEW_MAX_EVENTS`` of
them, best-scored first, then by source id. A second reading of the run's
matches (``gather``) keeps, for the chosen sources only, their three best
candidates in the link's order (confirmed, a trusted rule, the score; then the
match's place in the run), leaving out pairs the pipeline rejected. So memory
grows with ``REVIEW_MAX_EVENTS``, not with the run.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Iterable, Iterator
from typing import Any

from handlers.core.decision import DROPPED, kind_of, rank
from handlers.core.models import MAX_ID
from handlers.core.pairs import Pairs

CANDIDATES = 3
REASONS = ("below_threshold", "ambiguous", "conflict")


class Picks:
    """The sources left for a person, and then the candidates of those chosen."""

    def __init__(self, min_score: float, max_events: int, pairs: Pairs | None = None, trust_rules: bool = True) -> None:
        self.min_score, self.max_events = min_score, max_events
        self._pairs, self._trust_rules = pairs if pairs else None, trust_rules
        self._sources, self._scores, self._currents = array("q"), array("d"), array("q")
        self._reasons = bytearray()
        self._chosen: dict[int, _Chosen] = {}

    def note(self, source: int, score: float | None, reason: str, current: int = 0) -> None:
        """A source the link left (``reason`` one of ``REASONS``; ``current`` the asset in place for a conflict); a
        source below the threshold is kept only at or above ``min_score``."""
        if self.max_events <= 0:
            return
        value = math.nan if score is None else score
        if reason == "below_threshold" and not value >= self.min_score:  # a NaN score (none) is not
            return
        self._sources.append(source)
        self._scores.append(value)
        self._currents.append(current)
        self._reasons.append(REASONS.index(reason))

    def choose(self) -> int:
        """Keep the best-scored ``max_events`` sources (a source without a score last, then by source id); how many."""
        scores = self._scores
        order = heapq.nsmallest(
            self.max_events,
            range(len(self._sources)),
            key=lambda i: (-scores[i] if scores[i] == scores[i] else math.inf, self._sources[i]),
        )
        self._chosen = {self._sources[i]: _Chosen(i) for i in order}
        return len(order)

    def gather(self, matches: Iterable[Any], first: int = 0) -> None:
        """A batch of the run's matches read again (the first its ``first``-th): the chosen sources' candidates."""
        chosen, pairs, trust = self._chosen, self._pairs, self._trust_rules
        for index, match in enumerate(matches, first):
            if type(match) is not dict:
                continue
            named, to = match.get("source"), match.get("target")
            if type(named) is not dict:
                continue
            source = named.get("id")
            entry = chosen.get(source) if type(source) is int else None
            if entry is None:
                continue
            listed = 0 if pairs is None else pairs.of(named, to)
            kind = kind_of(match.get("matchType"), listed, trust)
            if kind & DROPPED:  # a pair people rejected is not offered again
                continue
            score = _score(match.get("score"))
            ranked = rank(kind, score)
            entry.candidates.append(
                ((-ranked[0], -ranked[1], index), _candidate(to, score, match.get("matchType"), index))
            )
            if len(entry.candidates) > CANDIDATES:  # the best three, as they come
                entry.candidates = heapq.nsmallest(CANDIDATES, entry.candidates, key=lambda c: c[0])
            if entry.external_id is None and isinstance(named.get("externalId"), str):
                entry.external_id = named["externalId"]

    def reviews(self) -> Iterator[dict[str, Any]]:
        """The chosen sources' data (without coordinates), best-scored first, each with its best candidates first."""
        reasons, currents = self._reasons, self._currents
        for source, entry in self._chosen.items():
            reason = REASONS[reasons[entry.index]]
            current = currents[entry.index] if reason == "conflict" else 0
            yield {
                "sourceId": source,
                "sourceExternalId": entry.external_id,
                "reason": reason,
                "current": current or None,
                "candidates": [c for _, c in sorted(entry.candidates)],  # keys differ: each holds its match's place
            }


class _Chosen:
    """A chosen source: where its note is, its external id, and its best candidates so far."""

    __slots__ = ("candidates", "external_id", "index")

    def __init__(self, index: int) -> None:
        self.index = index
        self.external_id: str | None = None
        self.candidates: list[tuple[tuple[float, float, int], dict[str, Any]]] = []


def _score(value: Any) -> float | None:
    """A finite score as a float; None for anything else (no score)."""
    if type(value) in (int, float) and value == value and abs(value) < 1e308:
        return float(value)
    return None


def _candidate(target: Any, score: float | None, match_type: Any, index: int) -> dict[str, Any]:
    target = target if type(target) is dict else {}
    target_id, external = target.get("id"), target.get("externalId")
    return {
        "targetId": target_id if type(target_id) is int and 0 < target_id <= MAX_ID else None,
        "targetExternalId": external if isinstance(external, str) else None,
        "score": score,
        "matchType": match_type if isinstance(match_type, str) else None,
        "matchIndex": index,
    }
