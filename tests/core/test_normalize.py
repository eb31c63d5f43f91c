"""Output events (contract, section 5) built without I/O: attributes and data of every type, matches and run events
in detail (rule events in detail: tests/core/test_rules.py)."""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from handlers.core.errors import InvalidResponse, MalformedResponse
from handlers.core.events import Event, RunRef, rfc3339
from handlers.core.models import RunSummary
from handlers.core.normalize import completed_event, counts, failed_event, match_event, results_events
from handlers.core.rules import generated_rule_events, suggested_rule_events
from sim import make_run
from tests.support.contract import DATA_FIELDS, REASONS, TYPE_PREFIX

CDF_URL = "https://westeurope-1.cognitedata.com"
MAX_ID = 9007199254740991
STATUS_MS = 1730204346000  # 2024-10-29T12:19:06.000Z
STATUS_TIME = "2024-10-29T12:19:06.000Z"
SOURCE = f"{CDF_URL}/api/v1/projects/demo/context/entitymatching/pipelines/7/runs/456"

REF = RunRef(CDF_URL, "demo", 7, 456)


def summary(status: str = "Completed", **fields: Any) -> RunSummary:
    """A finished run's summary whose ``statusTime`` is ``STATUS_MS``."""
    values = {
        "status": status,
        "createdTime": STATUS_MS - 60_000,
        "startTime": STATUS_MS - 55_000,
        "statusTime": STATUS_MS,
        "jobId": 456,
        **fields,
    }
    return RunSummary.model_validate(values)


SUMMARY = summary()


def data(event: Event) -> dict[str, Any]:
    """The event's data as a subscriber reads it."""
    parsed: dict[str, Any] = json.loads(event.data)
    return parsed


def run_body(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """A completed run's results body from the simulator's generator."""
    return make_run(*args, **kwargs)


def all_events(body: dict[str, Any], max_bytes: int | None = None) -> list[Event]:
    """Every event of a completed run, ``run.completed`` last."""
    extra = {} if max_bytes is None else {"max_bytes": max_bytes}
    events = list(results_events(REF, SUMMARY, body, **extra))
    return [*events, completed_event(REF, SUMMARY, counts(body))]


# --- attributes --------------------------------------------------------------------------------------------------


def test_match_event_attributes_exact() -> None:
    """A match event carries exactly the contract's attributes, with ``ce-matchtype``."""
    body = run_body(4)
    event = match_event(REF, SUMMARY, 3, body["matches"][3])
    assert event.attributes == {
        "ce-specversion": "1.0",
        "ce-type": "com.cognite.entitymatching.match",
        "ce-source": SOURCE,
        "ce-id": "demo/7/456/match/3",
        "ce-subject": "match/3",
        "ce-time": STATUS_TIME,
        "content-type": "application/json",
        "ce-cdfproject": "demo",
        "ce-pipelineid": "7",
        "ce-runid": "456",
        "ce-matchtype": "model",
    }


def test_match_event_large_ids_are_decimal_strings() -> None:
    """Ids up to 2**53-1 appear in attributes, ``ce-id`` and ``ce-source`` as plain decimal strings."""
    ref = RunRef(CDF_URL, "acme-prod", MAX_ID, MAX_ID - 1)
    event = match_event(ref, SUMMARY, 0, run_body(1)["matches"][0])
    attributes = event.attributes
    assert (attributes["ce-pipelineid"], attributes["ce-runid"]) == (str(MAX_ID), str(MAX_ID - 1))
    assert attributes["ce-id"] == f"acme-prod/{MAX_ID}/{MAX_ID - 1}/match/0"
    assert attributes["ce-source"].endswith(
        f"/projects/acme-prod/context/entitymatching/pipelines/{MAX_ID}/runs/{MAX_ID - 1}"
    )
    assert (data(event)["pipelineId"], data(event)["runId"]) == (MAX_ID, MAX_ID - 1)


@pytest.mark.parametrize(
    ("match_type", "expected"),
    [
        pytest.param("previously-confirmed", "previously-confirmed", id="confirmed"),
        pytest.param("model", "model", id="model"),
    ],
)
def test_match_event_matchtype_attribute(match_type: str, expected: str) -> None:
    """``ce-matchtype`` is the match's ``matchType``."""
    raw = {"matchType": match_type, "score": 1.0, "source": {"id": 1}, "target": {"id": 2}}
    assert match_event(REF, SUMMARY, 0, raw).attributes["ce-matchtype"] == expected


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: [match_event(REF, SUMMARY, 0, run_body(1)["matches"][0])], id="match"),
        pytest.param(lambda: suggested_rule_events(REF, SUMMARY, 0, run_body(3, 1)["suggestedRules"][0]), id="sugg"),
        pytest.param(lambda: generated_rule_events(REF, SUMMARY, 0, run_body(3, 0, 1)["generatedRules"][0]), id="gen"),
        pytest.param(lambda: [completed_event(REF, SUMMARY, (0, 0, 0))], id="completed"),
        pytest.param(lambda: [failed_event(REF, "run_failed", "x", summary("Failed"), 0)], id="failed"),
    ],
)
def test_event_attributes_common_to_every_type(build: Any) -> None:
    """Every event has the contract's common attributes, ``ce-id`` built from its subject, time from ``statusTime``."""
    for event in build():
        attributes = event.attributes
        assert attributes["ce-specversion"] == "1.0"
        assert attributes["ce-type"].startswith(TYPE_PREFIX)
        assert attributes["ce-source"] == SOURCE
        assert attributes["ce-id"] == f"demo/7/456/{attributes['ce-subject']}"
        assert attributes["ce-time"] == STATUS_TIME
        assert attributes["content-type"] == "application/json"
        assert (attributes["ce-cdfproject"], attributes["ce-pipelineid"], attributes["ce-runid"]) == (
            "demo",
            "7",
            "456",
        )
        assert ("ce-matchtype" in attributes) == (attributes["ce-type"] == TYPE_PREFIX + "match")
        assert ("ce-reason" in attributes) == (attributes["ce-type"] == TYPE_PREFIX + "run.failed")


