"""Rule events (contract, section 5): every field CDF gave for a rule and its matches, split within the size limit."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest

from handlers.core.encode import MAX_DATA_BYTES
from handlers.core.errors import InvalidResponse, MalformedResponse
from handlers.core.events import Event, RunRef
from handlers.core.models import RunSummary
from handlers.core.rules import generated_rule_events, suggested_rule_events
from sim import make_run
from sim.rules import definition, heavy_rule, scored_match
from tests.support.contract import DATA_FIELDS, RULE_DEFINITION_FIELDS, SPLIT_FIELDS, contract_problems, rule_problems

CDF_URL = "https://westeurope-1.cognitedata.com"
REF = RunRef(CDF_URL, "demo", 7, 456)
SUMMARY = RunSummary.model_validate(
    {"status": "Completed", "createdTime": 1, "startTime": 2, "statusTime": 1730204346000, "jobId": 456}
)
BUILD = {"suggestedrule": suggested_rule_events, "generatedrule": generated_rule_events}
RULE_MATCH = {
    "sourceKeyField": "name",
    "targetKeyField": "name",
    "source": {"id": 1},
    "target": {"id": 2},
    "existingMatchType": "model",
    "consistentMatch": True,
}


def data(event: Event) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(event.data)
    return parsed


def events_of(kind: str, index: int, rule: Any, max_bytes: int = MAX_DATA_BYTES) -> list[Event]:
    """The rule's events, each checked against the contract alone and the whole against CDF's rule."""
    events = BUILD[kind](REF, SUMMARY, index, copy.deepcopy(rule), max_bytes)
    for event in events:
        assert contract_problems(event.attributes, event.data, CDF_URL) == []
        assert len(event.data) <= max_bytes
    assert rule_problems(kind, [data(e) for e in events], rule) == []
    return events


# --- every field CDF gave -------------------------------------------------------------------------------------------

BODY = make_run(8, 2, 2, rule_size=4)  # generated rule 0 is documented, 1 carries its definition (sim/rules.py)
SHAPES = {
    "suggested": ("suggestedrule", BODY["suggestedRules"][1]),
    "generated-documented": ("generatedrule", BODY["generatedRules"][0]),
    "generated-definition": ("generatedrule", BODY["generatedRules"][1]),
    "suggested-unknown-fields": ("suggestedrule", {**BODY["suggestedRules"][0], "confidence": {"p": [0.5, None]}}),
    "rule-match-unknown-field": ("generatedrule", {"matches": [{**RULE_MATCH, "score": 0.9, "why": ["name"]}]}),
    "only-matches": ("generatedrule", {"matches": []}),
    "nothing": ("suggestedrule", {}),
}


@pytest.mark.parametrize(("kind", "rule"), SHAPES.values(), ids=SHAPES.keys())
def test_rule_event_carries_every_field_cdf_gave(kind: str, rule: dict[str, Any]) -> None:
    """A rule's one event holds every field of CDF's rule and of each match, the table's others null or []."""
    [event] = events_of(kind, 1, rule)
    out = data(event)
    assert event.attributes["ce-subject"] == f"{kind}/1"
    assert out["ruleIndex"] == 1
    assert set(out) == DATA_FIELDS[kind] | set(rule)


def test_generated_rule_definition_reaches_the_event_as_cdf_gave_it() -> None:
    """The simulator's definition-shaped rule keeps its extractors, conditions, priority, flags and scores."""
    rule = BODY["generatedRules"][1]
    assert set(rule) >= RULE_DEFINITION_FIELDS
    out = data(events_of("generatedrule", 1, rule)[0])
    assert {name: out[name] for name in rule if name != "matches"} == {n: v for n, v in rule.items() if n != "matches"}
    assert [m["score"] for m in out["matches"]] == [m["score"] for m in rule["matches"]]
    assert (out["numConflicts"], out["numOverlaps"]) == (None, None)  # this shape gives neither


