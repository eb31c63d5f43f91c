"""The link end to end (contract, section 8): on_run_completed as deployed, the CDF simulator, the Pub/Sub emulator.

One world holds a row of section 8's table per source; each test delivers the run.completed the relay published
and checks what CDF holds afterwards, what was written, and the run.linked a subscriber receives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from sim import CdfSimulator, Step
from sim.data import run_summary
from tests.conftest import ROOT, PubSub, Received, Topics, deliver, pubsub_message

PIPELINE, RUN = 7, 456
SINGLE = ("time_series", "sequences")
KINDS = ("time_series", "sequences", "files", "events")
LINKED = "com.cognite.entitymatching.run.linked"
RULE = r"rule_src-(\d+)->asset-\1"  # as CDF's OpenAPI names a rule's match


def m(source: Any, target: Any, score: float | None = 0.95, kind: str = "model") -> dict[str, Any]:
    """A match as CDF gives it; ``None`` leaves out a side's id."""
    side = lambda n, name: {"name": name} if n is None else {"id": n, "externalId": f"{name}-{n}"}  # noqa: E731
    return {"matchType": kind, "score": score, "source": side(source, "src"), "target": side(target, "asset")}


# One source per row of the table: (source, its matches, its links in CDF before, its links after) for a single-
# valued kind; list kinds differ only where a link points elsewhere (they add instead of conflicting).
ROWS: list[tuple[str, int, list[dict[str, Any]], tuple[int, ...] | None, str]] = [
    ("model-above-threshold", 1, [m(1, 101)], (), "linked"),
    ("confirmed-low-score", 2, [m(2, 102, 0.5, "previously-confirmed")], (), "linked"),
    ("below-threshold", 3, [m(3, 103, 0.5)], (), "belowThreshold"),
    ("no-score", 4, [m(4, 104, None)], (), "belowThreshold"),
    ("ambiguous", 5, [m(5, 105), m(5, 106)], (), "ambiguous"),
    ("confirmed-beats-score", 6, [m(6, 107, 0.99), m(6, 108, 0.7, "previously-confirmed")], (), "linked"),
    ("target-without-id", 7, [m(7, None)], (), "unlinkable"),
    ("in-place", 9, [m(9, 109)], (109,), "linked"),
    ("elsewhere", 10, [m(10, 110)], (999,), "conflict"),
    ("source-gone", 11, [m(11, 111)], None, "sourceMissing"),
    ("asset-gone", 12, [m(12, 404)], (), "targetMissing"),
    ("confirmed-as-cdf-names-it", 13, [m(13, 113, None, "previously_mapped")], (), "linked"),
    ("confirmed-by-the-pipeline", 14, [m(14, 114, 0.3)], (), "linked"),
    ("rule-without-score", 15, [m(15, 115, None, RULE)], (), "linked"),
    ("rejected-high-score", 16, [m(16, 116, 0.99)], (), "rejected"),
    ("rejected-best-then-the-next", 17, [m(17, 117, 0.99), m(17, 118, 0.95)], (), "linked"),
    ("confirmed-beats-rule", 18, [m(18, 119, None, RULE), m(18, 120, 0.1, "previously_mapped")], (), "linked"),
]
EXTRA = [m(None, 101)]  # a source without an id: unlinkable
# What a link of a single-valued kind writes.
WRITTEN_SINGLE = {1: 101, 2: 102, 6: 108, 13: 113, 14: 114, 15: 115, 17: 118, 18: 120}
# The pipeline's lists, each side named by id or external id, with pairs of its history that name no source here.
CONFIRMED = [{"sourceExternalId": "src-14", "targetId": 114}, {"sourceId": 88, "targetId": 7}]
REJECTED = [
    {"sourceId": 16, "targetExternalId": "asset-116"},
    {"sourceExternalId": "src-17", "targetExternalId": "asset-117"},
    {"sourceId": 1, "targetId": 999},
]


def expected(kind: str, overwrite: bool = False) -> dict[str, int]:
    """The counts of run.linked for ROWS and EXTRA."""
    counts = dict.fromkeys(("belowThreshold", "conflict", "ambiguous", "rejected", "unlinkable"), 0)
    counts |= {"linked": 0, "sourceMissing": 0, "targetMissing": 0, "reviews": 0}
    for _, _, matches, _, outcome in ROWS:
        if outcome == "conflict" and (overwrite or kind not in SINGLE):
            outcome = "linked"
        counts[outcome] += 1
        best = max((match["score"] for match in matches if match["score"] is not None), default=None)
        below = outcome == "belowThreshold" and best is not None and best >= 0.5  # REVIEW_MIN_SCORE's default
        counts["reviews"] += outcome in ("ambiguous", "conflict") or below  # a link.review each
    counts["unlinkable"] += len(EXTRA)
    return counts


