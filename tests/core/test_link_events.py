"""The link's events: which messages it accepts (contract, section 8.7) and the run.linked it builds (8.6)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

import schemas
from handlers.core.decision import Counts
from handlers.core.events import RunRef
from handlers.core.link_events import COMPLETED, LinkFacts, LinkRequest, Other, Rejected, accept, linked_event

ALLOWED = ("demo", "other")
RUN = {"project": "demo", "pipelineId": 7, "runId": 456, "statusTime": 1730204406000}
ATTRIBUTES = {"ce-type": COMPLETED, "ce-cdfproject": "demo", "ce-pipelineid": "7", "ce-runid": "456"}


def message(body: Any = None, attributes: dict[str, str] | None = None, raw: bytes | None = None) -> dict[str, Any]:
    """A messagePublished event's data carrying one message of the events topic."""
    data = raw if raw is not None else json.dumps(RUN if body is None else body).encode()
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": ATTRIBUTES if attributes is None else attributes,
            "messageId": "1234",
            "publishTime": "2024-10-29T12:20:07.123Z",
        },
        "subscription": "projects/p/subscriptions/link",
    }


def test_link_events_accepts_a_run_completed() -> None:
    """A run.completed of an allowed project names the run to link, with its statusTime and publish time."""
    got = accept("e", message(), allowed=ALLOWED, pipelines=frozenset())
    assert isinstance(got, LinkRequest)
    assert (got.project, got.pipeline_id, got.run_id, got.message_id, got.status_time) == (
        "demo",
        7,
        456,
        "1234",
        1730204406000,
    )
    assert got.publish_time is not None
    assert got.publish_time.isoformat() == "2024-10-29T12:20:07.123000+00:00"


@pytest.mark.parametrize(
    "data",
    [
        message(attributes={"ce-type": "com.cognite.entitymatching.match"}),
        message(attributes={}),
        {"message": "x"},
        None,
        message(attributes={"ce-type": COMPLETED.upper()}),
    ],
)
def test_link_events_other_types_are_other(data: Any) -> None:
    """Any message that is not typed run.completed is another type, acked untouched."""
    assert isinstance(accept("e", data, allowed=ALLOWED, pipelines=frozenset()), Other)


REJECTED = [
    pytest.param(message(raw=b"not json"), "invalid_event", id="body-not-json"),
    pytest.param(message(raw=b"[1]"), "invalid_event", id="body-not-object"),
    pytest.param(message({**RUN, "pipelineId": 0}), "invalid_event", id="pipeline-zero"),
    pytest.param(message({**RUN, "runId": "456"}), "invalid_event", id="run-a-string"),
    pytest.param(message({**RUN, "runId": 2**53}), "invalid_event", id="run-too-large"),
    pytest.param(message({**RUN, "pipelineId": True}), "invalid_event", id="pipeline-a-boolean"),
    pytest.param(message({**RUN, "project": None}), "invalid_event", id="project-null"),
    pytest.param(message({**RUN, "pipelineId": 8}), "invalid_event", id="attributes-name-another-pipeline"),
    pytest.param(
        message({**RUN, "project": "evil"}, {**ATTRIBUTES, "ce-cdfproject": "evil"}),
        "project_not_allowed",
        id="project-outside-allow-list",
    ),
    pytest.param(
        message({**RUN, "project": "../x"}, {**ATTRIBUTES, "ce-cdfproject": "../x"}),
        "project_not_allowed",
        id="project-a-path",
    ),
]


@pytest.mark.parametrize(("data", "reason"), REJECTED)
def test_link_events_rejects_what_this_deployment_must_not_link(data: Any, reason: str) -> None:
    """An invalid run.completed, or one of a project outside the allow-list, is rejected with its reason."""
    got = accept("e", data, allowed=ALLOWED, pipelines=frozenset())
    assert isinstance(got, Rejected)
    assert got.reason == reason
    assert got.project in (*ALLOWED, None)


@pytest.mark.parametrize(("pipelines", "accepted"), [(frozenset(), True), ({7, 9}, True), ({8}, False)])
def test_link_events_link_pipelines(pipelines: frozenset[int], accepted: bool) -> None:
    """LINK_PIPELINES empty accepts every pipeline; else only those listed."""
    got = accept("e", message(), allowed=ALLOWED, pipelines=frozenset(pipelines))
    assert isinstance(got, LinkRequest) is accepted
    if not accepted:
        assert isinstance(got, Rejected)
        assert (got.reason, got.pipeline_id) == ("pipeline_not_linked", 7)


REF = RunRef(
    "https://westeurope-1.cognitedata.com", "demo", 7, 456, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"
)
FACTS = LinkFacts(dry_run=False, min_score=0.9, source_resource="time_series", target_resource="assets", job_id=456)


def test_link_events_run_linked_attributes_and_data() -> None:
    """run.linked carries every attribute of a run event, subject linked, and the counts under their names."""
    event = linked_event(REF, FACTS, Counts(linked=3, conflict=1, written=2), 1730204406000)
    data = json.loads(event.data)
    assert data == {
        "project": "demo",
        "pipelineId": 7,
        "runId": 456,
        "jobId": 456,
        "dryRun": False,
        "minScore": 0.9,
        "sourceResource": "time_series",
        "targetResource": "assets",
        "reason": None,
        "linked": 3,
        "belowThreshold": 0,
        "conflict": 1,
        "ambiguous": 0,
        "rejected": 0,
        "unlinkable": 0,
        "sourceMissing": 0,
        "targetMissing": 0,
        "reviews": 0,
        "written": 2,
    }
    without_written = {k: v for k, v in data.items() if k != "written"}
    canonical = json.dumps(without_written, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(canonical).hexdigest()[:16]
    assert event.attributes == {
        "ce-specversion": "1.0",
        "ce-type": "com.cognite.entitymatching.run.linked",
        "ce-source": "https://westeurope-1.cognitedata.com/api/v1/projects/demo/context/entitymatching/pipelines/7/runs/456",
        "ce-id": f"demo/7/456/linked/{digest}",
        "ce-subject": "linked",
        "ce-time": "2024-10-29T12:20:06.000Z",
        "content-type": "application/json",
        "ce-cdfproject": "demo",
        "ce-pipelineid": "7",
        "ce-runid": "456",
        "ce-traceparent": REF.traceparent,
    }
    assert schemas.problems(event.attributes, data) == []


def test_link_events_digest_ignores_written_only() -> None:
    """Two deliveries that leave CDF the same share the id; another outcome, or a dry run, gets another id."""
    first = linked_event(REF, FACTS, Counts(linked=3, written=3), 0).attributes["ce-id"]
    again = linked_event(REF, FACTS, Counts(linked=3, written=0), 0).attributes["ce-id"]
    other = linked_event(REF, FACTS, Counts(linked=2, source_missing=1), 0).attributes["ce-id"]
    dry = linked_event(REF, LinkFacts(True, 0.9, "time_series", "assets", job_id=456), Counts(linked=3), 0)
    refused = linked_event(REF, LinkFacts(False, 0.9, reason="access_denied"), Counts(), 0)
    assert first == again
    assert len({first, other, dry.attributes["ce-id"], refused.attributes["ce-id"]}) == 4
    assert schemas.problems(refused.attributes, json.loads(refused.data)) == []
