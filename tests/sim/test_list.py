"""The simulator's classic `list` filters by metadata exactly, pages by position, splits by partition, as CDF does."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from sim import CdfSimulator, Step
from sim.listing import partition_of
from sim.openapi import problem

API = "/api/v1/projects/demo"
RUN, KEY = "demo/7/1", "matchrelay:run"
FIRST = 1_000_000_001  # time series FIRST.. FIRST + 2999; every third holds another run's value
VIOLATIONS = "Request had 1 constraint violations. Please fix the request and try again. "


def _run_of(i: int) -> dict[str, str]:
    return {KEY: "demo/7/2" if i % 3 == 2 else RUN, "matchrelay:score": f"0.{i % 100:02d}"}


MATCHING = [FIRST + i for i in range(3000) if i % 3 != 2]


@pytest.fixture
def client(sim: CdfSimulator) -> Iterator[httpx.Client]:
    sim.static_tokens.add("t")
    sim.add_items("timeseries", FIRST, 3000, metadata=_run_of, links=lambda i: (i % 7 + 1,))
    with httpx.Client(base_url=sim.url, timeout=10, headers={"Authorization": "Bearer t"}) as http:
        yield http


def _list(client: httpx.Client, body: dict[str, Any], kind: str = "timeseries") -> httpx.Response:
    return client.post(f"{API}/{kind}/list", json=body)


def _pages(client: httpx.Client, body: dict[str, Any], kind: str = "timeseries") -> list[list[int]]:
    """Every page's ids, following cursors to the end."""
    pages, cursor = [], None
    while True:
        answer = _list(client, {**body, **({"cursor": cursor} if cursor else {})}, kind)
        assert answer.status_code == 200, answer.text
        pages.append([item["id"] for item in answer.json()["items"]])
        cursor = answer.json()["nextCursor"]
        if cursor is None:
            return pages


def _ids(client: httpx.Client, body: dict[str, Any], kind: str = "timeseries") -> list[int]:
    """Every id listed, following cursors to the end."""
    return [n for page in _pages(client, body, kind) for n in page]


def _by(metadata: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"filter": {"metadata": metadata}, **extra}


# --- the filter ------------------------------------------------------------------------------------------------


def test_the_metadata_filter_is_exact(sim: CdfSimulator, client: httpx.Client) -> None:
    """An item is listed only when its metadata hold every pair given, with exactly that value, and it exists."""
    for n, metadata in enumerate([{"k": "a"}, {"k": "a", "x": "1"}, {"k": "ab"}, {"k": "A"}, {}, {"other": "a"}]):
        sim.add_item("files", 10 + n, metadata=metadata)
    sim.add_item("files", 20, metadata={"k": "a", "x": "1"})
    sim.delete_item("files", 20)
    found = {
        json.dumps(metadata): _ids(client, {"filter": {"metadata": metadata}}, "files")
        for metadata in ({"k": "a"}, {"k": "a", "x": "1"}, {"x": "1", "k": "b"}, {}, {"K": "a"})
    }
    assert found == {
        '{"k": "a"}': [10, 11],
        '{"k": "a", "x": "1"}': [11],
        '{"x": "1", "k": "b"}': [],
        "{}": [10, 11, 12, 13, 14, 15],
        '{"K": "a"}': [],
    }
    assert _ids(client, {}, "files") == [10, 11, 12, 13, 14, 15]


def test_listed_items_are_shaped_exactly_as_byids_gives_them(client: httpx.Client) -> None:
    """The items of a page are byte for byte those byids answers for the same ids."""
    listed = _list(client, _by({KEY: RUN}, limit=5)).json()["items"]
    ids = [{"id": item["id"]} for item in listed]
    assert listed == client.post(f"{API}/timeseries/byids", json={"items": ids}).json()["items"]
    assert [item["metadata"][KEY] for item in listed] == [RUN] * 5


# --- pages ---------------------------------------------------------------------------------------------------------


