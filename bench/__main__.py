"""``./dev bench``: relay runs of 10k, 100k and 1M matches and compare with two baselines.

One run, one machine, one emulator and one simulator: matchrelay as deployed,
a naive relay (load all, publish one at a time and wait) and the ceiling (the
same pre-serialized messages in a bare publish loop, same client settings).
Each measurement runs in a fresh process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import coldstart
from bench.polling import measure
from sim import CdfSimulator, Step, stream_run_body
from sim.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent


def serve(sim: CdfSimulator, n: int) -> None:
    """Run ``n`` of pipeline 1 answers Completed with ``n`` matches, served from memory at wire speed."""
    body = b"".join(stream_run_body(n, max(1, n // 10_000), max(1, n // 10_000), job_id=n))
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    sim.set_run(1, n, [Step.stream(lambda: iter(chunks))])


def child(mode: str, n: int, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.one", mode, str(n)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"bench: {mode} {n} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def topic(emulator: Emulator, name: str) -> str:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    path = str(publisher.topic_path("matchrelay-bench", name))
    publisher.create_topic(name=path)  # no subscription: the emulator keeps nothing, as the ceiling should
    return path


def main() -> None:
    parser = argparse.ArgumentParser(prog="./dev bench")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated match counts")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    emulator = Emulator()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "matchrelay-bench-emulator.log"
    emulator.start(log)
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
    try:
        with CdfSimulator(project="demo", client_id="bench", client_secret="bench") as sim:
            sim.static_tokens.add("bench-token")
            env = os.environ | {
                "CDF_PROJECT": "demo",
                "CDF_URL": sim.url,
                "CDF_TOKEN": "bench-token",
                "RELAY_TOPIC": topic(emulator, "bench-events"),
                "LOG_LEVEL": "WARNING",
            }
            rows = []
            for n in sizes:
                serve(sim, n)
                row = {mode: child(mode, n, env) for mode in ("relay", "ceiling", "naive")}
                rows.append((n, row))
                print_row(n, row)
    finally:
        emulator.stop()
    print_table(rows)
    cold = coldstart.measure()
    print(
        f"\ncold start: importing main takes {cold['main_ms']:.0f} ms beyond its dependencies "
        f"({cold['dependencies_ms']:.0f} ms); gRPC loaded: {cold['grpc_loaded']}, client built: {cold['client_built']}"
    )
    poll = measure()
    print(
        f"\nwaiting (defaults 1 s .. 30 s; a run that completes after 60 s; 2000 seeds): "
        f"{poll['requests_mean']:.1f} CDF requests on average (max {poll['requests_max']}), detection delay "
        f"{poll['delay_mean_s']:.1f} s mean, {poll['delay_p95_s']:.1f} s p95, {poll['delay_max_s']:.1f} s max"
    )


def rate(result: dict[str, Any]) -> float:
    return float(result["events"]) / float(result["seconds"])


def print_row(n: int, row: dict[str, dict[str, Any]]) -> None:
    print(
        f"# {n} matches: " + ", ".join(f"{m} {rate(r):,.0f} ev/s {r['peak_rss_mb']:.0f} MB" for m, r in row.items()),
        flush=True,
    )


def print_table(rows: list[tuple[int, dict[str, dict[str, Any]]]]) -> None:
    print(
        "\n| matches | events | matchrelay ev/s | peak RSS | ceiling ev/s | ceiling RSS | naive ev/s | naive RSS "
        "| relay/ceiling | relay/naive |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, row in rows:
        r, c, v = row["relay"], row["ceiling"], row["naive"]
        print(
            f"| {n:,} | {r['events']:,} | {rate(r):,.0f} | {r['peak_rss_mb']:.0f} MB | {rate(c):,.0f} | "
            f"{c['peak_rss_mb']:.0f} MB | {rate(v):,.0f} | {v['peak_rss_mb']:.0f} MB | "
            f"{rate(r) / rate(c):.2f} | {rate(r) / rate(v):.1f} |"
        )
    print("naive: extrapolated from its first 5,000 publishes (each waited for); its load and build are timed in full.")


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"\nbench took {time.monotonic() - started:.0f} s")
