"""The trigger message (contract, section 2): what names a run, and what is answered as ``invalid_trigger``."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handlers.core.errors import InvalidTrigger
from handlers.core.trigger import Trigger, parse_event, parse_fields
from sim import CdfSimulator, Step, make_run
from tests.conftest import PubSub, Topics, deliver, pubsub_message
from tests.support.contract import DATA_FIELDS, RFC3339_MS, TYPE_PREFIX

MAX_ID = 9007199254740991
DEFAULT = "demo"
ALLOWED = ("demo", "other")
SUBSCRIPTION = "projects/matchrelay-test/subscriptions/eventarc-sub"
FAILED = TYPE_PREFIX + "run.failed"


def parse(fields: dict[str, Any]) -> Trigger:
    """``parse_fields`` with the allow-list the tests deploy with."""
    return parse_fields(fields, message_id="m-1", default_project=DEFAULT, allowed=ALLOWED)


def event_data(message: dict[str, Any]) -> dict[str, Any]:
    """A ``messagePublished`` event's data, as functions-framework hands it over."""
    return {"message": message, "subscription": SUBSCRIPTION}


def parse_message(message: dict[str, Any], event_id: str = "event-1") -> Trigger:
    """``parse_event`` on one Pub/Sub message."""
    return parse_event(event_id, event_data(message), default_project=DEFAULT, allowed=ALLOWED)


def parse_failure(message: dict[str, Any]) -> InvalidTrigger:
    """The ``InvalidTrigger`` that ``parse_event`` raises for ``message``."""
    with pytest.raises(InvalidTrigger) as caught:
        parse_message(message)
    return caught.value


# --- ids --------------------------------------------------------------------------------------------------------

VALID_IDS = [
    pytest.param(1, 1, id="one"),
    pytest.param(123, 123, id="int"),
    pytest.param("123", 123, id="decimal-string"),
    pytest.param("1", 1, id="decimal-string-one"),
    pytest.param(MAX_ID, MAX_ID, id="max-id"),
    pytest.param(str(MAX_ID), MAX_ID, id="max-id-string"),
]

INVALID_IDS = [
    pytest.param(MAX_ID + 1, id="max-id-plus-one"),
    pytest.param(str(MAX_ID + 1), id="max-id-plus-one-string"),
    pytest.param(10**20, id="huge"),
    pytest.param("1" * 17, id="huge-string"),
    pytest.param(0, id="zero"),
    pytest.param("0", id="zero-string"),
    pytest.param(-1, id="negative"),
    pytest.param("-5", id="negative-string"),
    pytest.param(1.5, id="fraction"),
    pytest.param(1.0, id="integral-float"),
    pytest.param("1.0", id="fraction-string"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param(None, id="null"),
    pytest.param(" 1", id="leading-space"),
    pytest.param("1 ", id="trailing-space"),
    pytest.param("1e3", id="exponent"),
    pytest.param("abc", id="letters"),
    pytest.param("0x10", id="hex"),
    pytest.param("+1", id="plus-sign"),
    pytest.param("", id="empty-string"),
    pytest.param("\u0661\u0662", id="non-ascii-digits"),
    pytest.param("1\n", id="trailing-newline"),
    pytest.param([1], id="list"),
    pytest.param({"id": 1}, id="object"),
]


@pytest.mark.parametrize("field", ["pipelineId", "runId"])
@pytest.mark.parametrize(("value", "expected"), VALID_IDS)
def test_parse_fields_valid_id_accepted(field: str, value: Any, expected: int) -> None:
    """An integer from 1 to 2**53-1, or its decimal string, is read as that integer."""
    fields = {"pipelineId": 7, "runId": 8, field: value}
    trigger = parse(fields)
    assert getattr(trigger, "pipeline_id" if field == "pipelineId" else "run_id") == expected


@pytest.mark.parametrize("field", ["pipelineId", "runId"])
@pytest.mark.parametrize("value", INVALID_IDS)
def test_parse_fields_invalid_id_rejected(field: str, value: Any) -> None:
    """Zero, negatives, fractions, booleans, null, other strings, larger numbers and containers are invalid."""
    fields = {"pipelineId": 7, "runId": 8, field: value}
    with pytest.raises(InvalidTrigger) as caught:
        parse(fields)
    assert isinstance(caught.value, InvalidTrigger)
    assert caught.value.reason == "invalid_trigger"


@pytest.mark.parametrize("field", ["pipelineId", "runId"])
def test_parse_fields_missing_id_rejected(field: str) -> None:
    """A trigger without ``pipelineId`` or ``runId`` names no run."""
    fields = {"pipelineId": 7, "runId": 8}
    del fields[field]
    with pytest.raises(InvalidTrigger):
        parse(fields)


def test_parse_fields_runid_latest_accepted() -> None:
    """``runId`` may be the string ``latest``, kept for the worker to resolve."""
    trigger = parse({"pipelineId": 7, "runId": "latest"})
    assert (trigger.pipeline_id, trigger.run_id) == (7, "latest")


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"pipelineId": "latest", "runId": 8}, id="pipelineid-latest"),
        pytest.param({"pipelineId": 7, "runId": "Latest"}, id="runid-capitalised"),
        pytest.param({"pipelineId": 7, "runId": "LATEST"}, id="runid-upper"),
        pytest.param({"pipelineId": 7, "runId": " latest"}, id="runid-padded"),
    ],
)
def test_parse_fields_latest_only_as_exact_runid(fields: dict[str, Any]) -> None:
    """Only ``runId`` may be ``latest``, spelled exactly so; ``pipelineId`` never."""
    with pytest.raises(InvalidTrigger):
        parse(fields)


