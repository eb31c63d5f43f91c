"""The link's decision (contract, section 8): one case per row of the table, per resource kind, and at scale."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from handlers.core import candidates
from handlers.core.candidates import Candidates
from handlers.core.errors import MalformedResponse
from handlers.core.linking import (
    AMBIGUOUS,
    BELOW_THRESHOLD,
    CONFLICT,
    IN_PLACE,
    RESOURCES,
    SOURCE_MISSING,
    UNLINKABLE,
    WRITE,
    Counts,
    Link,
    against,
    decide,
    links_of,
    resource_of,
)
from handlers.core.updates import UpdateItems, provenance, update_item

MIN = 0.9


def match(source: Any = 1, target: Any = 100, score: Any = 0.95, kind: str | None = "model") -> dict[str, Any]:
    """A match as CDF gives it; ``None`` for ``source`` or ``target`` leaves out its id."""
    body: dict[str, Any] = {
        "source": {"name": "s"} if source is None else {"id": source},
        "target": {"name": "t"} if target is None else {"id": target},
        "score": score,
    }
    if kind is not None:
        body["matchType"] = kind
    return body


def outcome(*matches: dict[str, Any]) -> str | tuple[int, float | None]:
    """The decision for source 1 (or the only source): an outcome, or the (target, score) linked."""
    candidates = Candidates()
    for i, m in enumerate(matches):
        candidates.add(m, i)
    plan = candidates.plan(MIN)
    if len(plan):
        [link] = list(plan)
        return link.target, link.score
    decided = {k: v for k, v in plan.counts.data().items() if v}
    assert list(decided.values()) == [1], decided
    return {"unlinkable": UNLINKABLE, "belowThreshold": BELOW_THRESHOLD, "ambiguous": AMBIGUOUS}[next(iter(decided))]


DECISIONS = [
    pytest.param([match(source=None)], UNLINKABLE, id="source-without-id"),
    pytest.param([match(source="7")], UNLINKABLE, id="source-id-a-string"),
    pytest.param([match(source=True)], UNLINKABLE, id="source-id-a-boolean"),
    pytest.param([match(target=None)], UNLINKABLE, id="target-without-id"),
    pytest.param([match(target=1.5)], UNLINKABLE, id="target-id-a-fraction"),
    pytest.param([match(target=None, score=0.2)], UNLINKABLE, id="unlinkable-before-threshold"),
    pytest.param([match(score=0.1, kind="previously-confirmed")], (100, 0.1), id="confirmed-links-whatever-score"),
    pytest.param([match(score=None, kind="previously-confirmed")], (100, None), id="confirmed-without-score"),
    pytest.param([match(score=0.9)], (100, 0.9), id="score-at-threshold"),
    pytest.param([match(score=1)], (100, 1.0), id="score-above-threshold-integer"),
    pytest.param([match(score=0.95, kind="rule-x")], (100, 0.95), id="other-match-type-by-score"),
    pytest.param([match(score=0.8999)], BELOW_THRESHOLD, id="score-below"),
    pytest.param([match(score=None)], BELOW_THRESHOLD, id="no-score"),
    pytest.param([match(score="0.99")], BELOW_THRESHOLD, id="score-a-string"),
    pytest.param([match(score=0.99, kind=None)], (100, 0.99), id="no-match-type"),
    pytest.param(
        [match(target=100, score=0.99), match(target=200, score=0.5, kind="previously-confirmed")],
        (200, 0.5),
        id="several-confirmed-wins",
    ),
    pytest.param([match(target=100, score=0.91), match(target=200, score=0.97)], (200, 0.97), id="several-highest"),
    pytest.param([match(target=200, score=0.97), match(target=100, score=0.91)], (200, 0.97), id="several-any-order"),
    pytest.param([match(target=100, score=0.95), match(target=200, score=0.95)], AMBIGUOUS, id="two-best-tie"),
    pytest.param(
        [match(target=100, kind="previously-confirmed"), match(target=200, score=0.3, kind="previously-confirmed")],
        AMBIGUOUS,
        id="two-confirmed-different-targets",
    ),
    pytest.param([match(target=100), match(target=100)], (100, 0.95), id="same-target-twice-is-no-tie"),
    pytest.param(
        [match(target=100, score=0.95), match(target=200, score=0.95), match(target=300, score=0.96)],
        (300, 0.96),
        id="tie-broken-by-a-better-one",
    ),
    pytest.param([match(target=100, score=0.5), match(target=200, score=0.5)], BELOW_THRESHOLD, id="tie-below"),
    pytest.param([match(target=None, score=0.95), match(target=200, score=0.95)], AMBIGUOUS, id="tie-with-unlinkable"),
]


@pytest.mark.parametrize(("matches", "expected"), DECISIONS)
def test_linking_decision_table(matches: list[dict[str, Any]], expected: Any) -> None:
    """Each row of section 8's decision table gives its outcome for the source's best match."""
    assert outcome(*matches) == expected


SINGLE, LIST = RESOURCES["time_series"], RESOURCES["files"]
LINK = Link(1, 100, 0.95, False)

STATES = [
    pytest.param(SINGLE, (100,), False, IN_PLACE, id="single-already-this-target"),
    pytest.param(LIST, (7, 100), False, IN_PLACE, id="list-already-holds-it"),
    pytest.param(SINGLE, (7,), False, CONFLICT, id="single-elsewhere"),
    pytest.param(SINGLE, (7,), True, WRITE, id="single-elsewhere-overwrite"),
    pytest.param(SINGLE, (), False, WRITE, id="single-empty"),
    pytest.param(LIST, (7,), False, WRITE, id="list-without-it-adds"),
    pytest.param(LIST, (), False, WRITE, id="list-empty"),
    pytest.param(SINGLE, None, False, SOURCE_MISSING, id="source-gone"),
    pytest.param(LIST, None, True, SOURCE_MISSING, id="source-gone-list"),
]


@pytest.mark.parametrize(("resource", "current", "overwrite", "expected"), STATES)
def test_linking_against_cdf_state(resource: Any, current: Any, overwrite: bool, expected: str) -> None:
    """A decided link against the source's links in CDF: in place, conflict (unless overwrite), missing, or write."""
    assert against(LINK, current, resource, overwrite) == expected


