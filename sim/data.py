"""Deterministic entity-matching run bodies, built in memory or streamed.

One description of the body (per-index item functions wrapped in `Lazy`)
feeds both `make_run` (a dict) and `stream_run_body` (JSON bytes), so the two
cannot disagree, and a million-match body is never held in memory to stream it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sim import rules

CREATED_MS = 1730204346000  # 2024-10-29T12:19:06Z
SWEEP_WINDOW_MS = (1730203200000, 1730206800000)  # the demo's sweep: runs created 2024-10-29 12:00 to 13:00 UTC
CHUNK_SIZE = 64 * 1024
BATCH = 32  # plain array items encoded per json.dumps call: most of the speed, little of the memory of larger ones
MAX_ID = 9007199254740991  # CDF ids are 1..2**53-1


@dataclass(frozen=True)
class Lazy:
    """A JSON array given by its length and a function from index to item."""

    count: int
    item: Callable[[int], Any]

    def __iter__(self) -> Iterator[Any]:
        return (self.item(i) for i in range(self.count))


def run_summary(
    status: str,
    job_id: int = 456,
    *,
    created: int = CREATED_MS,
    error_message: str | None = None,
) -> dict[str, Any]:
    """The run fields CDF returns for any status; `startTime` is null while Queued."""
    started = status != "Queued"
    finished = status in ("Completed", "Failed")
    start = created + 5_000 if started else None
    return {
        "status": status,
        "createdTime": created,
        "startTime": start,
        "statusTime": created + 60_000 if finished else (start or created),
        "jobId": job_id,
        "errorMessage": error_message,
    }


def _match_type(i: int) -> str:
    return "previously-confirmed" if i % 3 == 2 else "model"


def _source(i: int) -> dict[str, Any]:
    # Variety on fixed indices so every small body exercises the edge cases:
    # non-ASCII names, JSON escapes, ids at the int64/JS limit, missing keys.
    name = f"Pump {i}"
    if i % 5 == 1:
        name = f"Pompe {i}-Ø ∆"
    elif i % 11 == 7:
        name = f'Valve "{i}" \\ A\u2028B'
    source: dict[str, Any] = {
        "id": MAX_ID - i if i % 13 == 12 else 1_000_000 + i,
        "externalId": f"src-{i:07d}",
        "name": name,
        "ignoredField": {"key": "value"},
    }
    if i % 10 == 4:
        del source["externalId"]  # CDF guarantees no key of source/target
    return source


def _target(i: int) -> dict[str, Any]:
    return {"id": 2_000_000 + i, "externalId": f"asset-{i:07d}", "name": f"Asset {i}"}


def _score(i: int) -> float:
    if _match_type(i) == "previously-confirmed":
        return 1.0
    return round(0.6 + (i * 7919 % 400) / 1000, 3)


def _match(i: int) -> dict[str, Any]:
    """The match at position `i` of a run's `matches`."""
    return {
        "matchType": _match_type(i),
        "score": _score(i),
        "source": _source(i),
        "target": _target(i),
    }


def _rule_match(i: int) -> dict[str, Any]:
    """A rule's view of the match at position `i`."""
    return {
        "sourceKeyField": "name",
        "targetKeyField": "name",
        "source": _source(i),
        "target": _target(i),
        "existingMatchType": _match_type(i),
        "consistentMatch": i % 4 != 3,
    }


def _suggested_rule(r: int, n_matches: int, rule_size: int) -> dict[str, Any]:
    size = min(rule_size, n_matches)

    def index(k: int) -> int:
        return (r * rule_size + k) % n_matches

    return {
        "matches": Lazy(size, lambda k: _rule_match(index(k))),
        "inputPattern": f"Pump [N]-{r}",
        "predictPattern": f"Asset [N]-{r}",
        "numMatches": size,
        "avgScore": round(0.8 + (r % 10) / 100, 2),
        "matchIndex": Lazy(size, index),
    }


def _generated_rule(g: int, n_matches: int, rule_size: int) -> dict[str, Any]:
    size = min(rule_size, n_matches)
    if rules.with_definition(g):  # CDF's two shapes in turn (sim/rules.py)

        def scored(k: int) -> dict[str, Any]:
            i = (n_matches - 1 - g - k) % n_matches
            return {**_rule_match(i), "score": _score(i)}

        return rules.definition_rule(g, Lazy(size, scored), size)
    return {
        "matches": Lazy(size, lambda k: _rule_match((n_matches - 1 - g - k) % n_matches)),
        "numConflicts": g % 3,
        "numOverlaps": (g + 1) % 2,
    }


