"""``python main.py unlink`` (contract, section 9) through real processes: a run linked by ``python main.py link``,
then put back, against the CDF simulator over real HTTP.

The oracle is CDF itself: before the link, every item's links and metadata are
taken; after the link and the unlink, every item the run wrote is as it was
then, and every item someone changed since is as they left it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest

from handlers.core.provenance import ASSET_KEY, PREVIOUS_KEY, RUN_KEY, SCORE_KEY
from sim import CdfSimulator, Step
from sim.classic import ItemState
from sim.linkworld import link_world
from sim.writes import Applied
from tests.conftest import ROOT

PIPELINE, RUN = 5, 500
RUN_TEXT = f"demo/{PIPELINE}/{RUN}"
LINK = ["link", "--pipeline-id", str(PIPELINE), "--run-id", str(RUN), "--stdout"]
UNLINK = ["unlink", "--pipeline-id", str(PIPELINE), "--run-id", str(RUN), "--stdout"]
UNLINKED = "com.cognite.entitymatching.run.unlinked"
TOKEN = "unlink-test-token"


def command(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=180
    )


def printed(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The data of the one event ``--stdout`` printed, after checking the command succeeded."""
    assert result.returncode == 0, result.stderr[-3000:]
    *reviews, line = result.stdout.splitlines()  # a link prints its link.review events first
    assert {json.loads(r)["attributes"]["ce-type"] for r in reviews} <= {"com.cognite.entitymatching.link.review"}
    return dict(json.loads(line)["data"])


def linked(
    sim: CdfSimulator, env: Mapping[str, str], kind: str = "time_series", n: int = 200, **cases: Any
) -> dict[int, ItemState]:
    """A run of ``n`` matches linked by the command (over links in place, with LINK_OVERWRITE=true, so some writes
    replace an asset); every item as it was before the link."""
    link_world(sim, PIPELINE, RUN, kind, n, linked=0.1, conflicts=0.1, confirmed=4, **cases)
    before = dict(sim.item_states(kind))
    assert printed(command({**env, "LINK_OVERWRITE": "true"}, *LINK))["written"] > 0
    return before


def of_run(sim: CdfSimulator, kind: str = "time_series") -> dict[int, ItemState]:
    """The items whose matchrelay:run names the run."""
    return {i: s for i, s in sim.item_states(kind).items() if s.metadata.get(RUN_KEY) == RUN_TEXT}


