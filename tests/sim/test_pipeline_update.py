"""The simulator's pipelines/update replaces a pipeline's lists whole, all or nothing, as CDF does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sim import CdfSimulator, Step
from sim.data import Lazy
from sim.pipelineupdates import Lists, PipelineWrite
from sim.writes import Applied

PIPELINES = "/api/v1/projects/demo/context/entitymatching/pipelines"
UPDATE = f"{PIPELINES}/update"
OLD = [{"sourceId": 1, "targetId": 2}]
A, B, C = (
    {"sourceId": 5, "targetId": 6},
    {"sourceExternalId": "s-7", "targetId": 8},
    {"sourceId": 9, "targetExternalId": "a"},
)
VIOLATIONS = "Request had 1 constraint violations. Please fix the request and try again. "


@pytest.fixture
def client(sim: CdfSimulator) -> Iterator[httpx.Client]:
    sim.static_tokens.add("t")
    sim.add_pipeline(7, external_id="pumps", confirmed=OLD, rejected=OLD)
    sim.add_pipeline(8, confirmed=Lazy(1000, lambda i: {"sourceId": i + 1, "targetId": i + 2}))
    with httpx.Client(base_url=sim.url, timeout=10, headers={"Authorization": "Bearer t"}) as http:
        yield http


def _update(client: httpx.Client, *items: dict[str, Any]) -> httpx.Response:
    return client.post(UPDATE, json={"items": list(items)})


def _set(confirmed: list[Any] | None = None, rejected: list[Any] | None = None, **by: Any) -> dict[str, Any]:
    update = {} if confirmed is None else {"confirmedMatches": {"set": confirmed}}
    update |= {} if rejected is None else {"rejectedMatches": {"set": rejected}}
    return {**(by or {"id": 7}), "update": update}


def _lists(client: httpx.Client, pipeline_id: int = 7) -> tuple[list[Any], list[Any]]:
    found = client.get(f"{PIPELINES}/{pipeline_id}").json()
    return found["confirmedMatches"], found["rejectedMatches"]


def test_update_replaces_each_list_whole_and_get_shows_it(sim: CdfSimulator, client: httpx.Client) -> None:
    """Each list given is replaced by exactly the list sent, one not given stays; the answer is the pipeline
    without its lists, with a new lastUpdatedTime; the record has each field set."""
    before = client.get(f"{PIPELINES}/7").json()
    answer = _update(client, _set([A, B]), _set(rejected=[], id=8))
    assert answer.status_code == 200
    assert (_lists(client), _lists(client, 8)[1]) == (([A, B], OLD), [])
    items = answer.json()["items"]
    assert [(i["id"], i["name"], "confirmedMatches" in i) for i in items] == [
        (7, "Pipeline 7", False),
        (8, "Pipeline 8", False),
    ]
    assert items[0]["lastUpdatedTime"] > before["lastUpdatedTime"]
    assert sim.pipeline_updates() == [(7, "confirmedMatches", [A, B]), (8, "rejectedMatches", [])]


def test_a_lazy_list_is_replaced_and_a_pipeline_is_found_by_external_id(client: httpx.Client) -> None:
    """Pipeline 8's thousand-pair lazy list becomes the one pair sent; pipeline 7 is named by its external id."""
    assert len(_lists(client, 8)[0]) == 1000
    assert _update(client, _set([C], id=8), _set([], [C], externalId="pumps")).status_code == 200
    assert (_lists(client, 8)[0], _lists(client)) == ([C], ([], [C]))


def test_other_fields_are_set_too_and_schedule_interval_can_be_removed(sim: CdfSimulator, client: httpx.Client) -> None:
    """name, scoreThreshold and trueMatches are set; scheduleInterval takes set and setNull, as CDF's schema says."""
    update = {"name": {"set": "Renamed"}, "scoreThreshold": {"set": 0.8}, "trueMatches": {"set": [A]}}
    _update(client, {"id": 7, "update": {**update, "scheduleInterval": {"set": 900}}})
    first = client.get(f"{PIPELINES}/7").json()
    _update(client, {"id": 7, "update": {"scheduleInterval": {"setNull": True}}})
    second = client.get(f"{PIPELINES}/7").json()
    assert (first["name"], first["scoreThreshold"], first["trueMatches"], first["scheduleInterval"]) == (
        "Renamed",
        0.8,
        [A],
        900,
    )
    assert "scheduleInterval" not in second
    assert sim.pipeline_updates()[-1] == PipelineWrite(7, "scheduleInterval", None)


@pytest.mark.parametrize(
    ("items", "missing"),
    [
        pytest.param([_set([A]), _set([A], id=99)], [{"id": 99}], id="unknown-id"),
        pytest.param(
            [_set([A], externalId="nope"), _set([B], id=8)], [{"externalId": "nope"}], id="unknown-external-id"
        ),
    ],
)
def test_an_unknown_pipeline_refuses_the_whole_request(
    sim: CdfSimulator, client: httpx.Client, items: list[dict[str, Any]], missing: list[dict[str, Any]]
) -> None:
    """Any unknown pipeline is a 400 naming it in missing, and no pipeline of the request changes."""
    answer = _update(client, *items)
    assert (answer.status_code, answer.json()["error"]["missing"]) == (400, missing)
    assert (_lists(client), len(_lists(client, 8)[0]), sim.pipeline_updates()) == ((OLD, OLD), 1000, [])


