"""``./dev bench``: relay runs of 10k, 100k and 1M matches and compare, side by side, with two baselines.

One run, one machine, one emulator and one simulator: matchrelay end to end
(trigger to 200), the same messages through google-cloud-pubsub's high-level
client in a bare loop, and as raw Publish requests (1,000 messages each, four in
flight). The emulator is warmed first; the sides alternate and the best of
``--rounds`` counts. Each measurement runs in a fresh process so its peak RSS is
its own. Then: CPU per stage, cold start, polling, and the contract v2 figures
(waiting runs in one process, a run split by continuations), what traces cost,
the link (requests, time against the write limit's floor, memory, best of several: bench/link.py),
and the link's link.review events published against the relay's events, on the same emulator (bench/handover.py).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from bench import coldstart, continued, handover, link, run_child, tracing, waiting
from bench.polling import measure
from sim import CdfSimulator, Step, stream_run_body
from sim.emulator import Emulator

SIDES = ("relay", "client", "requests")
BASELINES_UP_TO = 100_000  # the baselines hold every message in memory: 1M of them is gigabytes and minutes


def serve(sim: CdfSimulator, n: int) -> None:
    """Run ``n`` of pipeline 1 answers Completed with ``n`` matches, served from memory at wire speed."""
    body = b"".join(stream_run_body(n, max(1, n // 10_000), max(1, n // 10_000), job_id=n))
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    sim.set_run(1, n, [Step.stream(lambda: iter(chunks))])


def child(mode: str, n: int, env: dict[str, str]) -> dict[str, Any]:
    return run_child("bench.one", mode, n, env)


def topic(name: str) -> str:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    path = str(publisher.topic_path("matchrelay-bench", name))
    publisher.create_topic(name=path)  # no subscription: the emulator keeps nothing, as the ceiling should
    return path


def best(n: int, env: dict[str, str], rounds: int, sides: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The fastest of ``rounds`` measurements of each side, the sides' order rotating round by round."""
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for r in range(rounds):
        for side in sides[r % len(sides) :] + sides[: r % len(sides)]:
            results[side].append(child(side, n, env))
    return {side: min(runs, key=lambda x: float(x["seconds"])) for side, runs in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="./dev bench")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated match counts")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each side; the best counts")
    parser.add_argument("--naive", action="store_true", help="also measure the naive relay (slow)")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated parts: relay,stages,cold,polling,waiting,segments,tracing,link,handover",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    parts = (
        set(args.only.split(","))
        if args.only
        else {"relay", "stages", "cold", "polling", "waiting", "segments", "tracing", "link", "handover"}
    )
    emulator = Emulator()
    emulator.start(Path(os.environ.get("TMPDIR", "/tmp")) / "matchrelay-bench-emulator.log")
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
    try:
        with CdfSimulator(project="demo", client_id="bench", client_secret="bench") as sim:
            sim.static_tokens.add("bench-token")
            env = os.environ | {
                "CDF_PROJECT": "demo",
                "CDF_URL": sim.url,
                "CDF_TOKEN": "bench-token",
                "RELAY_TOPIC": topic("bench-events"),
                "LOG_LEVEL": "WARNING",
            }
            sim.set_run(1, 1, [Step.stream(lambda: iter([b"".join(stream_run_body(10, job_id=1))]))])
            if "relay" in parts:
                relay_table(sim, env, sizes, args.rounds, args.naive)
            if "stages" in parts:
                serve(sim, 100_000)
                print_stages(child("stages", 100_000, env))
            if "waiting" in parts:
                waiting.report(waiting.measure(sim, env))
            if "segments" in parts:
                continued.report(continued.measure(sim, env))
            if "tracing" in parts:
                serve(sim, 100_000)
                tracing.report(tracing.measure(env, 100_000, args.rounds + 2), tracing.cold_start())
        if "handover" in parts:  # a simulator of its own, writes slowed as the link bench's; this emulator
            handover.report(handover.measure(rounds=args.rounds, emulator_host=emulator.host))
    finally:
        emulator.stop()
    if "cold" in parts:
        cold = coldstart.measure()
        print(
            f"\ncold start: importing main takes {cold['main_ms']:.0f} ms beyond its dependencies "
            f"({cold['dependencies_ms']:.0f} ms); gRPC loaded: {cold['grpc_loaded']}, "
            f"client built: {cold['client_built']}"
        )
    if "link" in parts:  # a simulator of its own, slowed down; no Pub/Sub (run.linked on stdout)
        link.report(link.measure())
    if "polling" in parts:
        poll = measure()
        print(
            f"\nwaiting (defaults 1 s .. 30 s; a run that completes after 60 s; 2000 seeds): "
            f"{poll['requests_mean']:.1f} CDF requests on average (max {poll['requests_max']}), detection delay "
            f"{poll['delay_mean_s']:.1f} s mean, {poll['delay_p95_s']:.1f} s p95, {poll['delay_max_s']:.1f} s max"
        )


