"""``python -m bench.soak [--runs N] [--seed S] [--threads T] [--budget S] [--log PATH]`` (``./dev soak``).

It prints one line of figures and the same as a Markdown table; the exit code is
0 when nothing was lost, nothing malformed and every run's set is complete.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

from bench.soak.config import Config
from bench.soak.runner import soak
from sim.emulator import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev soak", description="Chaos soak: runs through CDF faults and redeliveries."
    )
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4, help="deliveries in parallel on one function instance")
    parser.add_argument("--budget", type=float, default=0.5, help="POLL_BUDGET_S of the function")
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    parser.add_argument("--log", type=Path, default=tmp / "matchrelay-soak.log", help="the function's log lines")
    args = parser.parse_args(argv)
    config = Config(runs=args.runs, seed=args.seed, threads=args.threads, budget_s=args.budget)
    emulator = Emulator()
    emulator.start(tmp / "matchrelay-soak-emulator.log")
    try:
        report = soak(config, emulator.host, args.log)
    finally:
        emulator.stop()
    out = io.StringIO()
    print(report.line(), file=out)
    print(file=out)
    print(report.table(), file=out)
    for text in report.incomplete + report.problems:
        print(f"! {text}", file=out)
    print(f"\nthe function's log: {args.log}", file=out)
    sys.stdout.write(out.getvalue())
    sys.stdout.flush()
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
