"""The simulator's own reading of the link decision (docs/contract.md, links), to tell tests what to expect.

An independent implementation on purpose: a link under test that agrees with it
agrees with a second reading of the contract, not with itself. Where the
contract is silent it takes these choices:

- A match whose source has no integer `id` is `unlinkable` on its own.
- A source's best match: a `previously-confirmed` one beats any score (two
  confirmed ones tie whatever their scores), else the highest score (no score
  is lowest). Matches whose target has no integer `id` take part.
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

CONFIRMED = "previously-confirmed"
COUNT_NAMES = {  # Outcome field -> run.linked's count name
    "linked": "linked",
    "below_threshold": "belowThreshold",
    "conflict": "conflict",
    "ambiguous": "ambiguous",
    "unlinkable": "unlinkable",
    "source_missing": "sourceMissing",
    "target_missing": "targetMissing",
    "written": "written",
}


@dataclass
class Outcome:
    """Sources per outcome, each counted once, and the links written."""

    linked: int = 0
    below_threshold: int = 0
    conflict: int = 0
    ambiguous: int = 0
    unlinkable: int = 0
    source_missing: int = 0
    target_missing: int = 0
    written: int = 0

    def counts(self) -> dict[str, int]:
        """The counts under run.linked's names (`belowThreshold`, `sourceMissing`, ...)."""
        return {COUNT_NAMES[name]: value for name, value in asdict(self).items()}


@dataclass(frozen=True)
class Choice:
    """What a source's matches decide before CDF's state is read: an outcome, or a link to `target`."""

    outcome: str  # "link", "unlinkable", "below_threshold", "ambiguous"
    target: int | None = None
    score: float | None = None


def is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def _score(match: Mapping[str, Any]) -> float | None:
    score = match.get("score")
    return float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None


def _rank(match: Mapping[str, Any]) -> tuple[int, float]:
    if match.get("matchType") == CONFIRMED:
        return (1, 0.0)  # confirmed beats any score; two confirmed ones tie whatever their scores
    score = _score(match)
    return (0, float("-inf") if score is None else score)


def choose(matches: Sequence[Mapping[str, Any]], min_score: float) -> Choice:
    """The decision for one source's matches (all naming the same source)."""
    if not matches or not is_id(matches[0].get("source", {}).get("id")):
        return Choice("unlinkable")
    top = max(_rank(m) for m in matches)
    best = [m for m in matches if _rank(m) == top]
    targets = {m.get("target", {}).get("id") for m in best}
    targets = {t if is_id(t) else None for t in targets}
    if targets == {None}:
        return Choice("unlinkable")
    if top[0] == 0 and top[1] < min_score:
        return Choice("below_threshold")
    if len(targets) > 1:
        return Choice("ambiguous")
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
