"""The simulator's write side behaves like CDF's classic resources and obeys its scripts and limits."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from sim import CdfSimulator, Step
from sim.classic import ItemState
from sim.linkoracle import Lists, choose
from sim.linkworld import link_world
from sim.writes import Applied
from tests.conftest import ROOT

API = "/api/v1/projects/demo"
PIPELINES = f"{API}/context/entitymatching/pipelines"
TS = 1_000_000_001  # a time series; assets are 1..10


@pytest.fixture
def sim() -> Iterator[CdfSimulator]:
    with CdfSimulator(project="demo") as started:
        started.static_tokens.add("t")
        started.add_assets(1, 10)
        started.add_item("timeseries", TS, external_id="ts-1", metadata={"unit": "bar"})
        started.add_item("timeseries", TS + 1, asset_id=3)
        started.add_item("files", 77, asset_ids=(1, 2))
        started.add_item("events", 88)
        yield started


@pytest.fixture
def client(sim: CdfSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=10, headers={"Authorization": "Bearer t"}) as http:
        yield http


def _byids(client: httpx.Client, kind: str, ids: list[int], **extra: Any) -> httpx.Response:
    return client.post(f"{API}/{kind}/byids", json={"items": [{"id": n} for n in ids], **extra})


def _update(client: httpx.Client, kind: str, *items: tuple[int, dict[str, Any]]) -> httpx.Response:
    return client.post(f"{API}/{kind}/update", json={"items": [{"id": n, "update": u} for n, u in items]})


def _set(asset: int) -> dict[str, Any]:
    return {"assetId": {"set": asset}, "metadata": {"add": {"matchrelay:run": "demo/1/2"}}}


# --- the pipeline ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", [None, "time_series", "files", "events", "sequences", "assets"])
def test_pipeline_get_gives_its_source_and_target_resources(
    sim: CdfSimulator, client: httpx.Client, resource: str | None
) -> None:
    """GET .../pipelines/{id} gives the pipeline the list shows, sources time_series unless set, targets assets."""
    sim.add_pipeline(5, **({"source_resource": resource} if resource else {}))
    sim.add_run(5, 50, 1_000, "Completed")
    found = client.get(f"{PIPELINES}/5")
    listed = client.get(PIPELINES).json()["items"]
    assert found.status_code == 200
    assert found.json()["sources"] == {"dataSetIds": [{"id": 1}], "resource": resource or "time_series"}
    assert found.json()["targets"]["resource"] == "assets"
    assert [found.json()] == listed


@pytest.mark.parametrize(
    ("path", "token", "code"),
    [
        pytest.param(f"{PIPELINES}/6", "t", 404, id="unknown"),
        pytest.param(f"{PIPELINES}/abc", "t", 400, id="not-an-id"),
        pytest.param(f"{PIPELINES}/5", "bad", 401, id="bad-token"),
        pytest.param("/api/v1/projects/other/context/entitymatching/pipelines/5", "t", 403, id="other-project"),
    ],
)
def test_pipeline_get_refusals_have_cdf_error_bodies(
    sim: CdfSimulator, client: httpx.Client, path: str, token: str, code: int
) -> None:
    """An unknown pipeline is 404, a bad id 400, a bad token 401, another project 403, each with CDF's body."""
    sim.add_pipeline(5)
    answer = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (code, code)


def test_pipeline_script_answers_first_then_normally(sim: CdfSimulator, client: httpx.Client) -> None:
    """script_pipeline answers in order (None: normally), then every GET normally."""
    sim.add_pipeline(5)
    sim.script_pipeline(5, [Step.error(503), None, Step.error(403)])
    assert [client.get(f"{PIPELINES}/5").status_code for _ in range(4)] == [503, 200, 403, 200]


# --- byids -------------------------------------------------------------------------------------------------------


def test_byids_gives_items_with_their_links_and_metadata(client: httpx.Client) -> None:
    """byids answers items in the order asked, assetId/assetIds only when set, metadata always."""
    series = _byids(client, "timeseries", [TS + 1, TS]).json()["items"]
    files, events = (_byids(client, kind, [n]).json()["items"][0] for kind, n in (("files", 77), ("events", 88)))
    assert [(s["id"], s.get("assetId"), s["metadata"]) for s in series] == [
        (TS + 1, 3, {}),
        (TS, None, {"unit": "bar"}),
    ]
    assert ("assetId" in series[1], series[1]["externalId"]) == (False, "ts-1")
    assert (files["assetIds"], "assetIds" in events) == ([1, 2], False)


