"""The simulator refuses every request body CDF's own OpenAPI refuses, takes what the product sends, and is quick."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import CdfSimulator, Step
from sim.openapi import ENDPOINTS, formats, problem, registry, schema, validator

API = "/api/v1/projects/demo"
TS, FILE, EVENT = 1_000_000_001, 77, 88  # time series TS, TS + 1; a file; an event; assets 1..10
RUN = {"matchrelay:run": "demo/7/1", "matchrelay:score": "0.93"}
VIOLATIONS = "Request had 1 constraint violations. Please fix the request and try again. "


@pytest.fixture
def sim() -> Iterator[CdfSimulator]:
    with CdfSimulator(project="demo") as started:
        started.static_tokens.add("t")
        started.add_assets(1, 10)
        started.add_item("timeseries", TS, metadata={"matchrelay:previous": "x"})
        started.add_item("timeseries", TS + 1, asset_id=3)
        started.add_item("files", FILE, asset_ids=(1, 2))
        started.add_item("events", EVENT)
        yield started


@pytest.fixture
def client(sim: CdfSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=10, headers={"Authorization": "Bearer t"}) as http:
        yield http


def _update(item: int, update: dict[str, Any]) -> dict[str, Any]:
    return {"items": [{"id": item, "update": update}]}


def _state(sim: CdfSimulator) -> dict[str, Any]:
    return {kind: sim.item_states(kind) for kind in ("timeseries", "files", "events")}


# --- over HTTP: refused ------------------------------------------------------------------------------------------

# (path, body, what CDF says). The metadata value that is not a string is the one "unknown field" the schemas forbid:
# none sets additionalProperties false, so an extra field is refused only where, as in metadata.add, every extra
# field must be a string.
REFUSED = [
    pytest.param(
        "timeseries/update", _update(TS, {"assetId": 5}), "items[0].update.assetId must be an object", id="assetId-5"
    ),
    pytest.param(
        "timeseries/update",
        _update(TS, {"metadata": {"add": {"k": 1}}}),
        "items[0].update.metadata.add.k must be a string",
        id="metadata-value-not-a-string",
    ),
    pytest.param(
        "files/update",
        _update(FILE, {"assetIds": {"add": [4, 4]}}),
        "items[0].update.assetIds.add must not hold duplicates",
        id="assetIds-add-twice",
    ),
    pytest.param(
        "events/update",
        _update(EVENT, {"metadata": {"add": {f"k{n}": "v" for n in range(257)}}}),
        "items[0].update.metadata.add size must be between 0 and 256",
        id="event-metadata-257-keys",
    ),
    pytest.param(
        "timeseries/update",
        {"items": [{"id": TS + n, "update": {"assetId": {"set": 1}}} for n in range(1001)]},
        "items size must be between 1 and 1000",
        id="update-1001",
    ),
    pytest.param(
        "timeseries/byids",
        {"items": [{"id": n} for n in range(1, 1002)], "ignoreUnknownIds": True},
        "items size must be between 1 and 1000",
        id="byids-1001",
    ),
    pytest.param(
        "assets/byids",
        {"items": [{"id": n} for n in range(1, 1002)], "ignoreUnknownIds": True},
        "items size must be between 1 and 1000",
        id="assets-byids-1001",
    ),
]


@pytest.mark.parametrize(("path", "body", "words"), REFUSED)
def test_a_body_the_openapi_refuses_is_a_400_that_changes_nothing(
    sim: CdfSimulator, client: httpx.Client, path: str, body: dict[str, Any], words: str
) -> None:
    """Refused with CDF's error body naming the JSON path, recorded as invalid, and no state or script touched."""
    before = _state(sim)
    sim.script_writes(None, [Step.error(503)])
    sim.script_byids(None, [Step.error(503)])
    answer = client.post(f"{API}/{path}", json=body)
    assert (answer.status_code, answer.json()["error"]) == (400, {"code": 400, "message": VIOLATIONS + f"[{words}]"})
    assert sim.classic.invalid == [(path, VIOLATIONS + f"[{words}]")]
    assert _state(sim) == before
    follow = _update(TS, {"assetId": {"set": 4}}) if path.endswith("update") else {"items": [{"id": 1}]}
    assert client.post(f"{API}/{path}", json=follow).status_code == 503  # the script still waited


