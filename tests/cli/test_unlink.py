"""``python main.py unlink`` (contract, section 9) as a command: exit codes, a racing writer, a terminal.

Each test runs the command as a user would, against the CDF simulator over real
HTTP; what it puts back is held to CDF's state in ``tests/e2e/test_unlink.py``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sim import CdfSimulator, Step
from tests.cli.test_display import _env as terminal_env
from tests.cli.test_display import run_on_pty
from tests.conftest import GCP_PROJECT
from tests.e2e.test_unlink import PIPELINE, RUN, UNLINK, command, linked, of_run, pipeline, printed

TITLE = f"undo pipeline {PIPELINE} run {RUN}"


@pytest.mark.parametrize(
    ("case", "reason"), [("unsupported", "unsupported_resource"), ("write_refused", "access_denied")]
)
def test_unlink_cli_an_unlink_ended_with_a_reason_exits_1(
    env: dict[str, str], sim: CdfSimulator, case: str, reason: str
) -> None:
    """An unlink that ends with a reason still prints run.unlinked, with that reason, and exits 1."""
    if case == "unsupported":
        sim.add_pipeline(PIPELINE, source_resource="assets")
    else:
        linked(sim, env)
        sim.script_writes(None, [Step.error(403)])
        env = {**env, "LINK_CONCURRENCY": "1"}  # one partition: the refusal comes before any write
    result = command(env, *UNLINK)
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)["data"]
    assert (data["reason"], data["written"]) == (reason, 0)


def test_unlink_cli_a_racing_writer_after_every_write_exits_3(env: dict[str, str], sim: CdfSimulator) -> None:
    """--reject: another writer replaces rejectedMatches right after each of three writes; the command exits 3 with
    every link still in place (the pairs go first), and run again it adds the pairs, keeps theirs, puts back."""
    linked(sim, env)
    written = of_run(sim)
    theirs = {"sourceExternalId": "their-source", "targetId": 1}

    def other_writer(lists: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {"rejectedMatches": [theirs]}  # their stale read, plus their own pair

    for _ in range(3):
        sim.race_pipeline_update(PIPELINE, other_writer, after=True)
    result = command(env, *UNLINK, "--reject")
    assert result.returncode == 3, result.stderr
    assert "lists_raced" in result.stderr
    assert (len(sim.pipeline_updates()), pipeline(sim)["rejectedMatches"], of_run(sim)) == (3, [theirs], written)
    again = printed(command(env, *UNLINK, "--reject"))  # the other writer is done
    rejected = pipeline(sim)["rejectedMatches"]
    assert rejected[0] == theirs
    assert sorted(p["sourceId"] for p in rejected[1:]) == sorted(written)
    assert (again["rejected"], again["unlinked"] + again["restored"], of_run(sim)) == (len(written), len(written), {})


def test_unlink_cli_a_racing_writer_once_is_merged_again(env: dict[str, str], sim: CdfSimulator) -> None:
    """Another writer replaces rejectedMatches once, right after the first write: the command reads again, merges
    its pairs with theirs, and both stand."""
    linked(sim, env)
    written = of_run(sim)
    theirs = {"sourceExternalId": "their-source", "targetId": 1}
    sim.race_pipeline_update(PIPELINE, lambda lists: {"rejectedMatches": [theirs]}, after=True)
    data = printed(command(env, *UNLINK, "--reject"))
    rejected = pipeline(sim)["rejectedMatches"]
    assert rejected[0] == theirs
    assert sorted(p["sourceId"] for p in rejected[1:]) == sorted(written)
    assert (data["rejected"], len(sim.pipeline_updates())) == (len(written), 2)


@pytest.mark.parametrize(
    ("args", "names"),
    [(["--run-id", "latest"], "latest"), (["--below", "nan"], "--below"), (["--project", "elsewhere"], "project")],
)
def test_unlink_cli_usage_errors_exit_2(env: dict[str, str], sim: CdfSimulator, args: list[str], names: str) -> None:
    """A bad option exits 2 with one line naming it, before any request to CDF."""
    given = dict(zip(args[::2], args[1::2], strict=True))
    options = {"--pipeline-id": str(PIPELINE), "--run-id": str(RUN)} | given
    result = command(env, "unlink", *[part for pair in options.items() for part in pair])
    assert result.returncode == 2, result.stderr
    assert names in result.stdout + result.stderr
    assert sim.requests == []


def test_unlink_cli_unconfirmed_run_unlinked_exits_3(env: dict[str, str], sim: CdfSimulator) -> None:
    """A LINK_TOPIC that does not exist: run.unlinked is not confirmed, exit 3; what was put back stays put back."""
    linked(sim, env)
    result = command({**env, "LINK_TOPIC": f"projects/{GCP_PROJECT}/topics/no-such-topic"}, *UNLINK[:-1])
    assert result.returncode == 3, result.stderr
    assert of_run(sim) == {}


def test_unlink_cli_on_a_terminal_shows_items_and_what_became_of_them(env: dict[str, str], sim: CdfSimulator) -> None:
    """On a terminal: one summary with the items checked, those written, and every count; no JSON on the screen."""
    linked(sim, env)
    n = len(of_run(sim))
    code, stdout, screen = run_on_pty([*UNLINK], terminal_env(sim))
    assert code == 0, screen.raw
    data = json.loads(stdout)["data"]
    counts = ", ".join(f"{data[name]} {name}" for name in ("unlinked", "restored") if data[name])
    summary = f"✓ unlinked {TITLE}: {n} sources checked, {n} links written"
    assert len(screen.lines) == 1, screen.text
    assert re.fullmatch(re.escape(summary) + r" in \d+\.\d\d s, " + re.escape(counts), screen.lines[0])
    assert screen.json_lines() == []
    assert of_run(sim) == {}