@pytest.mark.parametrize(
    ("body", "code", "missing"),
    [
        pytest.param({"items": [{"id": TS}, {"id": 5}], "ignoreUnknownIds": True}, 200, None, id="ignore-unknown"),
        pytest.param({"items": [{"id": 5}, {"id": TS}, {"id": 6}]}, 400, [5, 6], id="missing"),
        pytest.param({"items": [{"id": n} for n in range(1, 1001)], "ignoreUnknownIds": True}, 200, None, id="1000"),
        pytest.param({"items": [{"id": n} for n in range(1, 1002)], "ignoreUnknownIds": True}, 400, None, id="1001"),
        pytest.param({"items": []}, 400, None, id="empty"),
        pytest.param({"items": [{"id": "1"}]}, 400, None, id="string-id"),
        pytest.param({"items": [{"externalId": "ts-1"}]}, 400, None, id="external-id"),
        pytest.param({"ids": [1]}, 400, None, id="no-items"),
        pytest.param({"items": [{"id": TS}], "ignoreUnknownIds": "yes"}, 400, None, id="ignore-not-bool"),
    ],
)
def test_byids_checks_its_body(client: httpx.Client, body: dict[str, Any], code: int, missing: list[int]) -> None:
    """byids takes 1 to 1000 ids; unknown ones are left out with ignoreUnknownIds, else a 400 with missing."""
    answer = client.post(f"{API}/timeseries/byids", json=body)
    assert answer.status_code == code
    if code == 200:
        assert [item["id"] for item in answer.json()["items"]] == [TS] * (TS in [i["id"] for i in body["items"]])
    else:
        error = answer.json()["error"]
        assert error["code"] == 400
        assert [m["id"] for m in error.get("missing", [])] == (missing or [])


def test_byids_not_json_and_duplicates_are_400(client: httpx.Client) -> None:
    """A body that is not JSON is a 400; an id asked twice is a 400 naming it in duplicated."""
    not_json = client.post(f"{API}/timeseries/byids", content=b"{items", headers={"content-type": "application/json"})
    twice = _byids(client, "timeseries", [TS, TS])
    assert not_json.status_code == 400
    assert (twice.status_code, twice.json()["error"]["duplicated"]) == (400, [{"id": TS}])


def test_assets_byids_tells_which_assets_exist(sim: CdfSimulator, client: httpx.Client) -> None:
    """assets/byids gives the assets that exist, a deleted one no more."""
    sim.delete_asset(2)
    found = _byids(client, "assets", [1, 2, 11], ignoreUnknownIds=True).json()["items"]
    assert [(a["id"], a["externalId"]) for a in found] == [(1, "asset-0000001")]


# --- update ------------------------------------------------------------------------------------------------------

TABLE = [
    pytest.param("timeseries", TS, {"assetId": {"set": 4}}, ItemState(4, (), {"unit": "bar"}), id="set"),
    pytest.param("timeseries", TS + 1, {"assetId": {"setNull": True}}, ItemState(None, (), {}), id="set-null"),
    pytest.param(
        "timeseries",
        TS,
        {"metadata": {"add": {"a": "1"}, "remove": ["unit"]}},
        ItemState(None, (), {"a": "1"}),
        id="metadata-add-remove",
    ),
    pytest.param("files", 77, {"assetIds": {"add": [3, 1]}}, ItemState(None, (1, 2, 3), {}), id="list-add"),
    pytest.param("files", 77, {"assetIds": {"remove": [1]}}, ItemState(None, (2,), {}), id="list-remove"),
    pytest.param("events", 88, {"assetIds": {"set": [5]}}, ItemState(None, (5,), {}), id="list-set"),
    pytest.param("sequences", 99, {"assetId": {"set": 2}}, ItemState(2, (), {}), id="sequence-set"),
]


@pytest.mark.parametrize(("kind", "item", "update", "after"), TABLE)
def test_update_applies_each_operation(
    sim: CdfSimulator, client: httpx.Client, kind: str, item: int, update: dict[str, Any], after: ItemState
) -> None:
    """Each update operation leaves the item as CDF would, and the answer is the updated item."""
    sim.add_item("sequences", 99)
    answer = _update(client, kind, (item, update))
    assert answer.status_code == 200
    assert sim.item_state(kind, item) == after
    assert answer.json()["items"][0]["id"] == item