@pytest.mark.parametrize(
    ("epoch_ms", "expected"),
    [
        pytest.param(1730204346000, "2024-10-29T12:19:06.000Z", id="contract-example"),
        pytest.param(1730204346123, "2024-10-29T12:19:06.123Z", id="milliseconds"),
        pytest.param(1730204346999, "2024-10-29T12:19:06.999Z", id="last-millisecond"),
        pytest.param(1730204346001, "2024-10-29T12:19:06.001Z", id="first-millisecond"),
        pytest.param(0, "1970-01-01T00:00:00.000Z", id="epoch"),
        pytest.param(951782400000, "2000-02-29T00:00:00.000Z", id="leap-day"),
    ],
)
def test_rfc3339_utc_milliseconds(epoch_ms: int, expected: str) -> None:
    """Epoch milliseconds become RFC 3339 in UTC with exactly three fractional digits."""
    assert rfc3339(epoch_ms) == expected


def test_rfc3339_every_millisecond_exact() -> None:
    """No millisecond is lost to floating point, over a whole second and across years."""
    for base in (1730204346000, 1577836800000, 4102444799000):
        second = datetime.fromtimestamp(base // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        assert [rfc3339(base + ms) for ms in range(1000)] == [f"{second}.{ms:03d}Z" for ms in range(1000)]


# --- data ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "build"),
    [
        pytest.param("match", lambda: [match_event(REF, SUMMARY, 0, run_body(1)["matches"][0])], id="match"),
        pytest.param(
            "suggestedrule", lambda: suggested_rule_events(REF, SUMMARY, 0, run_body(3, 1)["suggestedRules"][0]), id="s"
        ),
        pytest.param(
            "generatedrule",
            lambda: generated_rule_events(REF, SUMMARY, 0, run_body(3, 0, 1)["generatedRules"][0]),
            id="generated",
        ),
        pytest.param("run.completed", lambda: [completed_event(REF, SUMMARY, (1, 2, 3))], id="completed"),
        pytest.param("run.failed", lambda: [failed_event(REF, "run_failed", "x", summary("Failed"), 0)], id="failed"),
        pytest.param("run.failed", lambda: [failed_event(REF, "wait_timeout", "x", None, 0)], id="failed-no-run"),
    ],
)
def test_event_data_fields_are_the_contracts(kind: str, build: Any) -> None:
    """Each type's data has exactly the fields the contract lists, and its ``ce-type`` names the type."""
    events = build()
    assert len(events) == 1
    assert events[0].attributes["ce-type"] == TYPE_PREFIX + kind
    assert set(data(events[0])) == DATA_FIELDS[kind]


