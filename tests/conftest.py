"""Shared fixtures: the real Pub/Sub emulator, the CDF simulator, the function as deployed.

The emulator is started once per session on a free port (Google's own, under the
Cloud SDK); if it is missing the session fails with a clear message, never skips.
Each test gets fresh topics, a fresh simulator and a freshly loaded ``main.py``,
so no test depends on another or on their order.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sim import CdfSimulator
from sim.emulator import Emulator, EmulatorError
from sim.framework import StartError, serve

ROOT = Path(__file__).resolve().parent.parent
GCP_PROJECT = "matchrelay-test"
SECRET = "s3cret-client-Value-7f1d"


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emu = Emulator()
    try:
        emu.start(tmp_path_factory.mktemp("emulator") / "emulator.log")
    except EmulatorError as exc:  # fail loudly, never skip: these tests need the real thing
        pytest.fail(str(exc), pytrace=False)
    os.environ["PUBSUB_EMULATOR_HOST"] = emu.host
    yield emu
    emu.stop()


@dataclass
class Received:
    """A message as a subscriber receives it."""

    attributes: dict[str, str]
    data: Any
    raw: bytes
    publish_time: float

    @property
    def type(self) -> str:
        return (
            self.attributes["ce-type"].rsplit(".", 1)[-1]
            if "entitymatching.run." not in self.attributes["ce-type"]
            else "run." + self.attributes["ce-type"].rsplit(".", 1)[-1]
        )


class PubSub:
    """Topics and subscriptions on the emulator, and a subscriber's pull."""

    def __init__(self, host: str) -> None:
        import grpc
        from google.cloud import pubsub_v1
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        self.publisher = pubsub_v1.PublisherClient()
        # gRPC receives 4 MB by default; events may be up to 10 MB, as on Pub/Sub itself.
        channel = grpc.insecure_channel(host, options=[("grpc.max_receive_message_length", 32 * 1024 * 1024)])
        self.subscriber = pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))

    def topic(self, prefix: str = "t") -> tuple[str, str]:
        """A new topic and a subscription on it: (topic path, subscription path)."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        topic = self.publisher.topic_path(GCP_PROJECT, name)
        sub = self.subscriber.subscription_path(GCP_PROJECT, name + "-sub")
        self.publisher.create_topic(name=topic)
        self.subscriber.create_subscription(name=sub, topic=topic, ack_deadline_seconds=60)
        return topic, sub

    def drain(self, sub: str, at_least: int = 0, seconds: float = 60.0) -> list[Received]:
        """Pull and ack everything there is (waiting for ``at_least``); what a subscriber gets.

        Every event pulled must match the committed JSON Schemas of its ``ce-type`` (``schemas/``).
        """
        from schemas import problems

        got: list[Received] = []
        deadline = time.monotonic() + seconds
        empty = 0
        while time.monotonic() < deadline:
            response = self.subscriber.pull(
                request={"subscription": sub, "max_messages": 1000, "return_immediately": True}, timeout=30
            )
            if response.received_messages:
                empty = 0
                for m in response.received_messages:
                    got.append(
                        Received(
                            dict(m.message.attributes),
                            json.loads(m.message.data),
                            m.message.data,
                            m.message.publish_time.timestamp(),
                        )
                    )
                self.subscriber.acknowledge(
                    request={"subscription": sub, "ack_ids": [m.ack_id for m in response.received_messages]}
                )
                for event in got[-len(response.received_messages) :]:
                    if "ce-type" in event.attributes and (found := problems(event.attributes, event.data)):
                        ce_id = event.attributes.get("ce-id")
                        raise AssertionError(f"event {ce_id} does not match its schema: " + "; ".join(found))
            else:
                empty += 1
                if len(got) >= at_least and empty >= 2:
                    break
                time.sleep(0.05)
        return got


@pytest.fixture(scope="session")
def pubsub(emulator: Emulator) -> PubSub:
    return PubSub(emulator.host)


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[CdfSimulator]:
    """The CDF simulator; afterwards, no body it was sent was one CDF's OpenAPI refuses, unless the test is marked
    ``sends_invalid_bodies`` (it sends them on purpose)."""
    with CdfSimulator(project="demo", client_id="matchrelay", client_secret=SECRET) as simulator:
        yield simulator
        if request.node.get_closest_marker("sends_invalid_bodies") is None:
            assert simulator.classic.invalid == [], "a request body CDF's OpenAPI refuses was sent"


@dataclass
class Topics:
    events: str
    events_sub: str
    errors: str
    errors_sub: str


@pytest.fixture
def topics(pubsub: PubSub) -> Topics:
    events, events_sub = pubsub.topic("events")
    errors, errors_sub = pubsub.topic("errors")
    return Topics(events, events_sub, errors, errors_sub)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, topics: Topics, emulator: Emulator) -> dict[str, str]:
    """The environment of a deployment pointed at the simulator and the emulator; tests may change it."""
    for name in list(os.environ):
        if name.startswith(("CDF_", "IDP_", "RELAY_", "POLL_", "RUN_", "HTTP_")):
            monkeypatch.delenv(name)
    values = {
        "CDF_PROJECT": "demo",
        "CDF_URL": sim.url,
        "CDF_ALLOWED_PROJECTS": "demo,other",
        "IDP_TOKEN_URL": sim.token_url,
        "IDP_CLIENT_ID": "matchrelay",
        "IDP_CLIENT_SECRET": SECRET,
        "RELAY_TOPIC": topics.events,
        "RELAY_ERROR_TOPIC": topics.errors,
        "POLL_INITIAL_DELAY_S": "0.01",
        "POLL_MAX_DELAY_S": "0.05",
        "HTTP_TIMEOUT_S": "2",
        "PUBSUB_EMULATOR_HOST": emulator.host,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def load_app() -> Any:
    """``main.py`` loaded afresh by functions-framework, as on a new instance."""
    from functions_framework import create_app

    return create_app(target="on_run_message", source=str(ROOT / "main.py"), signature_type="cloudevent")


@pytest.fixture
def client(env: dict[str, str]) -> Any:
    return load_app().test_client()


def pubsub_message(
    body: Any = None,
    *,
    attributes: dict[str, str] | None = None,
    raw: bytes | None = None,
    message_id: str | None = None,
    publish_time: str | None = None,
) -> dict[str, Any]:
    """A Pub/Sub message as Eventarc and push deliver it (``data`` base64)."""
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return {
        "data": base64.b64encode(data).decode(),
        "attributes": attributes or {},
        "messageId": message_id or str(uuid.uuid4().int % 10**16),
        "publishTime": publish_time or time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
    }


def binary_event(message: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """Eventarc's ``messagePublished`` in binary content mode: headers and body."""
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": f"//pubsub.googleapis.com/projects/{GCP_PROJECT}/topics/trigger",
        "ce-id": message["messageId"],
        "ce-time": message["publishTime"],
        "Content-Type": "application/json",
    }
    body = {"message": message, "subscription": f"projects/{GCP_PROJECT}/subscriptions/eventarc-sub"}
    return headers, json.dumps(body).encode()


