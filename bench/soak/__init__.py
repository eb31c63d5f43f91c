"""``./dev soak``: many runs through CDF faults and Pub/Sub redeliveries; what subscribers got.

``python -m bench.soak --runs N --seed S`` scripts N runs in the CDF simulator,
each a random mix of Queued/Running answers and faults, delivers each run's
trigger to the function until it is acked, as Pub/Sub does, then drains both
subscriptions and checks every event: its attributes and data against the
contract (section 5) and against the body CDF answered, and each run's
``ce-id`` set against the one its final answer calls for.

The parts, in the order a soak goes through them:

- ``config``: its size and hostility (``Config``);
- ``scenario``: each run's script and the events it owes, from ``random.Random(seed)``;
- ``faults``: the fault script inside each run's script, and the simulator's token expiry;
- ``harness``: the function as functions-framework loads it, the deliveries, its log lines, the subscriptions;
- ``runner``: ``soak()``, which puts these together;
- ``checks``: what is wrong with one event, by the contract and by CDF's answer;
- ``report``: the figures (``Report``), as a line and a Markdown table;
- ``__main__``: the command.
"""

from __future__ import annotations

from bench.soak.config import Config
from bench.soak.report import Report
from bench.soak.runner import soak

__all__ = ["Config", "Report", "soak"]
