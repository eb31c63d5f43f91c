"""CDF's lists, page by page (contract, sections 2b and 4): the project's pipelines, a pipeline's runs.

Each page is one request through the poller, so it is retried, budgeted and
refreshed like a poll of a run; a page that is not the documented shape,
``{"items": [...], "nextCursor": "..."}``, is a ``MalformedResponse`` (retried,
then ``invalid_response``). What reaches a URL from here is only a validated
integer id; a cursor goes back to CDF as a query parameter, nowhere else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from handlers.core.errors import InvalidResponse, MalformedResponse, OutOfTime
from handlers.core.models import RunSummary, is_integer
from handlers.core.poll import Deadlines, Poller

MAX_CURSOR_CHARS = 4096  # CDF's cursors are short; anything longer is not one
SKIPPED = "skipped"  # runs CDF did not run have no results to relay (runs/latest leaves them out too)
T = TypeVar("T")


@dataclass(frozen=True)
class ListedRun:
    """A run summary from a pipeline's list: its ``jobId`` (the ``runId``), when it was created, its status."""

    job_id: int | None
    created: int | None
    status: str

    @property
    def relayable(self) -> bool:
        """A run a trigger can name: it has a job id and was not skipped."""
        return self.job_id is not None and self.status.lower() != SKIPPED


def page_of(body: dict[str, Any]) -> tuple[list[Any], str | None]:
    """``items`` and ``nextCursor`` of one page; no cursor (absent, null or empty) marks the last page."""
    items, cursor = body.get("items"), body.get("nextCursor")
    if not isinstance(items, list):
        raise MalformedResponse("CDF answered a list page without an items list")
    if cursor is None or cursor == "":
        return items, None
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_CHARS:
        raise MalformedResponse("CDF answered a nextCursor that is not a short string")
    return items, cursor


def pipeline_ids(items: list[Any]) -> list[int]:
    """The ids of a page of pipelines; each must be an id (it goes into the runs URL)."""
    ids: list[int] = []
    for item in items:
        value = item.get("id") if isinstance(item, dict) else None
        if not is_integer(value):
            raise MalformedResponse("CDF answered a pipeline without a valid id")
        ids.append(value)
    return ids


def listed_runs(items: list[Any]) -> list[ListedRun]:
    """The run summaries of a page; each must be a run, and a ``jobId`` given must be an id."""
    runs = []
    for item in items:
        try:
            summary = RunSummary.model_validate(item)
        except ValidationError:
            raise MalformedResponse("CDF answered a run summary that is not of the documented shape") from None
        if summary.jobId is not None and not is_integer(summary.jobId):
            raise MalformedResponse("CDF answered a run summary whose jobId is not an id")
        runs.append(ListedRun(summary.jobId, summary.createdTime, summary.status))
    return runs


def pages(
    fetch: Callable[[str | None], dict[str, Any]],
    parse: Callable[[list[Any]], list[T]],
    poller: Poller,
    deadlines: Deadlines,
    more: Callable[[], bool] = lambda: True,
) -> Iterator[list[T]]:
    """Every page of one list, in CDF's order; before each page after the first, ``more()`` may stop it.

    A cursor CDF hands out twice would page forever: that is ``invalid_response``.
    """
    cursor: str | None = None
    seen: set[str] = set()
    while True:
        step = functools.partial(_parsed, fetch, cursor, parse)
        items, cursor = poller.until_done(step, deadlines)
        yield items
        if cursor is None:
            return
        if cursor in seen:
            raise InvalidResponse("CDF answered a nextCursor it had already given (the list would never end)")
        seen.add(cursor)
        if not more():
            raise OutOfTime("the invocation's deadline came before the list's last page")


def _parsed(
    fetch: Callable[[str | None], dict[str, Any]], cursor: str | None, parse: Callable[[list[Any]], list[T]]
) -> tuple[list[T], str | None]:
    # Parsed inside the poller's step, so a malformed page is retried like any malformed answer.
    items, cursor = page_of(fetch(cursor))
    return parse(items), cursor
