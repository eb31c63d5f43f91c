"""Contract v2 figure (a): K runs waiting at once in one functions-framework process.

K triggers whose runs answer ``Running`` for ``WAIT_S`` and then complete (10
matches), THREADS=K, the poller at its defaults (1 s .. 30 s): the worker's CPU
seconds (utime + stime from /proc) per run per minute of waiting, and its peak
RSS (VmHWM).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.instance import cpu_s, eventarc, peak_rss_mb, serving, worker_pid
from sim import CdfSimulator, Step, stream_run_body
from sim.data import run_summary

K = 100
WAIT_S = 60.0
FIRST_RUN = 10_001  # run ids of the waiting runs: FIRST_RUN .. FIRST_RUN + K - 1


def script(sim: CdfSimulator, run_id: int, done_at: float) -> None:
    running = json.dumps(run_summary("Running", job_id=run_id)).encode()
    completed = b"".join(stream_run_body(10, job_id=run_id))
    sim.set_run(1, run_id, [Step.stream(lambda: iter([running if time.monotonic() < done_at else completed]))])


def measure(sim: CdfSimulator, env: dict[str, str], k: int = K, wait_s: float = WAIT_S) -> dict[str, float]:
    settings = {"THREADS": str(k + 4)}
    process_env = {n: v for n, v in env.items() if not n.startswith("POLL_")} | settings
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "matchrelay-bench-waiting.log"
    with serving(process_env, log) as (process, url):
        script(sim, FIRST_RUN - 1, 0.0)
        _post(url, FIRST_RUN - 1, [])  # warm: the runtime and the Pub/Sub channel are built
        pid = worker_pid(process.pid)
        done_at = time.monotonic() + wait_s
        for i in range(k):
            script(sim, FIRST_RUN + i, done_at)
        answers: list[Any] = []
        cpu, started = cpu_s(pid), time.monotonic()
        threads = [threading.Thread(target=_post, args=(url, FIRST_RUN + i, answers)) for i in range(k)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(wait_s + 120)
        seconds, used = time.monotonic() - started, cpu_s(pid) - cpu
        ok = sum(1 for a in answers if a == 200)
        return {"k": k, "ok": ok, "seconds": seconds, "cpu_s": used, "rss_mb": peak_rss_mb(pid), "wait_s": wait_s}


def _post(url: str, run_id: int, answers: list[Any]) -> None:
    headers, body = eventarc({"pipelineId": 1, "runId": run_id}, f"wait-{run_id}-{time.time_ns()}")
    try:
        answers.append(httpx.post(url, headers=headers, content=body, timeout=600).status_code)
    except httpx.HTTPError as exc:
        answers.append(type(exc).__name__)


def report(r: dict[str, float]) -> None:
    per = r["cpu_s"] / r["k"] / (r["seconds"] / 60)  # the minutes the invocations spent, detection delay included
    print(
        f"\nwaiting runs: {r['k']:.0f} runs Running for {r['wait_s']:.0f} s in one process (THREADS={r['k'] + 4:.0f}, "
        f"poll 1 s .. 30 s): {r['ok']:.0f} answered 200 after {r['seconds']:.0f} s; worker CPU {r['cpu_s']:.2f} s, "
        f"{per * 1000:.1f} ms per run per minute of waiting; peak RSS {r['rss_mb']:.0f} MB"
    )
