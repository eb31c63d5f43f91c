"""``examples/review``'s parts without a browser: the store's latest word per source, the ``review.applied`` id it
expects (held against matchrelay's own digest), and the page's answers over Flask's test client, publishing to the
Pub/Sub emulator. The page in a browser, end to end, is tests/e2e/test_review_page.py."""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from handlers.core.review import read_decisions
from sim import CdfSimulator
from sim.emulator import free_port
from tests.conftest import GCP_PROJECT, ROOT, PubSub

PAGE = ROOT / "examples" / "review"
REVIEW = "com.cognite.entitymatching.link.review"
APPLIED = "com.cognite.entitymatching.review.applied"


def load() -> ModuleType:
    """The page's ``main`` under a name of its own (the root's ``main`` may be loaded too); its folder on the path, as
    where it deploys, for its own imports (``store``, ``names``)."""
    if str(PAGE) not in sys.path:
        sys.path.append(str(PAGE))
    spec = importlib.util.spec_from_file_location("review_page_main", PAGE / "main.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


page = load()
store_module = sys.modules[page.Store.__module__]


def review(source: int, run: int = 456, *scores: float | None) -> dict[str, Any]:
    candidates = [
        {"targetId": 2_000_000 + i, "targetExternalId": f"a-{i}", "score": s, "matchType": "model", "matchIndex": i}
        for i, s in enumerate(scores or (0.7,))
    ]
    data = {"project": "demo", "pipelineId": 1, "runId": run, "jobId": run, "sourceId": source}
    return data | {
        "sourceExternalId": f"s-{source}",
        "reason": "below_threshold",
        "current": None,
        "candidates": candidates,
    }


def event_id(data: dict[str, Any]) -> str:
    return f"demo/1/{data['runId']}/review/{data['sourceId']}"


@pytest.fixture
def store(tmp_path: Path) -> Any:
    return store_module.Store(str(tmp_path / "review.sqlite3"))


@pytest.mark.parametrize(
    ("second", "kept", "run_shown"),
    [
        (review(7, 456), False, 456),  # a redelivery: nothing changes
        (review(7, 455), False, 456),  # an older run's late copy
        (review(7, 457), True, 457),  # a later run left the source again
    ],
)
def test_review_page_store_keeps_the_latest_word_per_source(
    store: Any, second: dict[str, Any], kept: bool, run_shown: int
) -> None:
    """A second link.review of a source replaces the first only when a later run sent it."""
    assert store.add_review(event_id(review(7, 456)), review(7, 456))
    assert store.add_review(event_id(second), second) is kept
    queue, waiting = store.queue()
    assert (waiting, [r["runId"] for r in queue]) == (1, [run_shown])


def test_review_page_store_orders_by_best_score_and_limits_the_page(store: Any) -> None:
    """The queue shows the best-scored first, a source without a score last, and says how many wait in all."""
    for source, scores in ((1, (0.6,)), (2, (0.8, 0.7)), (3, (None,)), (4, (0.75,))):
        data = review(source, 456, *scores)
        store.add_review(event_id(data), data)
    queue, waiting = store.queue(limit=3)
    assert ([r["sourceId"] for r in queue], waiting) == ([2, 4, 1], 4)


@pytest.mark.parametrize(
    ("reason", "back_in_queue"),
    [(None, False), ("access_denied", True), ("lists_raced", True)],
)
def test_review_page_store_a_refused_decision_comes_back(store: Any, reason: str | None, back_in_queue: bool) -> None:
    """A review.applied with a reason puts the decision's source back in the queue with a note; a clean one does not."""
    data = review(7)
    store.add_review(event_id(data), data)
    store.decided("demo/1/7", {"sourceId": 7, "targetId": 2_000_000, "decision": "confirm"}, "demo/1/review/abc")
    store.add_applied("demo/1/review/abc", {"reason": reason, "confirmed": 1, "linked": 1})
    queue, _ = store.queue()
    assert bool(queue) is back_in_queue
    if back_in_queue:
        assert reason in queue[0]["note"]
    else:
        [decided] = store.recent()
        assert decided["applied"]["linked"] == 1


def test_review_page_predicts_the_review_applied_id_matchrelay_publishes() -> None:
    """The id the page waits for is the one on_review_decision gives the same message, for ids and external ids."""
    for target in ({"targetId": 9001}, {"targetExternalId": "pump-7 ü"}):
        decisions = [{"sourceId": 101, **target, "decision": "reject"}]
        body = {"project": "demo", "pipelineId": 7, "decisions": decisions}
        read = read_decisions(body, default_project="demo", allowed=("demo",))
        assert store_module.applied_id("demo", 7, decisions) == f"demo/7/review/{read.digest}"


class Message:
    """What the subscription's callback is given: attributes, data, and an ack or a nack."""

    def __init__(self, attributes: dict[str, str], data: bytes) -> None:
        self.attributes, self.data, self.answer = attributes, data, ""

    def ack(self) -> None:
        self.answer = "ack"

    def nack(self) -> None:
        self.answer = "nack"


def ce(kind: str, ce_id: str, data: Any) -> Message:
    attributes = {"ce-specversion": "1.0", "ce-type": kind, "ce-id": ce_id, "ce-source": "s", "ce-subject": "x"}
    return Message(attributes | {"content-type": "application/json"}, json.dumps(data).encode())


@pytest.mark.parametrize(
    ("message", "queued"),
    [
        (ce(REVIEW, event_id(review(7)), review(7)), 1),
        (ce("com.cognite.entitymatching.match", "m", {"score": 1}), 0),  # another type: acked, left alone
        (Message({"ce-type": REVIEW}, b"{}"), 0),  # not a CloudEvent
        (ce(REVIEW, "x", [1, 2]), 0),  # data not an object
        (ce(REVIEW, "x", {"sourceId": 7}), 0),  # not a link.review's data
    ],
)
def test_review_page_every_message_is_acked_once_kept_or_unreadable(store: Any, message: Message, queued: int) -> None:
    """A link.review is kept then acked; what no redelivery could make readable is acked and left alone."""
    page.received(store, message)
    assert (message.answer, store.queue()[1]) == ("ack", queued)


@pytest.fixture
def app(tmp_path: Path, pubsub: PubSub) -> tuple[Any, Any, str]:
    """The page over a fresh store, publishing to a new decisions topic on the emulator; (client, store, pull sub)."""
    topic, sub = pubsub.topic("decisions")
    settings = page.Settings(GCP_PROJECT, "unused", topic, str(tmp_path / "review.sqlite3"))
    flask_app = page.create_app(settings, page.Names({}))
    return flask_app.test_client(), flask_app.extensions["review_store"], sub


def pulled(pubsub: PubSub, sub: str) -> list[Any]:
    response = pubsub.subscriber.pull(request={"subscription": sub, "max_messages": 10}, timeout=30)
    return [m.message for m in response.received_messages]


def test_review_page_a_click_publishes_one_decision_with_the_ordering_key(app: Any, pubsub: PubSub) -> None:
    """Confirm of the second candidate: one decisions message, keyed by its pipeline; the source leaves the queue."""
    client, store, sub = app
    data = review(7, 456, 0.8, 0.7)
    store.add_review(event_id(data), data)
    answer = client.post("/decide", data={"key": "demo/1/7", "candidate": "1", "decision": "confirm"})
    assert answer.status_code == 303
    [message] = pulled(pubsub, sub)
    assert message.ordering_key == "demo/1"
    assert json.loads(message.data) == {
        "project": "demo",
        "pipelineId": 1,
        "decisions": [{"sourceId": 7, "targetId": 2_000_001, "decision": "confirm"}],
    }
    assert store.queue() == ([], 0)
    assert "sent, waiting for matchrelay" in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize(
    "form",
    [
        {"key": "demo/1/7", "candidate": "3", "decision": "confirm"},
        {"key": "demo/1/7", "candidate": "-1", "decision": "confirm"},
        {"key": "demo/1/7", "candidate": "0", "decision": "maybe"},
        {"key": "demo/1/7", "decision": "reject"},
    ],
)
def test_review_page_a_form_that_names_no_candidate_is_refused(app: Any, form: dict[str, str]) -> None:
    """400, and the source stays in the queue."""
    client, store, _ = app
    store.add_review(event_id(review(7)), review(7))
    assert client.post("/decide", data=form).status_code == 400
    assert store.queue()[1] == 1


def test_review_page_a_decision_that_cannot_be_published_stays(tmp_path: Path, pubsub: PubSub) -> None:
    """A decisions topic that does not exist: the page says so and the source stays to be decided again."""
    gone = f"projects/{GCP_PROJECT}/topics/gone-{uuid.uuid4().hex}"
    settings = page.Settings(GCP_PROJECT, "unused", gone, str(tmp_path / "review.sqlite3"))
    flask_app = page.create_app(settings, page.Names({}))
    client, store = flask_app.test_client(), flask_app.extensions["review_store"]
    store.add_review(event_id(review(7)), review(7))
    form = {"key": "demo/1/7", "candidate": "0", "decision": "reject"}
    answer = client.post("/decide", data=form, follow_redirects=True)
    assert "could not be sent" in answer.get_data(as_text=True)
    assert store.queue()[1] == 1


def test_review_page_a_source_decided_already_is_not_sent_twice(app: Any, pubsub: PubSub) -> None:
    """Two clicks on one source (two tabs): one message; the second click is told the source was decided."""
    client, store, sub = app
    store.add_review(event_id(review(7)), review(7))
    form = {"key": "demo/1/7", "candidate": "0", "decision": "reject"}
    assert client.post("/decide", data=form).status_code == 303
    second = client.post("/decide", data=form, follow_redirects=True)
    assert "decided already" in second.get_data(as_text=True)
    assert len(pulled(pubsub, sub)) == 1


def test_review_page_names_are_an_aid_never_a_failure() -> None:
    """A CDF that does not answer leaves the page its external ids: no name, no exception."""
    names = page.Names({"CDF_URL": f"http://127.0.0.1:{free_port()}", "CDF_PROJECT": "demo", "CDF_TOKEN": "t"})
    reviews = [review(7)]
    names.annotate(reviews)
    assert names.enabled
    assert (reviews[0]["sourceName"], reviews[0]["candidates"][0]["targetName"]) == (None, None)


def test_review_page_shows_names_from_cdf_the_asset_in_place_too(tmp_path: Path, sim: CdfSimulator) -> None:
    """With a CDF identity of its own, the page names the source, each candidate and a conflict's asset in place."""
    sim.add_pipeline(1, external_id="pumps", name="Pumps")
    sim.add_items("timeseries", 1_000_000, 8, lambda i: (f"s-{i}", f"Pump {i}"))
    sim.add_assets(2_000_000, 8)
    sim.static_tokens.add("page-token")
    conflict = review(1_000_007, 456, 0.8) | {"reason": "conflict", "current": 2_000_005}
    settings = page.Settings(GCP_PROJECT, "unused", "unused", str(tmp_path / "review.sqlite3"))
    names = page.Names({"CDF_URL": sim.url, "CDF_PROJECT": "demo", "CDF_TOKEN": "page-token"})
    flask_app = page.create_app(settings, names, publisher=object())
    flask_app.extensions["review_store"].add_review(event_id(conflict), conflict)
    shown = flask_app.test_client().get("/").get_data(as_text=True)
    assert "Pump 7" in shown
    assert "Asset 2000000" in shown  # the candidate
    assert 'linked now to <b class="current">Asset 2000005</b>' in shown