def test_match_event_data_values() -> None:
    """A match's data carries its coordinates, position, type, score and both sides."""
    raw = run_body(3)["matches"][2]
    assert data(match_event(REF, SUMMARY, 2, raw)) == {
        "project": "demo",
        "pipelineId": 7,
        "runId": 456,
        "jobId": 456,
        "matchIndex": 2,
        "matchType": "previously-confirmed",
        "score": 1.0,
        "source": raw["source"],
        "target": raw["target"],
        "sourceId": raw["source"]["id"],
        "sourceExternalId": "src-0000002",
        "targetId": 2_000_002,
        "targetExternalId": "asset-0000002",
    }


@pytest.mark.parametrize(
    ("source", "target", "lifted"),
    [
        pytest.param({"id": 1, "externalId": "a"}, {"id": 2, "externalId": "b"}, (1, "a", 2, "b"), id="all"),
        pytest.param({"id": 1}, {"externalId": "b"}, (1, None, None, "b"), id="some"),
        pytest.param({}, {}, (None, None, None, None), id="none"),
        pytest.param({"name": "x"}, {"name": "y"}, (None, None, None, None), id="names-only"),
        pytest.param({"id": MAX_ID, "externalId": ""}, {"id": 1, "externalId": None}, (MAX_ID, "", 1, None), id="edge"),
    ],
)
def test_match_event_lifts_ids(
    source: dict[str, Any], target: dict[str, Any], lifted: tuple[Any, Any, Any, Any]
) -> None:
    """``sourceId``, ``sourceExternalId``, ``targetId``, ``targetExternalId`` are lifted, ``null`` where absent."""
    out = data(match_event(REF, SUMMARY, 0, {"matchType": "model", "score": 0.5, "source": source, "target": target}))
    assert (out["sourceId"], out["sourceExternalId"], out["targetId"], out["targetExternalId"]) == lifted


def test_match_event_source_target_passed_through() -> None:
    """``source`` and ``target`` reach subscribers exactly as CDF returned them: nesting, unicode, odd keys."""
    source = {
        "id": MAX_ID,
        "externalId": "pompe-Ø-∆-😀",
        "name": 'Valve "3" \\ A\u2028B\u0000',
        "metadata": {"nested": {"list": [1, 2.5, None, True, {"deep": []}]}, "empty": {}},
        "ignoredField": {"key": "value"},
        "": "empty key",
    }
    target = {"id": 2, "labels": [{"externalId": "l1"}], "description": None, "日本": "語"}
    raw = {"matchType": "model", "score": 0.875, "source": copy.deepcopy(source), "target": copy.deepcopy(target)}
    event = match_event(REF, SUMMARY, 0, raw)
    out = data(event)
    assert (out["source"], out["target"]) == (source, target)
    assert "pompe-Ø-∆-😀".encode() in event.data