# --- project ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({}, "demo", id="absent-is-cdf-project"),
        pytest.param({"project": "demo"}, "demo", id="cdf-project"),
        pytest.param({"project": "other"}, "other", id="allowed"),
    ],
)
def test_parse_fields_project_allowed(fields: dict[str, Any], expected: str) -> None:
    """An absent project is ``CDF_PROJECT``; an allowed one is taken as given."""
    assert parse({"pipelineId": 7, "runId": 8, **fields}).project == expected


@pytest.mark.parametrize(
    "project",
    [
        pytest.param("prod", id="not-allowed"),
        pytest.param("DEMO", id="other-case"),
        pytest.param("demo ", id="padded"),
        pytest.param("", id="empty"),
        pytest.param("../x", id="dot-dot"),
        pytest.param("a/b", id="slash"),
        pytest.param("demo/../other", id="traversal"),
        pytest.param("demo?x=1", id="query"),
        pytest.param("demo,other", id="the-list-itself"),
        pytest.param(1, id="number"),
        pytest.param(["demo"], id="list"),
    ],
)
def test_parse_fields_project_not_allowed_rejected(project: Any) -> None:
    """A project outside ``CDF_ALLOWED_PROJECTS`` (or with path characters) is invalid."""
    with pytest.raises(InvalidTrigger) as caught:
        parse({"pipelineId": 7, "runId": 8, "project": project})
    assert caught.value.project is None


def test_parse_fields_unknown_fields_ignored() -> None:
    """Fields the contract does not name are ignored, whatever they hold."""
    fields = {"pipelineId": 7, "runId": 8, "url": "http://evil.example", "token": "x", "extra": {"a": [1]}}
    assert parse(fields) == Trigger("demo", 7, 8, "m-1", None)


# --- coordinates an invalid trigger still carries -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "coordinates"),
    [
        pytest.param({"pipelineId": 7, "runId": "abc"}, ("demo", 7, None), id="bad-runid"),
        pytest.param({"pipelineId": 0, "runId": 8}, ("demo", None, 8), id="bad-pipelineid"),
        pytest.param({"pipelineId": 7, "runId": 8, "project": "../x"}, (None, 7, 8), id="bad-project"),
        pytest.param({"pipelineId": -1, "runId": "latest"}, ("demo", None, None), id="latest-with-bad-pipelineid"),
        pytest.param({"project": "other"}, ("other", None, None), id="no-ids"),
        pytest.param({"pipelineId": True, "runId": None, "project": 3}, (None, None, None), id="nothing-readable"),
    ],
)
def test_parse_fields_bad_trigger_keeps_readable_coordinates(
    fields: dict[str, Any], coordinates: tuple[str | None, int | None, int | None]
) -> None:
    """A ``InvalidTrigger`` carries every coordinate that could be read, and only those."""
    with pytest.raises(InvalidTrigger) as caught:
        parse(fields)
    exc = caught.value
    assert (exc.project, exc.pipeline_id, exc.run_id) == coordinates
    assert exc.message_id == "m-1"


