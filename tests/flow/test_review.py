"""``main.on_review_decision`` (contract, section 10), driven through functions-framework's real app: decisions into
the pipeline's lists and CDF's links, review.applied on the emulator, a racing writer, redelivery, every refusal."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from handlers.core.provenance import ASSET_KEY, PREVIOUS_KEY, RUN_KEY, SCORE_KEY
from sim import CdfSimulator, Step
from sim.data import stream_json
from tests.conftest import ROOT, PubSub, Received, Topics, deliver, pubsub_message
from tests.core.test_review import INVALID
from tests.e2e.test_unlink import PIPELINE, command, linked, of_run, pipeline, printed

APPLIED = "com.cognite.entitymatching.review.applied"


def review_app() -> Any:
    """``main.on_review_decision`` loaded afresh by functions-framework, as on a new instance."""
    from functions_framework import create_app

    return create_app(target="on_review_decision", source=str(ROOT / "main.py"), signature_type="cloudevent")


@pytest.fixture
def review(env: dict[str, str]) -> Any:
    return review_app().test_client()


def message(*decisions: dict[str, Any], pipeline: Any = PIPELINE) -> dict[str, Any]:
    return pubsub_message({"project": "demo", "pipelineId": pipeline, "decisions": list(decisions)})


def applied(pubsub: PubSub, topics: Topics, at_least: int = 1) -> list[Received]:
    """The review.applied events a subscriber of the events topic (REVIEW_TOPIC's default) receives."""
    return [e for e in pubsub.drain(topics.events_sub, at_least=at_least) if e.attributes["ce-type"] == APPLIED]


def linked_world(sim: CdfSimulator, env: dict[str, str]) -> tuple[int, int, int]:
    """A run linked by the command; (a source the run linked, its asset, another asset that exists)."""
    linked(sim, env)
    source, state = min(of_run(sim).items())
    asset = int(state.metadata[ASSET_KEY])
    sim.add_assets(777_777)
    return source, asset, 777_777


def test_review_confirm_and_reject_into_lists_and_links(
    review: Any, sim: CdfSimulator, env: dict[str, str], pubsub: PubSub, topics: Topics
) -> None:
    """A confirm of another asset replaces the link (previous kept); a reject of a pair the run linked puts it back;
    both pairs land in their lists; review.applied says so."""
    source, asset, other = linked_world(sim, env)
    second, second_state = sorted(of_run(sim).items())[1]
    second_asset = int(second_state.metadata[ASSET_KEY])
    answer = deliver(
        review,
        message(
            {"sourceId": source, "targetId": other, "decision": "confirm"},
            {"sourceId": second, "targetId": second_asset, "decision": "reject"},
            {"sourceExternalId": "ts-x", "targetExternalId": "pump-x", "decision": "confirm"},
        ),
    )
    assert answer.status_code == 200
    [event] = applied(pubsub, topics)
    assert {k: event.data[k] for k in ("confirmed", "rejected", "unchanged", "linked", "unlinked")} == {
        "confirmed": 2,
        "rejected": 1,
        "unchanged": 0,
        "linked": 1,
        "unlinked": 1,
    }
    lists = pipeline(sim)
    assert {"sourceId": source, "targetId": other} in lists["confirmedMatches"]
    assert {"sourceExternalId": "ts-x", "targetExternalId": "pump-x"} in lists["confirmedMatches"]
    assert {"sourceId": second, "targetId": second_asset} in lists["rejectedMatches"]
    state = sim.item_state("timeseries", source)
    assert state is not None
    assert state.asset_id == other
    assert (state.metadata[RUN_KEY], state.metadata[SCORE_KEY], state.metadata[PREVIOUS_KEY]) == (
        f"demo/{PIPELINE}/review",
        "null",
        str(asset),
    )
    put_back = sim.item_state("timeseries", second)
    assert put_back is not None
    assert RUN_KEY not in put_back.metadata
    assert put_back.asset_id != second_asset


def test_review_a_redelivery_changes_nothing(
    review: Any, sim: CdfSimulator, env: dict[str, str], pubsub: PubSub, topics: Topics
) -> None:
    """The same message again: the same review.applied id, every pair unchanged, no write of lists or links."""
    source, _, other = linked_world(sim, env)
    body = message({"sourceId": source, "targetId": other, "decision": "confirm"})
    assert deliver(review, body).status_code == 200
    updates, writes = len(sim.pipeline_updates()), len(sim.writes())
    assert deliver(review, body).status_code == 200
    first, second = applied(pubsub, topics, at_least=2)
    assert first.attributes["ce-id"] == second.attributes["ce-id"]
    assert (second.data["unchanged"], second.data["confirmed"], second.data["linked"]) == (1, 0, 0)
    assert (len(sim.pipeline_updates()), len(sim.writes())) == (updates, writes)


def test_review_a_racing_writer_loses_nothing(
    review: Any, sim: CdfSimulator, env: dict[str, str], pubsub: PubSub, topics: Topics
) -> None:
    """Another writer replaces rejectedMatches from its stale read right after our write: we read again and merge, and
    both its pair and our decision stand."""
    source, asset, _ = linked_world(sim, env)
    theirs = {"sourceExternalId": "their-source", "targetId": 1}
    sim.race_pipeline_update(PIPELINE, lambda lists: {"rejectedMatches": [theirs]}, after=True)
    assert deliver(review, message({"sourceId": source, "targetId": asset, "decision": "reject"})).status_code == 200
    rejected = pipeline(sim)["rejectedMatches"]
    assert theirs in rejected
    assert {"sourceId": source, "targetId": asset} in rejected
    assert len(sim.pipeline_updates()) == 2


INVALID_BODIES = {name: (json.dumps(body).encode(), pipeline_id) for name, (body, pipeline_id) in INVALID.items()}
INVALID_BODIES["not JSON"] = (b'{"pipelineId": 7, "decisions": [', None)


@pytest.mark.parametrize(("raw", "pipeline_id"), INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
def test_review_an_invalid_message_is_answered_without_cdf(
    review: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, raw: bytes, pipeline_id: int | None
) -> None:
    """Each invalid shape of tests/core/test_review.py, and a body that is not JSON: 200, review.applied with
    invalid_decision keyed by its message id and no counts, and no request to CDF."""
    assert deliver(review, pubsub_message(raw=raw, message_id="42")).status_code == 200
    [event] = applied(pubsub, topics)
    assert (event.attributes["ce-id"], event.attributes["ce-subject"]) == ("invalid-decision/42", "review/invalid")
    assert (event.data["reason"], event.data["pipelineId"]) == ("invalid_decision", pipeline_id)
    assert [event.data[k] for k in ("confirmed", "rejected", "unchanged", "linked", "unlinked")] == [0] * 5
    assert sim.requests == []


def test_review_403_on_the_pipeline_update_is_reported(
    review: Any, sim: CdfSimulator, env: dict[str, str], pubsub: PubSub, topics: Topics
) -> None:
    """CDF refuses pipelines/update with 403: acked, review.applied with access_denied, no link written."""
    source, _, other = linked_world(sim, env)
    writes = len(sim.writes())
    sim.script_pipeline_updates([Step.error(403)])
    assert deliver(review, message({"sourceId": source, "targetId": other, "decision": "confirm"})).status_code == 200
    [event] = applied(pubsub, topics)
    assert event.data["reason"] == "access_denied"
    assert len(sim.writes()) == writes


def test_review_the_command_applies_decisions(env: dict[str, str], sim: CdfSimulator) -> None:
    """``python main.py review --confirm S:T --stdout``: exit 0, review.applied printed, the pair in the list."""
    source, _, other = linked_world(sim, env)
    args = ["review", "--pipeline-id", str(PIPELINE), "--confirm", f"{source}:{other}", "--reject", "ts-9:pump:9"]
    data = printed(command(env, *args, "--stdout"))
    assert (data["confirmed"], data["rejected"], data["linked"]) == (1, 1, 1)
    assert {"sourceExternalId": "ts-9", "targetExternalId": "pump:9"} in pipeline(sim)["rejectedMatches"]
    bad = command(env, "review", "--pipeline-id", str(PIPELINE), "--confirm", "0:1", "--stdout")
    assert bad.returncode == 2, bad.stderr


def test_review_no_link_is_started_once_the_deadline_has_come(
    sim: CdfSimulator, env: dict[str, str], pubsub: PubSub, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lists written and read again past the cutoff (CDF slow to answer): 503, and neither the put-back nor the
    link is written; the redelivery finds both pairs in the lists and writes both."""
    source, asset, other = linked_world(sim, env)
    second = sorted(of_run(sim))[1]
    monkeypatch.setenv("INVOCATION_TIMEOUT_S", "5")  # its cutoff 3 s after arrival; each read here takes 1.8 s
    monkeypatch.setenv("HTTP_TIMEOUT_S", "10")  # a read may take what the deadline leaves it, stalls under 1 s

    def dribbled() -> Iterator[bytes]:  # the pipeline as CDF holds it when asked, in 4 parts 0.45 s apart
        body = b"".join(stream_json(sim.catalog.pipeline_item(PIPELINE)))
        for part in range(4):
            time.sleep(0.45)
            yield body[part * len(body) // 4 : (part + 1) * len(body) // 4]

    sim.script_pipeline(PIPELINE, [Step.stream(dribbled)] * 2)  # the first read and the read after the write
    writes, app = len(sim.writes()), review_app().test_client()
    body = message(
        {"sourceId": source, "targetId": asset, "decision": "reject"},
        {"sourceId": second, "targetId": other, "decision": "confirm"},
    )
    assert deliver(app, body).status_code == 503
    lists = pipeline(sim)
    assert {"sourceId": source, "targetId": asset} in lists["rejectedMatches"]
    assert {"sourceId": second, "targetId": other} in lists["confirmedMatches"]
    assert len(sim.writes()) == writes
    assert deliver(app, body).status_code == 200
    [event] = applied(pubsub, topics)
    assert (event.data["unchanged"], event.data["unlinked"], event.data["linked"]) == (2, 1, 1)
    put_back, confirmed = sim.item_state("timeseries", source), sim.item_state("timeseries", second)
    assert put_back is not None
    assert confirmed is not None
    assert (put_back.asset_id != asset, confirmed.asset_id) == (True, other)
