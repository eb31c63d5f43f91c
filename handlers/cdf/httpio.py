"""HTTP to CDF and the identity provider: one pooled client, timeouts, and every answer translated once.

The edge below ``handlers.cdf.api`` and ``handlers.cdf.tokens``: httpx's errors and HTTP
statuses become ``handlers.core.errors`` here, so nothing above sees a status code.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson

from handlers import __version__
from handlers.core.deadline import Deadline
from handlers.core.errors import MalformedResponse, TransientError
from handlers.process.settings import Settings
from handlers.process.tracing import attempt, client_span, enabled
from handlers.process.tracing_spans import ClientSpan

USER_AGENT = f"matchrelay/{__version__} httpx/{httpx.__version__}"
RETRYABLE = frozenset({429, 500, 502, 503, 504})  # the contract's list; any other 5xx is retried too
CHUNK_BYTES = 64 * 1024


def request_timeout(deadline: Deadline | None, timeout_s: float) -> httpx.Timeout:
    """A request's timeouts: under a deadline, no phase outlives the invocation and no read stalls into its end."""
    if deadline is None or not deadline.bounded:
        return httpx.Timeout(timeout_s)
    whole = deadline.request_s(timeout_s)
    return httpx.Timeout(whole, read=min(whole, deadline.read_s(timeout_s)))


def wait_s(deadline: Deadline | None, timeout_s: float) -> float:
    """How long to wait for another thread's token fetch: as long as a request of ours may take; -1 is for ever."""
    return deadline.request_s(timeout_s) if deadline is not None and deadline.bounded else -1


def make_http(settings: Settings, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """One pooled client per process; redirects are not followed, so no request leaves the configured hosts."""
    if enabled():  # each request, the token's too, a span of its own
        transport = Traced(transport or httpx.HTTPTransport())
    return httpx.Client(
        timeout=settings.http_timeout_s, headers={"User-Agent": USER_AGENT}, follow_redirects=False, transport=transport
    )


def url_template(path: str) -> str:
    """A request's path with its variable parts named (the project, every id); the query is left out."""
    parts = path.split("/")
    return "/".join(
        "{project}"
        if i and parts[i - 1] == "projects" and part
        else "{id}"
        if part.isascii() and part.isdigit()
        else part
        for i, part in enumerate(parts)
    )


class Traced(httpx.BaseTransport):
    """Each request a client span, from sending it to closing its body: method, URL template, status, attempt.

    Only what is named here goes on a span: never a header (the token), a body (the client secret) or a query.
    """

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url, method = request.url, request.method
        template = url_template(url.path)
        attributes: dict[str, str | int] = {"http.request.method": method, "url.template": template}
        attributes |= {"server.address": url.host, "server.port": url.port or (443 if url.scheme == "https" else 80)}
        n = attempt(f"{method} {url}")
        if n is not None:
            attributes["matchrelay.attempt"] = n
        span = client_span(f"{method} {template}", attributes)
        if span is None:
            return self._inner.handle_request(request)
        try:
            response = self._inner.handle_request(request)
        except BaseException as exc:
            span.fail(exc)
            span.end()
            raise
        span.respond(response.status_code)
        response.stream = _Body(response.stream, span)
        return response

    def close(self) -> None:
        self._inner.close()


class _Body(httpx.SyncByteStream):
    """A response body that ends its request's span when it is closed (read whole, or left)."""

    def __init__(self, inner: Any, span: ClientSpan) -> None:
        self._inner, self._span = inner, span

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except BaseException as exc:
            self._span.fail(exc)
            raise

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._span.end()


@contextlib.contextmanager
def httpx_errors(what: str) -> Iterator[None]:
    """httpx's errors, translated once: a body that cannot be decoded is malformed, anything else transient."""
    try:
        yield
    except httpx.DecodingError:
        raise MalformedResponse(f"{what} answered a body that cannot be decoded") from None
    except httpx.TimeoutException:
        raise TransientError(f"{what} did not answer in time") from None
    except httpx.RequestError as exc:
        raise TransientError(f"{what} could not be reached or broke off ({type(exc).__name__})") from None


def send(http: httpx.Client, method: str, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
    with httpx_errors(what):
        return http.request(method, url, **kwargs)


def read(response: httpx.Response, what: str) -> None:
    with httpx_errors(what):
        response.read()


def chunks(response: httpx.Response) -> Iterator[bytes]:
    """The body as it arrives; a connection that breaks mid-body is transient like any other."""
    with httpx_errors("CDF"):
        yield from response.iter_bytes(CHUNK_BYTES)


def retryable(response: httpx.Response) -> bool:
    code = response.status_code
    return code in RETRYABLE or code >= 500 or "cdf-is-auto-retryable" in response.headers


def raise_if_transient(response: httpx.Response, what: str, wall: Callable[[], float] = time.time) -> None:
    if retryable(response):
        raise TransientError(
            describe(response, f"{what} asked to retry"),
            retry_after=retry_after(response.headers.get("retry-after"), wall()),
        )


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


def json_object(response: httpx.Response, what: str, *, fast: bool = False) -> dict[str, Any]:
    """The body as a JSON object, else ``MalformedResponse``. ``fast``: read by ``orjson`` (about three times as
    fast on a large answer; an integer beyond 64 bits comes as a float), and by ``json`` only if it refuses."""
    body = _by_orjson(response.content) if fast else None
    if body is None:  # not read yet, refused by orjson, or null (which json reads the same)
        try:
            body = json.loads(response.content)
        except (ValueError, RecursionError):
            raise MalformedResponse(f"{what} answered a body that is not JSON") from None
    if not isinstance(body, dict):
        raise MalformedResponse(f"{what} answered JSON that is not an object")
    return body


def _by_orjson(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


def describe(response: httpx.Response, prefix: str) -> str:
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