@pytest.mark.parametrize(
    ("kind", "items", "missing"),
    [
        pytest.param("timeseries", [(TS, _set(4)), (5, _set(4))], [5], id="missing-item"),
        pytest.param("timeseries", [(TS, _set(4)), (TS + 1, _set(42))], [42], id="missing-asset"),
        pytest.param("timeseries", [(6, _set(43)), (TS, _set(4)), (7, _set(42))], [6, 7, 43, 42], id="both"),
        pytest.param("files", [(77, {"assetIds": {"add": [3, 44]}})], [44], id="missing-listed-asset"),
    ],
)
def test_update_is_all_or_nothing(
    sim: CdfSimulator,
    client: httpx.Client,
    kind: str,
    items: list[tuple[int, dict[str, Any]]],
    missing: list[int],
) -> None:
    """Any unknown item or asset fails the whole request with 400 listing every missing id; nothing changes."""
    before = {k: sim.item_states(k) for k in ("timeseries", "files")}
    answer = _update(client, kind, *items)
    assert (answer.status_code, [m["id"] for m in answer.json()["error"]["missing"]]) == (400, missing)
    assert {k: sim.item_states(k) for k in ("timeseries", "files")} == before
    assert sim.writes()[-1].applied is False


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        pytest.param("timeseries", {"items": [{"id": TS, "update": _set(1)} for _ in range(2)]}, id="duplicated"),
        pytest.param("timeseries", {"items": [{"id": n, "update": _set(1)} for n in range(1, 1002)]}, id="1001"),
        pytest.param("timeseries", {"items": [{"id": TS, "update": {"assetIds": {"add": [1]}}}]}, id="wrong-field"),
        pytest.param("files", {"items": [{"id": 77, "update": {"assetId": {"set": 1}}}]}, id="single-on-list"),
        pytest.param("timeseries", {"items": [{"id": TS, "update": {"metadata": {"add": {"s": 0.9}}}}]}, id="number"),
        pytest.param("timeseries", {"items": [{"id": TS, "update": {"name": {"set": "x"}}}]}, id="other-field"),
        pytest.param("timeseries", {"items": [{"id": TS, "update": {"assetId": {"set": "4"}}}]}, id="string-asset"),
        pytest.param("timeseries", {"items": [{"id": TS}]}, id="no-update"),
    ],
)
def test_update_refuses_malformed_bodies(
    sim: CdfSimulator, client: httpx.Client, kind: str, body: dict[str, Any]
) -> None:
    """Duplicates, more than 1000 items and updates CDF would not take are 400s that change nothing."""
    before = sim.item_states(kind)
    answer = client.post(f"{API}/{kind}/update", json=body)
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, 400)
    assert sim.item_states(kind) == before


def test_update_setting_what_is_there_changes_nothing(sim: CdfSimulator, client: httpx.Client) -> None:
    """The same update twice: the second leaves the item as it was, lastUpdatedTime included, and is recorded so."""
    first = _update(client, "timeseries", (TS, _set(4))).json()["items"][0]
    again = _update(client, "timeseries", (TS, _set(4))).json()["items"][0]
    added = _update(client, "files", (77, {"assetIds": {"add": [2]}})).json()["items"][0]
    assert again == first
    assert added["assetIds"] == [1, 2]
    assert [w.unchanged for w in sim.writes()] == [(), (TS,), (77,)]


def test_the_cpu_spent_answering_is_counted_per_request(sim: CdfSimulator, client: httpx.Client) -> None:
    """Two byids and one update: the simulator's CPU per request of each op, and none once reset."""
    assert sim.cpu_per_request() == {}
    _byids(client, "timeseries", [TS])
    _byids(client, "files", [77])
    _update(client, "timeseries", (TS, _set(4)))
    spent = sim.cpu_per_request()
    assert sorted(spent) == ["byids", "update"]
    assert sim.classic.answered == {"byids": 2, "update": 1}
    assert 0 < spent["byids"] == sim.classic.cpu["byids"] / 2
    sim.reset()
    assert sim.cpu_per_request() == {}


