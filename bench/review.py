"""``python -m bench.review [messages] [decisions]``: people's decisions applied per second (contract, section 10).

One process applies ``messages`` decisions messages of ``decisions`` each, one
after the other as an ordered subscription hands them over, on one pipeline of
the simulator (answers at once): each message reads the pipeline, sets its lists,
reads them again, and writes or puts back the links of the pairs named by ids.
``review.applied`` goes to stdout's sink, so what is measured is matchrelay and
the simulator, not Pub/Sub.
"""

from __future__ import annotations

import io
import os
import sys
import time
from typing import Any

from handlers.core.review import read_decisions
from handlers.flow.runtime import Runtime
from handlers.process.settings import load_settings
from sim import CdfSimulator
from sim.linkworld import link_world

PIPELINE = 1


def measure(messages: int = 1000, per_message: int = 10) -> dict[str, Any]:
    """Decisions applied per second over ``messages`` messages, and the requests each made to CDF."""
    with CdfSimulator(project="demo") as sim:
        sim.static_tokens.add("bench-token")
        world = link_world(sim, PIPELINE, 1, "time_series", messages * per_message)
        os.environ |= {"CDF_PROJECT": "demo", "CDF_URL": sim.url, "CDF_TOKEN": "bench-token", "LOG_LEVEL": "WARNING"}
        settings = load_settings(publishing=False)
        linker = Runtime.build(settings, stdout=io.StringIO()).linker
        bodies = [
            {
                "pipelineId": PIPELINE,
                "decisions": [
                    {
                        "sourceId": world.source_id(m * per_message + d),
                        "targetId": world.asset_base + d + 1,
                        "decision": "confirm" if d % 2 else "reject",
                    }
                    for d in range(per_message)
                ],
            }
            for m in range(messages)
        ]
        decisions = [read_decisions(b, default_project="demo", allowed=("demo",)) for b in bodies]
        before = len(sim.requests)
        started = time.perf_counter()
        outcomes = [linker.review(d) for d in decisions]
        seconds = time.perf_counter() - started
        requests = len(sim.requests) - before
    applied = sum(1 for o in outcomes if o.kind == "applied")
    return {
        "messages": messages,
        "decisions": messages * per_message,
        "applied": applied,
        "seconds": seconds,
        "per_second": messages * per_message / seconds,
        "requests_per_message": requests / messages,
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    r = measure(n, k)
    print(
        f"{r['messages']:,} messages of {k} decisions on one pipeline: {r['applied']:,} applied "
        f"in {r['seconds']:.2f} s, "
        f"{r['per_second']:,.0f} decisions a second, {r['requests_per_message']:.1f} CDF requests a message"
    )