def test_match_event_without_matchtype() -> None:
    """A match without ``matchType`` has ``matchType`` null and no ``ce-matchtype`` attribute."""
    event = match_event(REF, SUMMARY, 0, {"score": 0.5, "source": {"id": 1}, "target": {"id": 2}})
    assert data(event)["matchType"] is None
    assert "ce-matchtype" not in event.attributes


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        pytest.param(None, [], id="none"),
        pytest.param([], [], id="empty"),
        pytest.param(["a", "<b>{{x}}</b> ${y}"], ["a", "<b>{{x}}</b> ${y}"], id="carried-verbatim"),
    ],
)
def test_completed_event_counts_and_errors(errors: list[str] | None, expected: list[str]) -> None:
    """``run.completed`` carries the run's status, times, counts and errors (``[]`` where CDF gave none)."""
    fields = {} if errors is None else {"errors": errors}
    event = completed_event(REF, summary(**fields), (5, 2, 1))
    assert event.attributes["ce-subject"] == "run"
    assert data(event) == {
        "project": "demo",
        "pipelineId": 7,
        "runId": 456,
        "jobId": 456,
        "status": "Completed",
        "createdTime": STATUS_MS - 60_000,
        "startTime": STATUS_MS - 55_000,
        "statusTime": STATUS_MS,
        "matchCount": 5,
        "suggestedRuleCount": 2,
        "generatedRuleCount": 1,
        "errors": expected,
    }


def test_counts_of_a_run() -> None:
    """The counts are the lengths of the run's matches, suggested rules and generated rules."""
    assert counts(run_body(5, 2, 1)) == (5, 2, 1)
    assert counts({"status": "Completed"}) == (0, 0, 0)


@pytest.mark.parametrize("reason", REASONS)
def test_failed_event_carries_reason(reason: str) -> None:
    """``run.failed`` has ``ce-reason`` and ``reason`` equal to the reason, and subject ``run/failed/{reason}``."""
    event = failed_event(REF, reason, "why", None, STATUS_MS)
    assert event.attributes["ce-type"] == TYPE_PREFIX + "run.failed"
    assert event.attributes["ce-reason"] == reason
    assert event.attributes["ce-subject"] == f"run/failed/{reason}"
    assert event.attributes["ce-id"] == f"demo/7/456/run/failed/{reason}"
    assert (data(event)["reason"], data(event)["errorMessage"]) == (reason, "why")


def test_failed_event_from_failed_run() -> None:
    """A failed run's event carries CDF's status, message, errors and times."""
    run = summary("Failed", errorMessage="Source dataset is empty", errors=["e1", "e2"])
    event = failed_event(REF, "run_failed", run.errorMessage, run, 1)
    assert event.attributes["ce-time"] == STATUS_TIME
    assert data(event) == {
        "project": "demo",
        "pipelineId": 7,
        "runId": 456,
        "jobId": 456,
        "status": "Failed",
        "reason": "run_failed",
        "errorMessage": "Source dataset is empty",
        "errors": ["e1", "e2"],
        "createdTime": STATUS_MS - 60_000,
        "startTime": STATUS_MS - 55_000,
        "statusTime": STATUS_MS,
    }


def test_failed_event_unknown_ones_null() -> None:
    """Without a run, ``run.failed`` has the unknown fields ``null``, ``errors`` ``[]`` and the decision's time."""
    event = failed_event(REF, "run_not_found", "no such run", None, STATUS_MS + 1)
    assert event.attributes["ce-time"] == "2024-10-29T12:19:06.001Z"
    out = data(event)
    assert out["errors"] == []
    assert [out[k] for k in ("jobId", "status", "createdTime", "startTime", "statusTime")] == [None] * 5


def test_failed_event_for_invalid_trigger() -> None:
    """An invalid trigger's event leaves out what could not be read and names no run in ``ce-source``."""
    ref = RunRef(CDF_URL, "demo", 7, None, known_project=False, from_trigger=True)
    event = failed_event(ref, "invalid_trigger", "bad", None, STATUS_MS, "invalid-trigger/42")
    attributes = event.attributes
    assert attributes["ce-id"] == "invalid-trigger/42"
    assert attributes["ce-source"] == f"{CDF_URL}/api/v1/projects/demo/context/entitymatching/pipelines"
    assert attributes["ce-pipelineid"] == "7"
    assert "ce-runid" not in attributes
    assert "ce-cdfproject" not in attributes
    assert (data(event)["project"], data(event)["pipelineId"], data(event)["runId"]) == (None, 7, None)


# --- determinism and identity -------------------------------------------------------------------------------------


