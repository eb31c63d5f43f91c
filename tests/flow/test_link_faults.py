"""The link under CDF's faults (contract, section 8.4-8.7), against the simulator's scenarios and its own oracle.

Throttling at the concurrency limit, 5xx and lost answers, a source deleted between the read and the write, a
missing asset, a 403 on writes, the deadline. In every case: nothing is written twice, nothing confident is left
unlinked except what the table says, and no message loops.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from handlers.cdf.httpio import make_http
from handlers.cdf.resources import Resources, Written
from handlers.cdf.tokens import TokenSource
from handlers.cdf.turn import Turn
from handlers.core.deadline import Deadline
from handlers.core.decision import OUTCOMES
from handlers.core.link_events import LinkRequest
from handlers.core.poll import Clock
from handlers.flow.runtime import Runtime
from handlers.process.settings import Settings, load_settings
from sim import CdfSimulator, Step
from sim.linkworld import LinkWorld, link_world
from sim.writelog import Applied
from tests.conftest import PubSub, Topics, deliver
from tests.flow.test_link import completed, link_app, linked

PIPELINE, RUN = 7, 456


def world(sim: CdfSimulator, kind: str = "time_series", matches: int = 3000, **cases: Any) -> LinkWorld:
    """A scenario with every case a link meets, some assets gone, sources linked already and in conflict."""
    settings: dict[str, Any] = {"below": 0.3, "linked": 0.1, "conflicts": 0.05, "ambiguous": 20, "runners_up": 30}
    settings |= {"unlinkable": 12, "missing_sources": 5, "missing_targets": 5, "confirmed": 40}
    settings |= {"rules": 20, "listed": 20, "rejected": 20, "rejected_best": 20, "noise": (500, 100)}
    return link_world(sim, PIPELINE, RUN, kind, matches, **{**settings, **cases})


def applied_items(sim: CdfSimulator, kind: str) -> Counter[int]:
    """How many applied writes carried each source: each must be 1 at most."""
    return Counter(item["id"] for w in sim.writes(kind) if w.applied for item in w.items or [])


def counts_of(event: Any) -> dict[str, int]:
    return {k: v for k, v in event.data.items() if k in world_counts_names()}


def world_counts_names() -> set[str]:
    return set(OUTCOMES)


def expected_counts(w: LinkWorld) -> dict[str, int]:
    return {k: v for k, v in w.expected().counts().items() if k in world_counts_names()}


def test_link_throttled_at_the_concurrency_limit(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """Four writes in flight against a limit of two: CDF answers 429, every write lands once, the oracle agrees."""
    monkeypatch.setenv("LINK_CONCURRENCY", "4")
    sim.classic.write_limit, sim.classic.write_latency_s = 2, 0.1
    w = world(sim, "time_series", 5000)
    assert deliver(link_app().test_client(), completed()).status_code == 200
    [event] = linked(pubsub, topics)
    assert [s for s in Counter(w.status for w in sim.writes()) if s not in (200, 400)] == [429]
    assert sim.classic.peak_in_flight == 2
    assert max(applied_items(sim, "timeseries").values()) == 1
    assert counts_of(event) == expected_counts(w)
    assert event.data["written"] == w.expected().written
    assert w.differences(sim) == []


@pytest.mark.parametrize("kind", ["sequences", "events"])
def test_link_5xx_and_lost_answers_send_nothing_twice(
    link: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, kind: str
) -> None:
    """5xx, and writes CDF applied but whose answer was lost: retried after reading CDF again, nothing sent twice."""
    w = world(sim, kind, 2500, missing_sources=0, missing_targets=0)  # every write is one CDF can apply
    lost = [Applied(Step.error(502)), Applied(Step.drop())]
    sim.script_writes(kind, [Step.error(503), lost[0], Step.error(500), lost[1]])
    assert deliver(link, completed()).status_code == 200
    [event] = linked(pubsub, topics)
    assert max(applied_items(sim, w.kind).values()) == 1
    assert counts_of(event) == expected_counts(w)
    lost_items = sum(len(x.items or []) for x in sim.writes(kind) if x.applied and x.status != 200)
    assert lost_items > 0
    assert event.data["written"] + lost_items == w.expected().written  # those found in place count as linked
    assert w.differences(sim) == []


def test_link_source_deleted_between_read_and_write(
    link: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A source deleted after its links were read is refused by CDF as missing and counted sourceMissing."""
    w = world(sim, "files", 800)
    to_write = [w.source_id(s) for s, _, written in w.decisions() if written is not None]
    gone = to_write[3]
    sim.delete_after_next_byids("files", items=(gone,))
    assert deliver(link, completed()).status_code == 200
    [event] = linked(pubsub, topics)
    expected = expected_counts(w)
    assert counts_of(event) == {
        **expected,
        "linked": expected["linked"] - 1,
        "sourceMissing": expected["sourceMissing"] + 1,
    }
    statuses = [x.status for x in sim.writes("files")]
    assert statuses == [400, 200]
    assert gone not in {item["id"] for item in sim.writes("files")[1].items or []}
    assert max(applied_items(sim, "files").values()) == 1