# --- limits, latency, faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "excess"), [(1, 1), (3, 1), (2, 3)])
def test_write_limit_refuses_exactly_the_excess(limit: int, excess: int) -> None:
    """With `limit` writes held in flight, each further write answers 429 at once; the held ones then succeed."""
    with CdfSimulator(write_limit=limit, write_latency_s=0.05) as sim:
        sim.static_tokens.add("t")
        sim.add_assets(1, 10)
        sim.add_items("timeseries", TS, limit + excess)
        sim.hold_writes()
        with (
            ThreadPoolExecutor(limit) as pool,
            httpx.Client(base_url=sim.url, headers={"Authorization": "Bearer t"}) as c,
        ):
            held = [pool.submit(_update, c, "timeseries", (TS + k, _set(1))) for k in range(limit)]
            assert sim.wait_writes_in_flight(limit)
            refused = [_update(c, "timeseries", (TS + limit + k, _set(1))) for k in range(excess)]
            sim.release_writes()
            statuses = [f.result().status_code for f in held]
        assert [r.status_code for r in refused] == [429] * excess
        assert refused[0].json()["error"]["code"] == 429
        assert statuses == [200] * limit
        assert (sim.classic.peak_in_flight, sim.classic.in_flight) == (limit, 0)
        assert sorted(w.status for w in sim.writes()) == [200] * limit + [429] * excess
        assert sum(1 for s in sim.item_states("timeseries").values() if s.asset_id == 1) == limit


def _attempt(client: httpx.Client, kind: str, item: int, update: dict[str, Any], timeout: float = 10) -> int | str:
    """The status of one update, or the name of the error the client met."""
    try:
        body = {"items": [{"id": item, "update": update}]}
        return client.post(f"{API}/{kind}/update", json=body, timeout=timeout).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


FAULTS = [
    pytest.param(Step.throttle(), 429, 429, id="429"),
    pytest.param(Step.error(500), 500, 500, id="500"),
    pytest.param(Step.error(502), 502, 502, id="502"),
    pytest.param(Step.error(503), 503, 503, id="503"),
    pytest.param(Step.error(403, "Forbidden"), 403, 403, id="403"),
    pytest.param(Step.error(401), 401, 401, id="401"),
    pytest.param(Step.drop(), "RemoteProtocolError", 0, id="drop"),
    pytest.param(Step.slow(5, Step.error(503)), "ReadTimeout", 503, id="stall"),
]


@pytest.mark.parametrize(("fault", "seen", "recorded"), FAULTS)
def test_scripted_write_fault_applies_nothing_then_writes_are_normal(
    sim: CdfSimulator, client: httpx.Client, fault: Step, seen: int | str, recorded: int
) -> None:
    """A scripted fault answers one write without applying it; the next write is answered and applied normally."""
    sim.script_writes("timeseries", [fault])
    assert _attempt(client, "timeseries", TS, _set(4), timeout=0.5) == seen
    assert sim.item_state("timeseries", TS) == ItemState(None, (), {"unit": "bar"})
    assert _attempt(client, "timeseries", TS, _set(4)) == 200
    assert sim.item_state("timeseries", TS) == ItemState(4, (), {"unit": "bar", "matchrelay:run": "demo/1/2"})
    assert [(w.applied, w.status) for w in sim.writes()] == [(False, recorded), (True, 200)]


def test_applied_fault_writes_but_answers_the_fault(sim: CdfSimulator, client: httpx.Client) -> None:
    """Applied(step) applies the write, then answers step: a write that took effect whose answer was lost."""
    sim.script_writes(None, [Applied(Step.drop()), None, Applied(Step.error(502))])
    codes = [
        _attempt(client, kind, item, update)
        for kind, item, update in [
            ("timeseries", TS, _set(4)),
            ("files", 77, {"assetIds": {"add": [5]}}),
            ("events", 88, {"assetIds": {"add": [6]}}),
        ]
    ]
    assert codes == ["RemoteProtocolError", 200, 502]
    assert [
        s.links() for s in (sim.item_state(k, n) for k, n in (("timeseries", TS), ("files", 77), ("events", 88)))
    ] == [
        (4,),
        (1, 2, 5),
        (6,),
    ]
    assert [w.applied for w in sim.writes()] == [True, True, True]


def test_scripted_byids_faults_per_kind_then_normal(sim: CdfSimulator, client: httpx.Client) -> None:
    """script_byids answers one kind's reads in order (None: normally); other kinds are not affected."""
    sim.script_byids("timeseries", [Step.throttle(), None, Step.error(500)])
    codes = [_byids(client, "timeseries", [TS]).status_code for _ in range(4)]
    assert codes == [429, 200, 500, 200]
    assert _byids(client, "files", [77]).status_code == 200