KINDS = [
    ("time_series", "timeseries", {"assetId": {"set": 100}}),
    ("sequences", "sequences", {"assetId": {"set": 100}}),
    ("files", "files", {"assetIds": {"add": [100]}}),
    ("events", "events", {"assetIds": {"add": [100]}}),
]


@pytest.mark.parametrize(("name", "path", "change"), KINDS)
def test_linking_update_item_per_resource_kind(name: str, path: str, change: dict[str, Any]) -> None:
    """Each kind's update sets its one assetId or adds to its assetIds, and adds the run and score as provenance."""
    resource = resource_of(name, "assets")
    assert resource is not None
    assert resource.path == path
    item = update_item(LINK, resource, "demo/7/456")
    metadata = {"add": {"matchrelay:run": "demo/7/456", "matchrelay:score": "0.95"}}
    assert item == {"id": 1, "update": {**change, "metadata": metadata}}


@pytest.mark.parametrize(
    ("name", "item", "expected"),
    [
        ("time_series", {"id": 1, "assetId": 5}, (5,)),
        ("sequences", {"id": 1}, ()),
        ("time_series", {"id": 1, "assetId": None}, ()),
        ("files", {"id": 1, "assetIds": [5, 6]}, (5, 6)),
        ("events", {"id": 1}, ()),
    ],
)
def test_linking_links_of_each_kind(name: str, item: dict[str, Any], expected: tuple[int, ...]) -> None:
    """The links an item holds are read from assetId or assetIds, by kind; absent means none."""
    assert links_of(item, RESOURCES[name]) == expected