def test_link_403_on_writes_reports_and_the_next_delivery_finishes(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A 403 on a write: run.linked access_denied with the counts so far, acked; nothing later is started."""
    monkeypatch.setenv("LINK_CONCURRENCY", "1")
    w = world(sim, "time_series", 3000, missing_sources=0, missing_targets=0)  # one write per chunk
    sim.script_writes("timeseries", [None, Step.error(403)])
    client = link_app().test_client()
    assert deliver(client, completed()).status_code == 200
    [refused] = linked(pubsub, topics)
    first_chunk = {item["id"] for item in sim.writes("timeseries")[0].items or []}
    assert [x.status for x in sim.writes("timeseries")] == [200, 403]
    assert refused.data["reason"] == "access_denied"
    assert refused.data["written"] == len(first_chunk)
    assert sum(counts_of(refused).values()) < sum(expected_counts(w).values())
    assert deliver(client, completed()).status_code == 200  # once access is granted, the rest goes on
    [done] = linked(pubsub, topics)
    assert done.data["reason"] is None
    assert counts_of(done) == expected_counts(w)
    assert max(applied_items(sim, "timeseries").values()) == 1
    assert w.differences(sim) == []


class Ticking(Resources):
    """CDF's write edge, on a link whose clock moves on by ``write_s`` with every write CDF confirms."""

    def __init__(self, settings: Settings, clock: FakeClock, write_s: float) -> None:
        http = make_http(settings)
        super().__init__(settings, http, TokenSource(settings, http), Clock(clock.monotonic, clock.sleep))
        self.clock, self.write_s = clock, write_s

    def update(self, *args: Any, turn: Turn | None = None, **kwargs: Any) -> Written:
        assert turn is not None  # the link writes in a turn, always
        return super().update(*args, turn=Ticks(turn, self.clock, self.write_s), **kwargs)


class Ticks(Turn):
    """A write's turn whose clock moves on as CDF answers, before the turn is given back.

    The write's time passes in CDF, before its status line: moving the clock after ``update`` returned (the body
    read) let the next writer take the turn and find the clock where the last write had started.
    """

    def __init__(self, turn: Turn, clock: FakeClock, write_s: float) -> None:
        self.turn, self.clock, self.write_s, self.ticked = turn, clock, write_s, False

    def take(self) -> bool:
        return self.turn.take()

    def give(self) -> None:
        if self.turn.held and not self.ticked:
            self.ticked = True
            self.clock.now += self.write_s
        self.turn.give()


@dataclass
class FakeClock:
    now: float = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.now += seconds
        return False


def test_link_deadline_hands_back_after_the_last_confirmed_write(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """Writes of 1.2 s against a 5 s deadline (2 s margin): three writes an invocation, then a hand-back with no
    run.linked; each redelivery goes on from CDF's state, and the last publishes the whole run's counts."""
    monkeypatch.setenv("LINK_CONCURRENCY", "1")
    # The writes' deadline alone: link.review's second reading of the run would be one more step to run out of time
    # in (tests/flow/test_link_review.py has the hand-over).
    monkeypatch.setenv("REVIEW_MAX_EVENTS", "0")
    w = world(sim, "time_series", 8000, missing_sources=0, missing_targets=0)
    clock, settings = FakeClock(), load_settings()
    runtime = Runtime.build(settings)
    linker = dataclasses.replace(
        runtime.linker, clock=Clock(clock.monotonic, clock.sleep), resources=Ticking(settings, clock, 1.2)
    )
    outcomes = []
    while not outcomes or (outcomes[-1].kind == "handed_back" and len(outcomes) < 5):
        deadline = Deadline.after(5.0, clock.now, clock.monotonic)
        outcomes.append(linker.link(LinkRequest("demo", PIPELINE, RUN), deadline))
        assert clock.now <= deadline.end
    expected = w.expected()
    chunks = -(-(expected.linked + expected.conflict) // 1000)  # the sources whose links are read, 1000 a request
    assert chunks == 6  # three writes an invocation: writes start at 0, 1.2 and 2.4 s, none at 3.6 s (margin 2 s)
    assert [(o.kind, o.reason) for o in outcomes] == [("handed_back", "deadline"), ("linked", None)]
    assert len(sim.writes("timeseries")) == chunks
    assert sum(o.counts.written for o in outcomes) == w.expected().written
    [event] = linked(pubsub, topics)
    assert counts_of(event) == expected_counts(w)
    assert max(applied_items(sim, "timeseries").values()) == 1
    assert w.differences(sim) == []


def test_link_write_answered_late_is_found_in_place(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A write whose answer comes after the request's timeout lands anyway; the next try finds it in place."""
    monkeypatch.setenv("HTTP_TIMEOUT_S", "1")
    monkeypatch.setenv("LINK_CONCURRENCY", "2")
    sim.classic.write_latency_s = 1.3
    w = world(sim, "files", 1500, missing_sources=0, missing_targets=0)
    assert deliver(link_app().test_client(), completed()).status_code == 200
    [event] = linked(pubsub, topics)
    assert [x.status for x in sim.writes("files")] == [200, 200]  # answered after the client stopped waiting
    assert max(applied_items(sim, "files").values()) == 1
    assert (counts_of(event), event.data["written"]) == (expected_counts(w), 0)
    assert w.differences(sim) == []


def test_link_waits_for_a_run_still_running(link: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics) -> None:
    """A run CDF still reports Running is polled as section 4 says, then linked."""
    w = world(sim, "events", 300)
    sim.set_run(PIPELINE, RUN, [Step.status("Running", RUN), Step.stream(w.stream)])
    assert deliver(link, completed()).status_code == 200
    [event] = linked(pubsub, topics)
    assert counts_of(event) == expected_counts(w)
    assert w.differences(sim) == []


def test_link_dry_run_of_a_world_matches_the_oracle(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A dry run writes nothing and counts what the oracle says a link would do."""
    monkeypatch.setenv("LINK_DRY_RUN", "true")
    w = world(sim, "sequences", 2500)
    assert deliver(link_app().test_client(), completed()).status_code == 200
    [event] = linked(pubsub, topics)
    assert sim.writes() == []
    assert counts_of(event) == expected_counts(w)
    assert (event.data["dryRun"], event.data["written"]) == (True, 0)
    assert w.differences(sim, untouched=True) == []


@pytest.fixture
def link(env: dict[str, str]) -> Any:
    return link_app().test_client()