def test_parse_fields_bad_trigger_message_is_bounded() -> None:
    """The error message echoes what was sent only in a short, bounded form."""
    with pytest.raises(InvalidTrigger) as caught:
        parse({"pipelineId": 7, "runId": "x" * 100_000})
    assert len(str(caught.value)) < 1000


# --- the Pub/Sub message ----------------------------------------------------------------------------------------


def test_parse_event_reads_body_and_message_metadata() -> None:
    """The body names the run; the message id and publish time come from the message."""
    message = pubsub_message(
        {"pipelineId": 7, "runId": "8"}, message_id="123456", publish_time="2024-10-29T12:19:06.123456789Z"
    )
    trigger = parse_message(message)
    assert trigger == Trigger("demo", 7, 8, "123456", datetime(2024, 10, 29, 12, 19, 6, 123456, tzinfo=UTC))


def test_parse_event_body_wins_over_attributes() -> None:
    """A non-empty body names the run; the attributes are not consulted."""
    message = pubsub_message({"pipelineId": 7, "runId": 8}, attributes={"pipelineId": "1", "runId": "2"})
    trigger = parse_message(message)
    assert (trigger.pipeline_id, trigger.run_id) == (7, 8)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        pytest.param({"pipelineId": "7", "runId": "8"}, ("demo", 7, 8), id="ids"),
        pytest.param({"pipelineId": "7", "runId": "latest"}, ("demo", 7, "latest"), id="latest"),
        pytest.param({"pipelineId": "7", "runId": "8", "project": "other"}, ("other", 7, 8), id="project"),
        pytest.param({"pipelineId": "7", "runId": "8", "googclient_x": "y"}, ("demo", 7, 8), id="unknown-attribute"),
    ],
)
@pytest.mark.parametrize("raw", [b"", b"  \n"], ids=["empty", "blank"])
def test_parse_event_empty_body_falls_back_to_attributes(
    attributes: dict[str, str], expected: tuple[str, int, int | str], raw: bytes
) -> None:
    """An empty body takes ``pipelineId``, ``runId`` and ``project`` from the message attributes."""
    trigger = parse_message(pubsub_message(raw=raw, attributes=attributes))
    assert (trigger.project, trigger.pipeline_id, trigger.run_id) == expected


@pytest.mark.parametrize(
    "attributes",
    [
        pytest.param({}, id="none"),
        pytest.param({"pipelineId": "7"}, id="no-runid"),
        pytest.param({"pipelineId": "7", "runId": "8", "project": "prod"}, id="project-not-allowed"),
        pytest.param({"pipelineId": "7", "runId": "1.5"}, id="fraction"),
    ],
)
def test_parse_event_empty_body_invalid_attributes_rejected(attributes: dict[str, str]) -> None:
    """An empty body with attributes that do not name a run is invalid."""
    with pytest.raises(InvalidTrigger):
        parse_message(pubsub_message(attributes=attributes))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("!!! not base64 !!!", id="not-base64"),
        pytest.param(_b64(b"\xff\xfe{}"), id="not-utf8"),
        pytest.param(_b64(b'{"pipelineId": 7, "runId": 8'), id="truncated-json"),
        pytest.param(_b64(b"pipelineId=7&runId=8"), id="not-json"),
        pytest.param(_b64(b"[7, 8]"), id="json-array"),
        pytest.param(_b64(b"42"), id="json-number"),
        pytest.param(_b64(b'"7/8"'), id="json-string"),
        pytest.param(_b64(b"null"), id="json-null"),
        pytest.param(_b64(b"true"), id="json-true"),
        pytest.param(_b64(b"[" * 100_000), id="deeply-nested"),
        pytest.param(_b64(json.dumps({"pipelineId": 7, "runId": 8, "pad": "x" * 1_100_000}).encode()), id="over-1-mb"),
        pytest.param(_b64(json.dumps({"pipelineId": 7, "runId": 8, "pad": "x" * 4_000_000}).encode()), id="4-mb"),
        pytest.param(7, id="data-not-a-string"),
    ],
)
def test_parse_event_unreadable_body_rejected(data: Any) -> None:
    """A body that is not base64 of a UTF-8 JSON object of at most 1 MB is invalid, with no coordinates."""
    message = {**pubsub_message({}), "data": data, "attributes": {"pipelineId": "7", "runId": "8"}}
    exc = parse_failure(message)
    assert (exc.project, exc.pipeline_id, exc.run_id) == (None, None, None)
    assert exc.message_id == message["messageId"]


