"""What the link hands to people (contract, section 10): the sources chosen, and each one's best three candidates."""

from __future__ import annotations

from typing import Any

from handlers.core.pairs import REJECTED, Pairs
from handlers.core.review_picks import Picks


def match(source: int, target: int, score: float | None, kind: str = "model") -> dict[str, Any]:
    return {
        "source": {"id": source, "externalId": f"s-{source}"},
        "target": {"id": target, "externalId": f"t-{target}"},
        "score": score,
        "matchType": kind,
    }


def test_review_picks_choose_the_best_scored_then_by_source() -> None:
    """Best-scored first, then by source id; a source without a score last; below REVIEW_MIN_SCORE left out."""
    picks = Picks(0.5, 3)
    picks.note(4, 0.7, "below_threshold")
    picks.note(2, 0.9, "conflict", 77)
    picks.note(3, None, "ambiguous")
    picks.note(1, 0.9, "ambiguous")
    picks.note(5, 0.4, "below_threshold")  # below REVIEW_MIN_SCORE
    assert picks.choose() == 3
    assert [r["sourceId"] for r in picks.reviews()] == [1, 2, 4]
    assert [r["current"] for r in picks.reviews()] == [None, 77, None]


def test_review_picks_none_when_max_events_is_0() -> None:
    """REVIEW_MAX_EVENTS 0: nothing noted, nothing chosen."""
    picks = Picks(0.5, 0)
    picks.note(1, 0.9, "ambiguous")
    assert (picks.choose(), list(picks.reviews())) == (0, [])


def test_review_picks_gather_the_best_three_in_the_links_order() -> None:
    """Confirmed first, then the score, then the place in the run; other sources and rejected pairs left out."""
    pairs = Pairs()
    pairs.add([{"sourceId": 1, "targetId": 15}], REJECTED)
    picks = Picks(0.0, 10, pairs)
    picks.note(1, 0.6, "below_threshold")
    picks.choose()
    batch = [
        match(1, 10, 0.2),
        match(9, 90, 0.99),  # not chosen
        match(1, 11, 0.6),
        match(1, 15, 0.95),  # rejected by the pipeline
        match(1, 12, None, "previously_mapped"),
        match(1, 13, 0.6),
    ]
    picks.gather(batch[:3], 0)
    picks.gather(batch[3:], 3)
    [review] = picks.reviews()
    assert [(c["targetId"], c["matchIndex"]) for c in review["candidates"]] == [(12, 4), (11, 2), (13, 5)]
    assert (review["sourceExternalId"], review["reason"]) == ("s-1", "below_threshold")
