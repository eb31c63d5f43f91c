"""The quick way through update for the unlink's bodies (setNull, set back, remove) answers as the full checks do."""

from __future__ import annotations

import json
import random
import threading
from typing import Any

import pytest

import sim.writes
from sim import CdfSimulator
from sim.classic import Resource
from sim.steps import Step
from sim.writes import Classic
from tests.sim.test_quick import FILE, TS, _build, _compact, _outcome, _way

KEYS = ["matchrelay:run", "matchrelay:score", "matchrelay:asset", "matchrelay:previous"]
PROVENANCE = {"matchrelay:run": "demo/1/1", "matchrelay:score": "0.9", "matchrelay:asset": "4", "unit": "bar"}
ONLY = {"matchrelay:run": "demo/1/1", "matchrelay:asset": "5"}  # nothing left once put back


def _put_back(item: int, op: Any, kind: str = "timeseries", metadata: Any = None) -> dict[str, Any]:
    """An item as the unlink writes it: its link op, then the provenance keys removed (`metadata` instead)."""
    field = "assetId" if kind == "timeseries" else "assetIds"
    update: dict[str, Any] = {} if op is None else {field: op}
    if metadata != "none":
        update["metadata"] = {"remove": KEYS} if metadata is None else metadata
    return {"id": item, "update": update}


NULL, REMOVED = {"setNull": True}, {"remove": [1]}


def _items(*items: dict[str, Any]) -> dict[str, Any]:
    return {"items": list(items)}


def _built(simulator: CdfSimulator) -> None:
    """test_quick's items, and items a run linked: TS + 2 and FILE + 2 to asset 4, TS + 3, TS + 4 to two assets."""
    _build(simulator)
    simulator.add_item("timeseries", TS + 2, asset_id=4, metadata=PROVENANCE | {"matchrelay:previous": "2"})
    simulator.add_item("timeseries", TS + 3, asset_id=5, metadata=ONLY)
    simulator.add_item("timeseries", TS + 4, asset_ids=(6, 7), metadata=PROVENANCE)  # not CDF's, but held
    simulator.add_item("files", FILE + 2, asset_ids=(3, 4, 5), metadata=PROVENANCE)


UNLINKS = [
    pytest.param("timeseries", _items(_put_back(TS + 1, NULL), _put_back(TS + 2, {"set": 2})), "quick", id="as-sent"),
    pytest.param("timeseries", _items(_put_back(TS, NULL)), "quick", id="set-null-unlinked"),
    pytest.param("timeseries", _items(_put_back(TS + 3, NULL)), "quick", id="no-metadata-left"),
    pytest.param("timeseries", _items(_put_back(TS + 4, NULL), _put_back(TS + 2, {"set": 4})), "quick", id="more"),
    pytest.param("timeseries", _items(_put_back(TS + 1, NULL, metadata="none")), "quick", id="no-metadata-op"),
    pytest.param(
        "timeseries",
        _items(_put_back(TS + 2, NULL, metadata={"add": {"k": "v"}, "remove": KEYS})),
        "quick",
        id="add-and-remove",
    ),
    pytest.param("timeseries", _items(_put_back(TS + 2, NULL, metadata={"remove": []})), "quick", id="remove-none"),
    pytest.param(
        "timeseries", _items(_put_back(TS + 2, NULL, metadata={"remove": ['k"\\', "\u00e9"]})), "quick", id="escaped"
    ),
    pytest.param("timeseries", _items(_put_back(TS + 2, NULL, metadata={"remove": ["a]"]})), "quick", id="bracket"),
    pytest.param("timeseries", _items(_put_back(TS + 2, None)), "quick", id="metadata-only"),
    pytest.param("timeseries", _items(_put_back(TS + 2, NULL), _put_back(5, NULL)), "quick", id="missing-item"),
    pytest.param("timeseries", _items(_put_back(TS + 2, {"set": 42})), "quick", id="missing-asset"),
    pytest.param("timeseries", _items(_put_back(TS + 2, NULL), _put_back(TS + 2, NULL)), "full", id="id-twice"),
    pytest.param("timeseries", _items(_put_back(TS + 2, {"setNull": False})), "full", id="set-null-false"),
    pytest.param("timeseries", _items(_put_back(TS + 2, {"setNull": 1})), "full", id="set-null-one"),
    pytest.param("timeseries", _items(_put_back(TS + 2, {"set": 2, "setNull": True})), "full", id="set-and-null"),
    pytest.param("timeseries", _items(_put_back(TS + 2, {"remove": [4]})), "full", id="remove-one-asset"),
    pytest.param("timeseries", _items(_put_back(TS + 2, NULL, metadata={})), "full", id="empty-metadata-op"),
    pytest.param("timeseries", _items(_put_back(TS + 2, NULL, metadata={"remove": [""]})), "full", id="empty-key"),
    pytest.param("timeseries", _items(_put_back(TS + 2, NULL, metadata={"remove": ["k", "k"]})), "full", id="twice"),
    pytest.param(
        "timeseries",
        _items(_put_back(TS + 2, NULL, metadata={"add": {"k": "v"}, "remove": ["k"]})),
        "full",
        id="added-and-removed",
    ),
    pytest.param(
        "files",
        _items(_put_back(FILE, REMOVED, "files"), _put_back(FILE + 2, {"remove": [4]}, "files")),
        "quick",
        id="list-as-sent",
    ),
    pytest.param("files", _items(_put_back(FILE, {"remove": [1, 2]}, "files")), "quick", id="remove-all"),
    pytest.param("files", _items(_put_back(FILE + 1, {"remove": [5]}, "files")), "quick", id="remove-not-held"),
    pytest.param("files", _items(_put_back(FILE, {"remove": [44]}, "files")), "quick", id="remove-missing-asset"),
    pytest.param("files", _items(_put_back(FILE + 2, {"remove": [4, 3, 4]}, "files")), "quick", id="remove-twice"),
    pytest.param("files", _items(_put_back(FILE, {"remove": []}, "files")), "quick", id="remove-no-asset"),
    pytest.param(
        "files",
        _items(_put_back(FILE, {"add": [6]}, "files"), _put_back(FILE + 2, {"remove": [5]}, "files")),
        "quick",
        id="add-then-remove",
    ),
    pytest.param("files", _items(_put_back(FILE, {"add": [6], "remove": [1]}, "files")), "full", id="add-and-remove"),
    pytest.param(
        "files", _items(_put_back(FILE, REMOVED, "files"), _put_back(7, REMOVED, "files")), "quick", id="gone"
    ),
    pytest.param(
        "files", _items(_put_back(FILE, REMOVED, "files"), _put_back(FILE, REMOVED, "files")), "full", id="2x"
    ),
    pytest.param("files", _items(_put_back(FILE, NULL, "files")), "full", id="list-set-null"),
]