def test_write_and_byids_need_a_valid_token_and_project(sim: CdfSimulator, client: httpx.Client) -> None:
    """A bad token is 401 and another project 403 on byids and update, and nothing is written."""
    bad = {"Authorization": "Bearer nope"}
    answers = [
        client.post(f"{API}/timeseries/byids", json={"items": [{"id": TS}]}, headers=bad),
        client.post(f"{API}/timeseries/update", json={"items": [{"id": TS, "update": _set(4)}]}, headers=bad),
        client.post("/api/v1/projects/other/timeseries/update", json={"items": [{"id": TS, "update": _set(4)}]}),
    ]
    assert [a.status_code for a in answers] == [401, 401, 403]
    assert sim.item_state("timeseries", TS) == ItemState(None, (), {"unit": "bar"})


# --- deletions, records, counts ----------------------------------------------------------------------------------


def test_delete_item_and_asset_between_requests(sim: CdfSimulator, client: httpx.Client) -> None:
    """A deleted item is gone from byids and missing to update; a deleted asset is missing to link to."""
    assert (sim.delete_item("time_series", TS + 1), sim.delete_asset(4), sim.delete_asset(4)) == (True, True, False)
    assert _byids(client, "timeseries", [TS, TS + 1], ignoreUnknownIds=True).json()["items"][0]["id"] == TS
    answer = _update(client, "timeseries", (TS, _set(4)), (TS + 1, _set(5)))
    assert [m["id"] for m in answer.json()["error"]["missing"]] == [TS + 1, 4]
    assert sim.item_state("timeseries", TS + 1) is None


def test_delete_after_next_byids_models_a_source_deleted_between_read_and_write(
    sim: CdfSimulator, client: httpx.Client
) -> None:
    """The next byids still sees the item; right after it, the item and asset are gone, and the write misses them."""
    sim.delete_after_next_byids("timeseries", items=(TS,), assets=(5,))
    assert [i["id"] for i in _byids(client, "timeseries", [TS, TS + 1]).json()["items"]] == [TS, TS + 1]
    answer = _update(client, "timeseries", (TS, _set(4)), (TS + 1, _set(5)))
    assert [m["id"] for m in answer.json()["error"]["missing"]] == [TS, 5]
    assert _byids(client, "timeseries", [TS], ignoreUnknownIds=True).json()["items"] == []


def test_write_record_holds_what_was_sent_and_answered(sim: CdfSimulator, client: httpx.Client) -> None:
    """Every update is recorded in order with its kind, items as sent, status and times; byids are not writes."""
    _byids(client, "timeseries", [TS])
    _update(client, "timeseries", (TS, _set(4)))
    _update(client, "files", (77, {"assetIds": {"add": [42]}}))
    client.post(f"{API}/files/update", content=b"not json")
    writes = sim.writes()
    assert [(w.kind, w.status, w.applied) for w in writes] == [
        ("timeseries", 200, True),
        ("files", 400, False),
        ("files", 400, False),
    ]
    assert writes[0].items == [{"id": TS, "update": _set(4)}]
    assert writes[2].items is None
    assert all(w.received <= w.answered for w in writes)
    assert [w.kind for w in sim.writes("files")] == ["files", "files"]


def test_request_counts_per_endpoint(sim: CdfSimulator, client: httpx.Client) -> None:
    """request_counts() counts requests per endpoint, and per kind for byids and update."""
    sim.add_run(5, 50, 1_000, "Completed", steps=[Step.status("Completed", 50)])
    client.get(f"{PIPELINES}/5")
    client.get(f"{PIPELINES}/5/runs/50")
    client.get(f"{PIPELINES}/5/runs/50")
    _byids(client, "timeseries", [TS])
    _byids(client, "files", [77])
    _update(client, "files", (77, {"assetIds": {"add": [3]}}))
    counts = sim.request_counts()
    assert {k: counts.get(k) for k in ("pipeline", "results", "byids", "update", "files/byids", "files/update")} == {
        "pipeline": 1,
        "results": 2,
        "byids": 2,
        "update": 1,
        "files/byids": 1,
        "files/update": 1,
    }


def test_reset_forgets_the_write_side(sim: CdfSimulator, client: httpx.Client) -> None:
    """reset() forgets items, assets, scripts and the write record."""
    _update(client, "timeseries", (TS, _set(4)))
    sim.script_writes(None, [Step.error(500)])
    sim.reset()
    sim.static_tokens.add("t")
    assert (sim.writes(), sim.item_states("timeseries")) == ([], {})
    sim.add_item("timeseries", TS)
    sim.add_assets(4)
    assert _update(client, "timeseries", (TS, _set(4))).status_code == 200


