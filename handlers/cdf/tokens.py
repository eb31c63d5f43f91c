"""The CDF bearer token: static (``CDF_TOKEN``) or OAuth 2.0 client credentials, cached and shared.

Also what a 401 means (contract, section 4): a refused cached token is replaced
and tried again at once; a refused token fetched just now is replaced and tried
again after a backoff (the caller's, for the ``TransientError`` raised here),
and the third such refusal in a row is ``access_denied``. The streak belongs to
the invocation, known here by its ``Deadline`` (every CDF request of an
invocation carries the same one), so one invocation's refusals never count
against another's while they share the token.
"""

from __future__ import annotations

import copy
import re
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from handlers.cdf.httpio import json_object, raise_if_transient, request_timeout, retryable, send, wait_s
from handlers.core.deadline import Deadline
from handlers.core.errors import AccessDenied, AuthFailed, MalformedResponse, RelayError, TransientError
from handlers.process.settings import Settings

REFRESH_MARGIN_S = 30.0  # as Cognite's SDK: renew a token 30 s before it runs out
MAX_FRESH_REFUSALS = 3  # "after 3 refusals in a row of tokens fetched just now: access_denied"


@dataclass
class _Streak:
    """An invocation's refusals since CDF last accepted one of its tokens."""

    refused: str  # the token CDF refused last: the next one this invocation gets must be another
    # The fetches (token, fetch number) whose token CDF refused just after: each fetch counts once, however many
    # requests carried its token, and an identity provider that hands out the same string again still counts anew.
    fresh: set[tuple[str, int]] = field(default_factory=set)


