"""People's decisions end to end (contract, section 10): a run linked by the command, decisions published with the
ordering key to the emulator, an ordered push subscription to ``main.on_review_decision`` in its own
functions-framework process, and what comes of them in the pipeline's lists, CDF's links and review.applied."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from google.cloud import pubsub_v1

from handlers.core.provenance import ASSET_KEY, RUN_KEY
from sim import CdfSimulator
from tests.conftest import GCP_PROJECT, PubSub, Topics
from tests.e2e.test_link import function, process_env
from tests.e2e.test_unlink import PIPELINE, linked, of_run, pipeline

APPLIED = "com.cognite.entitymatching.review.applied"


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
    with function("on_review_decision", process_env(env), tmp_path / "review.log") as (_, url):
        pubsub.subscriber.create_subscription(
            request={
                "name": pubsub.subscriber.subscription_path(GCP_PROJECT, f"review-{uuid.uuid4().hex[:12]}"),
                "topic": decisions_topic,
                "push_config": {"push_endpoint": url},
                "ack_deadline_seconds": 600,
                "enable_message_ordering": True,
            }
        )
        ordered = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
        for decisions in messages:
            body = json.dumps({"project": "demo", "pipelineId": PIPELINE, "decisions": decisions}).encode()
            ordered.publish(decisions_topic, body, ordering_key=f"demo/{PIPELINE}").result(timeout=30)
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
