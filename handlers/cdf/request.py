"""One request to CDF: the URL, the headers, the token and its 401 policy, and CDF's answer mapped to the error tree.

Every call matchrelay makes to CDF goes through ``CdfRequest.open``: the
pipelines API (``handlers.cdf.api``) and the classic resources
(``handlers.cdf.resources``) alike. httpx's exceptions are translated by
``handlers.cdf.httpio``; CDF's answers are translated here, once:

| answer | error |
|---|---|
| 200 | none: the response, its body unread (or read whole, as asked) |
| no answer in time to an ``update`` | ``TransientError`` whose retry waits as long again: the write may still land |
| 429, 5xx, ``cdf-is-auto-retryable`` | ``TransientError`` (``Retry-After`` honoured) |
| 401 | ``TokenSource.refused``: a cached token is replaced and the request sent again at |
| | once; a fresh one refused three times in a row is ``AccessDenied`` |
| 403 | ``AccessDenied`` |
| 404 | ``RunNotFound``, with the caller's words for what is missing |
| 400 naming ``missing`` ids | ``MissingIds`` (an ``InvalidRequest``: only an update sends again without them) |
| another 4xx | ``InvalidRequest`` |
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from handlers.cdf.answers import missing_ids
from handlers.cdf.httpio import describe, httpx_errors, raise_if_transient, request_timeout
from handlers.cdf.tokens import TokenSource
from handlers.core.deadline import Deadline
from handlers.core.errors import AccessDenied, InvalidRequest, RunNotFound, TransientError
from handlers.process.settings import Settings


class MissingIds(InvalidRequest):
    """CDF refused a request with 400 and ``missing``: the ids it named."""

    def __init__(self, message: str, ids: set[int]) -> None:
        super().__init__(message)
        self.ids = ids


class CdfRequest:
    """Requests to one deployment's CDF, sharing its HTTP pool and its token."""

    def __init__(
        self, settings: Settings, http: httpx.Client, tokens: TokenSource, wall: Callable[[], float] = time.time
    ) -> None:
        self.base = f"{settings.base_url}/api/v1/projects"  # URLs go on with an allow-listed project, integer ids
        self._version, self._http_timeout = settings.cdf_api_version, settings.http_timeout_s
        self._http, self._tokens, self._wall = http, tokens, wall

    @contextlib.contextmanager
    def open(
        self,
        method: str,
        url: str,
        deadline: Deadline | None,
        *,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        missing: str = "CDF answered 404",
        whole: bool = False,
        answered: Callable[[httpx.Response], None] | None = None,
        before: Callable[[], None] | None = None,
    ) -> Iterator[httpx.Response]:
        """A 200 response, its body unread (``whole``: read); any other answer raised as the table says.
        ``before`` is called before each try is sent, ``answered`` as soon as CDF's status line is in, before any
        body is read: a write takes its turn and gives it back there."""
        while True:
            token, fresh = self._tokens.get(deadline=deadline)
            headers = self._headers(token, body is not None)
            timeout = request_timeout(deadline, self._http_timeout)
            request = self._http.build_request(
                method, url, params=params, content=body, headers=headers, timeout=timeout
            )
            if before is not None:
                before()
            response = self._send(request, whole, answered)
            try:
                if response.status_code == 200:
                    self._tokens.accepted(deadline)
                    yield response
                    return
            finally:
                response.close()
            if response.status_code != 401:
                self._tokens.accepted(deadline)
                self.refuse(response, missing)
            self._tokens.refused(token, fresh, deadline, describe(response, "CDF refused the token"))

    def _send(
        self, request: httpx.Request, whole: bool, answered: Callable[[httpx.Response], None] | None
    ) -> httpx.Response:
        started = time.monotonic()
        with httpx_errors("CDF"):
            try:
                response = self._http.send(request, stream=True)
                try:
                    if answered is not None:
                        answered(response)
                    if whole or response.status_code != 200:
                        response.read()
                except BaseException:
                    response.close()
                    raise
            except (httpx.ReadTimeout, httpx.WriteTimeout):
                if not request.url.path.endswith("/update"):
                    raise
                # CDF may still be applying a write it got: wait as long again before its state is read and the
                # write tried again, so that a write that lands late is found in place rather than sent twice.
                waited = time.monotonic() - started
                raise TransientError("CDF did not answer a write in time", retry_after=waited) from None
        return response

    def refuse(self, response: httpx.Response, missing: str) -> None:
        """Raise what an answer other than 200 and 401 means (its body read)."""
        raise_if_transient(response, "CDF", self._wall)
        code = response.status_code
        if code == 403:
            raise AccessDenied(describe(response, "CDF denied access"))
        if code == 404:
            raise RunNotFound(describe(response, missing))
        ids = missing_ids(response) if code == 400 else None
        if ids:
            raise MissingIds(describe(response, "CDF named missing ids"), ids)
        raise InvalidRequest(describe(response, "CDF rejected the request"))

    def _headers(self, token: str, body: bool) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        if body:
            headers["Content-Type"] = "application/json"
        if self._version:
            headers["cdf-version"] = self._version
        return headers
