"""Run the simulator in the foreground: `python -m sim --port 0 --scenario demo`.

Prints one JSON line {"url": ..., "token_url": ...} once listening, then serves
until SIGTERM or SIGINT. `--write-limit`, `--write-latency-s`, `--byids-latency-s`
and `--list-latency-s` shape the write side (concurrent updates allowed, time each
update, byids and list takes); `--scenario link` serves a link scenario
(sim/linkworld.py): pipeline 5's completed run 500 over time series, with every case
a link meets.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sim import CdfSimulator, Step, make_run
from sim.data import SWEEP_WINDOW_MS
from sim.linkworld import link_world


def _scheduled(sim: CdfSimulator) -> None:
    """Pipeline 3 runs every 15 minutes on CDF's own schedule: three runs in the demo's sweep window, one on
    each side of it (one created exactly at its end, which the next window holds); pipeline 4 has none in it."""
    start, end = SWEEP_WINDOW_MS
    sim.add_pipeline(3, external_id="pumps-nightly", name="Pumps to assets", schedule_interval=900)
    sim.add_pipeline(4, external_id="valves-weekly", name="Valves to assets", schedule_interval=604800)
    for job_id, created in ((900, start - 900_000), (901, start), (902, start + 900_000), (903, end - 1), (904, end)):
        steps = [Step.status("Running", job_id), Step.run(make_run(3, 1, 1, job_id=job_id, created=created))]
        sim.add_run(3, job_id, created, steps=steps)
    sim.add_run(4, 950, start - 86_400_000, steps=[Step.run(make_run(1, job_id=950))])


def _demo(sim: CdfSimulator) -> None:
    sim.set_run(
        1,
        456,
        [
            Step.status("Queued", 456),
            Step.status("Running", 456),
            Step.status("Running", 456),
            Step.run(make_run(5, 2, 1, job_id=456)),
        ],
    )
    sim.set_latest(1, [Step.status("Running", 456)])
    # What the link of run 456 reads: pipeline 1 (time series to assets), its five sources (make_run's ids) and
    # their assets; source 2 is linked to its match already.
    sim.add_pipeline(1, external_id="pumps-to-assets", name="Pumps to assets")
    in_place = {2: (2_000_002,)}
    sim.add_items(
        "timeseries", 1_000_000, 5, lambda i: (f"src-{i:07d}", f"Pump {i}"), links=lambda i: in_place.get(i, ())
    )
    sim.add_assets(2_000_000, 5)
    failed = make_run(0, status="Failed", job_id=789, error_message="Source dataset is empty")
    sim.set_run(2, 789, [Step.status("Running", 789), Step.run(failed)])
    _scheduled(sim)


def _link(sim: CdfSimulator) -> None:
    cases: dict[str, Any] = {
        "ambiguous": 5,
        "runners_up": 5,
        "unlinkable": 6,
        "missing_sources": 3,
        "missing_targets": 3,
    }
    cases |= {"confirmed": 10, "rules": 4, "listed": 4, "rejected": 4, "rejected_best": 4}
    link_world(sim, 5, 500, "time_series", 1000, linked=0.1, conflicts=0.05, noise=(20, 5), **cases)


SCENARIOS: dict[str, Callable[[CdfSimulator], None]] = {
    "demo": _demo,
    "link": _link,
    "empty": lambda sim: None,  # every run answers 404 until scripted
}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--project", default="demo")
    parser.add_argument("--client-id", default="matchrelay")
    parser.add_argument("--client-secret", default="s3cret")
    parser.add_argument("--token-ttl-s", type=float, default=3600)
    parser.add_argument(
        "--static-token",
        action="append",
        default=[],
        help="bearer token always accepted (CDF_TOKEN)",
    )
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="demo")
    parser.add_argument("--write-limit", type=int, default=None, help="concurrent updates per project (default: none)")
    parser.add_argument("--write-latency-s", type=float, default=0.0, help="time each update takes")
    parser.add_argument("--byids-latency-s", type=float, default=0.0, help="time each byids takes")
    parser.add_argument("--list-latency-s", type=float, default=0.0, help="time each classic list takes")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    sim = CdfSimulator(
        args.project,
        args.client_id,
        args.client_secret,
        args.token_ttl_s,
        host=args.host,
        port=args.port,
        write_limit=args.write_limit,
        write_latency_s=args.write_latency_s,
        byids_latency_s=args.byids_latency_s,
        list_latency_s=args.list_latency_s,
    )
    sim.static_tokens.update(args.static_token)
    SCENARIOS[args.scenario](sim)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with sim:
        print(json.dumps({"url": sim.url, "token_url": sim.token_url}), flush=True)
        while not stop.wait(0.2):  # short waits so signal handlers get to run promptly
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
