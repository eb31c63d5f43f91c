"""The cases of a link scenario, one per source, in arrays: which case, which score, which second entry.

sim/linkworld.py turns them into matches, items and assets. Scores are whole
thousandths (the body says 0.953), drawn so that "above" is at least the
minimum score and "below" under it, whatever float rounding does.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

FRESH, BELOW, IN_PLACE, CONFLICT, CONFIRMED, AMBIGUOUS, RUNNER_UP, UNLINKABLE, SOURCE_MISSING, TARGET_MISSING = range(
    10
)
RULE, LISTED, REJECTED, REJECTED_BEST = range(10, 14)
CONFIRMED_SPELLINGS = ("previously_mapped", "previously-confirmed")  # CDF's OpenAPI's, and one seen elsewhere
RULE_TYPE = r"rule_{}-(\d+)->asset-\1"  # as CDF names a rule match: rule_{inputPattern}->{predictPattern}
_COUNTED = {  # link_world's counted cases, in the order they take sources
    "ambiguous": AMBIGUOUS,
    "runners_up": RUNNER_UP,
    "unlinkable": UNLINKABLE,
    "missing_sources": SOURCE_MISSING,
    "missing_targets": TARGET_MISSING,
    "confirmed": CONFIRMED,
    "rules": RULE,  # a rule's match: half without a score, half scored low
    "listed": LISTED,  # a model match, scored low or not, whose pair is in confirmedMatches
    "rejected": REJECTED,  # one match scored high whose pair is in rejectedMatches
    "rejected_best": REJECTED_BEST,  # the best of two is rejected; the second, another target, scores high
}
_NAMED = (UNLINKABLE, AMBIGUOUS, CONFIRMED, LISTED, REJECTED, REJECTED_BEST)  # cases that vary by ordinal
_FRACTIONS = {"below": BELOW, "linked": IN_PLACE, "conflicts": CONFLICT}
_TWICE = (AMBIGUOUS, RUNNER_UP, REJECTED_BEST)


@dataclass(frozen=True)
class Cases:
    """Per source index: its case (`codes`), its score in thousandths (-1: none); the sources matched twice."""

    n_matches: int
    codes: bytearray
    scores: array[int]
    seconds: array[int]  # source index of each second entry, in the order they follow the first ones
    ordinals: dict[int, int]  # unlinkable and ambiguous sources: the how-many-th of their case, for variety

    @property
    def n_sources(self) -> int:
        return len(self.codes)

    def has_second(self, s: int) -> bool:
        return self.codes[s] in _TWICE

    def score(self, s: int, second: bool) -> float | None:
        k = self.scores[s]
        if k < 0:
            return None
        if second and self.codes[s] == RUNNER_UP:
            k = max(0, k - 1 - s % 50)
        elif second and self.codes[s] == REJECTED_BEST:
            k -= 1  # drawn a thousandth above the threshold at the least: this one links
        return k / 1000

    def match_type(self, s: int, prefix: str, second: bool = False) -> str:
        """A source's matchType: both of CDF's confirmed spellings in turn, a rule's, else a model's (a second entry
        is a model's, but for an ambiguous source, whose two tie)."""
        code = self.codes[s]
        if second and code != AMBIGUOUS:
            return "model"
        if code == CONFIRMED or (code == AMBIGUOUS and self.ordinals[s] % 2 == 1):
            return CONFIRMED_SPELLINGS[self.ordinals[s] // 2 % 2]
        return RULE_TYPE.format(prefix) if code == RULE else "model"

    def listed(self, s: int) -> str | None:
        """Which of the pipeline's lists names source `s`'s first match as a pair: confirmed, rejected, or none."""
        code = self.codes[s]
        if code == LISTED:
            return "confirmed"
        return "rejected" if code in (REJECTED, REJECTED_BEST) else None

    def form(self, s: int) -> int:
        """How a listed pair names its sides, in turn: 0 ids, 1 source id and target externalId, 2 the other way
        round, 3 external ids."""
        return self.ordinals[s] % 4

    def confirmed(self, s: int) -> bool:
        return self.codes[s] == CONFIRMED or (self.codes[s] == AMBIGUOUS and self.ordinals[s] % 2 == 1)

    def spoil(self, s: int, entry: dict[str, Any]) -> None:
        """Take the integer id from an unlinkable entry: the source's or the target's, gone, a string, null, x.5."""
        if self.codes[s] != UNLINKABLE:
            return
        side = entry["source"] if self.ordinals[s] % 6 < 3 else entry["target"]
        variant = self.ordinals[s] % 3
        if variant == 0:
            del side["id"]
        elif variant == 1:
            side["id"] = str(side["id"])
        else:
            side["id"] = None if side is entry["source"] else side["id"] + 0.5

    def exists(self, s: int) -> bool:
        return self.codes[s] != SOURCE_MISSING

    def links(self, s: int, asset_base: int, n_sources: int) -> tuple[int, ...]:
        """Source `s`'s links as built: its target (linked already), its other asset (conflict), or none."""
        code = self.codes[s]
        if code == IN_PLACE:
            return (asset_base + s,)
        return (asset_base + n_sources + s,) if code == CONFLICT else ()

    def asset_exists(self, index: int) -> bool:
        """Whether asset `asset_base + index` exists: every one but the targets of missing-target sources."""
        return 0 <= index < 2 * self.n_sources and (index >= self.n_sources or self.codes[index] != TARGET_MISSING)

    def missing_source_indices(self) -> Iterator[int]:
        return (s for s, code in enumerate(self.codes) if code == SOURCE_MISSING)

    def missing_target_indices(self) -> Iterator[int]:
        return (s for s, code in enumerate(self.codes) if code == TARGET_MISSING)


def threshold(min_score: float) -> int:
    """The least whole thousandth at or above `min_score`."""
    lo = math.ceil(min_score * 1000 - 1e-6)
    while lo / 1000 < min_score:
        lo += 1
    while lo > 0 and (lo - 1) / 1000 >= min_score:
        lo -= 1
    return lo


def plan(
    rng: random.Random, matches: int, min_score: float, fractions: Mapping[str, float], counts: Mapping[str, int]
) -> Cases:
    """Cases for `matches` entries: the counted ones, then `fractions` of the remaining sources, shuffled."""
    if not 0.0 <= min_score <= 1.0:
        raise ValueError("min_score must be from 0 to 1")
    n_sources = matches - counts["ambiguous"] - counts["runners_up"] - counts.get("rejected_best", 0)
    plain = n_sources - sum(counts.values())
    taken = {code: round(fractions[name] * plain) for name, code in _FRACTIONS.items()}
    fresh = plain - sum(taken.values())
    if min(n_sources, plain, fresh, *counts.values(), *taken.values()) < 0:
        raise ValueError(f"{matches} matches do not hold these cases: {dict(counts)}, {dict(fractions)}")
    lo = threshold(min_score)
    if lo == 0 and taken[BELOW]:
        raise ValueError("nothing scores below a minimum score of 0")
    codes = bytearray([FRESH]) * fresh
    for code, count in [*((_COUNTED[name], counts[name]) for name in _COUNTED), *taken.items()]:
        codes += bytearray([code]) * count
    rng.shuffle(codes)
    scores = array("q", [0]) * n_sources
    ordinals: dict[int, int] = {}
    seen = [0] * 14
    for s, code in enumerate(codes):
        if code in _NAMED:
            ordinals[s] = seen[code]
        scores[s] = _draw(rng, code, lo, seen[code])
        seen[code] += 1
    seconds = array("q", (s for s, code in enumerate(codes) if code in _TWICE))
    return Cases(matches, codes, scores, seconds, ordinals)


def _draw(rng: random.Random, code: int, lo: int, ordinal: int) -> int:
    if code == BELOW:
        return rng.randint(max(0, lo - 300), lo - 1)
    if code in (CONFIRMED, RULE, LISTED):
        return -1 if ordinal % 2 == 0 else rng.randint(0, max(0, lo - 1))
    if code == REJECTED_BEST:
        return rng.randint(min(lo + 1, 1000), 1000)
    return rng.randint(max(lo, 1) if code == RUNNER_UP else lo, 1000)