def test_parse_event_large_body_under_limit_accepted() -> None:
    """A body well under 1 MB with a big unknown field is still a valid trigger."""
    trigger = parse_message(pubsub_message({"pipelineId": 7, "runId": 8, "pad": "x" * 500_000}))
    assert (trigger.pipeline_id, trigger.run_id) == (7, 8)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(None, id="null"),
        pytest.param([], id="list"),
        pytest.param({}, id="no-message"),
        pytest.param({"message": "x"}, id="message-not-object"),
        pytest.param("not json", id="string"),
    ],
)
def test_parse_event_no_pubsub_message_rejected(data: Any) -> None:
    """An event that carries no Pub/Sub message is invalid and identified by the event id."""
    with pytest.raises(InvalidTrigger) as caught:
        parse_event("event-9", data, default_project=DEFAULT, allowed=ALLOWED)
    assert caught.value.message_id == "event-9"


def test_parse_event_bad_trigger_keeps_message_id_and_coordinates() -> None:
    """A valid ``pipelineId`` with an invalid ``runId`` keeps the pipeline id and the message id."""
    exc = parse_failure(pubsub_message({"pipelineId": 7, "runId": 0}, message_id="555"))
    assert (exc.message_id, exc.project, exc.pipeline_id, exc.run_id) == ("555", "demo", 7, None)


# --- end to end: the function as deployed -----------------------------------------------------------------------

INVALID_TRIGGERS = [
    pytest.param({"body": {"pipelineId": 1, "runId": "abc"}}, ("demo", 1, None), id="runid-letters"),
    pytest.param({"body": {"pipelineId": 0, "runId": 456}}, ("demo", None, 456), id="pipelineid-zero"),
    pytest.param({"body": {"pipelineId": 1, "runId": MAX_ID + 1}}, ("demo", 1, None), id="runid-too-large"),
    pytest.param({"body": {"pipelineId": 1, "runId": 1.5}}, ("demo", 1, None), id="runid-fraction"),
    pytest.param({"body": {"pipelineId": "latest", "runId": 456}}, ("demo", None, 456), id="pipelineid-latest"),
    pytest.param({"body": {"pipelineId": 1, "runId": 456, "project": "../x"}}, (None, 1, 456), id="project-path"),
    pytest.param({"body": {"pipelineId": 1, "runId": 456, "project": "prod"}}, (None, 1, 456), id="project-denied"),
    pytest.param({"raw": b"pipelineId=1"}, (None, None, None), id="body-not-json"),
    pytest.param({"raw": b"[1, 456]"}, (None, None, None), id="body-json-array"),
    pytest.param({"raw": b"\xff\xfe"}, (None, None, None), id="body-not-utf8"),
    pytest.param({"raw": b""}, ("demo", None, None), id="empty-body-no-attributes"),
    pytest.param({"attributes": {"pipelineId": "1", "runId": "-3"}}, ("demo", 1, None), id="attribute-negative"),
]


def _assert_no_event(pubsub: PubSub, subscription: str) -> None:
    assert pubsub.drain(subscription) == []


