"""People's decisions (contract, section 10): a decisions message read, and merged into a pipeline's lists. Pure.

A message names one pipeline and 1 to 1000 decisions, each a pair (a source by
``sourceId`` or ``sourceExternalId``, a target by ``targetId`` or
``targetExternalId``) and ``confirm`` or ``reject``. ``read_decisions`` turns it
into ``Decisions`` or raises ``InvalidDecision`` with what it could read.

``merged`` applies them to the lists CDF holds: a confirmed pair is added to
``confirmedMatches`` and taken out of ``rejectedMatches``, a rejected pair the
other way round, each in the form the decision names it; a pair already where
it belongs changes nothing. Entries of other writers are kept as they are.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from handlers.core.errors import InvalidDecision, InvalidTrigger
from handlers.core.models import MAX_ID
from handlers.core.tally import Tally
from handlers.core.trigger import parse_fields

MAX_DECISIONS = 1000
CONFIRMED, REJECTED = "confirmedMatches", "rejectedMatches"
_SIDES = (("sourceId", "sourceExternalId"), ("targetId", "targetExternalId"))


class Decision(NamedTuple):
    """One pair and what a person said of it; each side named by its id (int) or its external id (str)."""

    source: int | str
    target: int | str
    confirm: bool

    def entry(self) -> dict[str, int | str]:
        """The pair as a list entry, in the form the decision names it."""
        (sid, sext), (tid, text) = _SIDES
        return {
            sid if type(self.source) is int else sext: self.source,
            tid if type(self.target) is int else text: self.target,
        }

    def key(self) -> tuple[tuple[str, int | str], ...]:
        """The pair as it is named: what a list's entry naming it the same way has too (``_entry_keys``)."""
        return tuple(self.entry().items())


@dataclass(frozen=True)
class Decisions:
    """A valid decisions message: its pipeline, its decisions in order, and a digest of them as given."""

    project: str
    pipeline_id: int
    decisions: tuple[Decision, ...]
    digest: str


@dataclass
class ReviewCounts(Tally):
    """``review.applied``'s counts: pairs confirmed or rejected now, already so, and links written or put back."""

    confirmed: int = 0
    rejected: int = 0
    unchanged: int = 0
    linked: int = 0
    unlinked: int = 0


