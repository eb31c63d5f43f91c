"""What stands around the function: its environment, its loading, the deliveries, its log lines, the subscriptions.

The function is loaded as functions-framework deploys it (``create_app``, one
instance shared by a few threads, as gunicorn's gthread worker shares it). A
run's trigger is delivered in Eventarc's binary mode and, while the function
answers non-2xx, delivered again with the same ``messageId`` and
``publishTime``, as Pub/Sub does. Subscribers' pulls drain the topics after.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.soak.config import GCP_PROJECT, Config
from bench.soak.scenario import Plan
from handlers.process.logs import JsonFormatter

ROOT = Path(__file__).resolve().parents[2]
ENV_PREFIXES = ("CDF_", "IDP_", "RELAY_", "POLL_", "RUN_", "HTTP_", "PUBSUB_", "LOG_")


def binary_event(message: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    """Eventarc's ``messagePublished`` CloudEvent in binary content mode: headers and body."""
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": f"//pubsub.googleapis.com/projects/{GCP_PROJECT}/topics/trigger",
        "ce-id": str(message["messageId"]),
        "ce-time": str(message["publishTime"]),
        "Content-Type": "application/json",
    }
    body = {"message": dict(message), "subscription": f"projects/{GCP_PROJECT}/subscriptions/eventarc-sub"}
    return headers, json.dumps(body).encode()


@dataclass
class Delivery:
    """How one run's trigger fared: the answers, in order."""

    answers: list[int] = field(default_factory=list)

    @property
    def acked(self) -> bool:
        return bool(self.answers) and 200 <= self.answers[-1] < 300


class LogLines(logging.Handler):
    """Keeps the function's structured log lines that matter here: outcome summaries and errors."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.outcomes: list[dict[str, Any]] = []
        self.errors = 0
        self._lock_lines = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = json.loads(self.format(record))
        with self._lock_lines:
            if "outcome" in line:
                self.outcomes.append(line)
            if record.levelno >= logging.ERROR:
                self.errors += 1


@dataclass
class Received:
    topic: str  # "events" or "errors"
    attributes: dict[str, str]
    data: bytes


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """The process environment of a deployment (nothing inherited that the function reads), restored after."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class PubSub:
    """Topics, subscriptions and a subscriber's pull on the emulator ``PUBSUB_EMULATOR_HOST`` names."""

    def __init__(self) -> None:
        from google.cloud import pubsub_v1

        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()

    def topic(self, name: str) -> tuple[str, str]:
        topic = str(self.publisher.topic_path(GCP_PROJECT, name))
        sub = str(self.subscriber.subscription_path(GCP_PROJECT, name + "-sub"))
        self.publisher.create_topic(name=topic)
        self.subscriber.create_subscription(name=sub, topic=topic, ack_deadline_seconds=60)
        return topic, sub

    def drain(self, sub: str, label: str, want: int, quiet_s: float = 10.0) -> list[Received]:
        """Pull and ack until ``want`` distinct ce-ids are in and nothing more comes, or nothing comes for a while."""
        got: list[Received] = []
        ids: set[str] = set()
        last_new, empty = time.monotonic(), 0
        while time.monotonic() - last_new < quiet_s:
            response = self.subscriber.pull(
                request={"subscription": sub, "max_messages": 1000, "return_immediately": True}, timeout=30
            )
            if not response.received_messages:
                empty += 1
                if len(ids) >= want and empty >= 3:
                    break
                time.sleep(0.05)
                continue
            empty, last_new = 0, time.monotonic()
            for m in response.received_messages:
                attributes = dict(m.message.attributes)
                got.append(Received(label, attributes, bytes(m.message.data)))
                ids.add(attributes.get("ce-id", ""))
            self.subscriber.acknowledge(
                request={"subscription": sub, "ack_ids": [m.ack_id for m in response.received_messages]}
            )
        return got


def load_function() -> Any:
    """``main.py`` loaded by functions-framework as on a new instance: the WSGI app."""
    import functions_framework

    create_app: Any = functions_framework.create_app  # untyped
    return create_app(target="on_run_message", source=str(ROOT / "main.py"), signature_type="cloudevent")


def deliver_until_acked(app: Any, local: threading.local, plan: Plan, config: Config) -> Delivery:
    """Deliver the run's trigger; while the answer is non-2xx, deliver the same message again."""
    client = getattr(local, "client", None)
    if client is None:
        client = local.client = app.test_client()  # one per thread, as gunicorn's threads share the app
    headers, body = binary_event(plan.message)
    delivery = Delivery()
    while len(delivery.answers) < config.max_deliveries and not delivery.acked:
        delivery.answers.append(int(client.post("/", headers=headers, data=body).status_code))
    return delivery
