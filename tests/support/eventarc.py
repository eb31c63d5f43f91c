"""Eventarc, as far as the tests need it: a topic's messages delivered to the function.

``Bridge`` pulls a subscription of the trigger topic and POSTs each message to
the function as Eventarc does: a binary-mode ``messagePublished`` CloudEvent
whose ``ce-source`` names the topic. A 2xx acks the message; anything else (or
no answer) nacks it, so the emulator delivers it again, as Pub/Sub would. Each
delivery's answer and duration are recorded.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import PubSub


@dataclass(frozen=True)
class Delivery:
    """One POST of a message to the function: what it carried, how it was answered, how long it took."""

    body: dict[str, Any]
    attributes: dict[str, str]
    status: int | None  # None: no answer (the process was gone)
    seconds: float


@dataclass
class Bridge:
    pubsub: PubSub
    topic: str
    subscription: str
    url: str
    timeout_s: float = 120.0
    deliveries: list[Delivery] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def point_at(self, url: str) -> None:
        """Deliver to another process from now on (a restarted instance)."""
        self.url = url

    @contextlib.contextmanager
    def running(self, workers: int = 4) -> Iterator[Bridge]:
        threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(workers)]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(self.timeout_s + 10)

    def answers(self) -> list[int | None]:
        with self._lock:
            return [d.status for d in self.deliveries]

    def _loop(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as http:
            while not self._stop.is_set():
                response = self.pubsub.subscriber.pull(
                    request={"subscription": self.subscription, "max_messages": 1, "return_immediately": True},
                    timeout=10,
                )
                if not response.received_messages:
                    time.sleep(0.05)
                    continue
                for received in response.received_messages:
                    ok = self._deliver(http, received.message)
                    request = {"subscription": self.subscription, "ack_ids": [received.ack_id]}
                    if ok:
                        self.pubsub.subscriber.acknowledge(request=request)
                    else:  # back to the subscription, after a pause as Pub/Sub's retry backoff would make
                        self.pubsub.subscriber.modify_ack_deadline(request={**request, "ack_deadline_seconds": 0})
                        self._stop.wait(0.2)

    def _deliver(self, http: httpx.Client, message: Any) -> bool:
        message_id = message.message_id
        published = message.publish_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        payload = {
            "data": base64.b64encode(message.data).decode(),
            "attributes": dict(message.attributes),
            "messageId": message_id,
            "publishTime": published,
        }
        headers = {
            "ce-specversion": "1.0",
            "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
            "ce-source": f"//pubsub.googleapis.com/{self.topic}",
            "ce-id": message_id,
            "ce-time": published,
            "Content-Type": "application/json",
        }
        body = {"message": payload, "subscription": self.subscription}
        started, status = time.monotonic(), None
        with contextlib.suppress(httpx.HTTPError):
            status = http.post(self.url, headers=headers, content=json.dumps(body)).status_code
        seconds = time.monotonic() - started
        with self._lock:
            self.deliveries.append(Delivery(json.loads(message.data), dict(message.attributes), status, seconds))
        return status is not None and 200 <= status < 300
