"""A function served by functions-framework on a free loopback port, as it is deployed.

Shared by the tests and the benchmarks: one place knows how to start the
framework's gunicorn in its own session, tell that it listens, and end it whole.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sim.emulator import free_port


class StartError(RuntimeError):
    """functions-framework exited or did not listen in time; the message ends with its log."""


@contextlib.contextmanager
def serve(
    source: Path, target: str, env: dict[str, str], log: Path, port: int | None = None, seconds: float = 60.0
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``target`` of ``source/main.py`` served until the block ends, then SIGKILLed whole; yields (process, url)."""
    port = port or free_port()
    script = Path(sys.executable).parent / "functions-framework"
    command = [str(script), "--source", "main.py", "--target", target, "--signature-type", "cloudevent"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        # Its own session: the kill below ends gunicorn's master and workers together, and nothing unanswered is acked.
        process = subprocess.Popen(
            command, cwd=source, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _listening(process, port, log, seconds)
        yield process, f"http://127.0.0.1:{port}/"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


def _listening(process: subprocess.Popen[bytes], port: int, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise StartError(f"functions-framework did not start:\n{log.read_text(errors='replace')[-2000:]}")