@pytest.mark.parametrize(("kwargs", "coordinates"), INVALID_TRIGGERS)
def test_on_run_message_invalid_trigger_answers_run_failed(
    client: Any,
    sim: CdfSimulator,
    pubsub: PubSub,
    topics: Topics,
    kwargs: dict[str, Any],
    coordinates: tuple[str | None, int | None, int | None],
) -> None:
    """An invalid trigger is acked with one ``invalid_trigger`` event on the error topic and never reaches CDF."""
    sim.set_run(1, 456, [Step.run(make_run(2))])
    message = pubsub_message(kwargs.get("body"), attributes=kwargs.get("attributes"), raw=kwargs.get("raw"))
    before = datetime.now(UTC)

    response = deliver(client, message)

    assert response.status_code == 200
    received = pubsub.drain(topics.errors_sub, at_least=1)
    assert len(received) == 1
    attributes, data = received[0].attributes, received[0].data
    project, pipeline_id, run_id = coordinates
    assert attributes["ce-specversion"] == "1.0"
    assert attributes["ce-type"] == FAILED
    assert attributes["ce-reason"] == "invalid_trigger"
    assert attributes["ce-id"] == f"invalid-trigger/{message['messageId']}"
    assert attributes["ce-subject"] == "run/failed/invalid_trigger"
    assert attributes["content-type"] == "application/json"
    assert attributes["ce-source"].startswith(f"{sim.url}/api/v1/projects/")
    assert attributes["ce-source"].endswith("/context/entitymatching/pipelines")
    assert attributes.get("ce-cdfproject") == project
    assert attributes.get("ce-pipelineid") == (None if pipeline_id is None else str(pipeline_id))
    assert attributes.get("ce-runid") == (None if run_id is None else str(run_id))
    assert RFC3339_MS.fullmatch(attributes["ce-time"])
    decided = datetime.strptime(attributes["ce-time"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert before - timedelta(seconds=1) <= decided <= datetime.now(UTC) + timedelta(seconds=1)
    assert set(data) == DATA_FIELDS["run.failed"]
    assert data["reason"] == "invalid_trigger"
    assert isinstance(data["errorMessage"], str)
    assert data["errorMessage"]
    assert data["errors"] == []
    assert (data["project"], data["pipelineId"], data["runId"]) == coordinates
    assert [data[k] for k in ("jobId", "status", "createdTime", "startTime", "statusTime")] == [None] * 5
    assert sim.requests == []
    _assert_no_event(pubsub, topics.events_sub)


@pytest.mark.parametrize("mode", ["binary", "structured", "push"])
def test_on_run_message_invalid_trigger_in_every_delivery_mode(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, mode: str
) -> None:
    """However the trigger is delivered, an invalid one is acked with its ``invalid_trigger`` event."""
    message = pubsub_message({"pipelineId": 1, "runId": "0x10"})

    response = deliver(client, message, mode)

    assert response.status_code == 200
    received = pubsub.drain(topics.errors_sub, at_least=1)
    assert [(m.attributes["ce-reason"], m.attributes["ce-id"]) for m in received] == [
        ("invalid_trigger", f"invalid-trigger/{message['messageId']}")
    ]
    assert "ce-runid" not in received[0].attributes
    assert received[0].attributes["ce-pipelineid"] == "1"
    assert sim.requests == []


def _assert_run_relayed(received: list[Any], project: str = "demo") -> None:
    assert sorted(m.attributes["ce-subject"] for m in received) == ["match/0", "match/1", "run"]
    assert {m.attributes["ce-runid"] for m in received} == {"456"}
    assert {m.attributes["ce-pipelineid"] for m in received} == {"1"}
    assert {m.attributes["ce-cdfproject"] for m in received} == {project}
    completed = [m for m in received if m.attributes["ce-subject"] == "run"]
    assert completed[0].attributes["ce-type"] == "com.cognite.entitymatching.run.completed"
    assert completed[0].data["matchCount"] == 2


@pytest.mark.parametrize("mode", ["binary", "structured", "push"])
@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"pipelineId": 1, "runId": 456}, id="ints"),
        pytest.param({"pipelineId": "1", "runId": "456", "project": "demo", "note": "x"}, id="strings"),
    ],
)
def test_on_run_message_valid_trigger_relays_run(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, mode: str, body: dict[str, Any]
) -> None:
    """A valid trigger in binary, structured or push delivery publishes the run's events and is acked."""
    sim.set_run(1, 456, [Step.status("Running"), Step.run(make_run(2))])

    response = deliver(client, pubsub_message(body), mode)

    assert response.status_code == 200
    _assert_run_relayed(pubsub.drain(topics.events_sub, at_least=3))
    _assert_no_event(pubsub, topics.errors_sub)
    assert {r.path for r in sim.cdf_requests()} == {"/api/v1/projects/demo/context/entitymatching/pipelines/1/runs/456"}