def test_pages_go_up_by_id_with_a_cursor_until_a_null_one(client: httpx.Client) -> None:
    """2000 matching items at 450 a page: 5 pages in id order, the last one short, with a null nextCursor."""
    pages = _pages(client, _by({KEY: RUN}, limit=450))
    assert [len(p) for p in pages] == [450, 450, 450, 450, 200]
    assert [n for page in pages for n in page] == MATCHING


def test_limit_defaults_to_100_and_a_full_last_page_has_a_null_cursor(sim: CdfSimulator, client: httpx.Client) -> None:
    """Without a limit a page holds 100; when the matching items end exactly with a page, its cursor is null."""
    sim.add_items("events", 1, 200, metadata=lambda i: {"k": "v"})
    assert [len(p) for p in _pages(client, _by({"k": "v"}), "events")] == [100, 100]


def test_items_that_stop_matching_between_pages_never_make_a_later_page_skip_one(client: httpx.Client) -> None:
    """As an undo removes the key it lists by from each page it gets (and here from one item ahead too), every item
    that still matched when its turn came is listed, once: the cursor is a position, not an offset."""
    listed: list[int] = []
    cursor, ahead, removed_early = None, iter(MATCHING[1500:]), set()
    while True:
        answer = _list(client, _by({KEY: RUN}, limit=300, **({"cursor": cursor} if cursor else {}))).json()
        ids = [item["id"] for item in answer["items"]]
        listed += ids
        extra = next(ahead)
        if extra not in listed:
            removed_early.add(extra)
            ids.append(extra)
        removed = {"items": [{"id": n, "update": {"metadata": {"remove": [KEY]}}} for n in ids]}
        assert client.post(f"{API}/timeseries/update", json=removed).status_code == 200
        cursor = answer["nextCursor"]
        if cursor is None:
            break
    assert len(removed_early) == 5  # the five pages before the one that holds MATCHING[1500]
    assert listed == [n for n in MATCHING if n not in removed_early]
    assert _list(client, _by({KEY: RUN})).json() == {"items": [], "nextCursor": None}


def test_an_item_that_starts_matching_beyond_the_cursor_is_listed(sim: CdfSimulator, client: httpx.Client) -> None:
    """A matching item made after the first page, with an id beyond the cursor, is on a later page."""
    first = _list(client, _by({KEY: "demo/7/2"}, limit=10)).json()
    sim.add_item("timeseries", FIRST + 5000, metadata={KEY: "demo/7/2"})
    rest = _ids(client, _by({KEY: "demo/7/2"}, limit=500, cursor=first["nextCursor"]))
    assert rest[-1] == FIRST + 5000
    assert len(first["items"]) + len(rest) == 1000 + 1


# --- partitions ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 10])
def test_partitions_are_disjoint_and_together_all_the_matching_items(client: httpx.Client, n: int) -> None:
    """Each of n partitions, paged with its own cursors, is in id order and holds its own items (a hash of the id,
    blind to every third item not matching); no item is in two; together they are all."""
    parts = [_ids(client, _by({KEY: RUN}, limit=150, partition=f"{k}/{n}")) for k in range(1, n + 1)]
    assert all(part == sorted(part) for part in parts)
    assert [{partition_of(i, n) for i in part} for part in parts] == [{k} for k in range(1, n + 1)]
    assert sorted(n for part in parts for n in part) == MATCHING
    assert min(map(len, parts)) > len(MATCHING) / n * 0.8


def test_more_than_ten_partitions_as_cdf_documents(client: httpx.Client) -> None:
    """Time series take n > 10 as 10 (an m beyond 10 lists nothing, with no cursor); files and events refuse it."""
    parts = [_ids(client, _by({KEY: RUN}, limit=1000, partition=f"{k}/20")) for k in range(1, 21)]
    ten = [_ids(client, _by({KEY: RUN}, limit=1000, partition=f"{k}/10")) for k in range(1, 11)]
    assert (parts[:10], parts[10:]) == (ten, [[]] * 10)
    answer = _list(client, _by({}, partition="1/11"), "files")
    assert (answer.status_code, answer.json()["error"]["message"]) == (400, "partition: at most 10 partitions, got 11")