@pytest.mark.parametrize(("kind", "body", "way"), UNLINKS)
@pytest.mark.parametrize("spaced", [False, True], ids=["compact", "spaced"])
def test_unlink_bodies_answer_as_the_full_checks(
    monkeypatch: pytest.MonkeyPatch, kind: str, body: dict[str, Any], way: str, spaced: bool
) -> None:
    """Sent twice, each unlink body gets the same answers, records and CDF state whichever way it takes."""
    sent = json.dumps(body).encode() if spaced else _compact(body)
    assert _way(sent, kind == "timeseries") == way
    with CdfSimulator(project="demo") as quick:
        _built(quick)
        quickly = _outcome(quick, kind, [sent, sent])
    monkeypatch.setattr(sim.writes, "quick_changes", lambda items, single: None)
    with CdfSimulator(project="demo") as full:
        _built(full)
        assert _outcome(full, kind, [sent, sent]) == quickly


def _store() -> Classic:
    """Items 100..107 of each kind (103 deleted), linked to none, one or two of assets 1..12 (11 and 12 missing)."""
    classic = Classic(threading.Event())
    classic.assets.add(1, 10)
    metadata = [{}, PROVENANCE, ONLY, {"unit": "bar", "matchrelay:run": "x"}]
    for resource in classic.resources.values():
        links = [(), (1,), (2,), (3, 4), (11,), (5,), (6, 7), (8,)]
        resource.add(100, 8, lambda i: (None, f"item {i}"), links=links.__getitem__, metadata=lambda i: metadata[i % 4])
        resource.delete(103)
    return classic


def _random_body(rng: random.Random, single: bool) -> bytes:
    """Up to five items put back, now and then one missing, named twice, or linked to a missing asset."""
    ids = rng.sample([100, 101, 102, 104, 105, 106, 107], rng.randint(1, 5))
    if rng.random() < 0.1:
        ids[-1] = rng.choice([98, 103, 109, *ids[:-1]])  # missing, deleted, or twice
    return _compact(_items(*(_random_item(rng, single, item) for item in ids)))


def _random_item(rng: random.Random, single: bool, item: int) -> dict[str, Any]:
    assets = [rng.randint(1, 12) for _ in range(rng.randint(0, 3))]
    asset = rng.randint(1, 12) if rng.random() < 0.1 else rng.randint(1, 10)
    ops: list[Any] = [{"setNull": True}, {"set": asset}] if single else [{"remove": assets or [1]}]
    ops += [None, {"add": [asset]}] if rng.random() < 0.2 else []
    keys = rng.sample([*KEYS, "unit", "other"], rng.randint(0, 4))
    metadata: Any = rng.choice(["none", None, {"remove": keys}, {"add": {"other": "y"}, "remove": keys[:1]}])
    return _put_back(item, rng.choice(ops), "timeseries" if single else "files", metadata)


def _seen(done: tuple[Step, bool, tuple[int, ...]], resource: Resource) -> Any:
    step, applied, unchanged = done
    answer = json.loads(step.body)
    for item in answer.get("items", []):
        item["lastUpdatedTime"] = item["lastUpdatedTime"] != item["createdTime"]
    return step.code, answer, applied, unchanged, [resource.get(n) for n in range(98, 110)]


@pytest.mark.parametrize("kind", ["timeseries", "files", "sequences", "events"])
def test_random_unlink_bodies_leave_the_same_state_either_way(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Unlink-shaped bodies, applied one after the other to two stores, quickly and fully: the same after each."""
    rng, quick, full, ways = random.Random(kind), _store(), _store(), []
    single = quick.resources[kind].single
    for _ in range(300):
        body = _random_body(rng, single)
        ways.append(_way(body, single))
        quickly = _seen(quick._apply(kind, body), quick.resources[kind])
        with monkeypatch.context() as patched:
            patched.setattr(sim.writes, "quick_changes", lambda items, single: None)
            assert _seen(full._apply(kind, body), full.resources[kind]) == quickly, body
    assert ways.count("quick") > 100