def test_an_id_asked_twice_is_refused_by_the_schema_and_named_as_cdf_names_it(
    sim: CdfSimulator, client: httpx.Client
) -> None:
    """timeseries/byids' items are uniqueItems: the 400 is the schema's, with the id in duplicated as CDF lists it."""
    answer = client.post(f"{API}/timeseries/byids", json={"items": [{"id": TS}, {"id": TS}]})
    assert (answer.status_code, answer.json()["error"]["duplicated"]) == (400, [{"id": TS}])
    assert sim.classic.invalid == [("timeseries/byids", VIOLATIONS + "[items must not hold duplicates]")]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("files/update", _update(FILE, {"assetIds": {"set": 5}}), id="assetIds-set-5"),
        pytest.param("timeseries/update", _update(TS, {"assetIds": {"add": [1]}}), id="files-field-on-series"),
        pytest.param("timeseries/byids", {"items": [{"externalId": "ts-1"}]}, id="by-external-id"),
    ],
)
def test_what_the_openapi_takes_but_the_simulator_does_not_is_its_own_400(
    sim: CdfSimulator, client: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    """The schema lets these through (`{"set": 5}` matches assetIds' add/remove branch, which requires nothing);
    the simulator's own rules refuse them, and they are not counted as invalid."""
    before = _state(sim)
    answer = client.post(f"{API}/{path}", json=body)
    assert problem(path, json.dumps(body).encode()) is None
    assert (answer.status_code, answer.json()["error"]["code"], sim.classic.invalid) == (400, 400, [])
    assert _state(sim) == before


@pytest.mark.parametrize("body", [b"{items", b'{"items": [{"id": NaN}]}', b""], ids=["broken", "nan", "empty"])
def test_a_body_that_is_not_json_is_refused(sim: CdfSimulator, client: httpx.Client, body: bytes) -> None:
    """Not JSON (NaN included, which Python's json would read) is a 400, recorded as invalid."""
    answer = client.post(f"{API}/timeseries/update", content=body, headers={"content-type": "application/json"})
    assert (answer.status_code, answer.json()["error"]["message"]) == (400, "Request body is not valid JSON")
    assert sim.classic.invalid == [("timeseries/update", "Request body is not valid JSON")]
    assert [w.status for w in sim.writes()] == [400]


# --- over HTTP: what the product sends ---------------------------------------------------------------------------

ACCEPTED = [
    pytest.param("timeseries/update", _update(TS, {"assetId": {"set": 4}, "metadata": {"add": RUN}}), id="set"),
    pytest.param("timeseries/update", _update(TS + 1, {"assetId": {"setNull": True}}), id="set-null"),
    pytest.param("files/update", _update(FILE, {"assetIds": {"add": [3]}, "metadata": {"add": RUN}}), id="add"),
    pytest.param("files/update", _update(FILE, {"assetIds": {"remove": [1]}}), id="remove"),
    pytest.param(
        "timeseries/update",
        _update(TS, {"metadata": {"add": RUN, "remove": ["matchrelay:previous"]}}),
        id="metadata-add-remove",
    ),
    pytest.param("events/update", _update(EVENT, {"assetIds": {"add": [3]}, "metadata": {"add": RUN}}), id="event"),
    pytest.param("timeseries/byids", {"items": [{"id": TS}, {"id": 5}], "ignoreUnknownIds": True}, id="byids"),
    pytest.param("assets/byids", {"items": [{"id": 1}, {"id": 99}], "ignoreUnknownIds": True}, id="assets-byids"),
]


@pytest.mark.parametrize(("path", "body"), ACCEPTED)
def test_the_shapes_the_product_sends_are_taken(
    sim: CdfSimulator, client: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    """Each shape the product sends validates and is answered 200, as compact JSON and as httpx writes it."""
    compact = json.dumps(body, separators=(",", ":")).encode()
    assert problem(path, compact) is None
    assert client.post(f"{API}/{path}", content=compact, headers={"content-type": "application/json"}).is_success
    assert (client.post(f"{API}/{path}", json=body).status_code, sim.classic.invalid) == (200, [])


# --- the validator alone: list and pipelines/update bodies (over HTTP: test_list.py, test_pipeline_update.py) ----

LIST = {"filter": {"metadata": {"matchrelay:run": "demo/7/1"}}, "limit": 1000, "cursor": "x", "partition": "1/4"}
PAIRS = {"confirmedMatches": {"set": [{"sourceId": 1, "targetExternalId": "a"}]}, "rejectedMatches": {"set": []}}


@pytest.mark.parametrize(
    ("endpoint", "body", "words"),
    [
        *(pytest.param(f"{kind}/list", LIST, None, id=f"{kind}-list") for kind in ("timeseries", "files", "events")),
        pytest.param("sequences/list", LIST, None, id="sequences-list"),
        pytest.param("timeseries/list", {**LIST, "limit": 1001}, "limit must be less than or equal to 1000", id="1001"),
        pytest.param("pipelines/update", {"items": [{"id": 7, "update": PAIRS}]}, None, id="pipeline-set"),
        pytest.param(
            "pipelines/update",
            {"items": [{"id": 7, "update": {"confirmedMatches": {"set": [{"sourceId": 1}]}}}]},
            "items[0].update.confirmedMatches.set[0].targetId must not be null"
            " or items[0].update.confirmedMatches.set[0].targetExternalId must not be null"
            " or items[0].update.confirmedMatches.set[0].sourceExternalId must not be null",
            id="pair-without-target",
        ),
        pytest.param(
            "pipelines/update",
            {"items": [{"id": n, "update": PAIRS} for n in range(1, 102)]},
            "items size must be between 1 and 100",
            id="101-pipelines",
        ),
        pytest.param(
            "pipelines/update",
            {"items": [{"id": 7, "update": {"confirmedMatches": {"add": [{"sourceId": 1, "targetId": 2}]}}}]},
            "items[0].update.confirmedMatches.set must not be null",
            id="add-not-set",
        ),
    ],
)
def test_list_and_pipeline_update_bodies(endpoint: str, body: dict[str, Any], words: str | None) -> None:
    """list takes a metadata filter, a cursor and a partition up to 1000; pipelines/update 1 to 100 full sets."""
    assert problem(endpoint, json.dumps(body).encode()) == (None if words is None else VIOLATIONS + f"[{words}]")


# --- the same answer as plain jsonschema, for a fraction of its cost ---------------------------------------------

_NUMBERS = [0, 1, 2, -1, 100, 101, 1000, 1001, 2**31, 2**53 - 1, 2**53, 2**63 - 1, 2**63, -(2**63) - 1, 1.0, 1.5]
SCALARS = st.sampled_from([*_NUMBERS, True, False, None, "", "a", "x" * 43, "x" * 44, "x" * 256, "Point", "1/4"])
NAMES = ["id", "externalId", "instanceId", "space", "set", "setNull", "add", "remove", "sourceId", "limit", "filter"]
KEYS = st.sampled_from(NAMES)
ANY = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3), max_leaves=12
)
LEAF = SCALARS | ANY
IDS = st.lists(st.sampled_from([1, 2, "a"]) | LEAF, max_size=3)


