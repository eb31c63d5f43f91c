"""Google's Pub/Sub emulator, found and run on a free loopback port.

Shared by the tests, the demo and the benchmarks: one place knows where the
Cloud SDK keeps it and how to tell it is listening.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MISSING = (
    "the Pub/Sub emulator is missing: install the Cloud SDK component 'pubsub-emulator' "
    "(gcloud components install pubsub-emulator) and Java"
)


def stop_group(process: subprocess.Popen[bytes] | None, seconds: float) -> None:
    """End an emulator started in its own session: SIGTERM to the group, SIGKILL after ``seconds``."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


class EmulatorError(RuntimeError):
    """The emulator is not installed, exited, or did not listen in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def emulator_command(port: int) -> list[str]:
    """``cloud-pubsub-emulator`` under the Cloud SDK root that ``gcloud`` belongs to."""
    gcloud = shutil.which("gcloud")
    roots = [Path(gcloud).resolve().parent.parent] if gcloud else []
    roots += [Path("/usr/lib/google-cloud-sdk"), Path("/google-cloud-sdk")]
    for root in roots:
        binary = root / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
        if binary.exists():
            return [str(binary), "--host=127.0.0.1", f"--port={port}"]
    raise EmulatorError(MISSING)


class Emulator:
    """One emulator process in its own session; ``host`` is what ``PUBSUB_EMULATOR_HOST`` takes."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, log_path: Path, seconds: float = 60.0) -> Emulator:
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                emulator_command(self.port), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmulatorError(f"the Pub/Sub emulator exited with code {self.process.returncode} (see {log_path})")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return self
            time.sleep(0.1)
        self.stop()
        raise EmulatorError(f"the Pub/Sub emulator did not listen on port {self.port} within {seconds:.0f} s")

    def stop(self) -> None:
        stop_group(self.process, 10)