@pytest.mark.parametrize("partition", ["0/4", "5/4", "a/4", "1/0", "1-4", "01/4"])
def test_a_partition_not_m_of_n_is_a_400(sim: CdfSimulator, client: httpx.Client, partition: str) -> None:
    """A partition that is not "m/n" with 1 <= m <= n is refused (the schema takes any string: not invalid)."""
    answer = _list(client, _by({KEY: RUN}, partition=partition))
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, 400)
    assert partition in answer.json()["error"]["message"]


def test_a_cursor_is_refused_with_another_filter_or_partition_or_when_made_up(client: httpx.Client) -> None:
    """A cursor only continues its own filter and partition; one of another, or not one at all, is a 400."""
    cursor = _list(client, _by({KEY: RUN}, limit=10, partition="1/2")).json()["nextCursor"]
    same = _list(client, _by({KEY: RUN}, limit=10, partition="1/2", cursor=cursor))
    codes = [
        _list(client, _by({KEY: RUN}, partition="2/2", cursor=cursor)).status_code,
        _list(client, _by({KEY: "demo/7/2"}, partition="1/2", cursor=cursor)).status_code,
        _list(client, _by({KEY: RUN}, partition="1/2", cursor=cursor), "files").status_code,
        _list(client, _by({KEY: RUN}, cursor="bm90IGEgY3Vyc29y")).status_code,
        _list(client, _by({KEY: RUN}, cursor="")).status_code,
    ]
    assert (same.status_code, codes) == (200, [400] * 5)


# --- bodies --------------------------------------------------------------------------------------------------------

INVALID = [
    pytest.param(_by({KEY: RUN}, limit=1001), "limit must be less than or equal to 1000", id="limit-1001"),
    pytest.param(_by({KEY: RUN}, limit=0), "limit must be greater than or equal to 1", id="limit-0"),
    pytest.param(_by({KEY: 1}), f"filter.metadata.{KEY} must be a string", id="metadata-value-number"),
    pytest.param({"filter": [{"metadata": {KEY: RUN}}]}, "filter must be an object", id="filter-a-list"),
    pytest.param({"filter": {"metadata": [KEY, RUN]}}, "filter.metadata must be an object", id="metadata-a-list"),
    pytest.param({"filters": {"metadata": {KEY: RUN}}}, None, id="unknown-field"),
    pytest.param({"filter": {"metdata": {KEY: RUN}}}, None, id="unknown-filter"),
]


@pytest.mark.sends_invalid_bodies
@pytest.mark.parametrize(("body", "words"), INVALID)
def test_an_invalid_body_is_refused_recorded_and_comes_before_scripts(
    sim: CdfSimulator, client: httpx.Client, body: dict[str, Any], words: str | None
) -> None:
    """What CDF's OpenAPI refuses, and a field no schema names, is a 400 kept in classic.invalid; a script waits."""
    sim.script_list("timeseries", [Step.error(503)])
    answer = _list(client, body)
    message = answer.json()["error"]["message"]
    assert answer.status_code == 400
    assert sim.classic.invalid == [("timeseries/list", message)]
    if words is None:  # the schema takes it: the simulator refuses a field no schema names
        assert message.startswith("Unrecognized field")
        assert problem("timeseries/list", json.dumps(body).encode()) is None
    else:
        assert message == VIOLATIONS + f"[{words}]"
    assert _list(client, _by({KEY: RUN})).status_code == 503


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        pytest.param({"filter": {"name": "Pump 1"}}, "timeseries", id="name"),
        pytest.param({"filter": {"assetIds": [1]}, "limit": 5}, "timeseries", id="assetIds"),
        pytest.param({"filter": {"metadata": {KEY: RUN}, "source": "x"}}, "files", id="files-source"),
        pytest.param({"advancedFilter": {"exists": {"property": ["metadata", KEY]}}}, "events", id="advancedFilter"),
        pytest.param({"sort": [{"property": ["createdTime"]}]}, "timeseries", id="sort"),
        pytest.param({"filter": {"metadata": {KEY: 1}}}, "sequences", id="sequence-metadata-number"),
    ],
)
def test_what_the_schema_takes_but_the_simulator_does_not_implement_is_its_own_400(
    sim: CdfSimulator, client: httpx.Client, body: dict[str, Any], kind: str
) -> None:
    """Filters other than metadata are refused saying the simulator lacks them, and are not counted invalid."""
    answer = _list(client, body, kind)
    assert problem(f"{kind}/list", json.dumps(body).encode()) is None
    assert (answer.status_code, sim.classic.invalid) == (400, [])
    assert "does not implement" in answer.json()["error"]["message"] or kind == "sequences"