def _patch(**fields: Any) -> Any:
    return st.fixed_dictionaries({}, optional=fields) | LEAF


METADATA = _patch(add=st.dictionaries(KEYS, LEAF, max_size=3), remove=IDS, set=st.dictionaries(KEYS, LEAF, max_size=2))
LINKS = {"assetId": _patch(set=LEAF, setNull=LEAF), "assetIds": _patch(add=IDS, remove=IDS, set=IDS)}
UPDATE = st.fixed_dictionaries(
    {"id": LEAF, "update": _patch(**LINKS, metadata=METADATA)}, optional={"externalId": LEAF}
)
BYID = st.fixed_dictionaries({}, optional={"id": LEAF, "externalId": LEAF, "instanceId": ANY})
PAIR = st.fixed_dictionaries({}, optional={"sourceId": LEAF, "targetId": LEAF, "targetExternalId": LEAF})
PIPELINE = st.fixed_dictionaries(
    {"id": LEAF, "update": _patch(confirmedMatches=_patch(set=st.lists(PAIR, max_size=3)))}
)
ITEMS = st.one_of(
    st.tuples(st.sampled_from([e for e in ENDPOINTS if e.endswith("/update") and e != "pipelines/update"]), UPDATE),
    st.tuples(st.sampled_from([e for e in ENDPOINTS if e.endswith("/byids")]), BYID),
    st.tuples(st.just("pipelines/update"), PIPELINE),
)