# --- the link scenarios ------------------------------------------------------------------------------------------

COUNTED = {"ambiguous": 2, "runners_up": 2, "unlinkable": 6, "missing_sources": 2, "missing_targets": 2, "confirmed": 2}


@pytest.mark.parametrize(
    ("kind", "params", "at", "overwrite", "counts"),
    [
        pytest.param(
            "time_series",
            {"matches": 20, "below": 0.25, "linked": 0.25, "conflicts": 0.25},
            None,
            False,
            {"linked": 10, "belowThreshold": 5, "conflict": 5, "reviews": 10, "written": 5},
            id="series",
        ),
        pytest.param(
            "time_series",
            {"matches": 20, "below": 0.25, "linked": 0.25, "conflicts": 0.25},
            0.0,
            False,
            {"linked": 15, "conflict": 5, "reviews": 5, "written": 10},
            id="series-at-any-score",
        ),
        pytest.param(
            "time_series",
            {"matches": 20, "below": 0.25, "linked": 0.25, "conflicts": 0.25},
            None,
            True,
            {"linked": 15, "belowThreshold": 5, "reviews": 5, "written": 10},
            id="series-overwrite",
        ),
        pytest.param(
            "files",
            {"matches": 20, "below": 0.25, "linked": 0.25, "conflicts": 0.25},
            None,
            False,
            {"linked": 15, "belowThreshold": 5, "reviews": 5, "written": 10},
            id="files-hold-lists",
        ),
        pytest.param(
            "sequences",
            {"matches": 34, "below": 0.5, "linked": 0.2, **COUNTED},
            None,
            False,
            {"linked": 11, "belowThreshold": 7, "ambiguous": 2, "unlinkable": 6, "sourceMissing": 2, "targetMissing": 2}
            | {"reviews": 9, "written": 8},
            id="every-case",
        ),
    ],
)
def test_link_world_expected_counts(
    sim: CdfSimulator, kind: str, params: dict[str, Any], at: float | None, overwrite: bool, counts: dict[str, int]
) -> None:
    """A small world's expected counts, at its minimum score or another, are what its parameters say; reviews count
    the sources left below the threshold (the world scores them 0.5 and up), ambiguous or in conflict."""
    world = link_world(sim, 7, 70, kind, **params)
    zero = dict.fromkeys(["linked", "belowThreshold", "conflict", "ambiguous", "rejected", "unlinkable"], 0)
    zero |= dict.fromkeys(["sourceMissing", "targetMissing", "reviews"], 0)
    assert world.expected(at, overwrite=overwrite).counts() == zero | counts


def test_link_world_builds_the_run_the_pipeline_and_cdf(sim: CdfSimulator, client: httpx.Client) -> None:
    """The world's run is Completed with every match, second matches after the first ones, over items CDF holds."""
    world = link_world(sim, 7, 70, "events", 34, below=0.5, linked=0.25, **COUNTED)
    run = client.get(f"{PIPELINES}/7/runs/70").json()
    sources = [m["source"].get("id") for m in run["matches"]]
    assert client.get(f"{PIPELINES}/7").json()["sources"]["resource"] == "events"
    assert (run["status"], len(run["matches"]), run) == ("Completed", 34, world.results())
    assert sources[30:] == [s for s in sources[:30] if s in sources[30:]]
    assert len(set(sources[30:])) == 4
    assert sum(1 for m in run["matches"] if not all(type(m[k].get("id")) is int for k in ("source", "target"))) == 6
    confirmed = [m["matchType"] for m in run["matches"] if m["matchType"].startswith("previously")]
    assert len(confirmed) == 2 + 2  # confirmed, ambiguous
    assert set(confirmed) <= {"previously_mapped", "previously-confirmed"}
    assert len([n for n in sim.item_states("events") if n >= world.source_base]) == 30 - 2  # 2 missing sources
    assert world.differences(sim, untouched=True) == []


LISTS = Lists(
    confirmed=[{"sourceId": 5, "targetExternalId": "a-1"}],
    rejected=[{"sourceExternalId": "s-5", "targetId": 2}, {"sourceId": 5, "targetId": 3}],
)


