"""run.unlinked (contract, section 9.5): its attributes, its data, its schema, and an id that follows the outcome."""

from __future__ import annotations

import json

import schemas
from handlers.core.events import RunRef
from handlers.core.undo import UndoCounts
from handlers.core.undo_events import UndoFacts, unlinked_event

REF = RunRef("https://api.cognitedata.com", "demo", 5, 500)


def test_undo_events_run_unlinked_attributes_and_data() -> None:
    """run.unlinked carries the run's coordinates, the options and every count, and conforms to its schema."""
    counts = UndoCounts(unlinked=3, restored=1, changed=2, unverified=1, kept=4, rejected=3, written=4)
    event = unlinked_event(REF, UndoFacts(False, 0.7, "time_series"), counts, 1_700_000_000_000)
    data = json.loads(event.data)
    assert data == {
        "project": "demo",
        "pipelineId": 5,
        "runId": 500,
        "dryRun": False,
        "below": 0.7,
        "sourceResource": "time_series",
        "reason": None,
        **counts.data(),
    }
    assert event.attributes["ce-type"] == "com.cognite.entitymatching.run.unlinked"
    assert event.attributes["ce-subject"] == "unlinked"
    assert event.attributes["ce-id"].startswith("demo/5/500/unlinked/")
    assert event.attributes["ce-time"] == "2023-11-14T22:13:20.000Z"
    assert schemas.problems(event.attributes, data) == []


def test_undo_events_digest_ignores_written_only() -> None:
    """Two unlinks that leave CDF the same share an id whatever they wrote; another outcome gets another id."""
    facts = UndoFacts(False, None, "time_series")
    first = unlinked_event(REF, facts, UndoCounts(unlinked=3, written=3), 1)
    again = unlinked_event(REF, facts, UndoCounts(unlinked=3, written=0), 2)
    other = unlinked_event(REF, facts, UndoCounts(unlinked=2, changed=1), 1)
    refused = unlinked_event(REF, UndoFacts(False, None, None, "access_denied"), UndoCounts(), 1)
    assert first.attributes["ce-id"] == again.attributes["ce-id"] != other.attributes["ce-id"]
    assert schemas.problems(refused.attributes, json.loads(refused.data)) == []
