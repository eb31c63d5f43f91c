"""``python -m demo``, as ``./dev demo`` runs it: the whole stack on this machine, end to end."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_demo_prints_the_events_a_subscriber_receives() -> None:
    """The demo prints the events of a completed and of a failed run, and of every run a sweep found, run 456's
    links before the link, after it, and after the unlink puts them back, and what the link left for people."""
    result = subprocess.run(
        [sys.executable, "-m", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for expected in (
        "com.cognite.entitymatching.run.completed",
        "com.cognite.entitymatching.match",
        "com.cognite.entitymatching.run.failed",
        "demo/1/456/run",
        "published sweep",
        "demo/3/901/run",
        "demo/3/902/run",
        "demo/3/903/run",
        "run 456's time series in CDF before the link:",
        "run.unlinked demo/1/456/unlinked/",
        "3 handed to people as link.review",  # the three sources below the threshold
        "com.cognite.entitymatching.link.review",
        "run 456's time series in CDF after the unlink:",
    ):
        assert expected in result.stdout, output
    after_unlink = result.stdout.split("after the unlink:", 1)[1].split("published sweep", 1)[0]
    assert "written by the link" not in after_unlink, output  # every link the run wrote is put back
    assert result.stdout.count("written by the link: matchrelay:run=demo/1/456") >= 2, output
    for outside in ("demo/3/900/", "demo/3/904/", "demo/4/950/"):  # created before the window, at its end, earlier
        assert outside not in result.stdout, output
