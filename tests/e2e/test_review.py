"""People's decisions end to end (contract, section 10): a run linked by the command, decisions published with the
ordering key to the emulator, an ordered push subscription to ``main.on_review_decision`` in its own
functions-framework process, and what comes of them in the pipeline's lists, CDF's links and review.applied."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from google.cloud import pubsub_v1

from handlers.core.provenance import ASSET_KEY, PREVIOUS_KEY, RUN_KEY
from sim import CdfSimulator, Step
from tests.conftest import GCP_PROJECT, PubSub, Received, Topics
from tests.core.test_review import INVALID
from tests.e2e.test_link import function, process_env, summaries
from tests.e2e.test_unlink import PIPELINE, linked, of_run, pipeline
from tests.support.eventarc import Bridge

APPLIED = "com.cognite.entitymatching.review.applied"
TIMEOUT_S = 5.0


@contextlib.contextmanager
def ordered_review(pubsub: PubSub, env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[Any], None]]:
    """The review function in its own process behind an ordered push subscription on a new decisions topic, as
    deployed; yields a publisher of a message's body with the pipeline's ordering key."""
    topic = pubsub.publisher.topic_path(GCP_PROJECT, f"decisions-{uuid.uuid4().hex[:12]}")
    pubsub.publisher.create_topic(name=topic)
    with function("on_review_decision", process_env(env), tmp_path / "review.log") as (_, url):
        pubsub.subscriber.create_subscription(
            request={
                "name": pubsub.subscriber.subscription_path(GCP_PROJECT, f"review-{uuid.uuid4().hex[:12]}"),
                "topic": topic,
                "push_config": {"push_endpoint": url},
                "ack_deadline_seconds": 600,
                "enable_message_ordering": True,
            }
        )
        options = pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        publisher = pubsub_v1.PublisherClient(publisher_options=options)

        def publish(body: Any) -> None:
            publisher.publish(topic, json.dumps(body).encode(), ordering_key=f"demo/{PIPELINE}").result(timeout=30)

        yield publish


def test_review_decisions_through_an_ordered_push_subscription(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics, tmp_path: Path
) -> None:
    """Three messages on one pipeline, published in order with its ordering key, reach the review function one at a
    time: the lists and the links end as the last word on each pair says, and each message has its review.applied."""
    linked(sim, env)
    written = sorted(of_run(sim).items())
    (first, first_state), (second, second_state) = written[0], written[1]
    asset, second_asset = int(first_state.metadata[ASSET_KEY]), int(second_state.metadata[ASSET_KEY])
    sim.add_assets(777_777)
    decisions_topic = pubsub.publisher.topic_path(GCP_PROJECT, f"decisions-{uuid.uuid4().hex[:12]}")
    pubsub.publisher.create_topic(name=decisions_topic)
    messages = [
        [{"sourceId": first, "targetId": 777_777, "decision": "confirm"}],
        [{"sourceId": second, "targetId": second_asset, "decision": "reject"}],
        [{"sourceId": first, "targetId": 777_777, "decision": "reject"}],  # the last word on that pair
    ]
    with ordered_review(pubsub, env, tmp_path) as publish:
        for decisions in messages:
            publish({"project": "demo", "pipelineId": PIPELINE, "decisions": decisions})
        events = pubsub.drain(topics.events_sub, at_least=3, seconds=90)
    applied = [e for e in events if e.attributes["ce-type"] == APPLIED]
    assert [(e.data["confirmed"], e.data["rejected"], e.data["linked"], e.data["unlinked"]) for e in applied] == [
        (1, 0, 1, 0),
        (0, 1, 0, 1),
        (0, 1, 0, 1),
    ]
    lists = pipeline(sim)
    assert {"sourceId": first, "targetId": 777_777} in lists["rejectedMatches"]
    assert {"sourceId": first, "targetId": 777_777} not in lists["confirmedMatches"]
    assert {"sourceId": second, "targetId": second_asset} in lists["rejectedMatches"]
    first_now, second_now = sim.item_state("timeseries", first), sim.item_state("timeseries", second)
    assert first_now is not None
    assert second_now is not None
    # The reject of the confirmed pair put back what the confirm wrote: the run's asset, as matchrelay:previous said.
    assert (first_now.asset_id, RUN_KEY in first_now.metadata) == (asset, False)
    assert (second_now.asset_id == second_asset, RUN_KEY in second_now.metadata) == (False, False)


def test_review_past_its_deadline_is_finished_by_a_redelivery(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics, tmp_path: Path
) -> None:
    """With INVOCATION_TIMEOUT_S=5 and CDF telling the confirm's link write to wait 10 s, the first delivery writes
    the lists and puts back the rejected link, then answers 503 before its deadline; the redelivery writes the link,
    every pair and write lands once, and one more delivery of the same decisions changes nothing."""
    before = linked(sim, env)
    (first, first_state), (second, second_state) = sorted(of_run(sim).items())[:2]
    asset, second_asset = int(first_state.metadata[ASSET_KEY]), int(second_state.metadata[ASSET_KEY])
    sim.add_assets(777_777)
    confirm, reject = {"sourceId": first, "targetId": 777_777}, {"sourceId": second, "targetId": second_asset}
    decisions = [{**confirm, "decision": "confirm"}, {**reject, "decision": "reject"}]
    body = json.dumps({"project": "demo", "pipelineId": PIPELINE, "decisions": decisions}).encode()
    lists, writes = pipeline(sim), len(sim.writes())
    sim.script_writes("timeseries", [None, Step.throttle("10")])  # the put-back goes through, the link's write waits
    topic, subscription = pubsub.topic("decisions")
    log = tmp_path / "review.log"
    with function("on_review_decision", process_env(env, INVOCATION_TIMEOUT_S=str(TIMEOUT_S)), log) as (_, url):
        bridge = Bridge(pubsub, topic, subscription, url)
        with bridge.running(workers=1):
            pubsub.publisher.publish(topic, body).result(timeout=30)
            [done] = applied_events(pubsub, topics)
            updates, after = sim.pipeline_updates(), sim.writes()[writes:]
            pubsub.publisher.publish(topic, body).result(timeout=30)  # the same decisions delivered once more
            [again] = applied_events(pubsub, topics)
    assert bridge.answers() == [503, 200, 200]
    assert all(d.seconds < TIMEOUT_S for d in bridge.deliveries), [d.seconds for d in bridge.deliveries]
    outcomes = [(line["outcome"], line["reason"]) for line in summaries(log)]
    assert outcomes == [("handed_back", "deadline"), ("applied", None), ("applied", None)]
    assert done.attributes["ce-id"] == again.attributes["ce-id"]
    assert done.attributes["ce-id"].startswith(f"demo/{PIPELINE}/review/")
    assert (done.data["reason"], done.data["linked"], again.data["linked"], again.data["unchanged"]) == (None, 1, 0, 2)
    now = pipeline(sim)
    assert now["confirmedMatches"] == [e for e in lists["confirmedMatches"] if e != reject] + [confirm]
    assert now["rejectedMatches"] == [*lists["rejectedMatches"], reject]
    assert [(u.pipeline, u.field) for u in updates] == [(PIPELINE, "confirmedMatches"), (PIPELINE, "rejectedMatches")]
    assert [(w.status, w.applied, [item["id"] for item in w.items or []]) for w in after] == [
        (200, True, [second]),  # the put-back, by the first delivery
        (429, False, [first]),  # the link's write, refused with Retry-After past the deadline
        (200, True, [first]),  # the redelivery's
    ]
    assert all(w.unchanged == () for w in after)
    assert (sim.pipeline_updates(), sim.writes()[writes:]) == (updates, after)  # the last delivery wrote nothing
    assert sim.item_state("timeseries", second) == before[second]
    linked_now = sim.item_state("timeseries", first)
    assert linked_now is not None
    assert (linked_now.asset_id, linked_now.metadata[PREVIOUS_KEY], linked_now.metadata[RUN_KEY]) == (
        777_777,
        str(asset),
        f"demo/{PIPELINE}/review",
    )


def applied_events(pubsub: PubSub, topics: Topics) -> list[Received]:
    """The review.applied events on the events topic (REVIEW_TOPIC in ``process_env``) not drained yet."""
    return [e for e in pubsub.drain(topics.events_sub, at_least=1, seconds=120) if e.attributes["ce-type"] == APPLIED]


def test_review_a_racing_writer_and_a_refusal_through_the_process(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics, tmp_path: Path
) -> None:
    """Through the ordered subscription: another writer replacing a list right after our write loses nothing (we read
    again and write again), and a 403 on pipelines/update is acked with access_denied and no link written."""
    linked(sim, env)
    (source, state), (other, _) = sorted(of_run(sim).items())[:2]
    theirs = {"sourceExternalId": "their-source", "targetId": 1}
    sim.add_assets(777_777)
    with ordered_review(pubsub, env, tmp_path) as publish:
        sim.race_pipeline_update(PIPELINE, lambda lists: {"rejectedMatches": [theirs]}, after=True)
        reject = {"sourceId": source, "targetId": int(state.metadata[ASSET_KEY]), "decision": "reject"}
        publish({"pipelineId": PIPELINE, "decisions": [reject]})
        [raced] = applied_events(pubsub, topics)
        writes = len(sim.writes())
        sim.script_pipeline_updates([Step.error(403)])
        publish(
            {"pipelineId": PIPELINE, "decisions": [{"sourceId": other, "targetId": 777_777, "decision": "confirm"}]}
        )
        [refused] = applied_events(pubsub, topics)
    assert (raced.data["reason"], raced.data["rejected"], raced.data["unlinked"]) == (None, 1, 1)
    rejected = pipeline(sim)["rejectedMatches"]
    assert theirs in rejected
    assert {"sourceId": reject["sourceId"], "targetId": reject["targetId"]} in rejected
    assert (refused.data["reason"], refused.data["confirmed"], refused.data["linked"]) == ("access_denied", 0, 0)
    assert len(sim.writes()) == writes


def test_review_every_invalid_shape_through_the_process(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics, tmp_path: Path
) -> None:
    """Each invalid body of the core table, published to the decisions topic: acked with its own review.applied
    (invalid_decision, keyed by the message id), and not one request to CDF."""
    bodies = [body for body, _ in INVALID.values()]
    with ordered_review(pubsub, env, tmp_path) as publish:
        for body in bodies:
            publish(body)
        events = pubsub.drain(topics.events_sub, at_least=len(bodies), seconds=120)
    answers = [e for e in events if e.attributes["ce-type"] == APPLIED]
    assert len(answers) == len(bodies)
    assert all(e.data["reason"] == "invalid_decision" for e in answers)
    assert len({e.attributes["ce-id"] for e in answers}) == len(bodies)
    assert all(e.attributes["ce-id"].startswith("invalid-decision/") for e in answers)
    assert sim.requests == []
