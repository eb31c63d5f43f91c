"""Stage 3: turn a finished run into events (contract, section 5). Pure.

No I/O, no clock, no environment: every input (the run, its coordinates, the
decision time) is passed in, and the output is ready-to-publish bytes plus
Pub/Sub attributes, so the same run always gives the same events, byte for byte.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from handlers.core.errors import InvalidResponse, MalformedResponse
from handlers.core.events import Event, RunRef, rfc3339, run_time
from handlers.core.models import GENERATED_RULE, SUGGESTED_RULE, RuleMatchData, RunSummary

MAX_DATA_BYTES = 9_500_000  # Pub/Sub takes 10 MB a message; leave room for attributes and framing
MAX_ATTRIBUTE_BYTES = 1024  # Pub/Sub's limit on an attribute value
RULE_MATCH_FIELDS = tuple(RuleMatchData.__annotations__)  # "a rule's matches items keep CDF's fields"


class ItemSource(Protocol):
    def items(self) -> Iterator[tuple[str, int, Any]]: ...


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)  # built once: hot path


def dumps(data: Mapping[str, Any]) -> bytes:
    try:
        text = _ENCODER.encode(data)
    except ValueError:
        raise MalformedResponse("CDF answered a number JSON cannot carry (NaN or Infinity)") from None
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate in CDF's text (JSON allows the escape, UTF-8 cannot carry it): keep it escaped.
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


@functools.lru_cache(maxsize=16)
def _per_run(ref: RunRef, job_id: int | None, status_time: int | None) -> tuple[dict[str, Any], dict[str, str]]:
    """What every match event of one run shares: coordinates, and attributes but for type, id and subject."""
    time = rfc3339(status_time) if status_time is not None else rfc3339(0)
    base = ref.attributes("match", "", time)
    for name in ("ce-id", "ce-subject"):
        del base[name]
    return ref.coordinates(job_id), base


def match_event(ref: RunRef, summary: RunSummary, index: int, raw: Any) -> Event:
    """One match; the hot path of a large run, so the per-run parts are computed once."""
    match_type, score, source, target = _match(raw, index)
    coordinates, base = _per_run(ref, summary.jobId, summary.statusTime)
    data = {
        **coordinates,
        "matchIndex": index,
        "matchType": match_type,
        "score": score,
        "source": source,
        "target": target,
        "sourceId": source.get("id"),
        "sourceExternalId": source.get("externalId"),
        "targetId": target.get("id"),
        "targetExternalId": target.get("externalId"),
    }
    subject = f"match/{index}"
    attributes = {**base, "ce-id": ref.event_id(subject), "ce-subject": subject}
    if match_type is not None:
        attributes["ce-matchtype"] = _clip(match_type)
    return _fit(Event(dumps(data), attributes), f"match {index}")


def _match(raw: Any, index: int) -> tuple[str | None, float | None, dict[str, Any], dict[str, Any]]:
    """A match's fields, checked by hand: pydantic per match costs more than the rest of the event."""
    if type(raw) is dict:
        match_type, score = raw.get("matchType"), raw.get("score")
        source, target = raw.get("source", {}), raw.get("target", {})
        if (
            (match_type is None or type(match_type) is str)
            and (score is None or type(score) in (float, int))
            and type(source) is dict
            and type(target) is dict
        ):
            return match_type, score, source, target
    raise MalformedResponse(f"CDF answered a match {index} that is not of the documented shape")


def suggested_rule_events(
    ref: RunRef, summary: RunSummary, index: int, raw: Any, max_bytes: int = MAX_DATA_BYTES
) -> list[Event]:
    rule = _valid(SUGGESTED_RULE, raw, f"suggested rule {index}")
    head = {
        **ref.coordinates(summary.jobId),
        "ruleIndex": index,
        "inputPattern": rule.get("inputPattern"),
        "predictPattern": rule.get("predictPattern"),
        "numMatches": rule.get("numMatches"),
        "avgScore": rule.get("avgScore"),
        "matchIndex": rule.get("matchIndex", []),
    }
    return _rule_events(ref, summary, "suggestedrule", index, head, rule.get("matches", []), max_bytes)


def generated_rule_events(
    ref: RunRef, summary: RunSummary, index: int, raw: Any, max_bytes: int = MAX_DATA_BYTES
) -> list[Event]:
    rule = _valid(GENERATED_RULE, raw, f"generated rule {index}")
    head = {
        **ref.coordinates(summary.jobId),
        "ruleIndex": index,
        "numConflicts": rule.get("numConflicts"),
        "numOverlaps": rule.get("numOverlaps"),
    }
    return _rule_events(ref, summary, "generatedrule", index, head, rule.get("matches", []), max_bytes)