AGAIN = {int: st.sampled_from([0, 1, 2, 2**53, 2**63]), str: st.sampled_from(["a", "-a", "x" * 44, "x" * 256])}


def _redrawn(value: Any, data: st.DataObject) -> Any:
    """`value` with some scalars drawn again, mostly of their own type: another item of the same structure."""
    if isinstance(value, dict):
        return {key: _redrawn(member, data) for key, member in value.items()}
    if isinstance(value, list):
        return [_redrawn(member, data) for member in value]
    return data.draw(AGAIN.get(type(value), SCALARS) | SCALARS) if data.draw(st.booleans()) else value


def _errors(validator: Any, body: Any) -> list[str]:
    """Each error's path, keyword and place in the schema, those under anyOf's too (not messages: they quote the
    value, and a kept error's quotes the element it was found on)."""
    found: list[str] = []
    errors = list(validator.iter_errors(body))
    while errors:
        error = errors.pop()
        found.append(json.dumps([list(error.absolute_path), error.validator, list(error.absolute_schema_path)]))
        errors += error.context
    return sorted(found)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ITEMS, st.lists(ITEMS.map(lambda case: case[1]), max_size=1), st.integers(1, 12), st.data())
def test_the_shape_cache_answers_as_plain_jsonschema(
    case: tuple[str, Any], others: list[Any], copies: int, data: st.DataObject
) -> None:
    """Items of one structure with values redrawn, and maybe another: the very errors plain jsonschema finds."""
    endpoint, item = case
    body: dict[str, Any] = {"items": [item, *(_redrawn(item, data) for _ in range(copies)), *others]}
    if endpoint.endswith("byids"):
        body["ignoreUnknownIds"] = data.draw(LEAF)
    plain = jsonschema.Draft202012Validator(schema(endpoint), registry=registry(), format_checker=formats())
    assert _errors(validator(endpoint), body) == _errors(plain, body)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([e for e in ENDPOINTS if e.endswith("/list")]), st.dictionaries(KEYS, ANY, max_size=4))
def test_list_bodies_are_answered_as_plain_jsonschema_answers(endpoint: str, body: dict[str, Any]) -> None:
    """list bodies too: the same errors as plain jsonschema's."""
    plain = jsonschema.Draft202012Validator(schema(endpoint), registry=registry(), format_checker=formats())
    assert _errors(validator(endpoint), body) == _errors(plain, body)


# Two items of one structure that one check tells apart: the second must be refused as plain jsonschema refuses it.
APART = [
    pytest.param("timeseries/update", {"id": 1, "update": {}}, {"id": 0, "update": {}}, id="id-minimum"),
    pytest.param(
        "timeseries/update",
        _update(TS, {"assetId": {"set": 2**63 - 1}})["items"][0],
        _update(TS, {"assetId": {"set": 2**63}})["items"][0],
        id="int64",
    ),
    pytest.param(
        "timeseries/update",
        {"externalId": "x" * 255, "update": {}},
        {"externalId": "x" * 256, "update": {}},
        id="max-length",
    ),
    pytest.param(
        "timeseries/update",
        _update(TS, {"metadata": {"remove": ["a", "b"]}})["items"][0],
        _update(TS, {"metadata": {"remove": ["a", "a"]}})["items"][0],
        id="unique",
    ),
    pytest.param(
        "files/update",
        {"instanceId": {"space": "a", "externalId": "b"}, "update": {}},
        {"instanceId": {"space": "-a", "externalId": "b"}, "update": {}},
        id="pattern",
    ),
    pytest.param(
        "timeseries/update",
        _update(TS, {"assetId": {"setNull": True}})["items"][0],
        _update(TS, {"assetId": {"setNull": False}})["items"][0],
        id="enum",
    ),
    pytest.param(
        "events/update",
        _update(EVENT, {"metadata": {"add": {"k": "x" * 128_000}}})["items"][0],
        _update(EVENT, {"metadata": {"add": {"k": "x" * 128_001}}})["items"][0],
        id="metadata-value-length",
    ),
    pytest.param(
        "pipelines/update",
        {"id": 7, "update": {"confirmedMatches": {"set": [{"sourceId": 1, "targetId": 2}]}}},
        {"id": 7, "update": {"confirmedMatches": {"set": [{"sourceId": 0, "targetId": 2}]}}},
        id="pair-id",
    ),
]