def test_rule_event_field_order_is_table_then_cdf_then_matches() -> None:
    """The data lists the coordinates and the table's fields first, then CDF's others in CDF's order, matches last."""
    rule = {"matches": [RULE_MATCH], "zeta": 1, "numOverlaps": 2, "alpha": 3}
    out = data(events_of("generatedrule", 0, rule)[0])
    assert list(out) == [
        *("project", "pipelineId", "runId", "jobId", "ruleIndex", "numConflicts", "numOverlaps"),
        *("zeta", "alpha", "matches"),
    ]


def test_rule_event_worker_names_win_over_cdf_fields() -> None:
    """A field of CDF's named like a coordinate, ruleIndex, part or partCount is the worker's; the rule stays whole."""
    clash = {"project": "other", "pipelineId": 1, "runId": 2, "jobId": 3, "ruleIndex": 99, "part": 5, "partCount": 9}
    [event] = events_of("generatedrule", 4, {**clash, "matches": [RULE_MATCH], "priority": 1})
    out = data(event)
    assert (out["project"], out["pipelineId"], out["runId"], out["jobId"], out["ruleIndex"]) == ("demo", 7, 456, 456, 4)
    assert ("part" in out, "partCount" in out, out["priority"]) == (False, False, 1)


ANY_TYPE = [None, "high", 1.5, True, [], {"a": [1]}, -1]


@pytest.mark.parametrize("value", ANY_TYPE, ids=[repr(v) for v in ANY_TYPE])
@pytest.mark.parametrize("name", sorted(set(definition(1, 3)) | {"unknown"}))
def test_rule_fields_the_table_does_not_name_are_never_an_error(name: str, value: Any) -> None:
    """A definition field, or an unknown one, of any JSON type is passed on as CDF gave it."""
    rule = {"matches": [{**RULE_MATCH, "score": value}], "numConflicts": 0, name: value}
    out = data(events_of("generatedrule", 0, rule)[0])
    assert (out[name], out["matches"][0]["score"]) == (value, value)


def test_rule_values_are_not_converted() -> None:
    """A rule's numbers pass as CDF gave them (avgScore 1 stays 1), and so do its matches' fields."""
    rule = {"avgScore": 1, "numMatches": 2, "matchIndex": [0], "inputPattern": "P", "matches": [{"extra": "x"}]}
    out = data(events_of("suggestedrule", 0, rule)[0])
    assert (out["avgScore"], type(out["avgScore"])) == (1, int)
    assert out["matches"] == [{"extra": "x"}]


# --- bad input, as before -------------------------------------------------------------------------------------------

MALFORMED = {
    "suggested-matches-string": ("suggestedrule", {"matches": "all"}),
    "suggested-matches-object": ("suggestedrule", {"matches": {"0": RULE_MATCH}}),
    "suggested-match-number": ("suggestedrule", {"matches": [1, 2]}),
    "matchindex-string": ("suggestedrule", {"matches": [], "matchIndex": "0,1"}),
    "matchindex-letters": ("suggestedrule", {"matches": [], "matchIndex": ["a"]}),
    "matchindex-null": ("suggestedrule", {"matches": [], "matchIndex": None}),
    "nummatches-string": ("suggestedrule", {"matches": [], "numMatches": "5"}),
    "avgscore-string": ("suggestedrule", {"matches": [], "avgScore": "0.5"}),
    "rule-match-source-string": ("suggestedrule", {"matches": [{**RULE_MATCH, "source": "x"}]}),
    "rule-match-consistent-string": ("generatedrule", {"matches": [{**RULE_MATCH, "consistentMatch": "yes"}]}),
    "generated-matches-string": ("generatedrule", {"matches": "all"}),
    "generated-matches-null": ("generatedrule", {"matches": None}),
    "numconflicts-string": ("generatedrule", {"matches": [], "numConflicts": "x"}),
    "numoverlaps-float": ("generatedrule", {"matches": [], "numOverlaps": 1.0}),
    "generated-rule-list": ("generatedrule", [RULE_MATCH]),
    "definition-with-nan": ("generatedrule", {"matches": [], "priority": math.nan}),
    "avgscore-nan": ("suggestedrule", {"matches": [], "avgScore": math.nan}),
    "rule-match-inf": ("generatedrule", {"matches": [{**RULE_MATCH, "target": {"v": -math.inf}}]}),
}


