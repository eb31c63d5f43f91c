"""A functions-framework process serving matchrelay, and what /proc says about its worker."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sim.framework import StartError, serve

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``functions-framework`` on a free port (one gunicorn worker) until the block ends; (process, url)."""
    with contextlib.ExitStack() as stack:
        try:
            process, url = stack.enter_context(serve(ROOT, "on_run_message", env, log))
        except StartError as exc:
            raise SystemExit(f"bench: {exc}") from None
        yield process, url


def worker_pid(master: int) -> int:
    """gunicorn's (one) worker: the child of ``master``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                    return int(entry.name)
    raise SystemExit("bench: no gunicorn worker found")


def cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def eventarc(
    body: dict[str, Any] | bytes, message_id: str, attributes: dict[str, str] | None = None
) -> tuple[dict[str, str], bytes]:
    """A trigger as Eventarc POSTs it in binary mode: (headers, body)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    message = {"data": base64.b64encode(data).decode(), "attributes": attributes or {}, "messageId": message_id}
    message["publishTime"] = stamp
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/matchrelay-bench/topics/trigger",
        "ce-id": message_id,
        "ce-time": stamp,
        "Content-Type": "application/json",
    }
    envelope = {"message": message, "subscription": "projects/matchrelay-bench/subscriptions/eventarc"}
    return headers, json.dumps(envelope).encode()