@pytest.mark.parametrize(
    ("matches", "lists", "outcome"),
    [
        pytest.param([("model", 0.2, 1)], LISTS, "link:1", id="listed-confirmed"),
        pytest.param([("model", 0.99, 2)], LISTS, "rejected", id="listed-rejected"),
        pytest.param([("model", 0.99, 2), ("model", 0.95, 4)], LISTS, "link:4", id="rejected-then-next"),
        pytest.param([("previously_mapped", None, 3), ("model", 0.99, 2)], LISTS, "rejected", id="all-rejected"),
        pytest.param([("rule_a->b", 0.5, 4)], Lists(trust_rules=False), "below_threshold", id="rules-not-trusted"),
    ],
)
def test_oracle_takes_the_pipelines_lists(
    matches: list[tuple[str, float | None, int]], lists: Lists, outcome: str
) -> None:
    """The simulator's own decision drops rejected pairs first and links confirmed ones, named either way."""
    entries = [
        {"source": {"id": 5, "externalId": "s-5"}, "target": {"id": t, "externalId": f"a-{t}"}, "matchType": kind}
        | ({} if score is None else {"score": score})
        for kind, score, t in matches
    ]
    choice = choose(entries, 0.9, lists)
    assert (choice.outcome if choice.outcome != "link" else f"link:{choice.target}") == outcome


def test_link_world_with_the_pipelines_lists(sim: CdfSimulator, client: httpx.Client) -> None:
    """A world's listed, rejected and rule cases decide as the table says, and its pipeline serves both lists with
    each side named either way, its history's pairs after them."""
    cases = {"confirmed": 4, "rules": 4, "listed": 4, "rejected": 4, "rejected_best": 4}
    world = link_world(sim, 7, 70, matches=44, below=0.0, linked=0.0, noise=(6, 3), **cases)
    counts = world.expected().counts()
    assert (counts["linked"], counts["rejected"], counts["written"]) == (40 - 4, 4, 36)
    pipeline = client.get(f"{PIPELINES}/7").json()
    confirmed, rejected = pipeline["confirmedMatches"], pipeline["rejectedMatches"]
    assert (len(confirmed), len(rejected)) == (4 + 6, 8 + 3)
    forms = {tuple(sorted(pair)) for pair in confirmed[:4] + rejected[:8]}
    assert forms == {
        ("sourceId", "targetId"),
        ("sourceId", "targetExternalId"),
        ("sourceExternalId", "targetId"),
        ("sourceExternalId", "targetExternalId"),
    }
    assert isinstance(pipeline["createdTime"], int)
    kinds = {m["matchType"] for m in client.get(f"{PIPELINES}/7/runs/70").json()["matches"]}
    assert kinds >= {"previously_mapped", "previously-confirmed", "model"}
    assert any(kind.startswith("rule_") for kind in kinds)


def test_link_world_is_deterministic_per_seed() -> None:
    """The same seed gives the same run and the same CDF; another seed another run."""
    worlds = [link_world(CdfSimulator(), 1, 10, matches=50, seed=seed) for seed in (3, 3, 4)]
    bodies = [world.results() for world in worlds]
    assert bodies[0] == bodies[1] != bodies[2]
    assert [worlds[0].initial(s) for s in range(50)] == [worlds[1].initial(s) for s in range(50)]


def test_link_world_differences_see_a_correct_link_and_a_wrong_one(sim: CdfSimulator, client: httpx.Client) -> None:
    """Writing exactly the expected links leaves no differences; one write too many is named."""
    world = link_world(sim, 7, 70, matches=40, below=0.3, linked=0.2, conflicts=0.1, **COUNTED)
    updates = []
    for s, _, written in world.decisions():
        if written is not None:
            target, score = written
            provenance = {"matchrelay:run": world.provenance, "matchrelay:score": json.dumps(score)}
            provenance["matchrelay:asset"] = str(target)
            updates.append((world.source_id(s), {"assetId": {"set": target}, "metadata": {"add": provenance}}))
    assert len(updates) == world.expected().written
    assert _update(client, "timeseries", *updates).status_code == 200
    assert world.differences(sim) == []
    below = next(s for s, outcome, _ in world.decisions() if outcome == "below_threshold")
    _update(client, "timeseries", (world.source_id(below), {"assetId": {"set": 1}}))
    assert [d.split(":")[0] for d in world.differences(sim)] == [str(world.source_id(below))]