@pytest.mark.parametrize(("kind", "rule"), MALFORMED.values(), ids=MALFORMED.keys())
def test_rule_of_the_wrong_type_is_malformed(kind: str, rule: Any) -> None:
    """A field the contract names of the wrong type (checked as before), or a number JSON cannot carry: malformed."""
    with pytest.raises(MalformedResponse):
        BUILD[kind](REF, SUMMARY, 0, rule)


# --- splitting ------------------------------------------------------------------------------------------------------

SPLIT = {
    "suggested": ("suggestedrule", make_run(40, 1, 0, rule_size=40)["suggestedRules"][0]),
    "generated-documented": ("generatedrule", make_run(40, 0, 1, rule_size=40)["generatedRules"][0]),
    "generated-definition": ("generatedrule", make_run(40, 0, 2, rule_size=40)["generatedRules"][1]),
}


@pytest.mark.parametrize(("kind", "rule"), SPLIT.values(), ids=SPLIT.keys())
def test_rule_split_parts_each_carry_every_field_and_a_slice_of_matches(kind: str, rule: dict[str, Any]) -> None:
    """A rule too large for max_bytes becomes parts that fit, each with all of the rule's fields; only matches split."""
    parts = events_of(kind, 2, rule, 2000)
    assert len(parts) > 1
    assert [e.attributes["ce-subject"] for e in parts] == [f"{kind}/2/part/{k}" for k in range(len(parts))]
    assert all(set(data(e)) == DATA_FIELDS[kind] | SPLIT_FIELDS | set(rule) for e in parts)
    assert all(data(e)["matches"] for e in parts)


@pytest.mark.parametrize(("kind", "rule"), SPLIT.values(), ids=SPLIT.keys())
def test_rule_split_boundary(kind: str, rule: dict[str, Any]) -> None:
    """A rule exactly max_bytes long stays whole; one byte less splits it."""
    size = len(events_of(kind, 0, rule)[0].data)
    assert [e.attributes["ce-subject"] for e in events_of(kind, 0, rule, size)] == [f"{kind}/0"]
    assert len(events_of(kind, 0, rule, size - 1)) > 1


def test_rule_whose_definition_alone_pushes_it_past_one_message_is_split() -> None:
    """The simulator's heavy rule fits one message without its definition, so the definition makes the parts."""
    rule = heavy_rule(MAX_DATA_BYTES)
    documented = {"matches": rule["matches"], "numConflicts": 0}
    assert len(events_of("generatedrule", 0, documented)) == 1
    parts = events_of("generatedrule", 0, rule)
    assert len(parts) >= 2
    assert all(len(e.data) > MAX_DATA_BYTES // 4 for e in parts)  # the definition, about a quarter each, on every part


def test_rule_whose_fields_beside_matches_exceed_a_message_is_invalid_response() -> None:
    """A definition larger than one message cannot be split: InvalidResponse, not a part that Pub/Sub refuses."""
    rule = {**definition(0, 2, pattern_bytes=3000), "matches": [scored_match(0), scored_match(1)]}
    with pytest.raises(InvalidResponse, match="beside the matches"):
        generated_rule_events(REF, SUMMARY, 0, rule, 2000)


@pytest.mark.parametrize("kind", BUILD)
def test_rule_single_match_too_large_is_invalid_response(kind: str) -> None:
    """A rule holding one match larger than the limit cannot be split and raises InvalidResponse."""
    rule = {"matches": [RULE_MATCH, {**RULE_MATCH, "source": {"name": "x" * 5000}}, RULE_MATCH]}
    with pytest.raises(InvalidResponse):
        BUILD[kind](REF, SUMMARY, 0, rule, 2000)
