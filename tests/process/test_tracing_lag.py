"""The summary line's ``completedLagS``: how long after CDF finished a run its ``run.completed`` was confirmed.

The deployment's log-based metric reads this field by name. Only the invocation
that confirmed ``run.completed`` has it; the wall clock is the relay's own,
injected here as the relay is given it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from sim import CdfSimulator, Step, make_run
from sim.data import CREATED_MS
from tests.conftest import PubSub, Topics, binary_event, load_app, pubsub_message
from tests.core import test_continuation as continuation

STATUS_S = (CREATED_MS + 60_000) / 1000  # the statusTime the simulator gives a finished run
SLOW_POLLS = continuation.SLOW_POLLS | {"POLL_MAX_DELAY_S": "1.1"}  # a run found completed inside the margin


def summaries(client: Any, capfd: pytest.CaptureFixture[str], body: Any, **headers: str) -> list[dict[str, Any]]:
    """Deliver one trigger; the summary lines it logged."""
    capfd.readouterr()
    event_headers, data = binary_event(pubsub_message(body))
    client.post("/", headers=event_headers | headers, data=data)
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    return [line for line in lines if "outcome" in line]


def at(seconds: float) -> None:
    """The relay's wall clock, stopped at ``seconds`` (epoch)."""
    sys.modules["main"].runtime().relay.wall = lambda: seconds


@pytest.mark.parametrize(
    ("run", "outcome", "lag"),
    [
        pytest.param(make_run(2, job_id=456), "completed", 42.25, id="completed"),
        pytest.param(make_run(0, job_id=456), "completed", 42.25, id="completed-empty"),
        pytest.param(make_run(0, status="Failed", job_id=456, error_message="boom"), "failed", None, id="failed"),
    ],
)
def test_completed_lag_is_on_the_line_that_confirmed_run_completed(
    run: dict[str, Any],
    outcome: str,
    lag: float | None,
    env: dict[str, str],
    sim: CdfSimulator,
    pubsub: PubSub,
    topics: Topics,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """``completedLagS`` is the wall clock at confirmation minus the run's statusTime, in seconds; absent otherwise."""
    client = load_app().test_client()
    sim.set_run(1, 456, [Step.run(run)])
    at(STATUS_S + 42.25)
    (summary,) = summaries(client, capfd, {"pipelineId": 1, "runId": 456})
    assert summary["outcome"] == outcome
    assert summary.get("completedLagS") == lag


def test_only_the_last_segment_of_a_continued_run_has_the_lag(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    sim: CdfSimulator,
    pubsub: PubSub,
    topics: Topics,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A segment that continues confirms no run.completed and has no lag; the segment that completes the run does."""
    for name, value in SLOW_POLLS.items():
        monkeypatch.setenv(name, value)
    trigger, trigger_sub = pubsub.topic("trigger")
    # Found completed at about 3.3 s of a 5 s timeout, inside the margin: the run goes on in a continuation.
    sim.set_run(1, 456, [Step.status("Running")] * 3 + [Step.run(make_run(3, job_id=456))])
    client = load_app().test_client()
    at(STATUS_S + 7.5)
    source = f"//pubsub.googleapis.com/{trigger}"
    (first,) = summaries(client, capfd, {"pipelineId": 1, "runId": 456}, **{"ce-source": source})
    (continuation,) = pubsub.drain(trigger_sub, at_least=1)
    (second,) = summaries(client, capfd, json.loads(continuation.raw), **{"ce-source": source})
    assert (first["outcome"], "completedLagS" in first) == ("continued", False)
    assert (second["outcome"], second["completedLagS"]) == ("completed", 7.5)
