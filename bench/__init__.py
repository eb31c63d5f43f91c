"""Benchmarks: throughput and memory of a large run, and the cost of waiting (``./dev bench``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_child(module: str, mode: str, n: int, env: dict[str, str]) -> dict[str, Any]:
    """``python -m module mode n`` in a fresh process of its own: the JSON object on the last line it prints."""
    out = subprocess.run(
        [sys.executable, "-m", module, mode, str(n)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"bench: {module} {mode} {n} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))