def _describe(
    n_matches: int,
    n_suggested: int,
    n_generated: int,
    status: str,
    job_id: int,
    errors: list[str] | None,
    error_message: str | None,
    created: int,
    rule_size: int,
) -> dict[str, Any]:
    body = run_summary(status, job_id, created=created, error_message=error_message)
    body["matches"] = Lazy(n_matches, _match)
    body["suggestedRules"] = Lazy(n_suggested, lambda r: _suggested_rule(r, n_matches, rule_size))
    body["generatedRules"] = Lazy(n_generated, lambda g: _generated_rule(g, n_matches, rule_size))
    body["errors"] = list(errors or [])
    return body


def materialize(value: Any) -> Any:
    if isinstance(value, Lazy):
        return [materialize(item) for item in value]
    if isinstance(value, dict):
        return {key: materialize(item) for key, item in value.items()}
    return value


def _holds_lazy(value: Any) -> bool:
    return isinstance(value, Lazy) or (isinstance(value, dict) and any(isinstance(v, Lazy) for v in value.values()))


def _batch(items: list[Any], written: int) -> str:
    """`items` as they continue a JSON array that already holds `written` items."""
    return (", " if written else "") + json.dumps(items)[1:-1]


def _encode(value: Any) -> Iterator[str]:
    """JSON text of `value` in pieces, identical to `json.dumps` of its materialized form."""
    if isinstance(value, Lazy):
        yield "["
        written, plain = 0, []  # plain items go to json.dumps a batch at a time: one call, not one per item
        for item in value:
            if not _holds_lazy(item):
                plain.append(item)
                if len(plain) < BATCH:
                    continue
            if plain:
                yield _batch(plain, written)
                written, plain = written + len(plain), []
            if _holds_lazy(item):
                yield ", " if written else ""
                yield from _encode(item)
                written += 1
        if plain:
            yield _batch(plain, written)
        yield "]"
    elif _holds_lazy(value):
        # Only the body and rules hold lazy arrays directly; anything else is
        # plain data that json.dumps renders in one go (much faster).
        for i, (key, item) in enumerate(value.items()):
            yield (", " if i else "{") + json.dumps(key) + ": "
            yield from _encode(item)
        yield "}"
    else:
        yield json.dumps(value)


def make_run(
    n_matches: int,
    n_suggested: int = 0,
    n_generated: int = 0,
    *,
    status: str = "Completed",
    job_id: int = 456,
    errors: list[str] | None = None,
    error_message: str | None = None,
    created: int = CREATED_MS,
    rule_size: int = 3,
) -> dict[str, Any]:
    """A run-results body as CDF documents it; rules cover `rule_size` matches each."""
    description = _describe(
        n_matches, n_suggested, n_generated, status, job_id, errors, error_message, created, rule_size
    )
    result: dict[str, Any] = materialize(description)
    return result


def stream_run_body(
    n_matches: int,
    n_suggested: int = 0,
    n_generated: int = 0,
    *,
    status: str = "Completed",
    job_id: int = 456,
    errors: list[str] | None = None,
    error_message: str | None = None,
    created: int = CREATED_MS,
    rule_size: int = 3,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[bytes]:
    """`json.dumps(make_run(...))` as UTF-8 bytes in ~`chunk_size` pieces, built lazily."""
    description = _describe(
        n_matches, n_suggested, n_generated, status, job_id, errors, error_message, created, rule_size
    )
    return stream_json(description, chunk_size)


def stream_json(description: Any, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """`json.dumps` of `description` with its `Lazy` arrays materialized, as bytes in `chunk_size` pieces."""
    buffer: list[str] = []
    size = 0
    for piece in _encode(description):
        buffer.append(piece)
        size += len(piece)  # json.dumps escapes to ASCII, so chars == bytes
        if size >= chunk_size:
            text = "".join(buffer)
            cut = len(text) - len(text) % chunk_size  # batches are larger than a chunk: cut them to size
            for at in range(0, cut, chunk_size):
                yield text[at : at + chunk_size].encode()
            buffer = [text[cut:]]
            size = len(buffer[0])
    if size:
        yield "".join(buffer).encode()