def test_results_events_deterministic() -> None:
    """The same run gives the same events, byte for byte, every time."""
    body = run_body(12, 3, 2)
    first = all_events(copy.deepcopy(body))
    second = all_events(copy.deepcopy(body))
    assert [(e.data, e.attributes) for e in first] == [(e.data, e.attributes) for e in second]
    assert [(e.data, e.attributes) for e in all_events(copy.deepcopy(body), 2000)] == [
        (e.data, e.attributes) for e in all_events(copy.deepcopy(body), 2000)
    ]


def test_results_events_ids_unique_and_complete() -> None:
    """A run's events have distinct ids, one per match and rule, ``run.completed`` last with counts to match."""
    body = run_body(6, 2, 3)
    events = all_events(body)
    ids = [e.attributes["ce-id"] for e in events]
    assert len(ids) == len(set(ids)) == 6 + 2 + 3 + 1
    assert sorted(e.attributes["ce-subject"] for e in events) == sorted(
        [f"match/{i}" for i in range(6)]
        + [f"suggestedrule/{i}" for i in range(2)]
        + [f"generatedrule/{i}" for i in range(3)]
        + ["run"]
    )
    assert [data(e)["matchIndex"] for e in events if e.type == TYPE_PREFIX + "match"] == list(range(6))


# --- splitting ----------------------------------------------------------------------------------------------------


def test_match_event_larger_than_a_message_is_invalid_response() -> None:
    """A single match larger than one Pub/Sub message raises ``InvalidResponse``."""
    raw = {"matchType": "model", "score": 0.5, "source": {"id": 1, "name": "x" * 10_000_000}, "target": {"id": 2}}
    with pytest.raises(InvalidResponse):
        match_event(REF, SUMMARY, 0, raw)


# --- malformed input ----------------------------------------------------------------------------------------------

GOOD_MATCH = {"matchType": "model", "score": 0.5, "source": {"id": 1}, "target": {"id": 2}}


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({**GOOD_MATCH, "score": "high"}, id="score-not-numeric"),
        pytest.param({**GOOD_MATCH, "score": [0.5]}, id="score-list"),
        pytest.param({**GOOD_MATCH, "source": "pump"}, id="source-string"),
        pytest.param({**GOOD_MATCH, "source": [1]}, id="source-list"),
        pytest.param({**GOOD_MATCH, "target": 5}, id="target-number"),
        pytest.param({**GOOD_MATCH, "matchType": {"a": 1}}, id="matchtype-object"),
        pytest.param([GOOD_MATCH], id="match-list"),
        pytest.param("match", id="match-string"),
        pytest.param(None, id="match-null"),
    ],
)
def test_match_event_malformed_item_raises(raw: Any) -> None:
    """A match that is not of the documented shape raises ``MalformedResponse``."""
    with pytest.raises(MalformedResponse):
        match_event(REF, SUMMARY, 0, raw)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"matches": {"0": GOOD_MATCH}}, id="matches-object"),
        pytest.param({"matches": "none"}, id="matches-string"),
        pytest.param({"suggestedRules": 3}, id="suggested-number"),
        pytest.param({"generatedRules": {"a": 1}}, id="generated-object"),
    ],
)
def test_results_malformed_lists_raise(body: dict[str, Any]) -> None:
    """Results lists that are not lists raise ``MalformedResponse`` before any event is built."""
    with pytest.raises(MalformedResponse):
        list(results_events(REF, SUMMARY, body))


@pytest.mark.parametrize(
    ("build", "raw"),
    [
        pytest.param(match_event, {**GOOD_MATCH, "score": math.nan}, id="score-nan"),
        pytest.param(match_event, {**GOOD_MATCH, "score": math.inf}, id="score-inf"),
        pytest.param(match_event, {**GOOD_MATCH, "source": {"id": 1, "w": math.nan}}, id="source-nan"),
    ],
)
def test_events_nan_raises_malformed(build: Any, raw: Any) -> None:
    """A number JSON cannot carry (NaN, Infinity) raises ``MalformedResponse`` instead of invalid JSON."""
    with pytest.raises(MalformedResponse):
        build(REF, SUMMARY, 0, raw)
