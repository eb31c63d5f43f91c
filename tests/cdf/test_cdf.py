"""The CDF edge alone, on httpx's MockTransport: tokens and their renewal."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from handlers.cdf.httpio import make_http
from handlers.cdf.tokens import TokenSource
from handlers.core.deadline import Deadline
from handlers.core.errors import TransientError
from handlers.process.settings import Settings


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in {
        "CDF_PROJECT": "demo",
        "CDF_URL": "http://cdf.test",
        "IDP_TOKEN_URL": "http://idp.test/t",
        "IDP_CLIENT_ID": "id",
        "IDP_CLIENT_SECRET": "secret",
    }.items():
        monkeypatch.setenv(name, value)
    return Settings()  # type: ignore[call-arg]


def idp(answers: list[dict[str, object]]) -> tuple[httpx.Client, list[int]]:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json=answers[min(len(calls), len(answers)) - 1])

    return httpx.Client(transport=httpx.MockTransport(handler)), calls


def test_cdf_token_expires_in_as_a_string_is_accepted(settings: Settings) -> None:
    """Identity providers that send expires_in as "3599" give a usable, cached token."""
    http, calls = idp([{"access_token": "t1", "expires_in": "3599"}])
    tokens = TokenSource(settings, http)
    assert tokens.get() == ("t1", True)
    assert tokens.get() == ("t1", False)
    assert len(calls) == 1


def test_cdf_token_renewed_once_for_many_401s(settings: Settings) -> None:
    """Threads that saw a 401 on the same token cause one fetch; the others take the renewed token."""
    http, calls = idp([{"access_token": "t1", "expires_in": 3600}, {"access_token": "t2", "expires_in": 3600}])
    tokens = TokenSource(settings, http)
    tokens.get()
    assert tokens.get(rejected="t1") == ("t2", True)
    assert tokens.get(rejected="t1") == ("t2", False)
    assert len(calls) == 2


def test_cdf_client_follows_no_redirect_and_names_itself(settings: Settings) -> None:
    """The pooled client sends a matchrelay User-Agent and does not follow redirects."""
    http = make_http(settings)
    assert http.follow_redirects is False
    assert http.headers["User-Agent"].startswith("matchrelay/")


def test_cdf_token_failure_is_shared_by_the_threads_that_waited_for_it(settings: Settings) -> None:
    """Threads queued behind a fetch that fails get its error at once instead of each asking the IdP in turn."""
    release = threading.Event()
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        release.wait(10)
        return httpx.Response(503, json={"error": "temporarily_unavailable"})

    tokens = TokenSource(settings, httpx.Client(transport=httpx.MockTransport(handler)))
    lock = tokens._lock = CountingLock()
    errors: list[BaseException] = []

    def get() -> None:
        try:
            tokens.get()
        except TransientError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=get) for _ in range(6)]
    for thread in threads:
        thread.start()
    assert lock.attempts.wait_for(6, 10)  # one fetching, five queued behind it
    release.set()
    for thread in threads:
        thread.join(10)
    assert (len(errors), len(calls)) == (6, 1)  # then the source stays usable: the next call fetches again
    release.set()
    with pytest.raises(TransientError):
        tokens.get()
    assert len(calls) == 2


class Count:
    def __init__(self) -> None:
        self.value = 0
        self._changed = threading.Condition()

    def add(self) -> None:
        with self._changed:
            self.value += 1
            self._changed.notify_all()

    def wait_for(self, value: int, seconds: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.value >= value, seconds)


class CountingLock:
    """A lock that counts the threads that asked for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.attempts = Count()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.attempts.add()
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()


def test_cdf_token_wait_is_bounded_by_the_deadline(settings: Settings) -> None:
    """A thread whose deadline is near does not wait past it for another thread's slow fetch."""
    release = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        release.wait(10)
        return httpx.Response(200, json={"access_token": "t1", "expires_in": 3600})

    tokens = TokenSource(settings, httpx.Client(transport=httpx.MockTransport(handler)))
    slow = threading.Thread(target=tokens.get)
    slow.start()
    deadline = Deadline.after(5, time.monotonic() - 4.0, time.monotonic)  # 1 s left, margin 2 s: wait 0.05 s
    started = time.monotonic()
    with pytest.raises(TransientError):
        tokens.get(deadline=deadline)
    waited = time.monotonic() - started
    release.set()
    slow.join(10)
    assert waited < 5.0
