"""The simulator's named scenarios (``python -m sim --scenario NAME``): what CDF holds when it starts.

``demo`` is the demo's world (``./dev demo``), which the review page's browser
test serves too; ``link`` a link scenario (sim/linkworld.py); ``empty`` nothing.
"""

from __future__ import annotations

from collections.abc import Callable
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


def demo(sim: CdfSimulator) -> None:
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
    "demo": demo,
    "link": _link,
    "empty": lambda sim: None,  # every run answers 404 until scripted
}