def by_hand(sim: CdfSimulator, path: str, item: dict[str, Any]) -> None:
    """One update sent to CDF as a person would send it, outside matchrelay."""
    sim.static_tokens.add(TOKEN)
    url = f"{sim.url}/api/v1/projects/demo/{path}/update"
    answer = httpx.post(url, json={"items": [item]}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert answer.status_code == 200, answer.text


def test_unlink_puts_back_every_row_and_leaves_what_people_changed(env: dict[str, str], sim: CdfSimulator) -> None:
    """Every row of the table: links put back to null or to the asset they replaced, a hand relink and an item
    without matchrelay:asset left as they are; CDF as before the link but for those two."""
    before = linked(sim, env)
    written = of_run(sim)
    relinked, stripped, *rest = sorted(written)
    sim.add_assets(424242)
    by_hand(sim, "timeseries", {"id": relinked, "update": {"assetId": {"set": 424242}}})
    by_hand(sim, "timeseries", {"id": stripped, "update": {"metadata": {"remove": [ASSET_KEY]}}})
    left = {relinked: sim.item_state("timeseries", relinked), stripped: sim.item_state("timeseries", stripped)}
    data = printed(command(env, *UNLINK))
    restored = sum(1 for i in rest if PREVIOUS_KEY in written[i].metadata)
    assert restored > 0
    assert {k: data[k] for k in ("unlinked", "restored", "changed", "unverified", "kept", "rejected")} == {
        "unlinked": len(rest) - restored,
        "restored": restored,
        "changed": 1,
        "unverified": 1,
        "kept": 0,
        "rejected": 0,
    }
    assert data["written"] == len(rest)
    assert (data["reason"], data["dryRun"], data["below"], data["sourceResource"]) == (None, False, None, "time_series")
    assert sim.item_states("timeseries") == {**before, **left}


@pytest.mark.parametrize("kind", ["files", "events"])
def test_unlink_a_list_resource_removes_the_one_asset(env: dict[str, str], sim: CdfSimulator, kind: str) -> None:
    """Files and events lose the one asset the run added, and keep the others they held."""
    before = linked(sim, env, kind)
    path = "files" if kind == "files" else "events"
    n = len(of_run(sim, path))
    data = printed(command(env, *UNLINK))
    assert (data["unlinked"], data["restored"], data["written"]) == (n, 0, n)
    assert sim.item_states(path) == before


def test_unlink_below_puts_back_only_lower_scores(env: dict[str, str], sim: CdfSimulator) -> None:
    """--below S puts back the links scored below S and keeps the others (those without a score too)."""
    before = linked(sim, env)
    written = of_run(sim)
    scores = {i: s.metadata[SCORE_KEY] for i, s in written.items()}
    numbers = sorted(float(v) for v in scores.values() if v != "null")
    below = numbers[len(numbers) // 2]
    low = {i for i, v in scores.items() if v != "null" and float(v) < below}
    data = printed(command(env, *UNLINK, "--below", str(below)))
    assert (data["below"], data["kept"], data["unlinked"] + data["restored"]) == (
        below,
        len(written) - len(low),
        len(low),
    )
    after = sim.item_states("timeseries")
    assert {i: after[i] for i in low} == {i: before[i] for i in low}
    assert {i: after[i] for i in written if i not in low} == {i: written[i] for i in written if i not in low}


def test_unlink_dry_run_counts_and_writes_nothing(env: dict[str, str], sim: CdfSimulator) -> None:
    """--dry-run reports the counts a real unlink reaches, and CDF is left as the link left it."""
    linked(sim, env)
    after_link, writes = dict(sim.item_states("timeseries")), len(sim.writes())
    dry = printed(command(env, *UNLINK, "--dry-run", "--reject"))
    assert (len(sim.writes()), sim.item_states("timeseries")) == (writes, after_link)
    assert sim.pipeline_updates() == []
    real = printed(command(env, *UNLINK, "--reject"))
    assert (dry["dryRun"], real["dryRun"]) == (True, False)
    same = ("unlinked", "restored", "changed", "unverified", "kept", "rejected")
    assert {k: dry[k] for k in same} == {k: real[k] for k in same}
    assert (dry["written"], real["written"]) == (0, real["unlinked"] + real["restored"])


def test_unlink_reject_adds_the_pairs_and_keeps_those_there(env: dict[str, str], sim: CdfSimulator) -> None:
    """--reject adds each pair put back to rejectedMatches, after the pairs people had rejected before."""
    linked(sim, env, rejected=3)  # pairs people rejected before, named by ids and external ids
    written = of_run(sim)
    earlier = pipeline(sim)["rejectedMatches"]
    assert len(earlier) >= 3
    data = printed(command(env, *UNLINK, "--reject"))
    pairs = [{"sourceId": i, "targetId": int(s.metadata[ASSET_KEY])} for i, s in sorted(written.items())]
    assert data["rejected"] == len(pairs)
    rejected = pipeline(sim)["rejectedMatches"]
    assert rejected[: len(earlier)] == earlier
    assert sorted(rejected[len(earlier) :], key=lambda p: p["sourceId"]) == pairs
    assert [(w.pipeline, w.field) for w in sim.pipeline_updates()] == [(PIPELINE, "rejectedMatches")]


def test_unlink_more_than_three_pages(env: dict[str, str], sim: CdfSimulator) -> None:
    """3,500 items of the run, one partition: four pages by cursor, every item put back."""
    link_world(sim, PIPELINE, RUN, "time_series", 10)  # the pipeline: time series to assets
    metadata = {RUN_KEY: RUN_TEXT, SCORE_KEY: "0.95", ASSET_KEY: "3"}
    first, n = 50_000_000, 3500
    sim.add_items(
        "timeseries", first, n, lambda i: (None, f"ts {i}"), links=lambda i: (3,), metadata=lambda i: metadata
    )
    data = printed(command({**env, "LINK_CONCURRENCY": "1"}, *UNLINK))
    assert (data["unlinked"], data["written"]) == (n, n)
    assert sim.request_counts()["list"] == 4
    states = sim.item_states("timeseries")
    assert all(states[i] == ItemState() for i in range(first, first + n))


def test_unlink_through_faults_ends_as_a_clean_unlink(env: dict[str, str], sim: CdfSimulator) -> None:
    """429 and 5xx on list pages and writes, and a write CDF applied whose answer was lost: CDF as before the link."""
    before = linked(sim, env)
    n = len(of_run(sim))
    sim.script_list("timeseries", [Step.throttle("0"), Step.error(503)])
    sim.script_writes("timeseries", [Step.error(502), Applied(Step.drop()), Step.throttle()])
    lists, updates = sim.request_counts().get("list", 0), sim.request_counts()["update"]
    data = printed(command({**env, "LINK_CONCURRENCY": "1"}, *UNLINK))
    # One page, one write: the two faulted pages and the three faulted writes were each tried again.
    assert (sim.request_counts()["list"] - lists, sim.request_counts()["update"] - updates) == (3, 4)
    assert (data["unlinked"] + data["restored"], data["changed"]) == (n, 0)
    assert sim.item_states("timeseries") == before


def test_unlink_an_item_deleted_since_it_was_listed_is_left_out(env: dict[str, str], sim: CdfSimulator) -> None:
    """An item deleted between its page and its write: CDF answers 400 missing, the write goes again without it, and
    it counts changed; every other item is put back."""
    before = linked(sim, env)
    written = of_run(sim)
    gone = min(written)
    sim.hold_writes()
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    process = subprocess.Popen(
        [sys.executable, "main.py", *UNLINK],
        cwd=ROOT,
        env={**base, **env, "LINK_CONCURRENCY": "1"},  # one page, one write
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.wait_writes_in_flight(1)
        assert sim.delete_item("timeseries", gone)
    finally:
        sim.release_writes()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    data = json.loads(out)["data"]
    assert (data["changed"], data["unlinked"] + data["restored"], data["written"]) == (
        1,
        len(written) - 1,
        len(written) - 1,
    )
    assert [w.status for w in sim.writes()][-2:] == [400, 200]
    after = sim.item_states("timeseries")
    assert gone not in after
    assert after == {i: s for i, s in before.items() if i != gone}


def test_unlink_killed_then_run_again_ends_as_one_clean_unlink(env: dict[str, str], sim: CdfSimulator) -> None:
    """SIGKILL while the second write is in flight, then a fresh process: CDF as before the link, and the second
    process puts back what the first left."""
    before = linked(sim, env, n=5000)
    n = len(of_run(sim))
    assert n > 2000  # three pages at least, one partition
    sim.script_writes("timeseries", [None, Step.slow(120, Step.error(503))])  # the second write hangs
    updates = sim.request_counts().get("update", 0)  # the link's
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    process = subprocess.Popen(
        [sys.executable, "main.py", *UNLINK],
        cwd=ROOT,
        env={**base, **env, "LINK_CONCURRENCY": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert until(lambda: sim.request_counts().get("update", 0) >= updates + 2), "the second write never came"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    left = of_run(sim)
    assert 0 < n - len(left) < n
    data = printed(command(env, *UNLINK))
    assert (data["unlinked"] + data["restored"], data["written"]) == (len(left), len(left))
    assert sim.item_states("timeseries") == before


def test_unlink_a_second_unlink_writes_nothing(env: dict[str, str], sim: CdfSimulator) -> None:
    """Run again, the unlink finds nothing of the run left and sends no update."""
    linked(sim, env)
    first = printed(command(env, *UNLINK))
    writes = len(sim.writes())
    second = printed(command(env, *UNLINK))
    assert first["written"] > 0
    assert (second["written"], second["unlinked"], second["restored"], len(sim.writes())) == (0, 0, 0, writes)


def until(condition: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Whether ``condition`` came true within ``timeout_s`` (looked at every 10 ms)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def pipeline(sim: CdfSimulator, pipeline_id: int = PIPELINE) -> dict[str, Any]:
    """The pipeline as CDF answers its GET."""
    sim.static_tokens.add(TOKEN)
    url = f"{sim.url}/api/v1/projects/demo/context/entitymatching/pipelines/{pipeline_id}"
    answer = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())
