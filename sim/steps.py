"""Scripted answers of the simulator (`Step`) and the requests it records (`Request`)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, Literal

from sim.data import run_summary

Headers = tuple[tuple[str, str], ...]
PACK_FROM = 4096  # bodies from this size on are kept compressed in records: ~20 x smaller, ~3 ms a MB to compress


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def _headers(headers: Mapping[str, str] | None) -> Headers:
    return tuple((headers or {}).items())


@dataclass(frozen=True)
class Step:
    """One answer to one request: build it with the classmethods, not the fields."""

    kind: Literal["answer", "drop", "stream"] = "answer"
    code: int = 200
    body: bytes = b""
    headers: Headers = ()
    content_type: str = "application/json"
    delay: float = 0.0
    chunks: Callable[[], Iterator[bytes]] | None = None

    @classmethod
    def run(cls, body: Mapping[str, Any]) -> Step:
        """200 with `body` as JSON (a run summary or a full results object)."""
        return cls(body=json.dumps(body).encode())

    @classmethod
    def status(cls, status: str, job_id: int = 456, *, error_message: str | None = None) -> Step:
        """200 with a run summary in `status` (no results), e.g. Queued or Running."""
        return cls.run(run_summary(status, job_id, error_message=error_message))

    @classmethod
    def error(
        cls,
        code: int,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Step:
        """HTTP `code` with CDF's error body; `message` defaults to the status phrase."""
        error = {"error": {"code": code, "message": message or _phrase(code)}}
        return cls(code=code, body=json.dumps(error).encode(), headers=_headers(headers))

    @classmethod
    def throttle(cls, retry_after: str | None = None) -> Step:
        """429 with CDF's error body, and `Retry-After: retry_after` verbatim when given."""
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        return cls.error(429, "Too many requests", headers)

    @classmethod
    def drop(cls) -> Step:
        """Close the connection without answering."""
        return cls(kind="drop")

    @classmethod
    def slow(cls, seconds: float, then: Step) -> Step:
        """Wait `seconds` before answering `then` (to trip client timeouts)."""
        return replace(then, delay=then.delay + seconds)

    @classmethod
    def raw(
        cls,
        status: int,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Step:
        """Exactly `body` with `status`: for malformed or unexpected answers."""
        return cls(code=status, body=body, headers=_headers(headers), content_type=content_type)

    @classmethod
    def stream(cls, chunks: Callable[[], Iterator[bytes]]) -> Step:
        """200 with a chunked body from a fresh `chunks()` iterator on every answer."""
        return cls(kind="stream", chunks=chunks)


@dataclass(frozen=True)
class Request:
    """A request as received; `headers` keys are lower-cased, `time` is time.monotonic().

    Build it with `received`. Records keep `recorded()`: a large body only compressed,
    as a link of a million matches sends some 150 MB of them; `body` is the same either way.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes = field(repr=False)  # the body, or b"" when only `packed` holds it
    time: float
    packed: bytes | None = field(default=None, repr=False)  # zlib of a large body

    @classmethod
    def received(
        cls, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes, time: float
    ) -> Request:
        packed = zlib.compress(body, 1) if len(body) >= PACK_FROM else None
        return cls(method, path, query, headers, body, time, packed)

    @property
    def body(self) -> bytes:
        return zlib.decompress(self.packed) if self.packed is not None and not self.raw else self.raw

    def recorded(self) -> Request:
        """The request as records keep it: a large body compressed only."""
        return self if self.packed is None else replace(self, raw=b"")