@pytest.mark.parametrize("mixed", [False, True], ids=["alike", "mixed"])
@pytest.mark.parametrize(("endpoint", "good", "bad"), APART)
def test_items_of_one_structure_are_told_apart_where_a_check_does(
    endpoint: str, good: dict[str, Any], bad: dict[str, Any], mixed: bool
) -> None:
    """The good item passes and the bad one is refused, alone or after it, among items alike or not (two paths)."""
    plain = jsonschema.Draft202012Validator(schema(endpoint), registry=registry(), format_checker=formats())
    odd = [{"id": 5, "update": {"odd": [1]}}] if mixed else []
    for body in ({"items": [good, *odd]}, {"items": [bad, *odd]}, {"items": [good, bad, good, *odd]}):
        assert _errors(validator(endpoint), body) == _errors(plain, body)
    assert problem(endpoint, json.dumps({"items": [good, *odd]}).encode()) is None
    assert "[items[1]." in str(problem(endpoint, json.dumps({"items": [good, bad, *odd]}).encode()))


def test_a_thousand_items_of_one_shape_are_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1000-item update of one shape costs the validations a 1-item one does; an item of another is named."""
    kind = type(validator("timeseries/update"))
    calls: list[Any] = []
    descend = kind.descend

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return descend(self, *args, **kwargs)

    monkeypatch.setattr(kind, "descend", counted)

    def body(count: int, odd: int | None = None) -> bytes:
        items: list[dict[str, Any]] = [
            {"id": TS + n, "update": {"assetId": {"set": 5 + n}, "metadata": {"add": RUN}}} for n in range(count)
        ]
        if odd is not None:
            items[odd]["update"]["assetId"] = 5
        return json.dumps({"items": items}, separators=(",", ":")).encode()

    assert problem("timeseries/update", body(1)) is None  # warm
    calls.clear()
    assert problem("timeseries/update", body(1)) is None
    one = len(calls)
    calls.clear()
    assert problem("timeseries/update", body(1000)) is None
    assert len(calls) == one
    assert (
        problem("timeseries/update", body(1000, odd=500))
        == VIOLATIONS + "[items[500].update.assetId must be an object]"
    )


def test_items_that_differ_in_one_object_are_shaped_value_by_value_there_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metadata that adds a key more on every other item: only that column is shaped value by value, and both
    kinds of item are checked as plain jsonschema checks them."""
    from sim.shapes import Shapes

    shaped: list[Any] = []
    member = Shapes._member

    def counted(self: Shapes, key: str | None, value: Any) -> Any:
        shaped.append(value)
        return member(self, key, value)

    monkeypatch.setattr(Shapes, "_member", counted)
    added: list[dict[str, Any]] = [RUN | ({"x": "1"} if n % 2 else {}) for n in range(1000)]
    items = [
        {"id": TS + n, "update": {"assetId": {"set": 5 + n}, "metadata": {"add": add}}} for n, add in enumerate(added)
    ]
    assert problem("timeseries/update", json.dumps({"items": items}).encode()) is None
    assert [value for value in shaped if isinstance(value, dict)] == added  # the rest: their members
    added[501]["x"] = 1
    assert problem("timeseries/update", json.dumps({"items": items}).encode()) == (
        VIOLATIONS + "[items[501].update.metadata.add.x must be a string]"
    )
