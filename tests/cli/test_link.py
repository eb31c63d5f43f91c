"""``python main.py link`` (contract, sections 1 and 8): exit codes, ``--dry-run``, ``--stdout``, a terminal.

Each test runs the command as a user would, against the CDF simulator over real
HTTP, and the Pub/Sub emulator when it publishes; a link scenario of
sim/linkworld.py says what it should report and leave in CDF.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from sim import CdfSimulator, Step
from sim.linkworld import LinkWorld, link_world
from tests.cli.test_display import _env as terminal_env
from tests.cli.test_display import run_on_pty
from tests.conftest import GCP_PROJECT, ROOT, PubSub

PIPELINE, RUN = 5, 500
ARGS = ["link", "--pipeline-id", str(PIPELINE), "--run-id", str(RUN)]
TITLE = f"pipeline {PIPELINE} run {RUN}"
LINKED = "com.cognite.entitymatching.run.linked"


def world(sim: CdfSimulator, pipeline: int = PIPELINE) -> LinkWorld:
    """Two hundred matches with every case a link meets."""
    cases = {"ambiguous": 2, "runners_up": 2, "unlinkable": 3, "missing_sources": 2, "missing_targets": 2}
    return link_world(sim, pipeline, RUN, "time_series", 200, linked=0.1, conflicts=0.05, confirmed=4, **cases)


def command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def printed(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The last line ``--stdout`` prints: run.linked, after the run's link.review events."""
    *reviews, line = result.stdout.splitlines()
    assert {json.loads(r)["attributes"]["ce-type"] for r in reviews} <= {"com.cognite.entitymatching.link.review"}
    event = json.loads(line)
    assert set(event) == {"attributes", "data"}
    return dict(event)


def test_link_cli_stdout_prints_run_linked_and_leaves_the_links(env: dict[str, str], sim: CdfSimulator) -> None:
    """``--stdout``: exit 0, run.linked as one JSON line with the scenario's counts, CDF as the link should leave it."""
    scenario = world(sim)
    result = command(env, *ARGS, "--stdout")
    assert result.returncode == 0, result.stderr
    event = printed(result)
    assert event["attributes"]["ce-type"] == LINKED
    assert event["attributes"]["ce-subject"] == "linked"
    assert event["attributes"]["ce-id"].startswith(f"demo/{PIPELINE}/{RUN}/linked/")
    data = event["data"]
    assert (data["dryRun"], data["reason"], data["sourceResource"], data["targetResource"]) == (
        False,
        None,
        "time_series",
        "assets",
    )
    assert {k: data[k] for k in scenario.expected().counts()} == scenario.expected().counts()
    assert scenario.differences(sim) == []
    logs = [json.loads(line) for line in result.stderr.splitlines()]
    assert logs[-1]["message"] == f"linked: {data['linked']} sources linked ({data['written']} written now)"


def test_link_cli_a_second_link_writes_nothing_and_says_the_same(env: dict[str, str], sim: CdfSimulator) -> None:
    """Run again, the command finds every link in place: the same ce-id, written 0, and the only items sent again
    are those CDF refused before (their asset is missing), refused again."""
    scenario = world(sim)
    first = printed(command(env, *ARGS, "--stdout"))
    before = len(sim.writes())
    second = printed(command(env, *ARGS, "--stdout"))
    again = sim.writes()[before:]
    assert not any(w.applied for w in again)
    refused = {scenario.source_id(s) for s in scenario.cases.missing_target_indices()}
    assert {item["id"] for w in again for item in w.items or []} == refused
    assert second["attributes"]["ce-id"] == first["attributes"]["ce-id"]
    assert second["data"] == {**first["data"], "written": 0}


def test_link_cli_dry_run_writes_nothing_and_counts_as_the_link(env: dict[str, str], sim: CdfSimulator) -> None:
    """``--dry-run``: no write request, CDF untouched, the counts the real link then reports (written aside)."""
    scenario = world(sim)
    dry = command(env, *ARGS, "--dry-run", "--stdout")
    assert dry.returncode == 0, dry.stderr
    assert sim.writes() == []
    assert scenario.differences(sim, untouched=True) == []
    planned = printed(dry)["data"]
    real = printed(command(env, *ARGS, "--stdout"))["data"]
    assert (planned["dryRun"], planned["written"], real["dryRun"]) == (True, 0, False)
    assert {**planned, "dryRun": False, "written": real["written"]} == real


def test_link_cli_publishes_run_linked_to_link_topic(env: dict[str, str], sim: CdfSimulator, pubsub: PubSub) -> None:
    """Without ``--stdout``: run.linked goes to LINK_TOPIC, confirmed before exit 0; stdout carries the logs."""
    scenario = world(sim)
    topic, subscription = pubsub.topic("linked")
    reviews, review_subscription = pubsub.topic("reviews")
    result = command({**env, "LINK_TOPIC": topic, "REVIEW_TOPIC": reviews}, *ARGS)
    assert result.returncode == 0, result.stderr
    [received] = pubsub.drain(subscription, at_least=1)
    assert received.attributes["ce-type"] == LINKED
    handed = pubsub.drain(review_subscription, at_least=received.data["reviews"])
    assert {e.attributes["ce-type"] for e in handed} == {"com.cognite.entitymatching.link.review"}
    assert len(handed) == received.data["reviews"] > 0
    assert {k: received.data[k] for k in scenario.expected().counts()} == scenario.expected().counts()
    assert all("severity" in json.loads(line) for line in result.stdout.splitlines())


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsupported", "unsupported_resource"),  # a pipeline of assets to assets
        ("write_refused", "access_denied"),  # 403 on the first write
        ("no_run", "run_not_found"),
    ],
)
def test_link_cli_a_link_ended_with_a_reason_exits_1(
    env: dict[str, str], sim: CdfSimulator, case: str, reason: str
) -> None:
    """A link that ends with a reason still prints run.linked, with that reason, and exits 1."""
    if case == "unsupported":
        sim.add_pipeline(PIPELINE, source_resource="assets")
    elif case == "write_refused":
        world(sim)
        sim.script_writes(None, [Step.error(403)])
    else:
        sim.add_pipeline(PIPELINE)
    result = command(env, *ARGS, "--stdout")
    assert result.returncode == 1, result.stderr
    assert printed(result)["data"]["reason"] == reason