def structured_event(message: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """The same event in structured content mode."""
    envelope = {
        "specversion": "1.0",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": f"//pubsub.googleapis.com/projects/{GCP_PROJECT}/topics/trigger",
        "id": message["messageId"],
        "time": message["publishTime"],
        "datacontenttype": "application/json",
        "data": {"message": message, "subscription": f"projects/{GCP_PROJECT}/subscriptions/eventarc-sub"},
    }
    return {"Content-Type": "application/cloudevents+json"}, json.dumps(envelope).encode()


def push_body(message: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """A raw Pub/Sub push request, which functions-framework converts to a CloudEvent."""
    body = {"message": message, "subscription": f"projects/{GCP_PROJECT}/subscriptions/push-sub"}
    return {"Content-Type": "application/json"}, json.dumps(body).encode()


def deliver(client: Any, message: dict[str, Any], mode: str = "binary") -> Any:
    """POST one trigger to the function the way ``mode`` delivers it; returns the response."""
    headers, body = {"binary": binary_event, "structured": structured_event, "push": push_body}[mode](message)
    return client.post("/", headers=headers, data=body)


@contextlib.contextmanager
def function_process(env: dict[str, str], log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``functions-framework`` serving main.on_run_message on a free port, until the block ends."""
    with contextlib.ExitStack() as stack:
        try:
            process, url = stack.enter_context(serve(ROOT, "on_run_message", env, log))
        except StartError as exc:
            pytest.fail(str(exc))
        yield process, url


def wait_for(condition: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)
