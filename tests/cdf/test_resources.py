"""The link's CDF write edge (contract, section 8.4) against the simulator over real HTTP."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest

from handlers.cdf.httpio import make_http
from handlers.cdf.resources import Resources, Update
from handlers.cdf.results import read_pipeline
from handlers.cdf.tokens import TokenSource
from handlers.cdf.turn import Turn
from handlers.core.deadline import Deadline
from handlers.core.decision import RESOURCES, Link
from handlers.core.errors import (
    AccessDenied,
    InvalidRequest,
    InvalidResponse,
    MalformedResponse,
    OutOfTime,
    RunNotFound,
)
from handlers.core.pairs import CONFIRMED, REJECTED
from handlers.core.poll import Clock
from handlers.core.provenance import UpdateItems
from handlers.process.settings import Settings
from sim import CdfSimulator, Step
from sim.writes import Applied
from tests.conftest import SECRET

RUN = "demo/7/456"


@pytest.fixture
def edge(sim: CdfSimulator) -> Iterator[Resources]:
    settings = Settings(
        cdf_project="demo",
        cdf_url=sim.url,
        idp_token_url=sim.token_url,
        idp_client_id="matchrelay",
        idp_client_secret=SECRET,
        relay_topic="projects/matchrelay-test/topics/events",
        poll_initial_delay_s=0.01,
        poll_max_delay_s=0.05,
        http_timeout_s=5,
    )
    http = make_http(settings)
    clock = Clock(time.monotonic, lambda s: bool(time.sleep(s)), random.Random(1))
    yield Resources(settings, http, TokenSource(settings, http), clock)
    http.close()


def never() -> Deadline:
    return Deadline.never(time.monotonic)


def updates(kind: str, pairs: list[tuple[int, int]]) -> list[Update]:
    items = UpdateItems(RESOURCES[kind], RUN)
    return [Update(s, t, items.item(Link(s, t, 0.95, False))) for s, t in pairs]


def test_link_resources_pipeline_and_missing_pipeline(edge: Resources, sim: CdfSimulator) -> None:
    """The pipeline is read with its resources; an unknown one is run_not_found."""
    sim.add_pipeline(7, source_resource="files")
    pipeline, pairs = edge.pipeline("demo", 7, never(), read_pipeline)
    assert (pipeline["sources"]["resource"], pipeline["targets"]["resource"]) == ("files", "assets")
    assert len(pairs) == 0
    with pytest.raises(RunNotFound):
        edge.pipeline("demo", 8, never(), read_pipeline)


def test_link_resources_pipeline_lists_read_as_they_stream(edge: Resources, sim: CdfSimulator) -> None:
    """The pipeline's confirmed and rejected pairs, named by ids and external ids, are what the decision asks."""
    confirmed = [{"sourceId": 1, "targetExternalId": "a-9"}, {"sourceExternalId": "s-2", "targetId": 8}]
    rejected = [{"sourceExternalId": "s-3", "targetExternalId": "a-7"}, {"sourceId": 1, "targetId": 9}]
    sim.add_pipeline(7, confirmed=confirmed * 500, rejected=rejected)
    sim.catalog.pipelines[7]["trueMatches"] = [{"sourceId": 4, "targetId": 4}] * 3000  # read past
    _, pairs = edge.pipeline("demo", 7, never(), read_pipeline)
    assert len(pairs) == 1002  # every entry read, repeats too
    side = lambda i, e: {"id": i, "externalId": e}  # noqa: E731
    assert pairs.of(side(1, "s-1"), side(9, "a-9")) == CONFIRMED | REJECTED
    assert pairs.of(side(2, "s-2"), side(8, "a-8")) == CONFIRMED
    assert pairs.of(side(3, "s-3"), side(7, "a-7")) == REJECTED
    assert pairs.of(side(4, "s-4"), side(4, "a-4")) == 0


def test_link_resources_pipeline_retried_after_transient_answers_and_a_refused_token(
    edge: Resources, sim: CdfSimulator
) -> None:
    """A 503 and a 401 before the pipeline are retried (the token fetched anew), and the body read whole then."""
    sim.add_pipeline(7, rejected=[{"sourceId": 1, "targetId": 2}])
    sim.script_pipeline(7, [Step.error(503, "busy"), Step.error(401, "expired"), None])
    _, pairs = edge.pipeline("demo", 7, never(), read_pipeline)
    assert pairs.of({"id": 1}, {"id": 2}) == REJECTED
    assert sim.request_counts()["pipeline"] == 3


def test_link_resources_byids_ignores_unknown(edge: Resources, sim: CdfSimulator) -> None:
    """byids answers the items that exist, with their links, and asks CDF to ignore unknown ids."""
    sim.add_item("timeseries", 1, asset_id=5)
    sim.add_item("timeseries", 3)
    items = edge.by_ids("demo", "timeseries", [1, 2, 3], never())
    assert [(key, i["id"], i.get("assetId")) for key, i in items.items()] == [(1, 1, 5), (3, 3, None)]


