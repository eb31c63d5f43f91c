"""CDF's write edge for links, undo and review (contract, sections 8-10): the pipeline (read, and its lists set),
the classic resources' ``byids``, ``list`` and ``update``.

On the one request path to CDF (``handlers.cdf.request``: pooled client,
deadline-bounded timeouts, the shared token, every answer translated once).
Every answer becomes a parsed body or an error of ``handlers.core.errors``, as
for the run:

- 429, 5xx, ``cdf-is-auto-retryable``, connection errors and timeouts are retried
  with section 4's backoff (``Retry-After`` honoured) while the invocation may
  still start work; past that, ``OutOfTime`` hands the message back;
- 401 as on the read edge (``TokenSource.refused``: a cached token is replaced at
  once, a fresh one after a backoff, the third fresh one refused is
  ``access_denied``); 403 ``access_denied``; 404 ``run_not_found`` (the pipeline);
  another 4xx ``invalid_request``;
- ``update``'s 400 with ``missing`` is sent again without the missing items, each
  counted as a missing source (an item id) or a missing target (an asset id);
- a write whose answer does not come in time may still land: the next try waits
  at least as long as this one waited, so that it finds it in place.

Bodies are sent as JSON bytes made by the caller (``handlers.core.provenance``) or
here, without ``json`` per item. An ``update``'s 200 is taken once its body is a
JSON object at a glance (``{`` to ``}``): CDF echoes the 1000 items written, and
nothing in them is needed.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import httpx

from handlers.cdf.answers import by_id, glance, page
from handlers.cdf.httpio import chunks, json_object
from handlers.cdf.request import CdfRequest, MissingIds
from handlers.cdf.tokens import TokenSource
from handlers.cdf.turn import Turn
from handlers.core.deadline import Deadline
from handlers.core.decision import MAX_ITEMS
from handlers.core.errors import InvalidRequest, OutOfTime, RunNotFound
from handlers.core.poll import Clock
from handlers.core.provenance import UpdateItems
from handlers.core.retry import retried
from handlers.process.settings import Settings

T = TypeVar("T")


class Update(NamedTuple):
    """One link to write: the source item, the asset it links to, and the ``update`` item CDF is sent."""

    source: int
    target: int
    item: str  # the JSON of the update item (``handlers.core.provenance.UpdateItems``)


@dataclass
class Written:
    """How one update ended, by source id: written, or refused as a missing source or target."""

    written: list[int] = field(default_factory=list)
    source_missing: list[int] = field(default_factory=list)
    target_missing: list[int] = field(default_factory=list)
    requests: int = 0  # update requests sent, the refused ones included


class Resources:
    """The requests a link makes to CDF, each retried within the invocation's deadline."""

    def __init__(
        self,
        settings: Settings,
        http: httpx.Client,
        tokens: TokenSource,
        clock: Clock,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._request = CdfRequest(settings, http, tokens, wall)
        self._base = self._request.base
        self._backoff = settings.backoff
        self._clock = clock

    def pipeline(self, project: str, pipeline_id: int, deadline: Deadline, read: Callable[[Iterator[bytes]], T]) -> T:
        """What ``read`` makes of the pipeline's body as it arrives (a pipeline may hold a million pairs in its
        lists, so it is not parsed whole here); read again from the start after a transient failure. 404 is
        ``RunNotFound``."""
        url = f"{self._base}/{project}/context/entitymatching/pipelines/{pipeline_id}"
        return self._retried(lambda: self._read(url, deadline, read), deadline)

    def by_ids(self, project: str, path: str, ids: Sequence[int], deadline: Deadline) -> dict[int, dict[str, Any]]:
        """The items of ``path`` (``timeseries``, ``assets``, ...) among ``ids`` that exist, by id (at most 1000)."""
        if len(ids) > MAX_ITEMS:
            raise ValueError(f"at most {MAX_ITEMS} ids a request")
        url = f"{self._base}/{project}/{path}/byids"
        listed = '{"id":' + '},{"id":'.join(map(str, ids)) + "}" if ids else ""  # C loops: this runs for every source
        body = f'{{"items":[{listed}],"ignoreUnknownIds":true}}'.encode()
        answer = self._retried(lambda: self._call("POST", url, body, deadline), deadline)
        return by_id(answer.get("items"), path)

    def update(
        self,
        project: str,
        path: str,
        updates: Sequence[Update],
        deadline: Deadline,
        *,
        retry: bool = True,
        turn: Turn | None = None,
    ) -> Written:
        """Write ``updates`` (at most 1000), all or nothing; sent again without the items CDF names as missing.

        ``retry`` False raises a transient answer instead of sending the same items again: the caller reads what
        CDF holds first, so that a write whose answer was lost is not sent twice. ``turn``: each request is sent in
        it, taken first and given back as CDF answers, before its body is read.
        """
        if len(updates) > MAX_ITEMS:
            raise ValueError(f"at most {MAX_ITEMS} items a request")
        url, result, pending = f"{self._base}/{project}/{path}/update", Written(), list(updates)
        while pending:
            body = UpdateItems.body(u.item for u in pending)
            result.requests += 1
            try:
                call = functools.partial(self._call, "POST", url, body, deadline, whole=False, turn=turn)
                self._retried(call, deadline) if retry else call()
            except MissingIds as missing:
                pending = self._without(project, path, pending, missing.ids, result, deadline)
                continue
            result.written += [u.source for u in pending]
            break
        return result

    def list_page(
        self,
        project: str,
        path: str,
        metadata: dict[str, str],
        deadline: Deadline,
        cursor: str | None = None,
        partition: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page (1000 items at most) of ``path``'s items whose metadata holds ``metadata`` exactly, and the
        cursor of the next page (None after the last); ``partition`` ``"k/n"`` lists the k-th of n parts."""
        url = f"{self._base}/{project}/{path}/list"
        request: dict[str, Any] = {"filter": {"metadata": metadata}, "limit": MAX_ITEMS}
        if cursor is not None:
            request["cursor"] = cursor
        if partition is not None:
            request["partition"] = partition
        body = json.dumps(request, separators=(",", ":")).encode()
        answer = self._retried(lambda: self._call("POST", url, body, deadline), deadline)
        return page(answer, path)

    def update_pipeline(self, project: str, pipeline_id: int, lists: dict[str, list[Any]], deadline: Deadline) -> None:
        """Set the pipeline's lists (``confirmedMatches``, ``rejectedMatches``) whole: CDF's ``pipelines/update``
        has ``set`` only. 400 naming the pipeline missing is ``RunNotFound``."""
        url = f"{self._base}/{project}/context/entitymatching/pipelines/update"
        update = {name: {"set": pairs} for name, pairs in lists.items()}
        body = json.dumps({"items": [{"id": pipeline_id, "update": update}]}, separators=(",", ":")).encode()
        try:
            self._retried(lambda: self._call("POST", url, body, deadline, whole=False), deadline)
        except MissingIds as exc:
            raise RunNotFound(f"CDF has no pipeline {pipeline_id} to update") from exc

    def _without(
        self, project: str, path: str, pending: list[Update], ids: set[int], result: Written, deadline: Deadline
    ) -> list[Update]:
        """``pending`` less the items ``ids`` names, each counted once (a missing source before a missing target)."""
        sources, targets = {u.source for u in pending}, {u.target for u in pending}
        both = ids & sources & targets
        # An id that is both an item and an asset of the request: CDF is asked whether the item exists. If it does
        # not, the item is dropped and its asset stays in doubt until CDF answers again without the item.
        present = set(self.by_ids(project, path, sorted(both), deadline)) if both else set()
        gone_sources = (ids & sources) - present
        gone_targets = (ids & targets) - (both - present)
        kept = []
        for u in pending:
            if u.source in gone_sources:
                result.source_missing.append(u.source)
            elif u.target in gone_targets:
                result.target_missing.append(u.source)
            else:
                kept.append(u)
        if len(kept) == len(pending):
            raise InvalidRequest(f"CDF answered 400 naming {len(ids)} missing ids, none of them in the request")
        return kept

    def _retried(self, call: Callable[[], T], deadline: Deadline) -> T:
        """``call`` until it answers, waiting between transient failures while the invocation may start work."""
        late = "the invocation's deadline comes before CDF answered"
        return retried(call, self._backoff, self._clock, deadline.cutoff, late)

    def _read(self, url: str, deadline: Deadline, read: Callable[[Iterator[bytes]], T]) -> T:
        """One GET whose 200 body goes to ``read`` as it arrives."""
        with self._request.open("GET", url, deadline, missing="CDF has no such pipeline") as response:
            return read(chunks(response))

    def _call(
        self,
        method: str,
        url: str,
        body: bytes | None,
        deadline: Deadline,
        not_found: str = "CDF answered 404",
        *,
        whole: bool = True,
        turn: Turn | None = None,
    ) -> dict[str, Any]:
        """One request, its answer read whole. ``whole`` False: a 200's body is not parsed. ``turn``: every try is
        sent in it, given back once CDF's status line is in (a refusal keeps it until it is known to all)."""

        def take() -> None:
            if turn is not None and not turn.take():
                raise OutOfTime("the deadline came while other writes were in flight")

        def answered(response: httpx.Response) -> None:
            if turn is not None and response.is_success:
                turn.give()

        request = self._request.open(
            method, url, deadline, body=body, missing=not_found, whole=True, before=take, answered=answered
        )
        with request as response:
            return json_object(response, "CDF", fast=True) if whole else glance(response)
