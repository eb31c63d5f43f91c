"""What traces cost: CPU of the relay at 100k matches with tracing on and off, and the cold start either way.

``measure`` runs the relay as ``bench.one`` does (the function loaded by
functions-framework, warmed by a small run, one trigger POSTed until 200) in a
fresh process per measurement, tracing on (every span recorded, exported to
OpenTelemetry's in-memory exporter through the same export thread and flush as
in production) or off, alternating, the best of ``rounds`` each. The figure is
the relay process's CPU time (threads included), so the machine's other load
weighs less than on wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from bench import run_child
from bench.coldstart import ENV, ROOT

MODES = ("off", "on")
PROBE = """
import json, sys, time
t0 = time.perf_counter()
import functions_framework, httpx, pydantic, pydantic_settings, orjson, cloudevents.http, werkzeug
t1 = time.perf_counter()
import main
t2 = time.perf_counter()
print(json.dumps({"main_ms": (t2 - t1) * 1000, "otel": sorted({m.split(".")[1] for m in sys.modules
                  if m.startswith("opentelemetry.") and m.count(".") >= 1})}))
"""


def child(mode: str, n: int) -> dict[str, Any]:
    """In this process: relay run ``n`` once, tracing ``mode``; CPU seconds, wall seconds and spans exported."""
    from functions_framework import create_app as create

    from bench.one import WARM_RUN, trigger
    from handlers.process import tracing

    make: Any = create
    app = make(target="on_run_message", source="main.py", signature_type="cloudevent").test_client()
    spans: Any = None
    if mode == "on":
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        spans = InMemorySpanExporter()
        tracing.use(lambda: spans)
    assert trigger(app, WARM_RUN) == 200
    started, cpu = time.perf_counter(), time.process_time()
    assert trigger(app, n) == 200
    result = {"cpu_s": time.process_time() - cpu, "seconds": time.perf_counter() - started}
    return result | {"spans": 0 if spans is None else len(spans.get_finished_spans())}


def measure(env: dict[str, str], n: int = 100_000, rounds: int = 5) -> dict[str, Any]:
    """The best CPU time of ``rounds`` measurements each way, the modes alternating (run ``n`` must be served)."""
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for r in range(rounds):
        for mode in MODES[r % 2 :] + MODES[: r % 2]:
            runs[mode].append(_fresh(mode, n, env))
    best = {mode: min(results, key=lambda x: float(x["cpu_s"])) for mode, results in runs.items()}
    return {"n": n, "rounds": rounds, **best, "overhead": best["on"]["cpu_s"] / best["off"]["cpu_s"] - 1}


def cold_start(repeat: int = 5) -> dict[str, Any]:
    """Median time to import ``main`` with ``OTEL_TRACES_EXPORTER`` unset and set, and what of OpenTelemetry loads."""
    result: dict[str, Any] = {}
    for mode, extra in (("off", {}), ("on", {"OTEL_TRACES_EXPORTER": "otlp"})):
        runs = []
        for _ in range(repeat + 1):  # the first warms the disk cache and is dropped
            out = subprocess.run(
                [sys.executable, "-c", PROBE],
                cwd=ROOT,
                env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | ENV | extra,
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            runs.append(json.loads(out.stdout.splitlines()[-1]))
        runs = runs[1:]
        result[mode] = {"main_ms": sorted(r["main_ms"] for r in runs)[len(runs) // 2], "otel": runs[-1]["otel"]}
    return result


def report(result: dict[str, Any], cold: dict[str, Any]) -> None:
    off, on = result["off"], result["on"]
    print(
        f"\ntraces at {result['n']:,} matches (relay process CPU, best of {result['rounds']} each, alternating): "
        f"off {off['cpu_s']:.2f} s, on {on['cpu_s']:.2f} s ({on['spans']} spans): "
        f"{result['overhead'] * 100:+.1f} % CPU (goal: at most +5 %)"
    )
    print(
        f"cold start: importing main takes {cold['off']['main_ms']:.0f} ms with traces off "
        f"(OpenTelemetry loaded: {', '.join(cold['off']['otel']) or 'nothing'}), "
        f"{cold['on']['main_ms']:.0f} ms with OTEL_TRACES_EXPORTER=otlp (exporters load at the first span)"
    )


def _fresh(mode: str, n: int, env: dict[str, str]) -> dict[str, Any]:
    # Traces on or off by the mode alone, never by an OTEL_ variable of the caller's.
    return run_child("bench.tracing", mode, n, {k: v for k, v in env.items() if not k.startswith("OTEL_")})


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], int(sys.argv[2]))), flush=True)