def build_world(
    sim: CdfSimulator, kind: str, pipeline: int = PIPELINE, metadata: dict[int, dict[str, str]] | None = None
) -> None:
    """The pipeline, its run with ROWS' matches, the sources and assets as ROWS says (asset 404 does not exist);
    ``metadata`` for some sources."""
    sim.add_pipeline(pipeline, source_resource=kind, confirmed=CONFIRMED, rejected=REJECTED)
    matches = [match for _, _, ms, _, _ in ROWS for match in ms] + EXTRA
    sim.set_run(pipeline, RUN, [Step.run({**run_summary("Completed", RUN), "matches": matches, "errors": []})])
    sim.add_assets(100, 21)
    sim.add_assets(999)
    for _, source, _, links, _ in ROWS:
        if links is not None:
            state = {"asset_id": links[0]} if kind in SINGLE and links else {"asset_ids": links}
            sim.add_item(kind, source, metadata=(metadata or {}).get(source), **state)
    for source in (3, 4, 5, 6, 7, *range(13, 19)):  # present but not linked
        if sim.item_state(kind, source) is None:
            sim.add_item(kind, source)


def completed(project: str = "demo", pipeline: Any = PIPELINE, run: Any = RUN, **attributes: str) -> dict[str, Any]:
    """The run.completed message the relay publishes for the run (binary mode), as a Pub/Sub message."""
    data = {
        "project": project,
        "pipelineId": pipeline,
        "runId": run,
        "jobId": run,
        "status": "Completed",
        "createdTime": 1730204346000,
        "startTime": 1730204351000,
        "statusTime": 1730204406000,
        "matchCount": 12,
        "suggestedRuleCount": 0,
        "generatedRuleCount": 0,
        "errors": [],
    }
    base = {
        "ce-specversion": "1.0",
        "ce-type": "com.cognite.entitymatching.run.completed",
        "ce-source": f"https://cdf.example/api/v1/projects/{project}/context/entitymatching/pipelines/{pipeline}/runs/{run}",
        "ce-id": f"{project}/{pipeline}/{run}/run",
        "ce-subject": "run",
        "ce-time": "2024-10-29T12:20:06.000Z",
        "content-type": "application/json",
        "ce-cdfproject": str(project),
        "ce-pipelineid": str(pipeline),
        "ce-runid": str(run),
    }
    return pubsub_message(data, attributes={**base, **attributes})


def link_app() -> Any:
    """``main.on_run_completed`` loaded afresh by functions-framework, as on a new instance."""
    from functions_framework import create_app

    return create_app(target="on_run_completed", source=str(ROOT / "main.py"), signature_type="cloudevent")


@pytest.fixture
def link(env: dict[str, str]) -> Any:
    return link_app().test_client()


def linked(pubsub: PubSub, topics: Topics, at_least: int = 1) -> list[Received]:
    """The run.linked events a subscriber of the events topic receives."""
    return [e for e in pubsub.drain(topics.events_sub, at_least=at_least) if e.attributes["ce-type"] == LINKED]


def counts(event: Received) -> dict[str, int]:
    names = ("linked", "belowThreshold", "conflict", "ambiguous", "rejected", "unlinkable", "sourceMissing")
    names += ("targetMissing", "reviews")
    return {name: event.data[name] for name in names}


def summaries(output: str) -> list[dict[str, Any]]:
    """The summary lines of the link among the captured log lines."""
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if "outcome" in line and "belowThreshold" in line]


