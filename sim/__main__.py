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
from collections.abc import Sequence

from sim import CdfSimulator
from sim.scenarios import SCENARIOS


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
