"""The pipeline's lists held compactly (handlers/core/pairs.py): exact answers, every form, at scale."""

from __future__ import annotations

import random
from typing import Any

import pytest

from handlers.core.pairs import CONFIRMED, REJECTED, Pairs


def side(item_id: Any = None, external: Any = None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if item_id is not None:
        found["id"] = item_id
    if external is not None:
        found["externalId"] = external
    return found


def lists(confirmed: list[Any], rejected: tuple[Any, ...] | list[Any] = ()) -> Pairs:
    pairs = Pairs()
    pairs.add(confirmed, CONFIRMED)
    pairs.add(rejected, REJECTED)
    return pairs


ASKED = [
    pytest.param({"sourceId": 1, "targetId": 2}, side(1), side(2), CONFIRMED, id="ids"),
    pytest.param({"sourceId": 1, "targetId": 2}, side(2), side(1), 0, id="ids-the-other-way-round"),
    pytest.param({"sourceExternalId": "a", "targetId": 2}, side(9, "a"), side(2), CONFIRMED, id="ext-id"),
    pytest.param({"sourceId": 1, "targetExternalId": "b"}, side(1), side(9, "b"), CONFIRMED, id="id-ext"),
    pytest.param(
        {"sourceExternalId": "a", "targetExternalId": "b"}, side(None, "a"), side(None, "b"), CONFIRMED, id="e"
    ),
    pytest.param({"sourceExternalId": "1", "targetId": 2}, side(1), side(2), 0, id="an-external-id-is-no-id"),
    pytest.param({"sourceId": 1, "targetExternalId": "2"}, side(1), side(2), 0, id="nor-a-target-id"),
    pytest.param({"sourceExternalId": "a#1", "targetId": 2}, side(None, "a"), side(1, "#12"), 0, id="no-cut-shared"),
    pytest.param({"sourceExternalId": "a=", "targetExternalId": "b"}, side(None, "a"), side(None, "=b"), 0, id="cut"),
    pytest.param(
        {"sourceId": 1, "sourceExternalId": "x", "targetId": 2}, side(1, "y"), side(2), CONFIRMED, id="id-wins"
    ),
    pytest.param({"sourceId": 1, "targetId": 2, "x": 3}, side(1), side(2), CONFIRMED, id="unknown-field"),
    pytest.param({"sourceId": True, "targetId": 2}, side(1), side(2), 0, id="a-boolean-is-no-id"),
    pytest.param({"sourceId": 0, "targetId": 2}, side(0), side(2), 0, id="zero-is-no-id"),
    pytest.param({"sourceId": 1}, side(1), side(2), 0, id="no-target"),
    pytest.param(["sourceId", 1], side(1), side(2), 0, id="not-an-object"),
]


@pytest.mark.parametrize(("pair", "source", "target", "expected"), ASKED)
def test_pairs_name_a_match_by_id_or_external_id(pair: Any, source: Any, target: Any, expected: int) -> None:
    """A match is a pair when each side the pair names equals the match's id or externalId, exactly."""
    assert lists([pair]).of(source, target) == expected


def test_pairs_in_both_lists_are_both() -> None:
    """A pair in both lists says both; repeats and other pairs of the same source say nothing more."""
    pairs = lists(
        [{"sourceId": 1, "targetId": 2}] * 3 + [{"sourceId": 1, "targetId": 3}], [{"sourceId": 1, "targetId": 2}]
    )
    assert pairs.of(side(1), side(2)) == CONFIRMED | REJECTED
    assert pairs.of(side(1), side(3)) == CONFIRMED
    assert pairs.of(side(1), side(4)) == 0


def test_pairs_without_lists_answer_nothing() -> None:
    """Empty lists, or lists of no pair, answer 0 for any match, and are false."""
    for pairs in (Pairs(), lists([None, {"targetId": 1}])):
        assert not pairs.forms
        assert pairs.of(side(1), side(2)) == 0


@pytest.mark.parametrize("seed", range(4))
def test_pairs_at_scale_answer_as_a_set(seed: int) -> None:
    """Tens of thousands of pairs of every form answer as a set of them does, for members and near misses."""
    rng = random.Random(seed)

    def named(n: int, prefix: str) -> tuple[str, Any]:
        return ("Id", n) if rng.random() < 0.5 else ("ExternalId", f"{prefix}{n}")

    wanted: dict[tuple[Any, Any], int] = {}
    confirmed, rejected = [], []
    for _ in range(20_000):
        s, t = named(rng.randint(1, 5000), "s"), named(rng.randint(1, 50), "t")
        pair = {f"source{s[0]}": s[1], f"target{t[0]}": t[1]}
        what = rng.choice([CONFIRMED, REJECTED])
        (confirmed if what == CONFIRMED else rejected).append(pair)
        wanted[(s, t)] = wanted.get((s, t), 0) | what
    pairs = lists(confirmed, rejected)
    for _ in range(20_000):
        s_id, t_id = rng.randint(1, 5000), rng.randint(1, 50)
        expected = 0
        for s in (("Id", s_id), ("ExternalId", f"s{s_id}")):
            for t in (("Id", t_id), ("ExternalId", f"t{t_id}")):
                expected |= wanted.get((s, t), 0)
        assert pairs.of(side(s_id, f"s{s_id}"), side(t_id, f"t{t_id}")) == expected
