"""Google's Firestore emulator, found and run on a loopback port (the tests of ``examples/downstream``).

Modelled on ``sim/emulator.py``: one place knows where the Cloud SDK keeps it
(``platform/cloud-firestore-emulator``, the component ``cloud-firestore-emulator``)
and how to tell it is serving. It keeps its data in memory, so a stop loses
it; ``export`` writes it to disk first and ``start(import_data=...)`` loads it
back, which is how a test stands for a Firestore that goes away and comes back
with its data, as the real one does.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from sim.emulator import free_port, stop_group

MISSING = (
    "the Firestore emulator is missing: install the Cloud SDK component 'cloud-firestore-emulator' "
    "(gcloud components install cloud-firestore-emulator, or the package google-cloud-cli-firestore-emulator) "
    "and Java"
)


class FirestoreEmulatorError(RuntimeError):
    """The emulator is not installed, exited, or did not serve in time."""


def firestore_emulator_command(port: int, import_data: Path | None = None) -> list[str]:
    """``cloud_firestore_emulator start`` under the Cloud SDK root that ``gcloud`` belongs to."""
    gcloud = shutil.which("gcloud")
    roots = [Path(gcloud).resolve().parent.parent] if gcloud else []
    roots += [Path("/usr/lib/google-cloud-sdk"), Path("/google-cloud-sdk")]
    for root in roots:
        launcher = root / "platform" / "cloud-firestore-emulator" / "cloud_firestore_emulator"
        if launcher.exists() and shutil.which("java"):
            command = [str(launcher), "start", "--host=127.0.0.1", f"--port={port}"]
            return command + ([f"--import-data={import_data}"] if import_data else [])
    raise FirestoreEmulatorError(MISSING)


class FirestoreEmulator:
    """One emulator process in its own session; ``host`` is what ``FIRESTORE_EMULATOR_HOST`` takes."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, log_path: Path, seconds: float = 90.0, import_data: Path | None = None) -> FirestoreEmulator:
        """Start it (on the same port as before, if restarted) and wait until it answers HTTP."""
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                firestore_emulator_command(self.port, import_data),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise FirestoreEmulatorError(
                    f"the Firestore emulator exited with code {self.process.returncode} (see {log_path})"
                )
            if self.serving():
                return self
            time.sleep(0.1)
        self.stop()
        raise FirestoreEmulatorError(f"the Firestore emulator did not serve on port {self.port} within {seconds:.0f} s")

    def serving(self) -> bool:
        """The emulator answers ``GET /`` with ``Ok`` once it takes requests (a bare TCP accept comes earlier)."""
        with contextlib.suppress(OSError), urllib.request.urlopen(f"http://{self.host}/", timeout=1) as answer:
            return bool(answer.status == 200)
        return False

    def export(self, project: str, directory: Path) -> Path:
        """Write ``project``'s default database to ``directory``; returns the metadata file ``start`` imports."""
        directory.mkdir(parents=True, exist_ok=True)
        before = set(directory.glob("*/*.overall_export_metadata"))
        body = {"database": f"projects/{project}/databases/(default)", "export_directory": str(directory)}
        request = urllib.request.Request(
            f"http://{self.host}/emulator/v1/projects/{project}:export",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                answer.read()
        except urllib.error.URLError as exc:
            raise FirestoreEmulatorError(f"the Firestore emulator's export failed: {exc}") from exc
        written = set(directory.glob("*/*.overall_export_metadata")) - before
        if len(written) != 1:
            raise FirestoreEmulatorError(f"the Firestore emulator's export wrote {sorted(written)} in {directory}")
        return written.pop()

    def stop(self) -> None:
        stop_group(self.process, 15)