@pytest.mark.parametrize(
    "attributes",
    [
        pytest.param({"pipelineId": "1", "runId": "456"}, id="default-project"),
        pytest.param({"pipelineId": "1", "runId": "456", "project": "demo"}, id="named-project"),
    ],
)
def test_on_run_message_attributes_only_relays_run(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, attributes: dict[str, str]
) -> None:
    """An empty body with ``pipelineId``/``runId``/``project`` attributes relays the run they name."""
    sim.set_run(1, 456, [Step.run(make_run(2))])

    response = deliver(client, pubsub_message(attributes=attributes))

    assert response.status_code == 200
    _assert_run_relayed(pubsub.drain(topics.events_sub, at_least=3))
    _assert_no_event(pubsub, topics.errors_sub)


@pytest.mark.parametrize(
    "message_kwargs",
    [
        pytest.param({"body": {"pipelineId": 1, "runId": 456, "project": "other"}}, id="body"),
        pytest.param({"attributes": {"pipelineId": "1", "runId": "456", "project": "other"}}, id="attributes"),
    ],
)
def test_on_run_message_allowed_project_without_access_is_access_denied(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, message_kwargs: dict[str, Any]
) -> None:
    """An allowed project is asked for; CDF's 403 for it becomes ``run.failed`` with ``access_denied``."""
    sim.set_run(1, 456, [Step.run(make_run(2))])
    message = pubsub_message(message_kwargs.get("body"), attributes=message_kwargs.get("attributes"))

    response = deliver(client, message)

    assert response.status_code == 200
    received = pubsub.drain(topics.errors_sub, at_least=1)
    assert len(received) == 1
    attributes = received[0].attributes
    assert attributes["ce-type"] == FAILED
    assert attributes["ce-reason"] == "access_denied"
    assert (attributes["ce-cdfproject"], attributes["ce-pipelineid"], attributes["ce-runid"]) == ("other", "1", "456")
    assert attributes["ce-id"] == "other/1/456/run/failed/access_denied"
    assert received[0].data["reason"] == "access_denied"
    assert [r.path for r in sim.cdf_requests()] == [
        "/api/v1/projects/other/context/entitymatching/pipelines/1/runs/456"
    ]
    _assert_no_event(pubsub, topics.events_sub)


@pytest.mark.parametrize(
    ("message_id", "expected"),
    [
        pytest.param("11893545201", "11893545201", id="pubsub-digits"),
        pytest.param("x" * 2000, "sha256-" + hashlib.sha256(b"x" * 2000).hexdigest()[:32], id="too-long"),
        pytest.param("a/b\nc", "sha256-" + hashlib.sha256(b"a/b\nc").hexdigest()[:32], id="path-and-newline"),
    ],
)
def test_on_run_message_message_id_enters_ids_only_in_a_safe_form(
    message_id: str, expected: str, client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A hand-made messageId of any length or shape reaches ce-id as a digest, so the event can still be published."""
    message = pubsub_message({"pipelineId": 0, "runId": 1}, message_id=message_id)
    assert deliver(client, message, "push").status_code == 200
    (failed,) = pubsub.drain(topics.errors_sub, at_least=1)
    assert failed.attributes["ce-id"] == f"invalid-trigger/{expected}"