@pytest.mark.parametrize(
    ("name", "item"), [("time_series", {"assetId": "5"}), ("files", {"assetIds": 5}), ("events", {"assetIds": [0]})]
)
def test_linking_links_of_malformed(name: str, item: dict[str, Any]) -> None:
    """An item whose link field holds no asset ids is not of the documented shape."""
    with pytest.raises(MalformedResponse):
        links_of(item, RESOURCES[name])


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("assets", "assets"),
        ("time_series", "time_series"),
        ("datapoints", "assets"),
        (None, "assets"),
        (["files"], "x"),
    ],
)
def test_linking_unsupported_resources(source: Any, target: Any) -> None:
    """Only time series, sequences, files and events to assets are linked."""
    assert resource_of(source, target) is None


@pytest.mark.parametrize(("score", "text"), [(0.93, "0.93"), (1.0, "1.0"), (None, "null")])
def test_linking_provenance_score_text(score: float | None, text: str) -> None:
    """The provenance names the run and gives the score in JSON's notation."""
    assert provenance("demo/1/2", score) == {"matchrelay:run": "demo/1/2", "matchrelay:score": text}


def test_linking_plan_orders_by_source_and_counts_each_source_once() -> None:
    """The plan lists links by ascending source id and counts every other source once, whatever its matches."""
    candidates = Candidates()
    stream = [
        match(30, 300),
        match(10, 100),
        match(20, 200, score=0.2),
        match(20, 201, score=0.3),
        match(None, 1),
        match(None, 2),
        match(40, 400),
        match(40, 401),
    ]
    for i, m in enumerate(stream):
        candidates.add(m, i)
    plan = candidates.plan(MIN)
    assert [(link.source, link.target) for link in plan] == [(10, 100), (30, 300)]
    assert plan.counts == Counts(below_threshold=1, ambiguous=1, unlinkable=2)
    assert len(candidates) == 4


def test_linking_plan_chunks_of_a_thousand() -> None:
    """Links are cut into requests of at most 1000, in source order."""
    candidates = Candidates()
    for source in range(2500, 0, -1):
        candidates.add(match(source, 1), 0)
    chunks = list(candidates.plan(MIN).chunks())
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    assert chunks[1][0].source == 1001


def test_linking_match_not_an_object_is_malformed() -> None:
    """A match that is not a JSON object is not of the documented shape."""
    with pytest.raises(MalformedResponse, match="match 3"):
        Candidates().add(["x"], 3)


def test_linking_counts_data_names() -> None:
    """The counts take the names run.linked and the log line use."""
    counts = Counts()
    counts.add(IN_PLACE)
    counts.add(WRITE, 2)
    counts.add(SOURCE_MISSING)
    assert counts.data() == {
        "linked": 3,
        "belowThreshold": 0,
        "conflict": 0,
        "ambiguous": 0,
        "unlinkable": 0,
        "sourceMissing": 1,
        "targetMissing": 0,
        "written": 0,
    }


def one_at_a_time(matches: list[dict[str, Any]], min_score: float) -> tuple[list[Link], Counts]:
    """Section 8's rules applied as each match arrives, one dict entry per source: what the compact store replays."""
    best: dict[int, list[Any]] = {}  # source: [rank, target, score, confirmed, ambiguous]
    counts = Counts()
    for m in matches:
        source, target = m["source"].get("id"), m["target"].get("id")
        if not isinstance(source, int) or isinstance(source, bool) or source < 1:
            counts.unlinkable += 1
            continue
        target = target if isinstance(target, int) and not isinstance(target, bool) and target >= 1 else None
        confirmed, score = m.get("matchType") == "previously-confirmed", m.get("score")
        score = float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None
        rank = (1, 0.0) if confirmed else (0, -math.inf if score is None else score)
        current = best.get(source)
        if current is None or rank > current[0]:
            best[source] = [rank, target, score, confirmed, False]
        elif rank == current[0] and target != current[1]:
            current[4] = True
    links = []
    for source in sorted(best):
        _, target, score, confirmed, ambiguous = best[source]
        outcome = decide(target, score, confirmed, ambiguous, min_score)
        if outcome == "link":
            links.append(Link(source, target, score, confirmed))
        else:
            counts.add(outcome)
    return links, counts


