"""What a 401 means (contract, section 4): the CDF edge and the poller on httpx's MockTransport, time faked.

A refused cached token is replaced at once; a refused token fetched just now is replaced after a backoff, and the
third such refusal in a row is access_denied; a static token is access_denied at once. The streak is the
invocation's: another invocation sharing the token keeps its own.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from handlers.cdf.api import CdfClient
from handlers.cdf.tokens import TokenSource
from handlers.core.deadline import Deadline
from handlers.core.errors import AccessDenied, AuthFailed, RelayError, TransientError
from handlers.core.poll import Backoff, Clock, Deadlines, Poller
from handlers.process.settings import Settings
from tests.cdf.test_cdf import CountingLock

RUN = {"status": "Completed", "jobId": 2, "statusTime": 1730204406000, "matches": []}
IDP = {
    "ok": (200, {"access_token": None, "expires_in": 3600}),  # each answer gets a token of its own
    "same": (200, {"access_token": "same", "expires_in": 3600}),  # an identity provider that repeats itself
    "503": (503, {"error": "temporarily_unavailable"}),
    "401": (401, {"error": "invalid_client"}),
}


@dataclass
class World:
    """A token endpoint and a CDF answering from scripts (the last answer repeats), and what each was sent."""

    cdf: list[int]
    idp: list[str] = field(default_factory=lambda: ["ok"])
    sent: list[str] = field(default_factory=list)  # the token of each CDF request
    fetches: int = 0
    _issued: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/t":
            code, body = IDP[self.idp[min(self.fetches, len(self.idp) - 1)]]
            self.fetches += 1
            if code == 200 and body["access_token"] is None:
                body = {**body, "access_token": f"t{next(self._issued)}"}
            return httpx.Response(code, json=body)
        self.sent.append(request.headers["authorization"].removeprefix("Bearer "))
        code = self.cdf[min(len(self.sent), len(self.cdf)) - 1]
        return httpx.Response(code, json=RUN if code == 200 else {"error": {"code": code, "message": "no"}})


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], Settings]:
    def make(static: bool) -> Settings:
        for name in ("CDF_TOKEN", "IDP_TOKEN_URL", "IDP_CLIENT_ID", "IDP_CLIENT_SECRET"):
            monkeypatch.delenv(name, raising=False)
        credentials = {"CDF_TOKEN": "static"} if static else {"IDP_TOKEN_URL": "http://idp.test/t"}
        if not static:
            credentials |= {"IDP_CLIENT_ID": "id", "IDP_CLIENT_SECRET": "secret"}
        for name, value in {"CDF_PROJECT": "demo", "CDF_URL": "http://cdf.test", **credentials}.items():
            monkeypatch.setenv(name, value)
        return Settings()  # type: ignore[call-arg]

    return make


@dataclass
class Edge:
    """The CDF client and token source of one process, and a poller per invocation whose sleeps are recorded."""

    cdf: CdfClient
    tokens: TokenSource
    waits: list[float] = field(default_factory=list)
    now: float = 0.0

    def invocation(self) -> tuple[Poller, Deadline]:
        def sleep(seconds: float) -> bool:
            self.waits.append(seconds)
            self.now += seconds
            return False

        clock = Clock(lambda: self.now, sleep, random.Random(0))
        return Poller(Backoff(1.0, 30.0), clock), Deadline.never(clock.monotonic)

    def run(self, poller: Poller | None = None, deadline: Deadline | None = None) -> Any:
        """One invocation polling the run until it is read: its body, or the error it ended with."""
        if poller is None or deadline is None:
            poller, deadline = self.invocation()

        def step() -> Any:
            with self.cdf.open_run("demo", 1, 2, deadline) as chunks:
                return json.loads(b"".join(chunks))

        try:
            return poller.until_done(step, Deadlines(budget=None, wait=math.inf))
        except RelayError as exc:
            return exc


def edge(world: World, settings: Settings) -> Edge:
    http = httpx.Client(transport=httpx.MockTransport(world))
    tokens = TokenSource(settings, http)
    return Edge(CdfClient(settings, http, tokens), tokens)


@dataclass(frozen=True)
class Row:
    cdf: list[int]  # CDF's answers in turn
    idp: list[str]  # the token endpoint's
    cached: bool  # a token is cached before the invocation
    outcome: type  # dict: the run is read
    fetches: int  # token requests in the invocation
    waits: int  # backoff waits in the invocation


TABLE = {
    "cached-token-refused-then-accepted": Row([401, 200], ["ok"], True, dict, 1, 0),
    "one-fresh-refusal": Row([401, 200], ["ok"], False, dict, 2, 1),
    "two-fresh-refusals": Row([401, 401, 200], ["ok"], False, dict, 3, 2),
    "three-fresh-refusals": Row([401], ["ok"], False, AccessDenied, 3, 2),
    "cached-then-three-fresh-refusals": Row([401], ["ok"], True, AccessDenied, 3, 2),
    "token-endpoint-fails-in-between": Row([401], ["ok", "503", "ok"], False, AccessDenied, 4, 3),
    "token-endpoint-refuses-in-between": Row([401], ["ok", "401"], False, AuthFailed, 2, 1),
    "another-answer-ends-the-streak": Row([401, 401, 503, 401, 401, 200], ["ok"], False, dict, 5, 4),
    "three-fresh-fetches-of-one-string-refused": Row([401], ["same"], False, AccessDenied, 3, 2),
}


@pytest.mark.parametrize("row", TABLE.values(), ids=TABLE.keys())
def test_tokens_refusal_table(row: Row, settings: Callable[[bool], Settings]) -> None:
    """Each row: what CDF and the token endpoint answer, how the invocation ends, and how many fetches and waits."""
    world = World(row.cdf, row.idp)
    e = edge(world, settings(False))
    if row.cached:
        world.idp = ["ok", *row.idp]
        e.tokens.get()
    before = world.fetches
    result = e.run()
    assert isinstance(result, row.outcome), result
    assert (world.fetches - before, len(e.waits)) == (row.fetches, row.waits)
    answers = [row.cdf[min(k, len(row.cdf) - 1)] for k in range(len(world.sent))]
    if "same" not in row.idp:  # after a 401, a new string each time the identity provider gives one
        assert all(world.sent[k] != world.sent[k - 1] for k in range(1, len(world.sent)) if answers[k - 1] == 401)
    if row.outcome is AccessDenied:
        assert "3 tokens in a row" in str(result)


def test_tokens_each_refused_token_is_followed_by_another(settings: Callable[[bool], Settings]) -> None:
    """Every request after a 401 carries a token CDF has not refused before: each refusal is a new fetch."""
    world = World([401, 401, 401, 401])
    e = edge(world, settings(False))
    e.tokens.get()  # cached t1, then t2, t3, t4 fetched just now
    assert isinstance(e.run(), AccessDenied)
    assert world.sent == ["t1", "t2", "t3", "t4"]


def test_tokens_static_token_refused_is_access_denied_at_once(settings: Callable[[bool], Settings]) -> None:
    """CDF_TOKEN cannot be renewed: one 401 is access_denied, with no fetch and no wait."""
    world = World([401, 200])
    e = edge(world, settings(True))
    result = e.run()
    assert isinstance(result, AccessDenied)
    assert "CDF_TOKEN" in str(result)
    assert (world.fetches, len(world.sent), e.waits) == (0, 1, [])


def test_tokens_refusals_count_per_invocation(settings: Callable[[bool], Settings]) -> None:
    """Two invocations refused the same tokens: each counts its own refusals, and after a refusal of a token fetched
    just now an invocation gets a new fetch, not a replacement that waited in the cache."""
    world = World([401])
    e = edge(world, settings(False))
    first, second = e.invocation()[1], e.invocation()[1]
    token, fresh = e.tokens.get(deadline=first)
    with pytest.raises(TransientError, match="1 of 3"):
        e.tokens.refused(token, fresh, first, "CDF refused the token")
    again, fresh_again = e.tokens.get(deadline=second)  # the same token, cached: second has no streak
    assert (again, fresh_again) == (token, False)
    e.tokens.refused(again, fresh_again, second, "CDF refused the token")  # a cached one: replaced at once
    replacement, replaced = e.tokens.get(deadline=second)
    assert (replacement, replaced, world.fetches) == ("t2", True, 2)
    assert e.tokens.get(deadline=first) == ("t3", True)  # first's backoff is over: a fetch of its own
    with pytest.raises(TransientError, match="1 of 3"):  # second's first fresh refusal, whatever first's were
        e.tokens.refused(replacement, True, second, "CDF refused the token")
    with pytest.raises(TransientError, match="2 of 3"):
        e.tokens.refused("t3", True, first, "CDF refused the token")


def test_tokens_invocations_waiting_for_one_fetch_share_it(settings: Callable[[bool], Settings]) -> None:
    """Two invocations asking for a new token while one fetch is under way both take what it fetched: one fetch."""
    release = threading.Event()
    world = World([401])

    def slow_second_fetch(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/t" and world.fetches >= 1:
            release.wait(10)
        return world(request)

    tokens = TokenSource(settings(False), httpx.Client(transport=httpx.MockTransport(slow_second_fetch)))
    first, second = Deadline.never(time.monotonic), Deadline.never(time.monotonic)
    token, _ = tokens.get(deadline=first)
    for deadline in (first, second):
        with pytest.raises(TransientError, match="1 of 3"):
            tokens.refused(token, True, deadline, "CDF refused the token")
    lock = tokens._lock = CountingLock()
    got: dict[int, tuple[str, bool]] = {}
    threads = [
        threading.Thread(target=lambda n=n, d=d: got.__setitem__(n, tokens.get(deadline=d)))
        for n, d in enumerate((first, second))
    ]
    for thread in threads:
        thread.start()
    assert lock.attempts.wait_for(2, 10)  # one fetching, the other queued behind it
    release.set()
    for thread in threads:
        thread.join(10)
    assert (got, world.fetches) == ({0: ("t2", True), 1: ("t2", True)}, 2)


def test_tokens_an_accepted_token_ends_only_its_invocations_streak(settings: Callable[[bool], Settings]) -> None:
    """CDF accepting a token for one invocation leaves another's streak where it was."""
    world = World([401])
    e = edge(world, settings(False))
    first, second = e.invocation()[1], e.invocation()[1]
    for deadline in (first, second):
        token, _ = e.tokens.get(deadline=deadline)
        with pytest.raises(TransientError, match="1 of 3"):
            e.tokens.refused(token, True, deadline, "CDF refused the token")
    e.tokens.accepted(first)
    token, _ = e.tokens.get(deadline=second)
    with pytest.raises(TransientError, match="2 of 3"):
        e.tokens.refused(token, True, second, "CDF refused the token")
    token, fresh = e.tokens.get(deadline=first)
    assert fresh is False  # first's streak ended: the cached token is not fetched just now for it
