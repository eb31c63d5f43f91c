"""The link's decision (contract, section 8): one case per row of the table, per resource kind, and at scale."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from handlers.core import plan as candidates
from handlers.core.decision import (
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
from handlers.core.decision import REJECTED as REJECTED_
from handlers.core.errors import MalformedResponse
from handlers.core.pairs import CONFIRMED, REJECTED, Pairs
from handlers.core.plan import Candidates
from handlers.core.provenance import UpdateItems, provenance, update_item

MIN = 0.9


def match(source: Any = 1, target: Any = 100, score: Any = 0.95, kind: Any = "model") -> dict[str, Any]:
    """A match as CDF gives it, each side with an externalId (``s-1``, ``t-100``); ``None`` for ``source`` or
    ``target`` leaves out its id."""
    body: dict[str, Any] = {
        "source": {"name": "s"} if source is None else {"id": source, "externalId": f"s-{source}"},
        "target": {"name": "t"} if target is None else {"id": target, "externalId": f"t-{target}"},
        "score": score,
    }
    if kind is not None:
        body["matchType"] = kind
    return body


def pairs(confirmed: list[dict[str, Any]], rejected: list[dict[str, Any]]) -> Pairs:
    found = Pairs()
    found.add(confirmed, CONFIRMED)
    found.add(rejected, REJECTED)
    return found


def outcome(
    *matches: dict[str, Any], lists: Pairs | None = None, trust_rules: bool = True
) -> str | tuple[int, float | None]:
    """The decision for source 1 (or the only source): an outcome, or the (target, score) linked."""
    candidates = Candidates(lists, trust_rules)
    for i, m in enumerate(matches):
        candidates.add(m, i)
    plan = candidates.plan(MIN)
    if len(plan):
        [link] = list(plan)
        return link.target, link.score
    decided = {k: v for k, v in plan.counts.data().items() if v}
    assert list(decided.values()) == [1], decided
    names = {"unlinkable": UNLINKABLE, "belowThreshold": BELOW_THRESHOLD, "ambiguous": AMBIGUOUS, "rejected": REJECTED_}
    return names[next(iter(decided))]


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
    pytest.param([match(score=0.95, kind="heuristic")], (100, 0.95), id="other-match-type-by-score"),
    pytest.param([match(score=0.5, kind="heuristic")], BELOW_THRESHOLD, id="other-match-type-below"),
    pytest.param([match(score=None, kind="previously_mapped")], (100, None), id="confirmed-as-cdf-openapi-names-it"),
    pytest.param([match(score=0.1, kind="rule_s-(\\d+)->t-\\1")], (100, 0.1), id="rule-links-whatever-score"),
    pytest.param([match(score=None, kind="rule")], (100, None), id="rule-without-score"),
    pytest.param([match(score=0.5, kind="Rule_x")], BELOW_THRESHOLD, id="rule-prefix-is-case-sensitive"),
    pytest.param(
        [match(target=100, score=0.99), match(target=200, score=None, kind="rule_a->b")],
        (200, None),
        id="rule-beats-score",
    ),
    pytest.param(
        [match(target=100, kind="rule_a->b"), match(target=200, score=0.1, kind="previously_mapped")],
        (200, 0.1),
        id="confirmed-beats-rule",
    ),
    pytest.param(
        [match(target=100, kind="rule_a->b"), match(target=200, score=0.3, kind="rule_c->d")],
        AMBIGUOUS,
        id="two-rules-different-targets",
    ),
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


# The pipeline's lists: (confirmed, rejected) pairs, each side by id or external id, and the outcome for source 1.
LISTED = [
    pytest.param([{"sourceId": 1, "targetId": 100}], [], [match(score=0.2)], (100, 0.2), id="confirmed-by-ids"),
    pytest.param([{"sourceExternalId": "s-1", "targetId": 100}], [], [match(score=None)], (100, None), id="ext-id"),
    pytest.param([{"sourceId": 1, "targetExternalId": "t-100"}], [], [match(score=0.2)], (100, 0.2), id="id-ext"),
    pytest.param(
        [{"sourceExternalId": "s-1", "targetExternalId": "t-100"}], [], [match(score=0.2)], (100, 0.2), id="ext-ext"
    ),
    pytest.param([{"sourceId": 1, "targetId": 101}], [], [match(score=0.2)], BELOW_THRESHOLD, id="another-target"),
    pytest.param([{"sourceId": 2, "targetId": 100}], [], [match(score=0.2)], BELOW_THRESHOLD, id="another-source"),
    pytest.param([], [{"sourceId": 1, "targetId": 100}], [match(score=0.99)], REJECTED_, id="rejected-high-score"),
    pytest.param(
        [],
        [{"sourceExternalId": "s-1", "targetExternalId": "t-100"}],
        [match(kind="previously_mapped")],
        REJECTED_,
        id="rejected-beats-confirmed-type",
    ),
    pytest.param(
        [{"sourceId": 1, "targetId": 100}],
        [{"sourceId": 1, "targetId": 100}],
        [match()],
        REJECTED_,
        id="in-both-lists-rejected",
    ),
    pytest.param(
        [],
        [{"sourceId": 1, "targetId": 100}],
        [match(target=100, score=0.99), match(target=200, score=0.95)],
        (200, 0.95),
        id="rejected-best-then-the-next",
    ),
    pytest.param(
        [],
        [{"sourceId": 1, "targetId": 100}],
        [match(target=100, score=0.99), match(target=200, score=0.5)],
        BELOW_THRESHOLD,
        id="rejected-best-next-below",
    ),
    pytest.param(
        [],
        [{"sourceId": 1, "targetId": 100}, {"sourceId": 1, "targetExternalId": "t-200"}],
        [match(target=100), match(target=200, kind="rule_a->b")],
        REJECTED_,
        id="every-match-rejected",
    ),
    pytest.param(
        [],
        [{"sourceId": 1, "targetExternalId": "t-None"}],
        [match(target=None)],
        UNLINKABLE,
        id="a-target-without-externalId-is-no-pair",
    ),
    pytest.param(
        [{"sourceId": 1, "targetId": 200}],
        [],
        [match(target=100, kind="previously-confirmed"), match(target=200)],
        AMBIGUOUS,
        id="confirmed-type-ties-listed-pair",
    ),
    pytest.param(["x", {"sourceId": 1}, {"targetId": 100}], [None], [match(score=0.2)], BELOW_THRESHOLD, id="junk"),
]


@pytest.mark.parametrize(("confirmed", "rejected", "matches", "expected"), LISTED)
def test_linking_decision_takes_the_pipelines_lists(
    confirmed: list[Any], rejected: list[Any], matches: list[dict[str, Any]], expected: Any
) -> None:
    """A pair of confirmedMatches links whatever its score; one of rejectedMatches is dropped before anything else."""
    assert outcome(*matches, lists=pairs(confirmed, rejected)) == expected


def test_linking_rules_not_trusted_are_model_matches() -> None:
    """With LINK_TRUST_RULES=false a rule's match needs the score; a confirmed one still links without."""
    assert outcome(match(score=0.5, kind="rule_a->b"), trust_rules=False) == BELOW_THRESHOLD
    assert outcome(match(score=0.95, kind="rule_a->b"), trust_rules=False) == (100, 0.95)
    assert outcome(match(score=None, kind="previously_mapped"), trust_rules=False) == (100, None)


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
    added = {"matchrelay:run": "demo/7/456", "matchrelay:score": "0.95", "matchrelay:asset": "100"}
    assert item == {"id": 1, "update": {**change, "metadata": {"add": added, "remove": ["matchrelay:previous"]}}}


