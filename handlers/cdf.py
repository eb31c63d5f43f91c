"""CDF over HTTP: the token, the request, and the translation of every answer.

This is the only module that sees HTTP. Each answer becomes either a parsed body
or one error of ``handlers.errors`` (contract, section 4), so the poller above
reasons about outcomes, never status codes.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from handlers import __version__
from handlers.deadline import Deadline
from handlers.errors import (
    AccessDenied,
    AuthFailed,
    InvalidRequest,
    MalformedResponse,
    RunNotFound,
    TransientError,
)
from handlers.settings import Settings

USER_AGENT = f"matchrelay/{__version__} httpx/{httpx.__version__}"
RETRYABLE = frozenset({429, 500, 502, 503, 504})  # the contract's list; any other 5xx is retried too
CHUNK_BYTES = 64 * 1024
REFRESH_MARGIN_S = 30.0  # as Cognite's SDK: renew a token 30 s before it runs out
PAGE_LIMIT = 100  # CDF's largest page of pipelines or runs: the fewest requests for a sweep


class TokenSource:
    """A bearer token: static (``CDF_TOKEN``) or client credentials, cached until near expiry."""

    def __init__(self, settings: Settings, http: httpx.Client, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings, self._http, self._clock = settings, http, clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    @property
    def refreshable(self) -> bool:
        return self._settings.cdf_token is None

    def get(self, *, rejected: str | None = None) -> tuple[str, bool]:
        """The token, and whether it was fetched by this call; ``rejected``: CDF answered 401 to that one."""
        if self._settings.cdf_token is not None:
            return self._settings.cdf_token.get_secret_value(), False
        with self._lock:  # one fetch serves every thread waiting for it
            stale = rejected is not None and rejected == self._token  # another thread may have renewed it already
            if stale or self._token is None or self._clock() >= self._expires:
                self._token, lifetime = self._fetch()
                self._expires = self._clock() + max(lifetime - REFRESH_MARGIN_S, lifetime / 2)
                return self._token, True
            return self._token, False

    def _fetch(self) -> tuple[str, float]:
        s = self._settings
        form = {
            "grant_type": "client_credentials",
            "client_id": s.idp_client_id or "",
            "client_secret": s.idp_client_secret.get_secret_value() if s.idp_client_secret else "",
            "scope": s.scopes,
        }
        if s.idp_audience:
            form["audience"] = s.idp_audience
        response = _send(self._http, "POST", s.idp_token_url or "", data=form, what="the token endpoint")
        if response.status_code in (400, 401) or (400 <= response.status_code < 500 and not _retryable(response)):
            raise AuthFailed(f"the token endpoint refused the client credentials (HTTP {response.status_code})")
        _raise_if_transient(response, "the token endpoint")
        body = _json(response, "the token endpoint")
        token, lifetime = body.get("access_token"), _seconds(body.get("expires_in", 3600))
        if not isinstance(token, str) or not token:
            raise MalformedResponse("the token endpoint answered without access_token")
        if lifetime is None:
            raise MalformedResponse("the token endpoint answered an expires_in that is not a number")
        return token, lifetime


class CdfClient:
    """GETs on CDF's entity matching pipelines API for one deployment."""

    def __init__(
        self, settings: Settings, http: httpx.Client, tokens: TokenSource, wall: Callable[[], float] = time.time
    ) -> None:
        self._base = f"{settings.base_url}/api/v1/projects"
        self._version, self._http_timeout = settings.cdf_api_version, settings.http_timeout_s
        self._http, self._tokens, self._wall = http, tokens, wall

    def run_url(self, project: str, pipeline_id: int, run_id: int | str) -> str:
        # Every part was validated (allow-listed project, integer ids) before it gets here.
        return f"{self._base}/{project}/context/entitymatching/pipelines/{pipeline_id}/runs/{run_id}"

    @contextlib.contextmanager
    def open_run(
        self, project: str, pipeline_id: int, run_id: int, deadline: Deadline | None = None
    ) -> Iterator[Iterator[bytes]]:
        """The run's results body as a stream of byte chunks, once CDF has answered 200."""
        with self._open(self.run_url(project, pipeline_id, run_id), {}, deadline) as response:
            yield _chunks(response)

    def get_latest(self, project: str, pipeline_id: int, deadline: Deadline | None = None) -> dict[str, Any]:
        url, params = self.run_url(project, pipeline_id, "latest"), {"includeSkipped": "false"}
        with self._open(url, params, deadline) as response:
            _read(response, "CDF")
            return _json(response, "CDF")

    def list_pipelines(self, project: str, cursor: str | None, deadline: Deadline | None = None) -> dict[str, Any]:
        """One page of the project's pipelines, ``{"items": [...], "nextCursor": ...}`` (a sweep's listing)."""
        url = f"{self._base}/{project}/context/entitymatching/pipelines"
        return self._page(url, cursor, deadline, "CDF has no such project")

    def list_runs(
        self, project: str, pipeline_id: int, cursor: str | None, deadline: Deadline | None = None
    ) -> dict[str, Any]:
        """One page of a pipeline's run summaries; a 404 is ``RunNotFound`` (the pipeline is gone)."""
        url = f"{self._base}/{project}/context/entitymatching/pipelines/{pipeline_id}/runs"
        return self._page(url, cursor, deadline, "CDF has no such pipeline")

    def _page(self, url: str, cursor: str | None, deadline: Deadline | None, missing: str) -> dict[str, Any]:
        # The cursor is CDF's own text handed back to CDF, and only ever as a query parameter (encoded by httpx).
        params = {"limit": str(PAGE_LIMIT), **({"cursor": cursor} if cursor is not None else {})}
        with self._open(url, params, deadline, missing) as response:
            _read(response, "CDF")
            return _json(response, "CDF")

    @contextlib.contextmanager
    def _open(
        self, url: str, params: dict[str, str], deadline: Deadline | None, missing: str = "CDF has no such run"
    ) -> Iterator[httpx.Response]:
        """A 200 response, unread; any other answer is translated into the error tree here."""
        token, fresh = self._tokens.get()
        with self._stream(url, params, token, deadline) as response:
            if response.status_code != 401 or fresh or not self._tokens.refreshable:
                yield self._ok(response, missing)
                return
        token, _ = self._tokens.get(rejected=token)  # a 401 on a cached token: it expired; fetch one, once
        with self._stream(url, params, token, deadline) as response:
            yield self._ok(response, missing)

    def _ok(self, response: httpx.Response, missing: str) -> httpx.Response:
        if response.status_code == 200:
            return response
        _read(response, "CDF")
        if response.status_code == 401:
            raise AccessDenied(_describe(response, "CDF refused a token fetched just now"))
        _raise_if_transient(response, "CDF", self._wall)
        if response.status_code == 403:
            raise AccessDenied(_describe(response, "CDF denied access"))
        if response.status_code == 404:
            raise RunNotFound(_describe(response, missing))
        raise InvalidRequest(_describe(response, "CDF rejected the request"))

    @contextlib.contextmanager
    def _stream(
        self, url: str, params: dict[str, str], token: str, deadline: Deadline | None
    ) -> Iterator[httpx.Response]:
        headers = {"Authorization": f"Bearer {token}"}
        if self._version:
            headers["cdf-version"] = self._version
        stream = self._http.stream("GET", url, params=params, headers=headers, timeout=self._timeout(deadline))
        with _httpx_errors("CDF"), stream as response:
            yield response

    def _timeout(self, deadline: Deadline | None) -> httpx.Timeout:
        # Under a deadline no request outlives the invocation, and no read stalls into its ending phase.
        if deadline is None or not deadline.bounded:
            return httpx.Timeout(self._http_timeout)
        whole = deadline.request_s(self._http_timeout)
        return httpx.Timeout(whole, read=min(whole, deadline.read_s(self._http_timeout)))


