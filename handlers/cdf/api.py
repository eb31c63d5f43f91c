"""CDF's entity matching pipelines API: the run, the latest run, the lists a sweep reads.

Every answer becomes either a parsed body or one error of ``handlers.core.errors``
(contract, section 4), through ``handlers.cdf.httpio``, so the poller above reasons
about outcomes, never status codes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from handlers.cdf.httpio import chunks, describe, httpx_errors, json_object, raise_if_transient, read, request_timeout
from handlers.cdf.tokens import TokenSource
from handlers.core.deadline import Deadline
from handlers.core.errors import AccessDenied, InvalidRequest, RunNotFound
from handlers.process.settings import Settings

PAGE_LIMIT = 100  # CDF's largest page of pipelines or runs: the fewest requests for a sweep


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
            yield chunks(response)

    def get_latest(self, project: str, pipeline_id: int, deadline: Deadline | None = None) -> dict[str, Any]:
        url, params = self.run_url(project, pipeline_id, "latest"), {"includeSkipped": "false"}
        with self._open(url, params, deadline) as response:
            read(response, "CDF")
            return json_object(response, "CDF")

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
            read(response, "CDF")
            return json_object(response, "CDF")

    @contextlib.contextmanager
    def _open(
        self, url: str, params: dict[str, str], deadline: Deadline | None, missing: str = "CDF has no such run"
    ) -> Iterator[httpx.Response]:
        """A 200 response, unread; any other answer is translated into the error tree here.

        A 401 goes to the token source (``TokenSource.refused``): it raises, or, for a cached token, has a replacement
        tried here at once, which is fetched just now, so a second 401 always raises.
        """
        while True:
            token, fresh = self._tokens.get(deadline=deadline)
            with self._stream(url, params, token, deadline) as response:
                if response.status_code != 401:
                    self._tokens.accepted(deadline)
                    yield self._ok(response, missing)
                    return
                read(response, "CDF")
                self._tokens.refused(token, fresh, deadline, describe(response, "CDF refused the token"))

    def _ok(self, response: httpx.Response, missing: str) -> httpx.Response:
        if response.status_code == 200:
            return response
        read(response, "CDF")
        raise_if_transient(response, "CDF", self._wall)
        if response.status_code == 403:
            raise AccessDenied(describe(response, "CDF denied access"))
        if response.status_code == 404:
            raise RunNotFound(describe(response, missing))
        raise InvalidRequest(describe(response, "CDF rejected the request"))

    @contextlib.contextmanager
    def _stream(
        self, url: str, params: dict[str, str], token: str, deadline: Deadline | None
    ) -> Iterator[httpx.Response]:
        headers = {"Authorization": f"Bearer {token}"}
        if self._version:
            headers["cdf-version"] = self._version
        stream = self._http.stream(
            "GET", url, params=params, headers=headers, timeout=request_timeout(deadline, self._http_timeout)
        )
        with httpx_errors("CDF"), stream as response:
            yield response