def test_linking_update_item_of_an_overwrite_names_the_asset_replaced() -> None:
    """A write that replaces an asset records it as matchrelay:previous and removes nothing."""
    item = update_item(LINK._replace(previous=7), RESOURCES["time_series"], "demo/7/456")
    added = {"matchrelay:run": "demo/7/456", "matchrelay:score": "0.95", "matchrelay:asset": "100"}
    assert item["update"]["metadata"] == {"add": added | {"matchrelay:previous": "7"}}


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
    """The provenance names the run, gives the score in JSON's notation and the asset in decimal."""
    expected = {"matchrelay:run": "demo/1/2", "matchrelay:score": text, "matchrelay:asset": "9001"}
    assert provenance("demo/1/2", score, 9001) == expected


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
        "rejected": 0,
        "unlinkable": 0,
        "sourceMissing": 1,
        "targetMissing": 0,
        "reviews": 0,
        "written": 0,
    }


def is_pair(m: dict[str, Any], pair: Any) -> bool:
    """Whether match ``m`` is ``pair``, each side named by id or external id (the id when both are given)."""
    if not isinstance(pair, dict):
        return False
    for side, by_id, by_ext in (("source", "sourceId", "sourceExternalId"), ("target", "targetId", "targetExternalId")):
        value = pair.get(by_id)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            key, wanted = "id", value
        elif isinstance(pair.get(by_ext), str):
            key, wanted = "externalId", pair[by_ext]
        else:
            return False
        found = m[side].get(key)
        if found != wanted or isinstance(found, bool):
            return False
    return True


