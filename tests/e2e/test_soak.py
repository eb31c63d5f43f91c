"""The chaos soak (``bench/soak/``) at CI size: fifty runs through CDF faults and redeliveries."""

from __future__ import annotations

from pathlib import Path

from bench.soak import Config, soak
from sim.emulator import Emulator

RUNS = 50
SEED = 20241029


def test_soak_fifty_runs_through_faults_lose_nothing(emulator: Emulator, tmp_path: Path) -> None:
    """Fifty runs through random CDF faults and budget hand-backs give subscribers every run's complete, valid set."""
    report = soak(Config(runs=RUNS, seed=SEED), emulator.host, tmp_path / "function.log")
    print(f"\n{report.line()}\n\n{report.table()}")
    for text in report.incomplete + report.problems:
        print(f"! {text}")
    assert sum(report.faults.values()) > 0
    assert report.redeliveries > 0
    assert report.handbacks["budget_exhausted"] > 0
    assert report.endings["run_failed"] > 0
    assert report.endings["invalid_response"] > 0
    assert report.lost == 0
    assert report.malformed == 0
    assert report.unexpected == 0
    assert report.incomplete == []
    assert report.runs_complete == RUNS
    assert report.runs_unacked == 0
    assert report.distinct == report.events_expected
    assert report.events_received >= report.events_expected
