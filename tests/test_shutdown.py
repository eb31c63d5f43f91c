"""SIGTERM on a real functions-framework process (gunicorn), as Cloud Run stops an instance."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sim import CdfSimulator, Step
from sim.emulator import free_port
from tests.conftest import ROOT, PubSub, Topics, binary_event, pubsub_message


@contextlib.contextmanager
def function_process(env: dict[str, str], log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``functions-framework`` serving main.on_run_message on a free port, until the block ends."""
    port = free_port()
    script = Path(sys.executable).parent / "functions-framework"
    command = [
        str(script),
        "--source",
        "main.py",
        "--target",
        "on_run_message",
        "--signature-type",
        "cloudevent",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"functions-framework did not start:\n{log.read_text()[-2000:]}")
        yield process, f"http://127.0.0.1:{port}/"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def wait_for(condition: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


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