def test_the_endpoint_takes_post_for_the_four_kinds_of_its_project_only(
    sim: CdfSimulator, client: httpx.Client
) -> None:
    """Assets are not listed here, a GET is 405, another project 403, a bad token 401."""
    answers = [
        client.post(f"{API}/assets/list", json={}),
        client.get(f"{API}/timeseries/list"),
        client.post("/api/v1/projects/other/timeseries/list", json={}),
        client.post(f"{API}/timeseries/list", json={}, headers={"Authorization": "Bearer nope"}),
        *(client.post(f"{API}/{kind}/list", json={}) for kind in ("files", "events", "sequences")),
    ]
    assert [a.status_code for a in answers] == [404, 405, 403, 401, 200, 200, 200]


# --- scripts, latency, counts ------------------------------------------------------------------------------------


def test_scripted_faults_answer_the_next_lists_then_normally(sim: CdfSimulator, client: httpx.Client) -> None:
    """script_list by kind answers in order (None: normally), a drop drops; any kind with script_classic_list."""
    sim.add_item("files", 5)
    sim.script_list("time_series", [Step.throttle(), None, Step.error(500), Step.drop()])
    sim.script_classic_list(None, [Step.error(503)])
    codes = [_list(client, {}).status_code for _ in range(3)]
    with pytest.raises(httpx.RemoteProtocolError):
        _list(client, {})
    assert codes == [429, 200, 500]
    assert [_list(client, {}, "files").status_code, _list(client, {}).status_code] == [503, 200]


def test_pipelines_list_scripts_are_not_the_classic_lists(sim: CdfSimulator, client: httpx.Client) -> None:
    """script_list(None) still scripts the pipelines' list, never a classic one."""
    sim.script_list(None, [Step.error(503)])
    assert _list(client, {}).status_code == 200
    assert client.get(f"{API}/context/entitymatching/pipelines").status_code == 503


def test_list_latency_holds_every_list_and_pages_overlap(sim: CdfSimulator, client: httpx.Client) -> None:
    """Each list takes list_latency_s, four at once take about one latency, and lists are counted per kind."""
    sim.classic.list_latency_s = 0.3
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda k: _list(client, _by({KEY: RUN}, partition=f"{k}/4")).status_code, range(1, 5)))
    took = time.monotonic() - started
    assert (codes, 0.3 <= took < 1.2) == ([200] * 4, True)
    counts = sim.request_counts()
    assert (counts["list"], counts["timeseries/list"], counts.get("byids")) == (4, 4, None)


def test_list_latency_includes_its_own_work(
    monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, client: httpx.Client
) -> None:
    """A list is built as it arrives and answered once list_latency_s has passed since, as writes are: a page that
    takes 0.2 s to build is answered after 0.3 s, not 0.5 s, and holds the items as they were when it arrived."""
    page = sim.classic.listing.page

    def slow_page(*args: Any) -> bytes:
        built = page(*args)
        time.sleep(0.2)
        return built

    monkeypatch.setattr(sim.classic.listing, "page", slow_page)
    sim.classic.list_latency_s = 0.3
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        listed = pool.submit(_list, client, _by({KEY: RUN}, limit=1))
        time.sleep(0.25)  # built by now, not yet answered
        sim.delete_item("timeseries", FIRST)
        answer = listed.result()
    took = time.monotonic() - started
    assert ([item["id"] for item in answer.json()["items"]], 0.3 <= took < 0.48) == ([FIRST], True)
