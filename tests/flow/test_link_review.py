"""The link's ``link.review`` events (contract, section 10): the sources it left, with their best candidates, before
run.linked, through functions-framework's app as ``tests/flow/test_link.py`` drives the link."""

from __future__ import annotations

from typing import Any

import pytest

import schemas
from sim import CdfSimulator
from tests.conftest import PubSub, Received, Topics, deliver
from tests.flow.test_link import LINKED, build_world, completed, link_app

REVIEW = "com.cognite.entitymatching.link.review"


def events(pubsub: PubSub, topics: Topics, at_least: int = 1) -> list[Received]:
    """The link.review and run.linked events a subscriber of the events topic receives, in order."""
    got = pubsub.drain(topics.events_sub, at_least=at_least)
    return [e for e in got if e.attributes["ce-type"] in (REVIEW, LINKED)]


def run_link(monkeypatch: pytest.MonkeyPatch, **settings: str) -> Any:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return link_app().test_client()


def test_link_review_events_for_what_the_link_left(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below the threshold (at or above REVIEW_MIN_SCORE), ambiguous and in conflict: one link.review each, best-scored
    first, with their candidates best first and the asset in place for the conflict, then run.linked counting them."""
    build_world(sim, "time_series")
    assert deliver(run_link(monkeypatch), completed()).status_code == 200
    got = events(pubsub, topics, at_least=4)
    reviews, [linked] = (
        [e for e in got if e.attributes["ce-type"] == REVIEW],
        [e for e in got if e.attributes["ce-type"] == LINKED],
    )
    assert linked.data["reviews"] == len(reviews) == 3
    assert [(e.data["sourceId"], e.data["reason"], e.attributes["ce-reason"]) for e in reviews] == [
        (5, "ambiguous", "ambiguous"),  # 0.95
        (10, "conflict", "conflict"),  # 0.95, after 5 by source id
        (3, "below_threshold", "below_threshold"),  # 0.5; source 4 has no score
    ]
    ambiguous, conflict, below = (e.data for e in reviews)
    assert [c["targetId"] for c in ambiguous["candidates"]] == [105, 106]
    assert (conflict["current"], ambiguous["current"], below["current"]) == (999, None, None)
    assert below["candidates"] == [
        {"targetId": 103, "targetExternalId": "asset-103", "score": 0.5, "matchType": "model", "matchIndex": 2}
    ]
    assert (below["sourceExternalId"], below["jobId"], below["runId"]) == ("src-3", 456, 456)
    for event in reviews:
        assert event.attributes["ce-id"] == f"demo/7/456/review/{event.data['sourceId']}"
        assert schemas.problems(event.attributes, event.data) == []


@pytest.mark.parametrize(
    ("settings", "sources"),
    [
        ({"REVIEW_MAX_EVENTS": "1"}, [5]),
        ({"REVIEW_MAX_EVENTS": "0"}, []),
        ({"REVIEW_MIN_SCORE": "0.6"}, [5, 10]),
    ],
)
def test_link_review_settings(
    env: dict[str, str],
    sim: CdfSimulator,
    pubsub: PubSub,
    topics: Topics,
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, str],
    sources: list[int],
) -> None:
    """REVIEW_MAX_EVENTS keeps the best-scored (0: none), REVIEW_MIN_SCORE leaves out sources scored below it."""
    build_world(sim, "time_series")
    assert deliver(run_link(monkeypatch, **settings), completed()).status_code == 200
    got = events(pubsub, topics, at_least=1 + len(sources))
    assert [e.data["sourceId"] for e in got if e.attributes["ce-type"] == REVIEW] == sources
    assert [e.data["reviews"] for e in got if e.attributes["ce-type"] == LINKED] == [len(sources)]


def test_link_review_a_redelivery_publishes_the_same_ids_and_a_dry_run_publishes_too(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same run.completed again: the same link.review ids; under LINK_DRY_RUN they are published as well."""
    build_world(sim, "time_series")
    link = run_link(monkeypatch)
    assert deliver(link, completed()).status_code == 200
    first = {e.attributes["ce-id"] for e in events(pubsub, topics, at_least=4) if e.attributes["ce-type"] == REVIEW}
    assert deliver(link, completed()).status_code == 200
    again = {e.attributes["ce-id"] for e in events(pubsub, topics, at_least=4) if e.attributes["ce-type"] == REVIEW}
    dry = run_link(monkeypatch, LINK_DRY_RUN="true")
    assert deliver(dry, completed()).status_code == 200
    dried = {e.attributes["ce-id"] for e in events(pubsub, topics, at_least=4) if e.attributes["ce-type"] == REVIEW}
    assert first == again == dried
    assert len(first) == 3