@pytest.mark.parametrize("kind", ["time_series", "sequences", "files", "events"])
def test_link_resources_update_writes_links_and_provenance(edge: Resources, sim: CdfSimulator, kind: str) -> None:
    """An update sets assetId or adds to assetIds, with the run and score in the metadata, in one request."""
    sim.add_assets(100, 3)
    sim.add_item(kind, 1, metadata={"unit": "bar"})
    sim.add_item(kind, 2)
    result = edge.update("demo", RESOURCES[kind].path, updates(kind, [(1, 100), (2, 101)]), never())
    assert (result.written, result.source_missing, result.target_missing, result.requests) == ([1, 2], [], [], 1)
    state = sim.item_state(kind, 1)
    assert state is not None
    assert state.links() == (100,)
    provenance = {"matchrelay:run": RUN, "matchrelay:score": "0.95", "matchrelay:asset": "100"}
    assert state.metadata == {"unit": "bar"} | provenance


def test_link_resources_missing_items_and_assets_are_left_out(edge: Resources, sim: CdfSimulator) -> None:
    """A 400 naming missing items and assets is sent again without them, each counted as a source or a target."""
    sim.add_assets(100, 2)
    for n in (1, 3, 4):
        sim.add_item("files", n)
    pairs = [(1, 100), (2, 100), (3, 999), (4, 101)]
    result = edge.update("demo", "files", updates("files", pairs), never())
    assert (result.written, result.source_missing, result.target_missing) == ([1, 4], [2], [3])
    sent = [[i["id"] for i in w.items or []] for w in sim.writes("files")]
    assert sent == [[1, 2, 3, 4], [1, 4]]
    assert [w.status for w in sim.writes("files")] == [400, 200]


def test_link_resources_id_both_item_and_asset(edge: Resources, sim: CdfSimulator) -> None:
    """An id CDF names that is both an item and an asset of the request is settled by asking CDF for the item."""
    sim.add_assets(5, 1)  # asset 5 exists, item 5 does not
    sim.add_item("timeseries", 6)  # item 6 exists, asset 6 does not
    sim.add_item("timeseries", 7)
    pairs = [(5, 6), (6, 5), (7, 6)]
    result = edge.update("demo", "timeseries", updates("time_series", pairs), never())
    assert (result.written, result.source_missing, result.target_missing) == ([6], [5], [7])
    state = sim.item_state("timeseries", 6)
    assert state is not None
    assert state.asset_id == 5


@pytest.mark.parametrize(
    "fault",
    [Step.throttle(), Step.throttle("0"), Step.error(503), Step.error(500), Step.drop()],
    ids=["429", "429-retry-after-0", "503", "500", "dropped"],
)
def test_link_resources_transient_answers_are_retried(edge: Resources, sim: CdfSimulator, fault: Step) -> None:
    """429, 5xx and a dropped connection are retried; the write then lands once."""
    sim.add_assets(100, 1)
    sim.add_item("events", 1)
    sim.script_writes("events", [fault, fault, None])
    result = edge.update("demo", "events", updates("events", [(1, 100)]), never())
    assert result.written == [1]
    assert [w.status for w in sim.writes("events")] == [fault.code if fault.kind != "drop" else 0] * 2 + [200]
    state = sim.item_state("events", 1)
    assert state is not None
    assert state.asset_ids == (100,)


@pytest.mark.parametrize(
    ("fault", "error"),
    [(Step.error(403), AccessDenied), (Step.error(400, "bad"), InvalidRequest), (Step.error(422), InvalidRequest)],
    ids=["403", "400-without-missing", "422"],
)
def test_link_resources_permanent_answers(
    edge: Resources, sim: CdfSimulator, fault: Step, error: type[Exception]
) -> None:
    """403 is access_denied and another 4xx invalid_request, at once: nothing is sent again."""
    sim.add_item("timeseries", 1)
    sim.script_writes("timeseries", [fault])
    with pytest.raises(error):
        edge.update("demo", "timeseries", updates("time_series", [(1, 100)]), never())
    assert len(sim.writes("timeseries")) == 1


@pytest.mark.parametrize(
    ("answer", "written"),
    [(b'{"items": []}', True), (b' {"items": [{"id": 1}]}\n', True), (b"<html>ok</html>", False), (b"", False)],
    ids=["object", "object-spaced", "html", "empty"],
)
def test_link_resources_update_answer_is_glanced_at(
    edge: Resources, sim: CdfSimulator, answer: bytes, written: bool
) -> None:
    """An update's 200 counts as written when its body is a JSON object at a glance; else it is not JSON, retried
    up to invalid_response."""
    sim.add_item("timeseries", 1)
    sim.script_writes("timeseries", [Step.raw(200, answer)] * 4)
    if written:
        assert edge.update("demo", "timeseries", updates("time_series", [(1, 100)]), never()).written == [1]
    else:
        with pytest.raises(InvalidResponse):
            edge.update("demo", "timeseries", updates("time_series", [(1, 100)]), never())
    assert len(sim.writes("timeseries")) == (1 if written else 4)


