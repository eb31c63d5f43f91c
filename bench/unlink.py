"""``python -m bench.unlink [size] [runs]``: the undo of a run that linked ``size`` time series (contract, section 9).

The simulator holds ``size`` time series, each linked to an asset with the
provenance a link of run 1 wrote (scores 0.3 and 0.7 in turn), and answers
``list`` and ``update`` in 50 ms, at most 4 writes at once, as ``bench.link``'s
does. ``python main.py unlink --stdout`` runs in a fresh process; reported
against the floor, the same requests at 4 in flight, 50 ms each: CDF requests
per 1,000 items, wall (first request to last answer) over the floor, and peak
RSS. Each variant runs ``runs`` times, alternating; the median run (by wall/floor)
counts. The variants: every link put back, and ``--below 0.5``, half of them.
"""

from __future__ import annotations

import gc
import math
import os
import resource
import statistics
import subprocess
import sys
from collections import Counter
from typing import Any

from bench.link import _PEAK, ROOT, WRITE_LATENCY_S, WRITE_LIMIT, _load
from handlers.core.provenance import ASSET_KEY, RUN_KEY, SCORE_KEY
from sim import CdfSimulator
from sim.classic import ItemState

GOALS = {"requests_per_1000": 2.2, "floor_ratio": 1.3, "rss_mb": 150.0}
FIRST = 1_000_000_000
METADATA = [{RUN_KEY: "demo/1/1", SCORE_KEY: score, ASSET_KEY: "3", "unit": "bar"} for score in ("0.3", "0.7")]


def measure(n: int = 1_000_000, runs: int = 3) -> list[dict[str, Any]]:
    """Each variant's median run of ``runs``, alternating, with every run's wall/floor."""
    done: dict[float | None, list[dict[str, Any]]] = {None: [], 0.5: []}
    for _ in range(runs):
        for below in done:
            done[below].append(_one(n, below))
    results = []
    for below, variant in done.items():
        ordered = sorted(variant, key=lambda r: r["wall_s"] / r["floor_s"])
        median = ordered[len(ordered) // 2]
        results.append(median | {"below": below, "ratios": [r["wall_s"] / r["floor_s"] for r in variant]})
    return results


def _one(n: int, below: float | None) -> dict[str, Any]:
    """One unlink of ``n`` linked time series (``below``: only the scores under it)."""
    latency = WRITE_LATENCY_S
    with CdfSimulator(project="demo", write_limit=WRITE_LIMIT, write_latency_s=latency, list_latency_s=latency) as sim:
        sim.static_tokens.add("bench-token")
        sim.add_pipeline(1)
        sim.add_items(
            "timeseries", FIRST, n, lambda i: (None, "ts"), links=lambda i: (3,), metadata=lambda i: METADATA[i % 2]
        )
        gc.collect()
        gc.freeze()  # the store's blocks are the harness's, not the unlink's: the collector need not walk them
        try:
            code, rss_mb, cpu, out = _unlink(sim.url, below)
        finally:
            gc.unfreeze()
        if code != 0:
            raise SystemExit(f"bench: the unlink of {n:,} items exited {code}:\n{out[-3000:]}")
        requests = [r for r in sim.requests if r.path.startswith("/api/")]
        states = sim.item_states("timeseries")
        put_back = sum(1 for s in states.values() if s == ItemState(metadata={"unit": "bar"}))
    kinds = Counter(r.path.rsplit("/", 1)[1] if r.path.endswith(("/list", "/update")) else "pipeline" for r in requests)
    first, end = min(r.time for r in requests), max(w.answered for w in sim.writes())
    return {
        "n": n,
        "requests": dict(kinds),
        "per_1000": 1000 * len(requests) / n,
        "wall_s": end - first,
        "floor_s": math.ceil(len(requests) / WRITE_LIMIT) * latency,
        "rss_mb": rss_mb,
        "cpu_s": cpu,
        "put_back": put_back,
        "expected": n if below is None else n // 2,
    }


def _unlink(url: str, below: float | None) -> tuple[int, float, float, str]:
    """``python main.py unlink --stdout`` of run 1; its exit code, peak RSS (MB), CPU seconds and output."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env |= {"CDF_PROJECT": "demo", "CDF_URL": url, "CDF_TOKEN": "bench-token", "LOG_LEVEL": "WARNING"}
    env |= {"LINK_CONCURRENCY": str(WRITE_LIMIT)}
    command = [sys.executable, "-c", _PEAK, "unlink", "--pipeline-id", "1", "--run-id", "1", "--stdout"]
    command += [] if below is None else ["--below", str(below)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    peaks = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("peak-rss-kib ")]
    return done.returncode, int(peaks[-1]) / 1024 if peaks else math.nan, cpu, done.stderr + done.stdout


def report(results: list[dict[str, Any]]) -> None:
    print(f"\nthe unlink: time series; list and update take {WRITE_LATENCY_S * 1000:.0f} ms, {WRITE_LIMIT} at once")
    print(
        "| variant | items | put back | CDF requests | per 1,000 | wall (median) | floor | wall/floor | each run "
        "| RSS |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---|---:|")
    for r in results:
        variant = "every link" if r["below"] is None else f"--below {r['below']}"
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["requests"].items()))
        each = ", ".join(f"{x:.2f}" for x in r["ratios"])
        print(
            f"| {variant} | {r['n']:,} | {r['put_back']:,} ({r['expected']:,} expected) | {kinds} "
            f"| {r['per_1000']:.2f} "
            f"| {r['wall_s']:.2f} s | {r['floor_s']:.2f} s | {r['wall_s'] / r['floor_s']:.2f} | {each} "
            f"| {r['rss_mb']:.0f} MB |"
        )
    print(f"median of the ratios: {statistics.median(r['wall_s'] / r['floor_s'] for r in results):.2f}")
    print(
        f"goals: <= {GOALS['requests_per_1000']} requests per 1,000 items, <= {GOALS['floor_ratio']} x the floor "
        f"(median), <= {GOALS['rss_mb']:.0f} MB (this machine: {_load()})"
    )


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    report(measure(size, runs))