def random_matches(rng: random.Random, n: int, sources: int) -> list[dict[str, Any]]:
    """``n`` matches over few sources, targets and scores: many repeats, ties and confirmed ones, in any order."""
    ids: list[Any] = [*range(1, sources + 1), None, "7", True]
    return [
        match(
            rng.choice(ids),
            rng.choice([*range(100, 104), None]),
            rng.choice([0.5, 0.9, 0.95, 1, None, "0.99", -0.0]),
            rng.choice(["model", "previously-confirmed", None]),
        )
        for _ in range(n)
    ]


def ascending_matches(rng: random.Random, n: int, then_below: bool) -> list[dict[str, Any]]:
    """``n`` matches whose sources each come above the one before (with unlinkable ones between), and with
    ``then_below`` a few more whose sources were seen already: the store's shortcut, and the way out of it."""
    matches = random_matches(rng, n, 1)
    for source, m in enumerate(matches, 1):
        if m["source"] == {"id": 1}:
            m["source"] = {"id": source}
    if then_below and n:
        matches += [match(rng.randint(1, n), 101, 0.99, "model") for _ in range(3)]
    return matches


@pytest.mark.parametrize("order", ["any", "ascending", "ascending, then below"])
@pytest.mark.parametrize("pending", [1, 2, 7, 64, 1 << 20])
@pytest.mark.parametrize("seed", range(8))
def test_linking_compact_store_decides_as_one_match_at_a_time(
    monkeypatch: pytest.MonkeyPatch, pending: int, seed: int, order: str
) -> None:
    """However often the store reduces its pending matches, in whatever batches and order they come, its plan is
    that of deciding one match at a time."""
    monkeypatch.setattr(candidates, "MIN_PENDING", pending)
    rng = random.Random(seed)
    if order == "any":
        matches = random_matches(rng, rng.randint(0, 400), rng.choice([1, 5, 40, 300]))
    else:
        matches = ascending_matches(rng, rng.randint(0, 400), order != "ascending")
    store, read = Candidates(), 0
    while read < len(matches):
        batch = matches[read : read + rng.randint(1, 50)]
        store.extend(batch, read)
        read += len(batch)
    plan = store.plan(MIN)
    links, counts = one_at_a_time(matches, MIN)
    assert [(x.source, x.target, x.score, x.confirmed) for x in plan] == [
        (x.source, x.target, x.score, x.confirmed) for x in links
    ]
    assert plan.counts == counts


@pytest.mark.parametrize("score", [0.93, 1.0, None, 1e-05, 1e16, -0.0, 0.1 + 0.2, 5e-324])
@pytest.mark.parametrize("name", sorted(RESOURCES))
def test_linking_update_bytes_are_the_update_item(name: str, score: float | None) -> None:
    """The bytes sent are the JSON of update_item, the score written as json.dumps writes it."""
    link, run = Link(12, 34, score, score is None), 'de%mo"/7/456'
    sent = json.loads(UpdateItems(RESOURCES[name], run).item(link))
    assert sent == update_item(link, RESOURCES[name], run)
    assert sent["update"]["metadata"]["add"]["matchrelay:score"] == json.dumps(score)


def test_linking_update_items_keep_each_score_text_across_chunks() -> None:
    """One run's items, chunk after chunk, write every score as json.dumps does, 0.0 and -0.0 each their own."""
    scores = [0.0, -0.0, 0.93, None, 0.93, -0.0, 0.0, 1e16, 5e-324] * 3
    items = UpdateItems(RESOURCES["time_series"], "demo/7/456")
    for chunk in (scores[:9], scores[9:18], scores[18:]):
        sent = [
            json.loads(text)["update"]["metadata"]["add"]["matchrelay:score"]
            for text in items.items([Link(1, 2, score, score is None) for score in chunk])
        ]
        assert sent == [json.dumps(score) for score in chunk]