def read_decisions(body: Any, *, default_project: str, allowed: tuple[str, ...]) -> Decisions:
    """The decisions of a message's JSON body; ``InvalidDecision`` naming every problem (and the project and pipeline
    when they could be read) for anything else."""
    if not isinstance(body, Mapping):
        raise InvalidDecision("invalid decisions: the message body is not a JSON object")
    problems: list[str] = []
    project, pipeline_id = _coordinates(body, default_project, allowed, problems)
    listed = body.get("decisions")
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_DECISIONS:
        problems.append(f"decisions must be a list of 1 to {MAX_DECISIONS}")
        listed = []
    decisions = [_decision(i, d, problems) for i, d in enumerate(listed)]
    if problems or project is None or pipeline_id is None:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise InvalidDecision(f"invalid decisions: {shown}", project=project, pipeline_id=pipeline_id)
    canonical = json.dumps(listed, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return Decisions(project, pipeline_id, tuple(d for d in decisions if d is not None), digest)


def merged(
    lists: Mapping[str, Sequence[Any]], decisions: Sequence[Decision]
) -> tuple[dict[str, list[Any]], ReviewCounts]:
    """The lists that change (to be set whole) and what the decisions did, each pair once, by its last word; an
    empty dict when every decision holds. One pass over each list, whatever the number of decisions."""
    final = {d.key(): d for d in decisions}  # the last word on each pair
    out, changed, counts, held = {}, [], ReviewCounts(), {}
    for name in (CONFIRMED, REJECTED):
        wanted = name == CONFIRMED
        listed = list(lists.get(name, ()))
        named = [_entry_keys(e) for e in listed]  # a list may hold a million pairs: each entry's keys made once
        held[name] = {key for keys in named for key in keys}
        dropped = {k for k, d in final.items() if d.confirm != wanted} & held[name]
        kept = [e for e, keys in zip(listed, named, strict=True) if dropped.isdisjoint(keys)] if dropped else listed
        added = [d.entry() for k, d in final.items() if d.confirm == wanted and k not in held[name]]
        out[name] = kept + added
        if len(kept) != len(listed) or added:
            changed.append(name)
    for key, d in final.items():
        into, out_of = (CONFIRMED, REJECTED) if d.confirm else (REJECTED, CONFIRMED)
        moved = key not in held[into] or key in held[out_of]
        counts.add(("confirmed" if d.confirm else "rejected") if moved else "unchanged")
    return {name: out[name] for name in changed}, counts


def _entry_keys(entry: Any) -> tuple[tuple[tuple[str, Any], ...], ...]:
    """The ways a list's entry names a pair: a key for each form (ids, external ids) it names both sides in."""
    if type(entry) is not dict:
        return ()
    if len(entry) == 2 and "sourceId" in entry and "targetId" in entry:  # most entries: two ids, one key
        return ((("sourceId", entry["sourceId"]), ("targetId", entry["targetId"])),)
    return tuple(((s, entry[s]), (t, entry[t])) for s in _SIDES[0] if s in entry for t in _SIDES[1] if t in entry)


def holds(lists: Mapping[str, Sequence[Any]], decisions: Sequence[Decision]) -> bool:
    """Whether the lists hold every decision (the last word on a pair counts): a re-read after a write asks this."""
    return not merged(lists, last_words(decisions))[0]


def last_words(decisions: Sequence[Decision]) -> list[Decision]:
    """One decision per pair, the last one given (a message may confirm a pair and then reject it)."""
    last = {(d.source, d.target): d for d in decisions}
    return list(last.values())


def _coordinates(
    body: Mapping[str, Any], default: str, allowed: tuple[str, ...], problems: list[str]
) -> tuple[str | None, int | None]:
    """The project and the pipeline, read as a trigger reads them (section 2)."""
    try:
        fields = {"pipelineId": body.get("pipelineId"), "runId": 1, "project": body.get("project")}
        trigger = parse_fields(fields, default_project=default, allowed=allowed)
    except InvalidTrigger as exc:  # its message names the problem; its fields what could be read
        problems.append(str(exc).removeprefix("invalid trigger: "))
        return exc.project, exc.pipeline_id
    return trigger.project, trigger.pipeline_id


def _decision(index: int, value: Any, problems: list[str]) -> Decision | None:
    if not isinstance(value, dict):
        problems.append(f"decisions[{index}] is not an object")
        return None
    sides = [_side(index, value, names, problems) for names in _SIDES]
    verdict = value.get("decision")
    if verdict not in ("confirm", "reject"):
        problems.append(f"decisions[{index}].decision must be confirm or reject")
    unknown = set(value) - {"decision", *_SIDES[0], *_SIDES[1]}
    if unknown:
        problems.append(f"decisions[{index}] has unknown fields {sorted(unknown)}")
    if None in sides or verdict not in ("confirm", "reject") or unknown:
        return None
    return Decision(sides[0], sides[1], verdict == "confirm")  # type: ignore[arg-type]


def _side(index: int, value: Mapping[str, Any], names: tuple[str, str], problems: list[str]) -> int | str | None:
    """A side named by exactly one of its id (an integer id) and its external id (non-empty text)."""
    by_id, by_external = value.get(names[0]), value.get(names[1])
    if (by_id is None) == (by_external is None):
        problems.append(f"decisions[{index}] must name exactly one of {names[0]} and {names[1]}")
        return None
    if by_id is not None:
        if type(by_id) is not int or not 1 <= by_id <= MAX_ID:
            problems.append(f"decisions[{index}].{names[0]} must be an integer from 1 to {MAX_ID}")
            return None
        return by_id
    if not isinstance(by_external, str) or not by_external or len(by_external) > 255:
        problems.append(f"decisions[{index}].{names[1]} must be text of 1 to 255 characters")
        return None
    return by_external