def test_a_pipeline_named_twice_is_a_400_with_duplicated(sim: CdfSimulator, client: httpx.Client) -> None:
    """The same pipeline by id and by external id in one request is refused, naming it in duplicated."""
    answer = _update(client, _set([A]), _set([B], externalId="pumps"))
    assert (answer.status_code, answer.json()["error"]["duplicated"], _lists(client)) == (400, [{"id": 7}], (OLD, OLD))


@pytest.mark.sends_invalid_bodies
@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param(
            {"items": [_set([A], id=n) for n in range(1, 102)]}, "items size must be between 1 and 100", id="101"
        ),
        pytest.param({"items": []}, "items size must be between 1 and 100", id="none"),
        pytest.param(
            {"items": [{"id": 7, "update": {"confirmedMatches": {"add": [A]}}}]},
            "items[0].update.confirmedMatches.set must not be null",
            id="add-not-set",
        ),
        pytest.param(
            {"items": [{"id": 7, "update": {"rejectedMatches": {"set": [{"sourceId": "5", "targetId": 6}]}}}]},
            "items[0].update.rejectedMatches.set[0].sourceId must be an integer",
            id="source-id-a-string",
        ),
    ],
)
def test_a_body_the_openapi_refuses_is_a_400_recorded_before_any_script(
    sim: CdfSimulator, client: httpx.Client, body: dict[str, Any], words: str
) -> None:
    """Refused with CDF's constraint message, kept in classic.invalid, nothing set, and a script still waits."""
    sim.script_pipeline_updates([Step.error(503)])
    answer = client.post(UPDATE, json=body)
    assert (answer.status_code, answer.json()["error"]["message"]) == (400, VIOLATIONS + f"[{words}]")
    assert sim.classic.invalid == [("pipelines/update", VIOLATIONS + f"[{words}]")]
    assert (_lists(client), sim.pipeline_updates()) == ((OLD, OLD), [])
    assert _update(client, _set([A])).status_code == 503


def test_scripted_answers_come_first_and_applied_ones_take_effect(sim: CdfSimulator, client: httpx.Client) -> None:
    """A scripted 429, 5xx or drop changes nothing; Applied(drop) changes the lists and loses the answer; None and
    then every request is answered normally."""
    sim.script_pipeline_updates([Step.throttle(), Step.error(502), Step.drop(), Applied(Step.drop()), None])
    codes = [_update(client, _set([A])).status_code for _ in range(2)]
    with pytest.raises(httpx.RemoteProtocolError):
        _update(client, _set([A]))
    assert (codes, _lists(client)[0]) == ([429, 502], OLD)
    with pytest.raises(httpx.RemoteProtocolError):
        _update(client, _set([B]))
    assert _lists(client)[0] == [B]
    assert [_update(client, _set([C])).status_code for _ in range(2)] == [200, 200]
    assert [w.value for w in sim.pipeline_updates()] == [[B], [C], [C]]


def test_a_racing_writer_between_our_read_and_our_write_loses_its_pair(sim: CdfSimulator, client: httpx.Client) -> None:
    """Another reviewer adds a pair just before our read-modify-write lands: set replaces the list whole, so the
    other's pair is lost, as CDF offers no version to guard it."""
    seen: list[Lists] = []

    def other(lists: Lists) -> Lists:
        seen.append(lists)
        return {"confirmedMatches": [*lists["confirmedMatches"], C]}

    read = _lists(client)[0]
    sim.race_pipeline_update(7, other)
    assert _update(client, _set([A], id=8)).status_code == 200  # another pipeline's update leaves the race waiting
    assert seen == []
    assert _update(client, _set([*read, A])).status_code == 200
    assert seen == [{"confirmedMatches": OLD, "rejectedMatches": OLD, "trueMatches": []}]
    assert _lists(client) == ([*OLD, A], OLD)  # C, the other writer's pair, is gone
    assert _update(client, _set([B])).status_code == 200
    assert len(seen) == 1  # one race, one update


def test_the_endpoint_takes_post_for_its_project_and_is_counted(sim: CdfSimulator, client: httpx.Client) -> None:
    """A GET is 405, another project 403, a bad token 401; each request is counted as pipelines/update, none as a
    GET of a pipeline."""
    answers = [
        client.get(UPDATE),
        client.post("/api/v1/projects/other/context/entitymatching/pipelines/update", json={"items": [_set([A])]}),
        client.post(UPDATE, json={"items": [_set([A])]}, headers={"Authorization": "Bearer nope"}),
        _update(client, _set([A])),
    ]
    assert [a.status_code for a in answers] == [405, 403, 401, 200]
    assert (sim.request_counts()["pipelines/update"], sim.request_counts().get("pipeline")) == (4, None)
