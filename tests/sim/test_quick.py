"""The simulator's quick ways through byids and update answer exactly as its full checks do; records stay small."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import sim.updates
import sim.writes
from sim import CdfSimulator
from sim.classic import KINDS, ItemState, Resource
from sim.data import MAX_ID
from sim.linkworld import link_world
from sim.names import Names
from sim.quick import quick_changes
from sim.updates import Refusal, update_items

API = "/api/v1/projects/demo"
TS, FILE = 1_000_000_001, 77  # time series TS, TS + 1; files 77, 78; assets 1..10
RUN = {"matchrelay:run": "demo/1/2", "matchrelay:score": "0.953"}


def _compact(body: Any) -> bytes:
    """A body as httpx (so the link) writes it."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _link(item: int, asset: int, kind: str = "timeseries", metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """An item as the link writes it."""
    link = {"assetId": {"set": asset}} if kind == "timeseries" else {"assetIds": {"add": [asset]}}
    return {"id": item, "update": {**link, "metadata": {"add": RUN if metadata is None else metadata}}}


def _removing(item: int, asset: int, keys: list[Any], kind: str = "timeseries") -> dict[str, Any]:
    """An item as the link writes it when it replaces nothing: its metadata's ``remove`` after its ``add``."""
    written = _link(item, asset, kind)
    written["update"]["metadata"]["remove"] = keys
    return written


def _items(*items: dict[str, Any]) -> dict[str, Any]:
    return {"items": list(items)}


@pytest.fixture
def started() -> Iterator[CdfSimulator]:
    with CdfSimulator(project="demo") as simulator:
        _build(simulator)
        yield simulator


def _build(simulator: CdfSimulator) -> None:
    simulator.static_tokens.add("t")
    simulator.add_assets(1, 10)
    simulator.add_item("timeseries", TS, external_id="ts-1", metadata={"unit": "bar"})
    simulator.add_item("timeseries", TS + 1, asset_id=3)
    simulator.add_item("files", FILE, asset_ids=(1, 2))
    simulator.add_item("files", FILE + 1)


def _outcome(simulator: CdfSimulator, kind: str, bodies: list[bytes]) -> list[Any]:
    """Each body's status and answer (with whether an item was ever updated in place of its time), then CDF's state."""
    seen: list[Any] = []
    with httpx.Client(base_url=simulator.url, headers={"Authorization": "Bearer t"}) as client:
        for body in bodies:
            answer = client.post(f"{API}/{kind}/update", content=body, headers={"content-type": "application/json"})
            parsed = answer.json()
            for item in parsed.get("items", []):
                item["lastUpdatedTime"] = item["lastUpdatedTime"] != item["createdTime"]
            seen.append((answer.status_code, parsed))
    seen.append([(w.status, w.applied, w.unchanged, w.items) for w in simulator.writes()])
    return [*seen, simulator.item_states(kind)]


