"""Pub/Sub on the emulator: the demo's topics, the push subscription, triggers, the subscriber.

Topic layout, as a deployment would have it:

- ``matchrelay-trigger`` with a *push* subscription whose endpoint is the function:
  the emulator delivers each trigger as a raw Pub/Sub push request and redelivers
  it while the function answers non-2xx.
- ``matchrelay-events`` (``RELAY_TOPIC``) and ``matchrelay-errors``
  (``RELAY_ERROR_TOPIC``), each with a pull subscription: the subscriber.
- ``matchrelay-events`` also has a *push* subscription to the link, filtered to
  ``run.completed`` as deployed (the emulator delivers every event anyway: the
  link acks the others untouched). The link's ``run.linked`` goes to the events
  topic too (``LINK_TOPIC`` unset), so the subscriber sees it.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from typing import Any

GCP_PROJECT = "matchrelay-demo"
TRIGGER, EVENTS, ERRORS = "matchrelay-trigger", "matchrelay-events", "matchrelay-errors"
ACK_DEADLINE_S = 60  # the subscriber's
PUSH_ACK_DEADLINE_S = 600  # the function answers only once the run is finished: Pub/Sub's maximum, as Eventarc's
COMPLETED_FILTER = 'attributes.ce-type = "com.cognite.entitymatching.run.completed"'
RPC_TIMEOUT_S = 30.0


def topic_path(name: str) -> str:
    return f"projects/{GCP_PROJECT}/topics/{name}"


def subscription_path(name: str) -> str:
    return f"projects/{GCP_PROJECT}/subscriptions/{name}"


@dataclass(frozen=True)
class Received:
    """One message as the subscriber got it: where from, its attributes and its (JSON) data."""

    topic: str
    attributes: dict[str, str]
    data: Any

    @property
    def type(self) -> str:
        return self.attributes.get("ce-type", "?")

    @property
    def id(self) -> str:
        return self.attributes.get("ce-id", "?")

    @property
    def short_type(self) -> str:
        """``match``, ``run.completed``, ...: the type without ``com.cognite.entitymatching.``."""
        return self.type.removeprefix("com.cognite.entitymatching.")


class Bus:
    """Clients bound to the emulator at ``host``; nothing here can reach Google."""

    def __init__(self, host: str) -> None:
        os.environ["PUBSUB_EMULATOR_HOST"] = host  # read by the client library when clients are built
        from google.cloud import pubsub_v1

        self.host = host
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.subscriptions = {EVENTS: subscription_path(f"{EVENTS}-sub"), ERRORS: subscription_path(f"{ERRORS}-sub")}

    def create(self, push_endpoint: str, link_endpoint: str) -> None:
        """The three topics, the subscriber's pull subscriptions, and the push subscriptions to the function (from
        the trigger topic) and to the link (from the events topic)."""
        for name in (TRIGGER, EVENTS, ERRORS):
            self.publisher.create_topic(name=topic_path(name), timeout=RPC_TIMEOUT_S)
        for name, subscription in self.subscriptions.items():
            self.subscriber.create_subscription(
                request={"name": subscription, "topic": topic_path(name), "ack_deadline_seconds": ACK_DEADLINE_S},
                timeout=RPC_TIMEOUT_S,
            )
        self.subscriber.create_subscription(
            request={
                "name": subscription_path(f"{TRIGGER}-push"),
                "topic": topic_path(TRIGGER),
                "push_config": {"push_endpoint": push_endpoint},
                "ack_deadline_seconds": PUSH_ACK_DEADLINE_S,
            },
            timeout=RPC_TIMEOUT_S,
        )
        self.subscriber.create_subscription(
            request={
                "name": subscription_path(f"{EVENTS}-link-push"),
                "topic": topic_path(EVENTS),
                "push_config": {"push_endpoint": link_endpoint},
                "ack_deadline_seconds": PUSH_ACK_DEADLINE_S,
                "filter": COMPLETED_FILTER,
            },
            timeout=RPC_TIMEOUT_S,
        )

    def publish(self, body: dict[str, Any]) -> str:
        """Publish one trigger message; returns its message id once Pub/Sub has it."""
        future = self.publisher.publish(topic_path(TRIGGER), json.dumps(body).encode())
        return str(future.result(timeout=RPC_TIMEOUT_S))

    def pull(self) -> list[Received]:
        """Whatever is waiting on the event and error subscriptions, acknowledged."""
        got: list[Received] = []
        for name, subscription in self.subscriptions.items():
            with warnings.catch_warnings():  # return_immediately is deprecated, but the right thing for a poll loop
                warnings.simplefilter("ignore", DeprecationWarning)
                response = self.subscriber.pull(
                    request={"subscription": subscription, "max_messages": 1000, "return_immediately": True},
                    timeout=RPC_TIMEOUT_S,
                )
            if not response.received_messages:
                continue
            for m in response.received_messages:
                got.append(Received(topic_path(name), dict(m.message.attributes), _json(m.message.data)))
            self.subscriber.acknowledge(
                request={"subscription": subscription, "ack_ids": [m.ack_id for m in response.received_messages]},
                timeout=RPC_TIMEOUT_S,
            )
        return got

    def close(self) -> None:
        self.publisher.stop()
        self.subscriber.close()


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode(errors="replace")
