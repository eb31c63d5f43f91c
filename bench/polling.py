"""What waiting costs: CDF requests and detection delay for a run that completes after 60 s.

Replays the poller's real schedule (``handlers.core.poll``) on a simulated clock, for
the default settings, over many seeds: no waiting, no network.
"""

from __future__ import annotations

import random
import statistics

from handlers.core.poll import Backoff, Clock, Deadlines, Poller


def one(seed: int, finishes_at: float, initial: float, cap: float) -> tuple[int, float]:
    now = [0.0]

    def sleep(seconds: float) -> bool:
        now[0] += seconds
        return False

    poller = Poller(Backoff(initial, cap), Clock(lambda: now[0], sleep, random.Random(seed)))
    poller.until_done(lambda: "done" if now[0] >= finishes_at else None, Deadlines(budget=None, wait=1e9))
    return poller.stats.polls, now[0] - finishes_at


def measure(finishes_at: float = 60.0, initial: float = 1.0, cap: float = 30.0, runs: int = 2000) -> dict[str, float]:
    results = [one(seed, finishes_at, initial, cap) for seed in range(runs)]
    polls = [p for p, _ in results]
    delays = sorted(d for _, d in results)
    return {
        "requests_mean": statistics.mean(polls),
        "requests_max": max(polls),
        "delay_mean_s": statistics.mean(delays),
        "delay_p95_s": delays[int(0.95 * len(delays))],
        "delay_max_s": delays[-1],
    }