UPDATES = [
    pytest.param("timeseries", _items(_link(TS, 4), _link(TS + 1, 5)), "quick", id="as-the-link-writes"),
    pytest.param("files", _items(_link(FILE, 3, "files"), _link(FILE + 1, 1, "files")), "quick", id="list-add"),
    pytest.param(
        "files",
        _items({"id": FILE, "update": {"assetIds": {"add": [3, 3, 1]}, "metadata": {"add": RUN}}}),
        "quick",
        id="add-twice",
    ),
    pytest.param("files", _items({"id": FILE, "update": {"assetIds": {"add": []}}}), "quick", id="add-none"),
    pytest.param("timeseries", _items(_link(TS, 4, metadata={'k"\\': "v\u00e9"})), "quick", id="escaped-metadata"),
    pytest.param("timeseries", _items(_link(TS, 4, metadata={"k": "}{"})), "quick", id="braces-in-metadata"),
    pytest.param("timeseries", _items(_link(TS, 4, metadata={})), "quick", id="empty-metadata"),
    pytest.param("timeseries", _items({"id": TS, "update": {"metadata": {"add": RUN}}}), "quick", id="no-link"),
    pytest.param("timeseries", _items({"id": TS, "update": {"assetId": {"set": 2}}}), "quick", id="no-metadata"),
    pytest.param(
        "timeseries",
        _items({"id": TS, "update": {"metadata": {"add": RUN}, "assetId": {"set": 2}}}),
        "quick",
        id="other-order",
    ),
    pytest.param("timeseries", _items({**_link(TS, 4), "x": 1}), "quick", id="extra-item-field"),
    pytest.param("timeseries", {**_items(_link(TS, 4)), "ignoreUnknownIds": True}, "quick", id="extra-top-field"),
    pytest.param("timeseries", _items({"id": TS, "update": {"assetId": {"setNull": True}}}), "quick", id="set-null"),
    pytest.param("files", _items({"id": FILE, "update": {"assetIds": {"set": [5]}}}), "full", id="list-set"),
    pytest.param("timeseries", _items(_link(TS, 4, metadata={"k": 1})), "full", id="number-in-metadata"),
    pytest.param("timeseries", _items(_link(TS, 4, metadata={"": "v"})), "full", id="empty-key"),
    pytest.param("timeseries", _items({"id": TS, "update": {"assetId": None}}), "full", id="null-op"),
    pytest.param("timeseries", _items({"id": TS, "update": {"assetId": {"set": True}}}), "full", id="bool-asset"),
    pytest.param("timeseries", _items(_link(MAX_ID + 1, 4)), "full", id="id-too-large"),
    pytest.param("timeseries", _items(_link(TS, 4), _link(TS, 5)), "full", id="duplicated"),
    pytest.param("timeseries", _items(_link(TS, 4), _link(5, 4)), "quick", id="missing-item"),
    pytest.param("timeseries", _items(_link(TS, 4), _link(TS + 1, 42)), "quick", id="missing-asset"),
    pytest.param("files", _items(_link(FILE, 44, "files")), "quick", id="missing-listed-asset"),
    pytest.param("timeseries", _items(*(_link(TS, 4) for _ in range(1001))), "full", id="1001"),
    pytest.param("timeseries", _items(_removing(TS, 4, ["matchrelay:previous"])), "quick", id="v4-remove-previous"),
    pytest.param("files", _items(_removing(FILE, 3, ["matchrelay:previous"], "files")), "quick", id="v4-list"),
    pytest.param("timeseries", _items(_removing(TS, 4, ["unit"])), "quick", id="remove-a-key-held"),
    pytest.param("timeseries", _items(_removing(TS, 4, [])), "quick", id="remove-nothing"),
    pytest.param(
        "timeseries", _items(_link(TS, 4, metadata=RUN | {"matchrelay:previous": "3"})), "quick", id="v4-previous"
    ),
    pytest.param("timeseries", _items(_removing(TS, 4, ["matchrelay:run"])), "full", id="added-and-removed"),
    pytest.param("timeseries", _items(_removing(TS, 4, ["k", "k"])), "full", id="removed-twice"),
    pytest.param("timeseries", _items(_removing(TS, 4, [1])), "full", id="removed-not-a-key"),
    pytest.param("timeseries", _items(_removing(TS, 4, [""])), "full", id="removed-empty-key"),
    pytest.param("timeseries", _items({"id": TS, "update": {"metadata": {"set": {"k": "v"}}}}), "full", id="set"),
    pytest.param("timeseries", _items({"id": TS, "update": {"metadata": {}}}), "full", id="metadata-no-op"),
]


def _way(body: bytes, single: bool) -> str:
    try:
        return "quick" if quick_changes(update_items(body), single) is not None else "full"
    except Refusal:
        return "full"


@pytest.mark.parametrize(("kind", "body", "way"), UPDATES)
@pytest.mark.parametrize("spaced", [False, True], ids=["compact", "spaced"])
def test_update_quick_ways_answer_as_the_full_checks(
    monkeypatch: pytest.MonkeyPatch, kind: str, body: dict[str, Any], way: str, spaced: bool
) -> None:
    """Sent twice, each body gets the same answers, records and CDF state whichever way it takes (compact or not)."""
    sent = json.dumps(body).encode() if spaced else _compact(body)
    assert _way(sent, kind == "timeseries") == way
    with CdfSimulator(project="demo") as quick:
        _build(quick)
        quickly = _outcome(quick, kind, [sent, sent])
    monkeypatch.setattr(sim.writes, "quick_changes", lambda items, single: None)
    with CdfSimulator(project="demo") as full:
        _build(full)
        assert _outcome(full, kind, [sent, sent]) == quickly


BYIDS = [
    pytest.param({"items": [{"id": TS + 1}, {"id": TS}]}, True, id="found"),
    pytest.param({"items": [{"id": TS}, {"id": 5}], "ignoreUnknownIds": True}, True, id="unknown-ignored"),
    pytest.param({"items": [{"id": 6}, {"id": TS}, {"id": 5}]}, True, id="unknown"),
    pytest.param({"items": [{"id": TS, "x": 1}]}, True, id="extra-field"),
    pytest.param({"items": [{"id": TS}, {"id": TS}]}, False, id="duplicated"),
    pytest.param({"items": [{"id": 1.0}]}, False, id="float-id"),
    pytest.param({"items": [{"id": True}]}, False, id="bool-id"),
    pytest.param({"items": [{"id": 0}]}, False, id="zero"),
    pytest.param({"items": [{"id": MAX_ID + 1}]}, False, id="too-large"),
    pytest.param({"items": [{"externalId": "ts-1"}]}, False, id="external-id"),
    pytest.param({"items": [[TS]]}, False, id="not-an-object"),
]


