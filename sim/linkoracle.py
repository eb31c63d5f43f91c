"""The simulator's own reading of the link decision (docs/contract.md, links), to tell tests what to expect.

An independent implementation on purpose: a link under test that agrees with it
agrees with a second reading of the contract, not with itself. Where the
contract is silent it takes these choices:

- A match whose source has no integer `id` is `unlinkable` on its own.
- A match that is a pair of the pipeline's `rejectedMatches` is dropped first; a
  source whose every match is dropped is `rejected`. A pair names each side by id
  or external id, and every name it gives must equal the match's.
- A source's best match: a confirmed one (`previously_mapped`,
  `previously-confirmed`, or a pair of `confirmedMatches`) beats any other (two
  confirmed ones tie whatever their scores), then a rule match (`matchType`
  starting with `rule`, unless rules are not trusted; two tie whatever their
  scores), else the highest score (no score is lowest). Matches whose target has
  no integer `id` take part.
- Then, in order: a sole best whose target has no integer `id` is `unlinkable`;
  a best neither confirmed nor at the minimum score is `below_threshold` (so a
  tie that would not link anyway is below the threshold, not ambiguous); best
  matches naming different targets are `ambiguous`; else the source is linked.
  The same target named twice is one target.
- CDF's state is looked at only for sources that would be linked: a missing
  source is `source_missing` only then; a below-threshold deleted source stays
  `below_threshold`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sim.classic import ItemState
from sim.data import MAX_ID

CONFIRMED_TYPES = ("previously_mapped", "previously-confirmed")
COUNT_NAMES = {  # Outcome field -> run.linked's count name
    "linked": "linked",
    "below_threshold": "belowThreshold",
    "conflict": "conflict",
    "ambiguous": "ambiguous",
    "rejected": "rejected",
    "unlinkable": "unlinkable",
    "source_missing": "sourceMissing",
    "target_missing": "targetMissing",
    "reviews": "reviews",
    "written": "written",
}
_SIDES = (("source", "sourceId", "sourceExternalId"), ("target", "targetId", "targetExternalId"))


@dataclass
class Outcome:
    """Sources per outcome, each counted once, and the links written."""

    linked: int = 0
    below_threshold: int = 0
    conflict: int = 0
    ambiguous: int = 0
    rejected: int = 0
    unlinkable: int = 0
    source_missing: int = 0
    target_missing: int = 0
    reviews: int = 0
    written: int = 0

    def counts(self) -> dict[str, int]:
        """The counts under run.linked's names (`belowThreshold`, `sourceMissing`, ...)."""
        return {COUNT_NAMES[name]: value for name, value in asdict(self).items()}


@dataclass(frozen=True)
class Choice:
    """What a source's matches decide before CDF's state is read: an outcome, or a link to `target`."""

    outcome: str  # "link", "rejected", "unlinkable", "below_threshold", "ambiguous"
    target: int | None = None
    score: float | None = None


def is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def _score(match: Mapping[str, Any]) -> float | None:
    score = match.get("score")
    return float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None


@dataclass(frozen=True)
class Lists:
    """The pipeline's pairs as the oracle reads them, and whether rule matches are trusted."""

    confirmed: Sequence[Mapping[str, Any]] = ()
    rejected: Sequence[Mapping[str, Any]] = ()
    trust_rules: bool = True


def is_pair(match: Mapping[str, Any], pair: Mapping[str, Any]) -> bool:
    """Whether `match` is `pair`: every name the pair gives a side equals that side's id or externalId."""
    for side, by_id, by_external in _SIDES:
        named = match.get(side)
        named = named if isinstance(named, Mapping) else {}
        names = [(key, pair[name]) for key, name in (("id", by_id), ("externalId", by_external)) if name in pair]
        if not names or any(named.get(key) != value or value is None for key, value in names):
            return False
    return True


def _rank(match: Mapping[str, Any], lists: Lists) -> tuple[int, float]:
    kind = match.get("matchType")
    if kind in CONFIRMED_TYPES or any(is_pair(match, pair) for pair in lists.confirmed):
        return (3, 0.0)  # confirmed beats anything; two confirmed ones tie whatever their scores
    if lists.trust_rules and isinstance(kind, str) and kind.startswith("rule"):
        return (2, 0.0)
    score = _score(match)
    return (1, float("-inf") if score is None else score)


def choose(matches: Sequence[Mapping[str, Any]], min_score: float, lists: Lists = Lists()) -> Choice:
    """The decision for one source's matches (all naming the same source)."""
    if not matches or not is_id(matches[0].get("source", {}).get("id")):
        return Choice("unlinkable")
    kept = [m for m in matches if not any(is_pair(m, pair) for pair in lists.rejected)]
    if not kept:
        return Choice("rejected")
    top = max(_rank(m, lists) for m in kept)
    best = [m for m in kept if _rank(m, lists) == top]
    targets = {m.get("target", {}).get("id") for m in best}
    targets = {t if is_id(t) else None for t in targets}
    if targets == {None}:
        return Choice("unlinkable")
    best_score = top[1] if top[0] == 1 and top[1] != float("-inf") else None  # a link.review's order
    if top[0] == 1 and top[1] < min_score:
        return Choice("below_threshold", score=best_score)
    if len(targets) > 1:
        return Choice("ambiguous", score=best_score)
    return Choice("link", best[0]["target"]["id"], _score(best[0]))


def settle(choice: Choice, state: ItemState | None, target_exists: bool, overwrite: bool) -> tuple[str, bool]:
    """The outcome given CDF's state of the source (None: gone) and whether it writes: (outcome, written)."""
    if choice.outcome != "link":
        return choice.outcome, False
    if state is None:
        return "source_missing", False
    if choice.target in state.links():
        return "linked", False
    if state.asset_id is not None and not overwrite:
        return "conflict", False
    return ("linked", True) if target_exists else ("target_missing", False)


def after(state: ItemState, target: int, single: bool) -> ItemState:
    """The source's links once the link to `target` is written (metadata aside)."""
    if single:
        return ItemState(asset_id=target, metadata=state.metadata)
    return ItemState(asset_ids=(*state.asset_ids, target), metadata=state.metadata)