def test_link_resources_refused_cached_token_is_fetched_again(edge: Resources, sim: CdfSimulator) -> None:
    """A 401 on a cached token fetches a new one and sends the request again."""
    sim.add_item("timeseries", 1)
    edge.by_ids("demo", "timeseries", [1], never())
    sim.expire_tokens()
    assert list(edge.by_ids("demo", "timeseries", [1], never())) == [1]
    assert len(sim.token_requests()) == 2


def test_link_resources_refused_tokens_are_replaced_on_writes(edge: Resources, sim: CdfSimulator) -> None:
    """A 401 on a write replaces the token (a fresh one after a backoff) and sends the write again."""
    sim.add_assets(100, 1)
    sim.add_item("timeseries", 1)
    edge.by_ids("demo", "timeseries", [1], never())
    sim.script_writes("timeseries", [Step.error(401), Step.error(401)])
    result = edge.update("demo", "timeseries", updates("time_series", [(1, 100)]), never())
    assert result.written == [1]
    assert [w.status for w in sim.writes("timeseries")] == [401, 401, 200]
    assert len(sim.token_requests()) == 3


def test_link_resources_three_fresh_tokens_refused_is_access_denied(edge: Resources, sim: CdfSimulator) -> None:
    """Three tokens in a row, each fetched just now, refused with 401: access_denied, no loop."""
    sim.script_byids(None, [Step.error(401)] * 10)
    with pytest.raises(AccessDenied):
        edge.by_ids("demo", "timeseries", [1], never())
    assert len(sim.token_requests()) == 3
    assert sim.request_counts()["byids"] == 3


def test_link_resources_throttled_past_the_deadline_hands_back(edge: Resources, sim: CdfSimulator) -> None:
    """A write CDF keeps throttling stops before the invocation's deadline, and says so."""
    sim.add_item("timeseries", 1)
    sim.script_writes("timeseries", [Step.throttle("1")] * 50)
    started = time.monotonic()
    deadline = Deadline.after(5.0, started, time.monotonic)  # a margin of 2 s: 3 s to work
    with pytest.raises(OutOfTime):
        edge.update("demo", "timeseries", updates("time_series", [(1, 100)]), deadline)
    assert time.monotonic() < deadline.end
    assert 1 <= len(sim.writes("timeseries")) <= 4


@pytest.mark.parametrize(
    "answer",
    [
        b'{"items": {"id": 1}}',
        b'{"items": "x"}',
        b'{"items": [1]}',
        b'{"items": [null]}',
        b'{"items": [["id"]]}',
        b'{"items": [{"name": "no id"}]}',
        b'{"items": [{"id": "1"}]}',
        b'{"items": [{"id": true}]}',
        b'{"items": [{"id": 0}]}',
        b'{"items": [{"id": 9007199254740992}]}',
        b'{"items": [{"id": [1]}]}',
        b"{}",
    ],
)
def test_link_resources_byids_answer_not_items_with_ids_is_malformed(
    edge: Resources, sim: CdfSimulator, answer: bytes
) -> None:
    """A byids answer that is not a list of objects with CDF ids is MalformedResponse, whatever is wrong in it."""
    sim.script_byids(None, [Step(body=answer)])
    with pytest.raises(MalformedResponse, match="byids"):
        edge.by_ids("demo", "timeseries", [1], never())


def test_link_resources_update_gives_its_turn_back_when_cdf_answers(edge: Resources, sim: CdfSimulator) -> None:
    """A write's turn under the limit is given back at CDF's answer, before the items CDF echoes are read."""
    sim.add_assets(100, 1)
    sim.add_item("timeseries", 1)
    slots, taken = threading.Semaphore(1), threading.Event()
    turn = Turn(slots, None)
    assert turn.take()
    threading.Thread(target=lambda: slots.acquire(timeout=10) and taken.set(), daemon=True).start()

    def echo() -> Iterator[bytes]:
        yield b'{"items": ['
        taken.wait(10)  # the rest of the body only once another writer got the turn (or after 10 s: the test fails)
        yield b'{"id": 1}]}'

    sim.script_writes("timeseries", [Applied(Step.stream(echo))])
    result = edge.update("demo", "timeseries", updates("time_series", [(1, 100)]), never(), turn=turn)
    assert (result.written, taken.is_set(), turn.held) == ([1], True, False)


def test_link_resources_update_refused_keeps_its_turn(edge: Resources, sim: CdfSimulator) -> None:
    """A write CDF refuses keeps its turn: the caller gives it back once every writer knows of the refusal."""
    sim.add_item("timeseries", 1)
    turn = Turn(threading.Semaphore(1), None)
    assert turn.take()
    sim.script_writes("timeseries", [Step.error(403)])
    with pytest.raises(AccessDenied):
        edge.update("demo", "timeseries", updates("time_series", [(1, 100)]), never(), retry=False, turn=turn)
    assert turn.held
