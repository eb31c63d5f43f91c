"""People's decisions (contract, section 10): every invalid shape, the merge into both lists, and review.applied."""

from __future__ import annotations

import json
from typing import Any

import pytest

import schemas
from handlers.core.errors import InvalidDecision
from handlers.core.events import RunRef
from handlers.core.review import CONFIRMED, REJECTED, Decision, ReviewCounts, holds, merged, read_decisions
from handlers.core.review_events import applied_event

ALLOWED = ("demo", "other")
GOOD = {"sourceId": 101, "targetId": 9001, "decision": "confirm"}


def read(body: Any) -> Any:
    return read_decisions(body, default_project="demo", allowed=ALLOWED)


def test_review_reads_both_forms_in_order() -> None:
    """Ids and external ids, confirm and reject, in the order given; the project defaults; a digest of them."""
    body = {
        "pipelineId": 7,
        "decisions": [GOOD, {"sourceExternalId": "ts-102", "targetExternalId": "pump-7", "decision": "reject"}],
    }
    decisions = read(body)
    assert (decisions.project, decisions.pipeline_id) == ("demo", 7)
    assert decisions.decisions == (Decision(101, 9001, True), Decision("ts-102", "pump-7", False))
    assert len(decisions.digest) == 16
    assert read(body).digest == decisions.digest != read({**body, "decisions": [GOOD]}).digest


INVALID = {
    "not an object": ([], None),
    "no pipeline": ({"decisions": [GOOD]}, None),
    "a project not allowed": ({"project": "elsewhere", "pipelineId": 7, "decisions": [GOOD]}, 7),
    "no decisions": ({"pipelineId": 7}, 7),
    "an empty list": ({"pipelineId": 7, "decisions": []}, 7),
    "1,001 decisions": ({"pipelineId": 7, "decisions": [GOOD] * 1001}, 7),
    "a decision not an object": ({"pipelineId": 7, "decisions": ["confirm"]}, 7),
    "both source forms": ({"pipelineId": 7, "decisions": [{**GOOD, "sourceExternalId": "x"}]}, 7),
    "no target": ({"pipelineId": 7, "decisions": [{"sourceId": 1, "decision": "confirm"}]}, 7),
    "an id that is text": ({"pipelineId": 7, "decisions": [{**GOOD, "sourceId": "101"}]}, 7),
    "an id of 0": ({"pipelineId": 7, "decisions": [{**GOOD, "targetId": 0}]}, 7),
    "a boolean id": ({"pipelineId": 7, "decisions": [{**GOOD, "targetId": True}]}, 7),
    "an empty external id": (
        {"pipelineId": 7, "decisions": [{"sourceExternalId": "", "targetId": 1, "decision": "reject"}]},
        7,
    ),
    "another verdict": ({"pipelineId": 7, "decisions": [{**GOOD, "decision": "maybe"}]}, 7),
    "an unknown field": ({"pipelineId": 7, "decisions": [{**GOOD, "score": 0.9}]}, 7),
}


@pytest.mark.parametrize(("body", "pipeline"), INVALID.values(), ids=INVALID.keys())
def test_review_invalid_shapes(body: Any, pipeline: int | None) -> None:
    """Each invalid shape is InvalidDecision (reason invalid_decision), with the pipeline when it could be read."""
    with pytest.raises(InvalidDecision) as raised:
        read(body)
    assert (raised.value.reason, raised.value.pipeline_id) == ("invalid_decision", pipeline)


CONFIRM, REJECT = Decision(1, 10, True), Decision("ts-2", "pump", False)
MERGES = {
    "a new confirm": ({}, [CONFIRM], {CONFIRMED: [{"sourceId": 1, "targetId": 10}]}, (1, 0, 0)),
    "a confirm that was rejected": (
        {REJECTED: [{"sourceId": 1, "targetId": 10}, {"sourceId": 3, "targetId": 4}]},
        [CONFIRM],
        {CONFIRMED: [{"sourceId": 1, "targetId": 10}], REJECTED: [{"sourceId": 3, "targetId": 4}]},
        (1, 0, 0),
    ),
    "a confirm already there": ({CONFIRMED: [{"sourceId": 1, "targetId": 10}]}, [CONFIRM], {}, (0, 0, 1)),
    "a reject named by external ids": (
        {CONFIRMED: [{"sourceExternalId": "ts-2", "targetExternalId": "pump"}]},
        [REJECT],
        {CONFIRMED: [], REJECTED: [{"sourceExternalId": "ts-2", "targetExternalId": "pump"}]},
        (0, 1, 0),
    ),
    "another form of the same pair is another pair": (
        {CONFIRMED: [{"sourceId": 1, "targetExternalId": "t-10"}]},
        [CONFIRM],
        {CONFIRMED: [{"sourceId": 1, "targetExternalId": "t-10"}, {"sourceId": 1, "targetId": 10}]},
        (1, 0, 0),
    ),
}


@pytest.mark.parametrize(("lists", "decisions", "changed", "counts"), MERGES.values(), ids=MERGES.keys())
def test_review_merge(lists: Any, decisions: Any, changed: Any, counts: tuple[int, int, int]) -> None:
    """Each decision moves its pair into its list and out of the other; entries of others are kept."""
    out, n = merged(lists, decisions)
    assert out == changed
    assert (n.confirmed, n.rejected, n.unchanged) == counts
    assert holds({**lists, **out}, decisions)


def test_review_the_last_word_on_a_pair_holds() -> None:
    """A message that confirms a pair and then rejects it leaves it rejected, and counts the pair once."""
    out, n = merged({}, [CONFIRM, Decision(1, 10, False)])
    assert (n.confirmed, n.rejected, n.unchanged) == (0, 1, 0)
    assert out == {REJECTED: [{"sourceId": 1, "targetId": 10}]}  # confirmedMatches never held it: left alone
    assert holds(out, [CONFIRM, Decision(1, 10, False)])
    assert not holds(out, [CONFIRM])


def test_review_applied_event_and_schema() -> None:
    """review.applied: the pipeline's coordinates and counts, its id from the digest, its source the pipeline."""
    ref = RunRef("https://api.cognitedata.com", "demo", 7)
    event = applied_event(ref, "0123456789abcdef", None, ReviewCounts(confirmed=2, linked=1), 1_700_000_000_000)
    data = json.loads(event.data)
    assert data == {
        "project": "demo",
        "pipelineId": 7,
        "reason": None,
        "confirmed": 2,
        "rejected": 0,
        "unchanged": 0,
        "linked": 1,
        "unlinked": 0,
    }
    assert event.attributes["ce-id"] == "demo/7/review/0123456789abcdef"
    assert event.attributes["ce-source"].endswith("/context/entitymatching/pipelines/7")
    assert schemas.problems(event.attributes, data) == []
    invalid = applied_event(
        RunRef("https://api.cognitedata.com", "demo", None, known_project=False),
        None,
        "invalid_decision",
        ReviewCounts(),
        1,
        "12345",
    )
    assert invalid.attributes["ce-id"] == "invalid-decision/12345"
    assert json.loads(invalid.data)["project"] is None
    assert schemas.problems(invalid.attributes, json.loads(invalid.data)) == []
