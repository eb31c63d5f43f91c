"""The CDF bearer token: static (``CDF_TOKEN``) or OAuth 2.0 client credentials, cached and shared."""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from handlers.cdf.httpio import json_object, raise_if_transient, request_timeout, retryable, send, wait_s
from handlers.core.deadline import Deadline
from handlers.core.errors import AuthFailed, MalformedResponse, RelayError, TransientError
from handlers.process.settings import Settings

REFRESH_MARGIN_S = 30.0  # as Cognite's SDK: renew a token 30 s before it runs out


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
        self._failure: RelayError | None = None  # how the latest fetch failed, if it did

    @property
    def refreshable(self) -> bool:
        return self._settings.cdf_token is None

    def get(self, *, rejected: str | None = None, deadline: Deadline | None = None) -> tuple[str, bool]:
        """The token, and whether it was fetched by this call; ``rejected``: CDF answered 401 to that one."""
        if self._settings.cdf_token is not None:
            return self._settings.cdf_token.get_secret_value(), False
        fetches = self._fetches
        if not self._lock.acquire(timeout=wait_s(deadline, self._settings.http_timeout_s)):
            raise TransientError("the token endpoint is busy: another fetch has not ended")
        try:
            if self._fetches != fetches and self._failure is not None:
                raise copy.copy(self._failure)  # the fetch this call waited for failed: share its outcome
            stale = rejected is not None and rejected == self._token  # another thread may have renewed it already
            if stale or self._token is None or self._clock() >= self._expires:
                self._token, lifetime = self._fetch_once(deadline)
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


def _seconds(value: Any) -> float | None:
    """``expires_in`` as a number of seconds; some identity providers send it as a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):
        return float(value)
    return None
