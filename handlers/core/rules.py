"""Rule events (contract, section 5): a suggested or generated rule as CDF gave it, split when too large. Pure.

A rule's data carries every field CDF gave for the rule, and each of its
``matches`` items every field CDF gave for that pair: a relay passes on what its
source gives (CDF's generated rules carry their definition, ``extractors``,
``conditions``, ``priority`` and more, that the contract's table does not name).
The fields the table names come first, in its order (null where CDF gave none),
then CDF's other fields in CDF's order, then ``matches``. The coordinates,
``ruleIndex``, ``part`` and ``partCount`` are the worker's: a field of CDF's with
one of those names is left out. Only the fields the table names are checked, as
before; any other is never an error.

A rule too large for one message is sent in parts: every part carries all of the
rule's fields and a slice of ``matches``, so the size of the fields beside the
matches counts against every part.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import TypeAdapter, ValidationError

from handlers.core.encode import MAX_DATA_BYTES, dumps, fit
from handlers.core.errors import InvalidResponse, MalformedResponse
from handlers.core.events import Event, RunRef, run_time
from handlers.core.models import GENERATED_RULE, SUGGESTED_RULE, RunSummary

# The fields the contract's table names for each kind, in its order, and what stands for one CDF did not give.
SUGGESTED_FIELDS: tuple[tuple[str, Any], ...] = (
    ("inputPattern", None),
    ("predictPattern", None),
    ("numMatches", None),
    ("avgScore", None),
    ("matchIndex", ()),
)
GENERATED_FIELDS: tuple[tuple[str, Any], ...] = (("numConflicts", None), ("numOverlaps", None))
WORKER_FIELDS = frozenset({"project", "pipelineId", "runId", "jobId", "ruleIndex", "part", "partCount"})
PART_SLACK = 32  # bytes for the digits of part and partCount beyond the zeros the frame was measured with


def suggested_rule_events(
    ref: RunRef, summary: RunSummary, index: int, raw: Any, max_bytes: int = MAX_DATA_BYTES
) -> list[Event]:
    rule = _valid(SUGGESTED_RULE, raw, f"suggested rule {index}")
    return _events(ref, summary, "suggestedrule", index, rule, SUGGESTED_FIELDS, max_bytes)


def generated_rule_events(
    ref: RunRef, summary: RunSummary, index: int, raw: Any, max_bytes: int = MAX_DATA_BYTES
) -> list[Event]:
    rule = _valid(GENERATED_RULE, raw, f"generated rule {index}")
    return _events(ref, summary, "generatedrule", index, rule, GENERATED_FIELDS, max_bytes)


def rule_head(
    ref: RunRef, summary: RunSummary, index: int, rule: dict[str, Any], named: tuple[tuple[str, Any], ...]
) -> dict[str, Any]:
    """Every field of the rule's data but ``matches`` (and ``part``, ``partCount``), in the order it is sent."""
    head = {**ref.coordinates(summary.jobId), "ruleIndex": index}
    for name, absent in named:
        head[name] = rule.get(name, absent)
    for name, value in rule.items():
        if name not in head and name not in WORKER_FIELDS and name != "matches":
            head[name] = value
    return head


def _events(
    ref: RunRef,
    summary: RunSummary,
    kind: str,
    index: int,
    rule: dict[str, Any],
    named: tuple[tuple[str, Any], ...],
    max_bytes: int,
) -> list[Event]:
    """One event, or parts each carrying the rule's fields and a slice of ``matches`` when the whole is too large."""
    time = run_time(summary, 0)
    head, matches = rule_head(ref, summary, index, rule, named), rule.get("matches", [])
    whole = dumps({**head, "matches": matches})
    if len(whole) <= max_bytes:
        return [Event(whole, ref.attributes(kind, f"{kind}/{index}", time))]
    frame = len(dumps({**head, "part": 0, "partCount": 0, "matches": []})) + PART_SLACK
    if frame > max_bytes:
        what = "suggested rule" if kind == "suggestedrule" else "generated rule"
        raise InvalidResponse(f"{what} {index}: its fields beside the matches are larger than one Pub/Sub message")
    slices = list(_pack(matches, max_bytes - frame))
    events = []
    for k, (start, end) in enumerate(slices):
        data = dumps({**head, "part": k, "partCount": len(slices), "matches": matches[start:end]})
        subject = f"{kind}/{index}/part/{k}"
        events.append(Event(fit(data, f"{kind} {index} part {k}", max_bytes), ref.attributes(kind, subject, time)))
    return events


def _pack(items: list[Any], budget: int) -> Iterator[tuple[int, int]]:
    """Greedy slices ``[start, end)`` whose serialized items (plus commas) fit in ``budget``."""
    start, size = 0, 0
    for i, item in enumerate(items):
        item_size = len(dumps(item)) + 1
        if i > start and size + item_size > budget:
            yield start, i
            start, size = i, 0
        size += item_size
    yield start, len(items)


def _valid(adapter: TypeAdapter[Any], raw: Any, what: str) -> dict[str, Any]:
    """``raw`` itself, once the types of the fields the contract names are checked (strictly: nothing converted)."""
    try:
        adapter.validate_python(raw, strict=True)
    except ValidationError:
        raise MalformedResponse(f"CDF answered a {what} that is not of the documented shape") from None
    rule: dict[str, Any] = raw
    return rule