def make_http(settings: Settings, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """One pooled client per process; redirects are not followed, so no request leaves the configured hosts."""
    return httpx.Client(
        timeout=settings.http_timeout_s, headers={"User-Agent": USER_AGENT}, follow_redirects=False, transport=transport
    )


@contextlib.contextmanager
def _httpx_errors(what: str) -> Iterator[None]:
    """httpx's errors, translated once: a body that cannot be decoded is malformed, anything else transient."""
    try:
        yield
    except httpx.DecodingError:
        raise MalformedResponse(f"{what} answered a body that cannot be decoded") from None
    except httpx.TimeoutException:
        raise TransientError(f"{what} did not answer in time") from None
    except httpx.RequestError as exc:
        raise TransientError(f"{what} could not be reached or broke off ({type(exc).__name__})") from None


def _send(http: httpx.Client, method: str, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
    with _httpx_errors(what):
        return http.request(method, url, **kwargs)


def _read(response: httpx.Response, what: str) -> None:
    with _httpx_errors(what):
        response.read()


def _chunks(response: httpx.Response) -> Iterator[bytes]:
    """The body as it arrives; a connection that breaks mid-body is transient like any other."""
    with _httpx_errors("CDF"):
        yield from response.iter_bytes(CHUNK_BYTES)


def _retryable(response: httpx.Response) -> bool:
    code = response.status_code
    return code in RETRYABLE or code >= 500 or "cdf-is-auto-retryable" in response.headers


def _raise_if_transient(response: httpx.Response, what: str, wall: Callable[[], float] = time.time) -> None:
    if _retryable(response):
        raise TransientError(
            _describe(response, f"{what} asked to retry"),
            retry_after=retry_after(response.headers.get("retry-after"), wall()),
        )


def _seconds(value: Any) -> float | None:
    """``expires_in`` as a number of seconds; some identity providers send it as a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):
        return float(value)
    return None


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,9}", value):  # ASCII digits only: "²".isdigit() is true
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now) if when.tzinfo else None


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):
        raise MalformedResponse(f"{what} answered a body that is not JSON") from None
    if not isinstance(body, dict):
        raise MalformedResponse(f"{what} answered JSON that is not an object")
    return body


def _describe(response: httpx.Response, prefix: str) -> str:
    """``prefix (HTTP n): CDF's message [request id]``; CDF's text is carried, never interpreted."""
    message = ""
    try:
        error = json.loads(response.content).get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = ": " + error["message"][:1000]
    except (ValueError, AttributeError, RecursionError):
        pass
    request_id = response.headers.get("x-request-id")
    return f"{prefix} (HTTP {response.status_code}){message}" + (f" [X-Request-ID {request_id}]" if request_id else "")
