"""Cold start: what importing ``main`` costs beyond its dependencies, and that it builds no client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import json, sys, time
t0 = time.perf_counter()
import functions_framework, httpx, pydantic, pydantic_settings, orjson, cloudevents.http, werkzeug
t1 = time.perf_counter()
import main
t2 = time.perf_counter()
print(json.dumps({"dependencies_ms": (t1 - t0) * 1000, "main_ms": (t2 - t1) * 1000,
                  "grpc_loaded": "grpc" in sys.modules, "client_built": main._runtime is not None}))
"""
ENV = {
    "CDF_PROJECT": "demo",
    "CDF_CLUSTER": "westeurope-1",
    "CDF_TOKEN": "x",
    "RELAY_TOPIC": "projects/p/topics/events",
    "LOG_LEVEL": "WARNING",
}


def measure(repeat: int = 5) -> dict[str, float | bool]:
    """Median of ``repeat`` fresh interpreters (the first warms the disk cache and is dropped)."""
    runs = []
    for _ in range(repeat + 1):
        out = subprocess.run(
            [sys.executable, "-c", PROBE],
            cwd=ROOT,
            env=os.environ | ENV,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        runs.append(json.loads(out.stdout.splitlines()[-1]))
    runs = runs[1:]
    middle = len(runs) // 2
    return {
        "dependencies_ms": sorted(r["dependencies_ms"] for r in runs)[middle],
        "main_ms": sorted(r["main_ms"] for r in runs)[middle],
        "grpc_loaded": any(r["grpc_loaded"] for r in runs),
        "client_built": any(r["client_built"] for r in runs),
    }