class TokenSource:
    """A bearer token: static (``CDF_TOKEN``) or client credentials, cached until near expiry.

    One fetch serves every thread waiting for it, and so does its failure: a thread that waited while the fetch
    failed gets the same error instead of asking a struggling identity provider again, in turn.
    """

    def __init__(self, settings: Settings, http: httpx.Client, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings, self._http, self._clock = settings, http, clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self._fetches = 0
        self._fetched = 0  # the number of the fetch that gave the cached token
        self._failure: RelayError | None = None  # how the latest fetch failed, if it did
        self._streaks: dict[int, _Streak] = {}  # by id() of the invocation's Deadline; None's is one for all
        self._streaks_lock = threading.Lock()

    @property
    def refreshable(self) -> bool:
        return self._settings.cdf_token is None

    def get(self, *, rejected: str | None = None, deadline: Deadline | None = None) -> tuple[str, bool]:
        """The token, and whether it was fetched just now: by this call, or to replace one CDF refused.

        ``rejected``: CDF answered 401 to that one. A token this invocation (``deadline``) saw refused is never handed
        out to it again: its replacement comes instead. Once a token fetched just now was refused, the replacement is
        one fetched after this call asked, by this call or by the fetch it waited for, never one that waited in the
        cache during the backoff (it would be older than it looks, and CDF may refuse tokens by age).
        """
        if self._settings.cdf_token is not None:
            return self._settings.cdf_token.get_secret_value(), False
        streak = self._streaks.get(_key(deadline))
        if streak is not None and rejected is None:
            token, _ = self._get(streak.refused, deadline, new=bool(streak.fresh))
            return token, True
        return self._get(rejected, deadline)

    def refused(self, token: str, fresh: bool, deadline: Deadline | None, why: str) -> None:
        """CDF answered 401 to ``token``: return to try a replacement at once, or raise.

        ``fresh``: as ``get`` said. A static token cannot be replaced: ``AccessDenied`` at once. A cached one is
        replaced at once (return). A token fetched just now is replaced after a backoff (``TransientError``), and the
        third such refusal in a row in this invocation is ``AccessDenied``. ``why`` is CDF's answer, described.
        """
        if not self.refreshable:
            raise AccessDenied(f"{why}; CDF_TOKEN cannot be renewed")
        key = _key(deadline)
        with self._streaks_lock:
            streak = self._streaks.get(key)
            if streak is None:
                streak = self._streaks[key] = _Streak(token)
                if deadline is not None:  # an invocation that ends in the middle of a streak leaves nothing behind
                    weakref.finalize(deadline, self._streaks.pop, key, None)
            streak.refused = token
            if fresh:
                streak.fresh.add((token, self._fetched if token == self._token else 0))
            count = len(streak.fresh)
        if count >= MAX_FRESH_REFUSALS:
            raise AccessDenied(f"{why}; {count} tokens in a row, each fetched just now, were refused")
        if fresh:
            raise TransientError(
                f"{why}; it was fetched just now, so another follows a backoff ({count} of "
                f"{MAX_FRESH_REFUSALS} refusals in a row)"
            )

    def accepted(self, deadline: Deadline | None) -> None:
        """CDF answered this invocation with anything but 401: its streak of refusals, if any, ends."""
        if self._streaks:  # checked first: most requests have no streak to end, and need no lock
            with self._streaks_lock:
                self._streaks.pop(_key(deadline), None)

    def _get(self, rejected: str | None, deadline: Deadline | None, new: bool = False) -> tuple[str, bool]:
        """The cached token, fetched (by this call: True) if there is none, it is ``rejected`` or near its end, or
        ``new`` is asked and no fetch ended while this call waited."""
        fetches = self._fetches
        if not self._lock.acquire(timeout=wait_s(deadline, self._settings.http_timeout_s)):
            raise TransientError("the token endpoint is busy: another fetch has not ended")
        try:
            waited = self._fetches != fetches  # a fetch ended while this call waited: its outcome is this call's too
            if waited and self._failure is not None:
                raise copy.copy(self._failure)
            stale = rejected is not None and rejected == self._token  # another thread may have renewed it already
            if (new and not waited) or stale or self._token is None or self._clock() >= self._expires:
                self._token, lifetime = self._fetch_once(deadline)
                self._fetched = self._fetches
                self._expires = self._clock() + max(lifetime - REFRESH_MARGIN_S, lifetime / 2)
                return self._token, True
            return self._token, False
        finally:
            self._lock.release()

    def _fetch_once(self, deadline: Deadline | None) -> tuple[str, float]:
        try:
            fetched = self._fetch(deadline)
        except RelayError as exc:
            self._token, self._failure = None, exc
            raise
        finally:
            self._fetches += 1  # counted when it ends: whoever read the count before waited for this fetch
        self._failure = None
        return fetched

    def _fetch(self, deadline: Deadline | None) -> tuple[str, float]:
        s = self._settings
        form = {
            "grant_type": "client_credentials",
            "client_id": s.idp_client_id or "",
            "client_secret": s.idp_client_secret.get_secret_value() if s.idp_client_secret else "",
            "scope": s.scopes,
        }
        if s.idp_audience:
            form["audience"] = s.idp_audience
        timeout = request_timeout(deadline, s.http_timeout_s)
        response = send(
            self._http, "POST", s.idp_token_url or "", data=form, what="the token endpoint", timeout=timeout
        )
        code = response.status_code
        if code in (400, 401) or (400 <= code < 500 and not retryable(response)):
            raise AuthFailed(f"the token endpoint refused the client credentials (HTTP {response.status_code})")
        raise_if_transient(response, "the token endpoint")
        body = json_object(response, "the token endpoint")
        token, lifetime = body.get("access_token"), _seconds(body.get("expires_in", 3600))
        if not isinstance(token, str) or not token:
            raise MalformedResponse("the token endpoint answered without access_token")
        if lifetime is None:
            raise MalformedResponse("the token endpoint answered an expires_in that is not a number")
        return token, lifetime


def _key(deadline: Deadline | None) -> int:
    # The invocation's Deadline itself, not its value: two invocations received at the same instant are two.
    return id(deadline)


def _seconds(value: Any) -> float | None:
    """``expires_in`` as a number of seconds; some identity providers send it as a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):
        return float(value)
    return None
