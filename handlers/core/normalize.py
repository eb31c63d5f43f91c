"""Stage 3: turn a finished run into events (contract, section 5). Pure.

No I/O, no clock, no environment: every input (the run, its coordinates, the
decision time) is passed in, and the output is ready-to-publish bytes plus
Pub/Sub attributes, so the same run always gives the same events, byte for byte.
Matches (the hot path), ``run.completed`` and ``run.failed`` are made here, rule
events in ``handlers.core.rules``; both are encoded by ``handlers.core.encode``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from handlers.core.encode import MAX_DATA_BYTES as MAX_DATA_BYTES  # re-exported: where the run's events are made
from handlers.core.encode import clip
from handlers.core.encode import dumps as dumps
from handlers.core.errors import InvalidResponse, MalformedResponse
from handlers.core.events import Event, RunRef, rfc3339, run_time
from handlers.core.models import RunSummary
from handlers.core.rules import generated_rule_events, suggested_rule_events


class ItemSource(Protocol):
    def items(self) -> Iterator[tuple[str, int, Any]]: ...


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
        attributes["ce-matchtype"] = clip(match_type)
    body = dumps(data)
    if len(body) > MAX_DATA_BYTES:  # checked inline: this is the hot path
        raise InvalidResponse(f"match {index} is larger than one Pub/Sub message")
    return Event(body, attributes)


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
