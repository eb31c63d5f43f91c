"""CDF's entity matching pipelines API: the run, the latest run, the lists a sweep reads.

Every answer becomes either a parsed body or one error of ``handlers.core.errors``
(contract, section 4), through ``handlers.cdf.request``, the one request path to
CDF, so the poller above reasons about outcomes, never status codes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from handlers.cdf.httpio import chunks, json_object, read
from handlers.cdf.request import CdfRequest
from handlers.cdf.tokens import TokenSource
from handlers.core.deadline import Deadline
from handlers.process.settings import Settings

PAGE_LIMIT = 100  # CDF's largest page of pipelines or runs: the fewest requests for a sweep


class CdfClient:
    """GETs on CDF's entity matching pipelines API for one deployment."""

    def __init__(
        self, settings: Settings, http: httpx.Client, tokens: TokenSource, wall: Callable[[], float] = time.time
    ) -> None:
        self._request = CdfRequest(settings, http, tokens, wall)
        self._base = self._request.base

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
        """A 200 response, unread; any other answer is translated into the error tree (``CdfRequest``)."""
        with self._request.open("GET", url, deadline, params=params, missing=missing) as response:
            yield response