@pytest.mark.parametrize(("body", "quick"), BYIDS)
@pytest.mark.parametrize("kind", ["timeseries", "assets"])
def test_byids_quick_way_answers_as_the_full_checks(
    monkeypatch: pytest.MonkeyPatch, started: CdfSimulator, kind: str, body: dict[str, Any], quick: bool
) -> None:
    """byids answers byte for byte the same with or without its quick look at the ids."""
    if kind == "assets":
        body = json.loads(json.dumps(body).replace(str(TS), "3"))
    assert (sim.updates._quick_ids(body["items"]) is not None) is quick
    with httpx.Client(base_url=started.url, headers={"Authorization": "Bearer t"}) as client:
        quickly = client.post(f"{API}/{kind}/byids", json=body)
        monkeypatch.setattr(sim.updates, "_quick_ids", lambda items: None)
        fully = client.post(f"{API}/{kind}/byids", json=body)
    assert (quickly.status_code, quickly.content) == (fully.status_code, fully.content)


def _resource(kind: str) -> Resource:
    resource = Resource(kind)
    weird = Names('we"ird %s {{x}} \u00e9 {:03d}', "{}% \\ {:d}", 7)
    resource.add(1, 3, weird, metadata=lambda i: {"\u00e9": '"', "b": "\\", "a": ""})  # keys out of order
    resource.add(10, 3, lambda i: (None if i else 'a"b', f"n\u00e9 {i}"), links=lambda i: (1, 2, 3)[: i + 1])
    resource.add(20, 2, Names(None, "item {}"), links=lambda i: (5,))
    resource.put(21, ItemState(asset_ids=(6, 7)), 1_700_000_000_000)  # two links: one shown for time series
    resource.delete(11)
    return resource


@pytest.mark.parametrize("kind", KINDS)
def test_items_are_written_as_json_dumps_writes_them(kind: str) -> None:
    """An answer's item, from its block's template or not, is byte for byte json.dumps of the item's body."""
    resource = _resource(kind)
    ids = list(resource.ids())
    places = resource.places([*ids, 11, 15, 99])
    assert places[-3:] == [None, None, None]
    assert resource.encode(p for p in places if p) == [json.dumps(resource.body(n)) for n in ids]


@pytest.mark.parametrize("pattern", ["{name}", "{0}", "{!r}", "{:>5}", "{:x}", "{:s}"])
def test_names_take_plain_number_fields_only(pattern: str) -> None:
    """A name's fields are numbers as {} or {:07d} write them; anything else could write text JSON must escape."""
    with pytest.raises(ValueError, match="plain numbers"):
        Names(None, f"item {pattern}")


def test_records_keep_large_bodies_compressed_and_give_them_back(started: CdfSimulator) -> None:
    """A large update is recorded compressed, in the requests and the writes, and both give back the body as sent."""
    body = _compact(_items(*(_link(TS + k % 2, 1 + k % 10) for k in range(400))))
    small = _compact(_items(_link(TS, 4)))
    with httpx.Client(base_url=started.url, headers={"Authorization": "Bearer t"}) as client:
        for sent in (body, small):
            client.post(f"{API}/timeseries/update", content=sent, headers={"content-type": "application/json"})
    large, little = (r for r in started.requests if r.path.endswith("/update"))
    assert (large.body, large.raw, little.body, little.raw) == (body, b"", small, small)
    assert len(large.packed or body) < len(body) / 10
    assert [w.body for w in started.writes()] == [body, small]
    assert started.writes()[0].request.packed is large.packed


def test_link_world_expected_is_worked_out_once_per_threshold(started: CdfSimulator) -> None:
    """expected() gives the same counts again, per threshold and overwrite, and what a caller changes stays its own."""
    world = link_world(started, 7, 70, matches=40, below=0.3, linked=0.2, conflicts=0.1)
    first = world.expected()
    first.written += 100
    assert world.expected() == world.expected() != first
    assert world.expected(0.0).counts() != world.expected().counts()
    assert world.expected(overwrite=True).conflict == 0 < world.expected().conflict
