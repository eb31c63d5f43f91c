"""The CDF edge alone, on httpx's MockTransport: tokens and their renewal."""

from __future__ import annotations

import httpx
import pytest

from handlers.cdf import TokenSource, make_http
from handlers.settings import Settings


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