def test_link_cli_unconfirmed_run_linked_exits_3(env: dict[str, str], sim: CdfSimulator) -> None:
    """A LINK_TOPIC that does not exist: Pub/Sub confirms nothing, exit 3; the links written stay written."""
    scenario = world(sim)
    result = command({**env, "LINK_TOPIC": f"projects/{GCP_PROJECT}/topics/no-such-topic"}, *ARGS)
    assert result.returncode == 3, result.stderr
    assert scenario.differences(sim) == []


@pytest.mark.parametrize(
    ("args", "settings", "names"),
    [
        (["--run-id", "latest"], {}, "latest"),
        (["--pipeline-id", "0"], {}, "pipelineId"),
        (["--project", "elsewhere"], {}, "project"),
        ([], {"LINK_TOPIC": "projects/x/topics/a/b"}, "LINK_TOPIC"),
        ([], {"LINK_MIN_SCORE": "1.5"}, "LINK_MIN_SCORE"),
        ([], {"CDF_PROJECT": ""}, "CDF_PROJECT"),
    ],
)
def test_link_cli_usage_and_config_errors_exit_2(
    env: dict[str, str], sim: CdfSimulator, args: list[str], settings: dict[str, str], names: str
) -> None:
    """A bad id, project or setting exits 2 with one line naming it, before any request to CDF."""
    world(sim)
    given = dict(zip(args[::2], args[1::2], strict=True))
    options = {"--pipeline-id": str(PIPELINE), "--run-id": str(RUN)} | given
    env = {k: v for k, v in {**env, **settings}.items() if v}
    result = command(env, "link", *[part for pair in options.items() for part in pair])
    assert result.returncode == 2, result.stderr
    assert names in result.stdout + result.stderr
    assert sim.requests == []


# -- on a terminal


def test_link_cli_on_a_terminal_shows_reads_writes_and_decisions(sim: CdfSimulator) -> None:
    """On a terminal: the live line, then one summary with matches read, sources checked, links written and every
    decision; stdout unchanged, no JSON on the screen."""
    scenario = world(sim)
    code, stdout, screen = run_on_pty([*ARGS, "--stdout"], terminal_env(sim))
    assert code == 0, screen.raw
    data = json.loads(stdout.splitlines()[-1])["data"]  # run.linked, after the link.review lines
    expected = scenario.expected()
    checked = expected.linked + expected.conflict + expected.source_missing + expected.target_missing
    decisions = ", ".join(
        f"{data[name]} {words}"
        for name, words in (
            ("linked", "linked"),
            ("belowThreshold", "below threshold"),
            ("conflict", "conflict"),
            ("ambiguous", "ambiguous"),
            ("unlinkable", "unlinkable"),
            ("sourceMissing", "source missing"),
            ("targetMissing", "target missing"),
        )
    )
    summary = f"✓ linked {TITLE}: 200 matches read, {checked} sources checked, {expected.written} links written"
    assert len(screen.lines) == 1, screen.text
    assert re.fullmatch(re.escape(summary) + r" in \d+\.\d\d s, " + re.escape(decisions), screen.lines[0])
    assert any(piece.startswith(f"{TITLE} · ") and "matches read" in piece for piece in screen.sent)
    assert screen.json_lines() == []


def test_link_cli_on_a_terminal_a_dry_run_says_so(sim: CdfSimulator) -> None:
    """``--dry-run`` on a terminal: the title and the summary say it, and no link was written."""
    world(sim)
    code, _, screen = run_on_pty([*ARGS, "--stdout", "--dry-run"], terminal_env(sim))
    assert code == 0, screen.raw
    [line] = screen.lines
    assert line.startswith(f"✓ linked {TITLE} (dry run): 200 matches read, ")
    assert ", 0 links written, " in line
    assert line.endswith("(dry run: nothing written)")
    assert sim.writes() == []


def test_link_cli_on_a_terminal_a_refusal_ends_with_its_reason(sim: CdfSimulator) -> None:
    """A pipeline that links nothing links to assets: a red summary with the reason, then a readable warning."""
    sim.add_pipeline(PIPELINE, source_resource="assets")
    code, _, screen = run_on_pty([*ARGS, "--stdout"], terminal_env(sim))
    assert code == 1, screen.raw
    assert screen.lines[0].startswith(f"✗ refused {TITLE} (unsupported_resource: ")
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING +refused \(unsupported_resource\): .*", screen.lines[1])
    assert screen.json_lines() == []
