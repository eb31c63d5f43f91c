"""The demo's processes: the Pub/Sub emulator, the CDF simulator, the function and the link.

Each runs in its own session (so a Ctrl-C in the terminal reaches only the demo,
which then stops them in order) with its output in a log file; ``Stack.stop``
ends them in reverse order of start, politely first, then by force.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sim.emulator import EmulatorError, emulator_command, free_port

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_S = 10.0
READER_TOKEN = "demo-reader"  # a static token the simulator accepts: the demo reads the links back with it


class DemoError(Exception):
    """A step of the demo failed; the message says which one and why."""


def functions_framework() -> str:
    """The ``functions-framework`` script of the environment running the demo."""
    script = Path(sys.executable).parent / "functions-framework"
    if not script.exists():
        raise DemoError(
            f"functions-framework is not installed next to {sys.executable} (pip install -r requirements.txt)"
        )
    return str(script)


@dataclass
class Service:
    """One process the demo started, and the file its output goes to."""

    name: str
    log: Path
    process: subprocess.Popen[bytes]

    def running(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def failed(self, what: str) -> DemoError:
        """An error naming the process, its exit code if it ended, and the end of its log."""
        ended = "" if self.running() else f" (it exited with code {self.process.returncode})"
        return DemoError(f"{self.name} {what}{ended}; the end of {self.log}:\n{self.tail()}")

    def wait_for_port(self, port: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.running():
                raise self.failed("did not start")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
            time.sleep(0.1)
        raise self.failed(f"did not listen on port {port} within {seconds:.0f} s")

    def stop(self) -> None:
        if not self.running():
            return
        for signum in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)  # its own session: the group is its children too
            try:
                self.process.wait(STOP_GRACE_S)
                return
            except subprocess.TimeoutExpired:
                continue


class Stack:
    """Everything the demo started; ``stop`` ends it all, last started first."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.services: list[Service] = []

    def spawn(self, name: str, file: str, command: list[str], env: Mapping[str, str] | None = None) -> Service:
        log = self.logs / file
        with log.open("ab") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=dict(env if env is not None else os.environ),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        service = Service(name, log, process)
        self.services.append(service)
        return service

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()

    def dead(self) -> Service | None:
        """The first process that has ended although the demo still needs it."""
        return next((s for s in self.services if not s.running()), None)

    def start_emulator(self) -> str:
        """The emulator on a free port; returns its ``host:port`` (``PUBSUB_EMULATOR_HOST``)."""
        port = free_port()
        try:
            command = emulator_command(port)
        except EmulatorError as exc:
            raise DemoError(str(exc)) from None
        emulator = self.spawn("the Pub/Sub emulator", "emulator.log", command)
        emulator.wait_for_port(port, 90.0)  # a cold JVM can take a while
        return f"127.0.0.1:{port}"

    def start_simulator(self, seconds: float = 20.0) -> tuple[str, str]:
        """``python -m sim --scenario demo``; returns the ``url`` and ``token_url`` it prints."""
        command = [sys.executable, "-m", "sim", "--port", "0", "--project", "demo"]
        command += ["--client-id", "matchrelay", "--client-secret", "s3cret", "--scenario", "demo"]
        command += ["--static-token", READER_TOKEN]
        sim = self.spawn("the CDF simulator", "simulator.log", command, {**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in sim.log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    found = json.loads(line)
                    return str(found["url"]), str(found["token_url"])
            if not sim.running():
                raise sim.failed("did not start")
            time.sleep(0.05)
        raise sim.failed(f"did not print its URLs within {seconds:.0f} s")

    def start_function(self, env: Mapping[str, str], target: str = "on_run_message", name: str = "the function") -> str:
        """``functions-framework`` serving ``main.<target>`` (its log: ``function.log``, or ``link.log``); its URL."""
        port = free_port()
        command = [functions_framework(), "--source", "main.py", "--target", target]
        command += ["--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(port)]
        log = "function.log" if target == "on_run_message" else "link.log"
        function = self.spawn(name, log, command, {**env, "PYTHONUNBUFFERED": "1"})
        function.wait_for_port(port, 30.0)
        return f"http://127.0.0.1:{port}/"