def _rule_events(
    ref: RunRef, summary: RunSummary, kind: str, index: int, head: dict[str, Any], matches: list[Any], max_bytes: int
) -> list[Event]:
    """One event, or parts each carrying a slice of ``matches`` when the whole is too large."""
    time = run_time(summary, 0)
    whole = dumps({**head, "matches": matches})
    if len(whole) <= max_bytes:
        return [Event(whole, ref.attributes(kind, f"{kind}/{index}", time))]
    slices = list(_pack(matches, max_bytes - len(dumps({**head, "part": 0, "partCount": 0, "matches": []})) - 32))
    events = []
    for k, (start, end) in enumerate(slices):
        data = {**head, "part": k, "partCount": len(slices), "matches": matches[start:end]}
        events.append(
            _fit(
                Event(dumps(data), ref.attributes(kind, f"{kind}/{index}/part/{k}", time)),
                f"{kind} {index} part {k}",
                max_bytes,
            )
        )
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


def completed_event(ref: RunRef, summary: RunSummary, counts: tuple[int, int, int]) -> Event:
    data = {
        **ref.coordinates(summary.jobId),
        "status": summary.status,
        "createdTime": summary.createdTime,
        "startTime": summary.startTime,
        "statusTime": summary.statusTime,
        "matchCount": counts[0],
        "suggestedRuleCount": counts[1],
        "generatedRuleCount": counts[2],
        "errors": summary.errors,
    }
    return Event(dumps(data), ref.attributes("run.completed", "run", run_time(summary, 0)))


def failed_event(
    ref: RunRef,
    reason: str,
    message: str | None,
    summary: RunSummary | None,
    decided_at_ms: int,
    event_id: str | None = None,
) -> Event:
    """``run.failed``: a failed run (CDF's own message) or a reason of ours (with our message).

    Its subject names the reason, so a run that fails once and later completes (or fails otherwise) gives each
    outcome its own ``ce-id``. A sweep's (``ref.window``) names its window instead of a run, and carries it.
    """
    data = {
        **ref.coordinates(summary.jobId if summary else None),
        "status": summary.status if summary else None,
        "reason": reason,
        "errorMessage": message,
        "errors": summary.errors if summary else [],
        "createdTime": summary.createdTime if summary else None,
        "startTime": summary.startTime if summary else None,
        "statusTime": summary.statusTime if summary else None,
    }
    subject = f"run/failed/{reason}"
    if ref.window is not None:
        subject, data["window"] = f"sweep/{ref.window.text}/failed/{reason}", ref.window.as_data()
    attributes = ref.attributes("run.failed", subject, run_time(summary, decided_at_ms), event_id)
    attributes["ce-reason"] = reason
    return Event(dumps(data), attributes)


def results_events(
    ref: RunRef, summary: RunSummary, body: Mapping[str, Any], max_bytes: int = MAX_DATA_BYTES
) -> Iterable[Event]:
    """Every match and rule event of a completed run, in order (not ``run.completed``)."""
    for i, match in enumerate(_list(body, "matches")):
        yield match_event(ref, summary, i, match)
    for i, rule in enumerate(_list(body, "suggestedRules")):
        yield from suggested_rule_events(ref, summary, i, rule, max_bytes)
    for i, rule in enumerate(_list(body, "generatedRules")):
        yield from generated_rule_events(ref, summary, i, rule, max_bytes)


def stream_events(
    ref: RunRef, summary: RunSummary, items: ItemSource, max_bytes: int = MAX_DATA_BYTES
) -> Iterator[Event]:
    """The same events as ``results_events``, from items read one at a time (``handlers.cdf.results``)."""
    for array, index, item in items.items():
        if array == "matches":
            yield match_event(ref, summary, index, item)
        elif array == "suggestedRules":
            yield from suggested_rule_events(ref, summary, index, item, max_bytes)
        else:
            yield from generated_rule_events(ref, summary, index, item, max_bytes)


def counts(body: Mapping[str, Any]) -> tuple[int, int, int]:
    return (len(_list(body, "matches")), len(_list(body, "suggestedRules")), len(_list(body, "generatedRules")))


def _list(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedResponse(f"CDF answered {key} that is not a list")
    return value


def _valid(adapter: Any, raw: Any, what: str) -> dict[str, Any]:
    """``raw`` once its shape is checked (strictly: nothing converted), its rule matches cut to CDF's fields."""
    try:
        adapter.validate_python(raw, strict=True)
    except ValidationError:
        raise MalformedResponse(f"CDF answered a {what} that is not of the documented shape") from None
    matches = [{k: m[k] for k in RULE_MATCH_FIELDS if k in m} for m in raw.get("matches", [])]
    return {**raw, "matches": matches}


def _fit(event: Event, what: str, max_bytes: int = MAX_DATA_BYTES) -> Event:
    # A single item larger than a Pub/Sub message cannot be split; publishing it would fail forever.
    if len(event.data) > max_bytes:
        raise InvalidResponse(f"{what} is larger than one Pub/Sub message")
    return event


def _clip(value: str) -> str:
    return value.encode()[:MAX_ATTRIBUTE_BYTES].decode(errors="ignore")