def relay_table(sim: CdfSimulator, env: dict[str, str], sizes: list[int], rounds: int, naive: bool) -> None:
    serve(sim, 50_000)
    child("requests", 50_000, env)  # warm the emulator (its JIT) before anything is measured
    rows = []
    for n in sizes:
        serve(sim, n)
        sides = SIDES if n <= BASELINES_UP_TO else ("relay",)
        row = best(n, env, rounds if n <= BASELINES_UP_TO else 1, sides)
        if naive:
            row["naive"] = child("naive", n, env)
        rows.append((n, row))
        print(f"# {n:,} matches: " + ", ".join(f"{m} {rate(r):,.0f} ev/s" for m, r in row.items()), flush=True)
    print_table(rows)


def rate(result: dict[str, Any]) -> float:
    return float(result["events"]) / float(result["seconds"])


def print_table(rows: list[tuple[int, dict[str, dict[str, Any]]]]) -> None:
    print(
        "\n| matches | events | matchrelay ev/s | s | peak RSS | client ev/s | s | requests ev/s | s "
        "| relay/client | relay/requests |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, row in rows:
        r, c, q = row["relay"], row.get("client"), row.get("requests")
        cells = [f"{n:,}", f"{r['events']:,}", f"{rate(r):,.0f}", f"{r['seconds']:.2f}", f"{r['peak_rss_mb']:.0f} MB"]
        for side in (c, q):
            cells += [f"{rate(side):,.0f}", f"{side['seconds']:.2f}"] if side else ["-", "-"]
        cells += [f"{rate(r) / rate(side):.2f}" if side else "-" for side in (c, q)]
        print("| " + " | ".join(cells) + " |")
    if len(rows) > 1:
        rss = [row["relay"]["peak_rss_mb"] for _, row in rows]
        print(
            f"\nmatchrelay peak RSS {min(rss):.0f} .. {max(rss):.0f} MB over {rows[0][0]:,} .. {rows[-1][0]:,} matches"
        )
    for n, row in rows:
        if "requests" in row and n == min(s for s, _ in rows):
            ratio = row["relay"]["seconds"] / row["requests"]["seconds"]
            print(f"fixed cost at {n:,}: matchrelay takes {ratio:.2f} x the time of the raw requests (target <= 1.3)")
        if "naive" in row:
            print(f"naive at {n:,}: {rate(row['naive']):,.0f} ev/s (extrapolated from its first 5,000 publishes)")
    print("client and requests are measured up to 100,000 matches: at 1M they would hold gigabytes of messages.")


def print_stages(result: dict[str, Any]) -> None:
    total = result["parse_us"] + result["build_us"] + result["publish_us"]
    print(
        f"\nCPU per event at 100,000 matches, stage by stage (process CPU, threads included): "
        f"parse {result['parse_us']:.1f} µs, build {result['build_us']:.1f} µs, "
        f"publish {result['publish_us']:.1f} µs; {total:.1f} µs in all ({1e6 / total:,.0f} events per CPU-second)"
    )


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"\nbench took {time.monotonic() - started:.0f} s")