def written_items(sim: CdfSimulator, kind: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(status, item) of every item of every update request received."""
    for write in sim.writes(kind):
        for item in write.items or []:
            yield write.status, item


@pytest.mark.parametrize("kind", KINDS)
def test_link_each_row_of_the_table(link: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, kind: str) -> None:
    """Every row of section 8's table ends as the table says, in CDF and in run.linked, for every resource kind."""
    build_world(sim, kind)
    assert deliver(link, completed()).status_code == 200
    [event] = linked(pubsub, topics)
    assert counts(event) == expected(kind)
    single = kind in SINGLE
    assert event.data["written"] == (8 if single else 9)
    assert (event.data["sourceResource"], event.data["targetResource"], event.data["reason"]) == (kind, "assets", None)
    states = sim.item_states(kind)
    for source, target in WRITTEN_SINGLE.items():
        state = states[source]
        assert target in state.links()
        assert state.metadata["matchrelay:run"] == f"demo/{PIPELINE}/{RUN}"
    assert states[6].metadata["matchrelay:score"] == "0.7"
    assert states[9].links() == (109,)
    assert "matchrelay:run" not in states[9].metadata  # found in place: nothing written
    assert states[10].links() == ((999,) if single else (999, 110))
    for source in (3, 4, 5, 7, 16):
        assert states[source].links() == ()
    assert states[13].metadata["matchrelay:score"] == "null"  # confirmed without a score
    assert states[15].metadata["matchrelay:score"] == "null"  # a rule's match without one
    assert states[12].links() == ()
    assert 11 not in states
    assert event.attributes["ce-time"] == "2024-10-29T12:20:06.000Z"  # the run's statusTime


def test_link_overwrite_replaces_a_single_link(
    link: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """With LINK_OVERWRITE=true a single-valued link pointing elsewhere is replaced and counted as linked."""
    monkeypatch.setenv("LINK_OVERWRITE", "true")
    build_world(sim, "time_series")
    assert deliver(link_app().test_client(), completed()).status_code == 200
    [event] = linked(pubsub, topics)
    assert counts(event) == expected("time_series", overwrite=True)
    state = sim.item_state("time_series", 10)
    assert state is not None
    assert state.asset_id == 110


def test_link_provenance_says_the_asset_set_and_the_one_replaced(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """Each write records the asset it set, an overwrite the asset it replaced, and a stale previous is removed."""
    monkeypatch.setenv("LINK_OVERWRITE", "true")
    build_world(sim, "time_series", metadata={1: {"matchrelay:previous": "5", "unit": "bar"}})
    assert deliver(link_app().test_client(), completed()).status_code == 200
    linked(pubsub, topics)
    replaced, fresh = sim.item_state("time_series", 10), sim.item_state("time_series", 1)
    assert replaced is not None
    assert fresh is not None
    assert (replaced.asset_id, replaced.metadata["matchrelay:asset"], replaced.metadata["matchrelay:previous"]) == (
        110,
        "110",
        "999",
    )
    assert fresh.metadata == {
        "unit": "bar",
        "matchrelay:run": f"demo/{PIPELINE}/{RUN}",
        "matchrelay:score": "0.95",
        "matchrelay:asset": "101",
    }


def test_link_rules_not_trusted_need_the_score(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """With LINK_TRUST_RULES=false a rule's match without a score is below the threshold; a confirmed one still wins."""
    monkeypatch.setenv("LINK_TRUST_RULES", "false")
    build_world(sim, "time_series")
    assert deliver(link_app().test_client(), completed()).status_code == 200
    [event] = linked(pubsub, topics)
    want = expected("time_series")
    want["linked"] -= 1
    want["belowThreshold"] += 1
    assert counts(event) == want
    assert sim.item_state("time_series", 15) == sim.item_state("time_series", 16)  # neither linked
    state = sim.item_state("time_series", 18)
    assert state is not None
    assert state.asset_id == 120


def test_link_redelivered_after_a_person_rejected_a_linked_pair_leaves_it(
    link: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A pair rejected after the link wrote it: the redelivery counts it rejected and neither writes nor unlinks it."""
    build_world(sim, "time_series")
    message = completed()
    assert deliver(link, message).status_code == 200
    [first] = linked(pubsub, topics)
    before, writes = sim.item_states("time_series"), len(sim.writes())
    sim.catalog.pipelines[PIPELINE]["rejectedMatches"].append({"sourceExternalId": "src-1", "targetId": 101})
    assert deliver(link, message).status_code == 200
    [again] = linked(pubsub, topics)
    assert (again.data["rejected"], again.data["linked"]) == (first.data["rejected"] + 1, first.data["linked"] - 1)
    assert sim.item_states("time_series") == before
    assert {item["id"] for write in sim.writes()[writes:] for item in write.items or []} == {12}  # asset 404 again
    assert again.attributes["ce-id"] != first.attributes["ce-id"]


@pytest.mark.parametrize("kind", ["time_series", "files"])
def test_link_redelivered_three_times_changes_nothing(
    link: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, kind: str
) -> None:
    """The same run.completed three more times: CDF unchanged, nothing in place sent again, the same run.linked id."""
    build_world(sim, kind)
    message = completed()
    assert deliver(link, message).status_code == 200
    [first] = linked(pubsub, topics)
    after_first, writes_first = sim.item_states(kind), len(sim.writes(kind))
    for _ in range(3):
        assert deliver(link, message).status_code == 200
    again = linked(pubsub, topics, at_least=3)
    assert sim.item_states(kind) == after_first
    later = sim.writes(kind)[writes_first:]
    assert all(w.status == 400 for w in later)  # only asset 404's link is tried again, and refused again
    assert {item["id"] for w in later for item in w.items or []} == {12}
    assert [e.attributes["ce-id"] for e in again] == [first.attributes["ce-id"]] * 3
    assert [e.data["written"] for e in again] == [0, 0, 0]
    assert {json.dumps(counts(e)) for e in [first, *again]} == {json.dumps(counts(first))}


def test_link_dry_run_writes_nothing_and_counts_as_the_real_run(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """LINK_DRY_RUN decides and counts, writes nothing, and its counts equal those of the real run after it."""
    build_world(sim, "files")
    before = sim.item_states("files")
    monkeypatch.setenv("LINK_DRY_RUN", "true")
    assert deliver(link_app().test_client(), completed()).status_code == 200
    [dry] = linked(pubsub, topics)
    assert sim.writes() == []
    assert sim.item_states("files") == before
    monkeypatch.setenv("LINK_DRY_RUN", "false")
    assert deliver(link_app().test_client(), completed()).status_code == 200
    [real] = linked(pubsub, topics)
    assert (dry.data["dryRun"], dry.data["written"], real.data["dryRun"], real.data["written"]) == (True, 0, False, 9)
    assert counts(dry) == counts(real) == expected("files")
    assert dry.attributes["ce-id"] != real.attributes["ce-id"]


def test_link_summary_line_names_every_count(
    link: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, capfd: pytest.CaptureFixture[str]
) -> None:
    """The invocation's one summary line carries outcome, reason, dryRun, written and every count by name."""
    build_world(sim, "events")
    capfd.readouterr()
    assert deliver(link, completed()).status_code == 200
    [line] = summaries(capfd.readouterr().out)
    linked(pubsub, topics)
    assert line["severity"] == "INFO"
    assert (line["outcome"], line["reason"], line["dryRun"], line["written"]) == ("linked", None, False, 9)
    assert {k: line[k] for k in expected("events")} == expected("events")
    assert (line["project"], line["pipelineId"], line["runId"]) == ("demo", PIPELINE, RUN)


def test_link_unsupported_resource_writes_nothing(link: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics) -> None:
    """A pipeline of other resources than those links are made for: run.linked unsupported_resource, no reads."""
    sim.add_pipeline(PIPELINE, source_resource="assets", target_resource="assets")
    assert deliver(link, completed()).status_code == 200
    [event] = linked(pubsub, topics)
    assert (event.data["reason"], event.data["sourceResource"], event.data["linked"]) == (
        "unsupported_resource",
        "assets",
        0,
    )
    assert set(sim.request_counts()) <= {"token", "pipeline"}


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("failed", "run_failed"),
        ("pipeline-gone", "run_not_found"),
        ("run-gone", "run_not_found"),
        ("forbidden", "access_denied"),
    ],
)
def test_link_refusals_end_with_a_reason(
    link: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, script: str, reason: str
) -> None:
    """A failed run, a vanished pipeline or run, a 403: run.linked with the reason, acked, nothing written."""
    build_world(sim, "time_series")
    if script == "failed":
        sim.set_run(PIPELINE, RUN, [Step.status("Failed", RUN, error_message="empty")])
    elif script == "pipeline-gone":
        sim.script_pipeline(PIPELINE, [Step.error(404)])
    elif script == "run-gone":
        sim.set_run(PIPELINE, RUN, [Step.error(404)])
    else:
        sim.script_pipeline(PIPELINE, [Step.error(403)])
    assert deliver(link, completed()).status_code == 200
    [event] = linked(pubsub, topics)
    assert event.data["reason"] == reason
    assert event.data["written"] == 0
    assert sim.writes() == []


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (completed(pipeline=0), "invalid_event"),
        (completed(run="456"), "invalid_event"),
        (completed(project="evil"), "project_not_allowed"),
        (completed(pipeline=8), "pipeline_not_linked"),
        (completed(**{"ce-runid": "457"}), "invalid_event"),
    ],
    ids=["pipeline-zero", "run-a-string", "project-outside-allow-list", "pipeline-outside-link-pipelines", "mismatch"],
)
def test_link_bad_input_is_acked_with_a_warning_and_no_request(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    sim: CdfSimulator,
    capfd: pytest.CaptureFixture[str],
    message: dict[str, Any],
    reason: str,
) -> None:
    """An event this deployment must not link is acked with one WARNING line, and CDF receives no request."""
    monkeypatch.setenv("LINK_PIPELINES", "7,9")
    client = link_app().test_client()
    capfd.readouterr()
    assert deliver(client, message).status_code == 200
    [line] = summaries(capfd.readouterr().out)
    assert (line["severity"], line["outcome"], line["reason"]) == ("WARNING", "ignored", reason)
    assert (line["written"], line["linked"], "seconds" in line) == (0, 0, True)
    assert sim.requests == []


@pytest.mark.parametrize("mode", ["binary", "push"])
def test_link_other_types_are_acked_untouched(
    link: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, mode: str
) -> None:
    """A match event, or any other type, is acked at once: no request to CDF, nothing published."""
    message = completed(**{"ce-type": "com.cognite.entitymatching.match", "ce-subject": "match/0"})
    assert deliver(link, message, mode).status_code == 200
    assert deliver(link, pubsub_message({"pipelineId": 1, "runId": 2}), mode).status_code == 200
    assert sim.requests == []
    assert pubsub.drain(topics.events_sub) == []