def one_at_a_time(
    matches: list[dict[str, Any]], min_score: float, lists: tuple[list[Any], list[Any]] = ([], []), trust: bool = True
) -> tuple[list[Link], Counts]:
    """Section 8's rules applied as each match arrives, one dict entry per source: what the compact store replays."""
    best: dict[int, list[Any]] = {}  # source: [rank, target, score, trusted, ambiguous]
    counts = Counts()
    for m in matches:
        source, target = m["source"].get("id"), m["target"].get("id")
        if not isinstance(source, int) or isinstance(source, bool) or source < 1:
            counts.unlinkable += 1
            continue
        target = target if isinstance(target, int) and not isinstance(target, bool) and target >= 1 else None
        kind, score = m.get("matchType"), m.get("score")
        score = float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None
        if any(is_pair(m, p) for p in lists[1]):
            rank = (0, 0.0)
        elif kind in ("previously_mapped", "previously-confirmed") or any(is_pair(m, p) for p in lists[0]):
            rank = (3, 0.0)
        elif trust and isinstance(kind, str) and kind.startswith("rule"):
            rank = (2, 0.0)
        else:
            rank = (1, -math.inf if score is None else score)
        current = best.get(source)
        if current is None or rank > current[0]:
            best[source] = [rank, target, score, rank[0] >= 2, False]
        elif rank == current[0] and target != current[1]:
            current[4] = True
    links = []
    for source in sorted(best):
        rank, target, score, trusted, ambiguous = best[source]
        outcome = decide(target, score, trusted, ambiguous, min_score, rank[0] == 0)
        if outcome == "link":
            links.append(Link(source, target, score, trusted))
        else:
            counts.add(outcome)
    return links, counts


KINDS_OF_MATCH = ["model", "previously-confirmed", "previously_mapped", "rule_a->b", "rule", None, 7, "", "Model"]


def open_text(rng: random.Random) -> str:
    """A matchType of any text, near the ones that mean something."""
    return "".join(rng.choice("rule_-> previously") for _ in range(rng.randint(0, 9)))


def random_matches(rng: random.Random, n: int, sources: int) -> list[dict[str, Any]]:
    """``n`` matches over few sources, targets and scores: many repeats, ties and confirmed ones, in any order."""
    ids: list[Any] = [*range(1, sources + 1), None, "7", True]
    return [
        match(
            rng.choice(ids),
            rng.choice([*range(100, 104), None]),
            rng.choice([0.5, 0.9, 0.95, 1, None, "0.99", -0.0]),
            rng.choice([*KINDS_OF_MATCH, open_text(rng)]),
        )
        for _ in range(n)
    ]


def random_lists(rng: random.Random, sources: int) -> tuple[list[Any], list[Any]]:
    """Confirmed and rejected pairs over the same few sources and targets, each side by id or external id."""

    def pair() -> dict[str, Any]:
        s, t = rng.randint(1, sources), rng.choice(range(100, 104))
        by_source = {"sourceId": s} if rng.random() < 0.5 else {"sourceExternalId": f"s-{s}"}
        return by_source | ({"targetId": t} if rng.random() < 0.5 else {"targetExternalId": f"t-{t}"})

    return [pair() for _ in range(rng.randint(0, 6))], [pair() for _ in range(rng.randint(0, 6))]


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
    """However often the store reduces its pending matches, in whatever batches and order they come, whatever their
    matchType (open text) and the pipeline's lists, its plan is that of deciding one match at a time."""
    monkeypatch.setattr(candidates, "MIN_PENDING", pending)
    rng = random.Random(seed)
    if order == "any":
        matches = random_matches(rng, rng.randint(0, 400), rng.choice([1, 5, 40, 300]))
    else:
        matches = ascending_matches(rng, rng.randint(0, 400), order != "ascending")
    lists, trust = random_lists(rng, 40), rng.random() < 0.7
    store, read = Candidates(pairs(*lists), trust), 0
    while read < len(matches):
        batch = matches[read : read + rng.randint(1, 50)]
        store.extend(batch, read)
        read += len(batch)
    plan = store.plan(MIN)
    links, counts = one_at_a_time(matches, MIN, lists, trust)
    assert [(x.source, x.target, x.score, x.trusted) for x in plan] == [
        (x.source, x.target, x.score, x.trusted) for x in links
    ]
    assert plan.counts == counts


@pytest.mark.parametrize("score", [0.93, 1.0, None, 1e-05, 1e16, -0.0, 0.1 + 0.2, 5e-324])
@pytest.mark.parametrize("name", sorted(RESOURCES))
def test_linking_update_bytes_are_the_update_item(name: str, score: float | None) -> None:
    """The bytes sent are the JSON of update_item, the score written as json.dumps writes it."""
    run = 'de%mo"/7/456'
    for link in (Link(12, 34, score, score is None), Link(12, 34, score, False, 56)):
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