def test_link_world_stream_is_the_results_in_chunks(sim: CdfSimulator) -> None:
    """The streamed body is byte for byte the results' JSON, in chunks of the stream's size."""
    world = link_world(sim, 7, 70, matches=3000, ambiguous=20, unlinkable=12)
    chunks = list(world.stream())
    assert b"".join(chunks) == json.dumps(world.results()).encode()
    assert {len(c) for c in chunks[:-1]} == {64 * 1024}


@pytest.mark.parametrize(
    ("matches", "outcome"),
    [
        pytest.param([("model", 0.95, 1)], "link:1", id="above"),
        pytest.param([("model", 0.9, 1)], "link:1", id="at-minimum"),
        pytest.param([("model", 0.89, 1)], "below_threshold", id="below"),
        pytest.param([("model", None, 1)], "below_threshold", id="no-score"),
        pytest.param([("previously-confirmed", None, 1)], "link:1", id="confirmed-no-score"),
        pytest.param([("model", 0.99, 1), ("previously-confirmed", 0.2, 2)], "link:2", id="confirmed-beats-score"),
        pytest.param([("model", 0.95, 1), ("model", 0.95, 2)], "ambiguous", id="tie"),
        pytest.param([("model", 0.5, 1), ("model", 0.5, 2)], "below_threshold", id="tie-below"),
        pytest.param(
            [("previously-confirmed", 0.9, 1), ("previously-confirmed", 0.1, 2)], "ambiguous", id="two-confirmed"
        ),
        pytest.param([("model", 0.95, 1), ("model", 0.95, 1)], "link:1", id="same-target-twice"),
        pytest.param([("model", 0.95, 1), ("model", 0.93, 2)], "link:1", id="runner-up"),
        pytest.param([("model", 0.95, None)], "unlinkable", id="target-without-id"),
        pytest.param([("previously_mapped", None, 1)], "link:1", id="confirmed-as-the-openapi-names-it"),
        pytest.param([("rule_a->b", None, 1)], "link:1", id="rule-without-score"),
        pytest.param([("model", 0.99, 1), ("rule_a->b", 0.1, 2)], "link:2", id="rule-beats-score"),
        pytest.param([("rule_a->b", None, 1), ("previously_mapped", 0.1, 2)], "link:2", id="confirmed-beats-rule"),
        pytest.param([("Rule", 0.5, 1)], "below_threshold", id="not-a-rule"),
    ],
)
def test_oracle_decides_as_the_contract_table(
    matches: list[tuple[str, float | None, int | None]], outcome: str
) -> None:
    """The simulator's own decision follows section 8's table, with its documented choices where it is silent."""
    entries = []
    for match_type, score, target in matches:
        entry: dict[str, Any] = {"source": {"id": 5}, "target": {"id": target}, "matchType": match_type}
        entries.append(entry | ({} if score is None else {"score": score}))
    choice = choose(entries, 0.9)
    assert (choice.outcome if choice.outcome != "link" else f"link:{choice.target}") == outcome


def test_cli_serves_the_link_scenario_with_write_options() -> None:
    """`python -m sim --scenario link --write-limit ...` serves pipeline 5's run 500 and its time series."""
    args = [sys.executable, "-m", "sim", "--port", "0", "--scenario", "link", "--static-token", "t"]
    args += ["--write-limit", "2", "--write-latency-s", "0.01", "--byids-latency-s", "0.01"]
    with subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        urls = json.loads(process.stdout.readline())
        with httpx.Client(base_url=urls["url"], timeout=10, headers={"Authorization": "Bearer t"}) as http:
            pipeline = http.get(f"{PIPELINES}/5").json()
            run = http.get(f"{PIPELINES}/5/runs/500").json()
            first = run["matches"][0]["source"]["id"]
            found = _byids(http, "timeseries", [first]).json()["items"]
        process.terminate()
        assert process.wait(timeout=10) == 0
    assert (pipeline["sources"]["resource"], run["status"], len(run["matches"])) == ("time_series", "Completed", 1000)
    assert [item["id"] for item in found] == [first]


def test_link_world_expected_reviews_follow_the_review_settings(sim: CdfSimulator) -> None:
    """The reviews a link should publish: capped by REVIEW_MAX_EVENTS, and below the threshold only from
    REVIEW_MIN_SCORE up."""
    world = link_world(sim, 7, 70, "time_series", 20, below=0.25, linked=0.25, conflicts=0.25)
    assert world.expected().reviews == 10
    assert world.expected(review_max=3).reviews == 3
    assert world.expected(review_min=1.0).reviews == 5  # the conflicts only
