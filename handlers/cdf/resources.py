"""CDF's write edge for links (contract, section 8): one pipeline, classic resources' ``byids`` and ``update``.

On the shared HTTP edge (``handlers.cdf.httpio``: pooled client, deadline-bounded
timeouts, httpx's errors translated once) and the shared token. Every answer
becomes a parsed body or an error of ``handlers.core.errors``, as for the run:

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

Bodies are sent as JSON bytes made by the caller (``handlers.core.updates``) or
here, without ``json`` per item. An ``update``'s 200 is taken once its body is a
JSON object at a glance (``{`` to ``}``): CDF echoes the 1000 items written, and
nothing in them is needed.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import httpx

from handlers.cdf.answers import by_id, glance, missing_ids
from handlers.cdf.httpio import chunks, describe, httpx_errors, json_object, raise_if_transient, request_timeout
from handlers.cdf.tokens import TokenSource
from handlers.cdf.turn import Turn
from handlers.core.deadline import Deadline
from handlers.core.errors import (
    AccessDenied,
    BudgetExhausted,
    InvalidRequest,
    RunNotFound,
    TransientError,
)
from handlers.core.linking import MAX_ITEMS, OutOfTime
from handlers.core.poll import Backoff, Clock, Deadlines, Poller
from handlers.core.updates import UpdateItems
from handlers.process.settings import Settings

T = TypeVar("T")


class Update(NamedTuple):
    """One link to write: the source item, the asset it links to, and the ``update`` item CDF is sent."""

    source: int
    target: int
    item: str  # the JSON of the update item (``handlers.core.updates.UpdateItems``)


@dataclass
class Written:
    """How one update ended, by source id: written, or refused as a missing source or target."""

    written: list[int] = field(default_factory=list)
    source_missing: list[int] = field(default_factory=list)
    target_missing: list[int] = field(default_factory=list)
    requests: int = 0  # update requests sent, the refused ones included


class _Missing(InvalidRequest):
    """CDF refused an update with 400 and ``missing``: the ids it named (anywhere but an update, a 400 like others)."""

    def __init__(self, ids: set[int]) -> None:
        super().__init__(f"{len(ids)} ids missing")
        self.ids = ids


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
        self._base = f"{settings.base_url}/api/v1/projects"
        self._version, self._http_timeout = settings.cdf_api_version, settings.http_timeout_s
        self._backoff = Backoff(settings.poll_initial_delay_s, settings.poll_max_delay_s)
        self._http, self._tokens, self._clock, self._wall = http, tokens, clock, wall

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
            except _Missing as missing:
                pending = self._without(project, path, pending, missing.ids, result, deadline)
                continue
            result.written += [u.source for u in pending]
            break
        return result

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
        cutoff = deadline.end - deadline.margin if deadline.bounded else None
        poller = Poller(self._backoff, self._clock)
        try:
            return poller.until_done(call, Deadlines(budget=cutoff, wait=math.inf))
        except BudgetExhausted:
            raise OutOfTime("the invocation's deadline comes before CDF answered") from None

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
        """One request; a 401 goes to the token source, as on the read edge (``TokenSource.refused``): it raises,
        or has a cached token's replacement tried here at once. ``whole`` False: a 200's body is not parsed.
        ``turn``: every request is sent in it, given back once CDF's status line is in."""
        while True:
            token, fresh = self._tokens.get(deadline=deadline)
            if turn is not None and not turn.take():
                raise OutOfTime("the deadline came while other writes were in flight")
            response = self._send(method, url, body, token, deadline, turn)
            if response.status_code != 401:
                self._tokens.accepted(deadline)
                return self._ok(response, not_found, whole)
            self._tokens.refused(token, fresh, deadline, describe(response, "CDF refused the token"))

    def _read(self, url: str, deadline: Deadline, read: Callable[[Iterator[bytes]], T]) -> T:
        """One GET whose 200 body goes to ``read`` as it arrives; a 401 as in ``_call``."""
        while True:
            token, fresh = self._tokens.get(deadline=deadline)
            timeout = request_timeout(deadline, self._http_timeout)
            with httpx_errors("CDF"), self._http.stream("GET", url, headers=self._headers(token), timeout=timeout) as r:
                if r.status_code == 200:
                    self._tokens.accepted(deadline)
                    return read(chunks(r))
                r.read()
            if r.status_code != 401:
                self._tokens.accepted(deadline)
                self._ok(r, "CDF has no such pipeline")
            self._tokens.refused(token, fresh, deadline, describe(r, "CDF refused the token"))

    def _headers(self, token: str, body: bool = False) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}"}
        if body:
            headers["Content-Type"] = "application/json"
        if self._version:
            headers["cdf-version"] = self._version
        return headers

    def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        token: str,
        deadline: Deadline,
        turn: Turn | None = None,
    ) -> httpx.Response:
        headers = self._headers(token, body is not None)
        timeout, started = request_timeout(deadline, self._http_timeout), time.monotonic()
        with httpx_errors("CDF"):
            try:
                request = self._http.build_request(method, url, content=body, headers=headers, timeout=timeout)
                response = self._http.send(request, stream=True)
                try:
                    if turn is not None and response.is_success:  # else kept until the refusal is known to all
                        turn.give()
                    response.read()
                finally:
                    response.close()
                return response
            except (httpx.ReadTimeout, httpx.WriteTimeout):
                if not url.endswith("/update"):
                    raise
                # CDF may still be applying a write it got: wait as long again before its state is read and the
                # write tried again, so that a write that lands late is found in place rather than sent twice.
                waited = time.monotonic() - started
                raise TransientError("CDF did not answer a write in time", retry_after=waited) from None

    def _ok(self, response: httpx.Response, not_found: str, whole: bool = True) -> dict[str, Any]:
        code = response.status_code
        if code == 200:
            return json_object(response, "CDF", fast=True) if whole else glance(response)
        raise_if_transient(response, "CDF", self._wall)
        if code == 403:
            raise AccessDenied(describe(response, "CDF denied access"))
        if code == 404:
            raise RunNotFound(describe(response, not_found))
        missing = missing_ids(response) if code == 400 else None
        if missing:
            raise _Missing(missing)
        raise InvalidRequest(describe(response, "CDF rejected the request"))
