"""SIGTERM on a real functions-framework process (gunicorn), as Cloud Run stops an instance."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import httpx

from sim import CdfSimulator, Step
from tests.conftest import PubSub, Topics, binary_event, function_process, pubsub_message, wait_for


def test_shutdown_sigterm_hands_the_message_back_at_once(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics, tmp_path: Path
) -> None:
    """SIGTERM while asleep between polls answers 503 (redeliver) instead of sleeping until killed."""
    sim.set_run(1, 456, [Step.status("Running")])
    # A 120 s wait between polls: far beyond gunicorn's 30 s graceful timeout, so only our handler answers.
    process_env = os.environ | env | {"POLL_INITIAL_DELAY_S": "120", "POLL_MAX_DELAY_S": "120"}
    answers: list[Any] = []
    with function_process(process_env, tmp_path / "function.log") as (process, url):
        headers, body = binary_event(pubsub_message({"pipelineId": 1, "runId": 456}))

        def post() -> None:
            try:
                answers.append(httpx.post(url, headers=headers, content=body, timeout=90).status_code)
            except httpx.HTTPError as exc:
                answers.append(type(exc).__name__)

        thread = threading.Thread(target=post)
        thread.start()
        wait_for(lambda: len(sim.cdf_requests()) == 1)
        process.send_signal(signal.SIGTERM)
        thread.join(90)
    assert answers == [503], (tmp_path / "function.log").read_text()[-2000:]
    assert len(sim.cdf_requests()) == 1
    assert pubsub.drain(topics.events_sub) == []
    assert pubsub.drain(topics.errors_sub) == []
