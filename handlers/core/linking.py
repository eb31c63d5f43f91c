"""The link's decision (contract, section 8): which source gets which asset, per source, table-driven. Pure.

Two steps, each a small table:

1. ``Candidates`` takes a run's matches as they stream in and keeps only the best
   candidate per source (memory grows with the sources, not the matches);
   ``Candidates.plan`` then decides each source: ``unlinkable``,
   ``below_threshold``, ``ambiguous``, or a ``Link`` to make.
2. ``against`` sets a ``Link`` against what CDF holds for its source: found in
   place, a ``conflict``, ``source_missing``, or to write.

``update_item`` builds the ``update`` item of a link to write, with its provenance.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from handlers.core.errors import HandBack, MalformedResponse
from handlers.core.models import is_integer

CONFIRMED = "previously-confirmed"
TARGET_RESOURCE = "assets"
MAX_ITEMS = 1000  # CDF's largest byids and update request

# What the decision can say of one source.
LINK = "link"  # decided: link it (then ``against`` says how)
UNLINKABLE = "unlinkable"
BELOW_THRESHOLD = "below_threshold"
AMBIGUOUS = "ambiguous"
IN_PLACE = "in_place"  # linked already: nothing to write
CONFLICT = "conflict"
SOURCE_MISSING = "source_missing"
TARGET_MISSING = "target_missing"
WRITE = "write"


class OutOfTime(HandBack):
    """The invocation's deadline came before every link was written: answer non-2xx after the last confirmed write."""

    code = "deadline"


@dataclass(frozen=True)
class Resource:
    """A source resource links can be made on: its name in a pipeline, in URLs, and its asset field."""

    name: str  # as a pipeline names it: time_series
    path: str  # as CDF's URLs name it: timeseries
    field: str  # assetId (one asset) or assetIds (a list)

    @property
    def single(self) -> bool:
        return self.field == "assetId"


RESOURCES: Mapping[str, Resource] = {
    r.name: r
    for r in (
        Resource("time_series", "timeseries", "assetId"),
        Resource("sequences", "sequences", "assetId"),
        Resource("files", "files", "assetIds"),
        Resource("events", "events", "assetIds"),
    )
}


def resource_of(source: Any, target: Any) -> Resource | None:
    """The source resource a pipeline links, or None when the pair is not one links are made for."""
    if target != TARGET_RESOURCE or not isinstance(source, str):
        return None
    return RESOURCES.get(source)


@dataclass(slots=True)
class _Best:
    target: int | None  # None: the target has no integer id
    score: float | None
    confirmed: bool
    ambiguous: bool = False  # another match of the same rank names another target

    def rank(self) -> tuple[int, float]:
        return _rank(self.confirmed, self.score)


def _rank(confirmed: bool, score: float | None) -> tuple[int, float]:
    # A confirmed match beats any score, and two confirmed ones tie whatever their scores.
    if confirmed:
        return (1, 0.0)
    return (0, -math.inf if score is None else score)


@dataclass(frozen=True)
class Link:
    """A source to link to a target asset, with the score that decided it (written into its provenance)."""

    source: int
    target: int
    score: float | None
    confirmed: bool


@dataclass
class Counts:
    """One count per outcome, each source counted once, and the links written (contract, section 8.6)."""

    linked: int = 0
    below_threshold: int = 0
    conflict: int = 0
    ambiguous: int = 0
    unlinkable: int = 0
    source_missing: int = 0
    target_missing: int = 0
    written: int = 0

    def add(self, outcome: str, n: int = 1) -> None:
        """Count ``n`` sources of ``outcome`` (in place and written both count as linked)."""
        name = {IN_PLACE: "linked", WRITE: "linked"}.get(outcome, outcome)
        setattr(self, name, getattr(self, name) + n)

    def merge(self, other: Counts) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def data(self) -> dict[str, int]:
        """The counts as ``run.linked`` and the summary log line name them (camelCase)."""
        return {_camel(f.name): getattr(self, f.name) for f in dataclasses.fields(self)}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass
class Plan:
    """The sources to link, ascending by source id, and the counts of those that will not be."""

    links: list[Link]
    counts: Counts

    def chunks(self, size: int = MAX_ITEMS) -> Iterator[list[Link]]:
        """The links in requests of at most ``size``, in order."""
        for start in range(0, len(self.links), size):
            yield self.links[start : start + size]


@dataclass
class Candidates:
    """The best match of each source of a run, fed one match at a time."""

    best: dict[int, _Best] = field(default_factory=dict)
    without_source: int = 0  # matches whose source has no integer id: unlinkable, one count each

    def add(self, match: Any, index: int = 0) -> None:
        """One item of the run's ``matches``; a match that is not an object is not of the documented shape."""
        if type(match) is not dict:
            raise MalformedResponse(f"CDF answered a match {index} that is not of the documented shape")
        source, target = _id_of(match.get("source")), _id_of(match.get("target"))
        if source is None:
            self.without_source += 1
            return
        confirmed, score = match.get("matchType") == CONFIRMED, _score(match.get("score"))
        current = self.best.get(source)
        if current is None:
            self.best[source] = _Best(target, score, confirmed)
            return
        rank, best_rank = _rank(confirmed, score), current.rank()
        if rank > best_rank:
            self.best[source] = _Best(target, score, confirmed)
        elif rank == best_rank and target != current.target:
            current.ambiguous = True

    def plan(self, min_score: float) -> Plan:
        """Decide every source (``decide``); the links to make, ascending by source id."""
        counts = Counts(unlinkable=self.without_source)
        links = []
        for source in sorted(self.best):
            best = self.best[source]
            outcome = decide(best, min_score)
            if outcome == LINK:
                assert best.target is not None  # decide() says unlinkable otherwise
                links.append(Link(source, best.target, best.score, best.confirmed))
            else:
                counts.add(outcome)
        return Plan(links, counts)


def decide(best: _Best, min_score: float) -> str:
    """Section 8's table for a source's best match, in this order: a sole best without an integer target id is
    ``unlinkable``; one neither confirmed nor scored at least ``min_score`` is ``below_threshold``; a best tied with
    another target is ``ambiguous`` (a tie that would not link anyway counts as below the threshold); else link."""
    if best.target is None and not best.ambiguous:
        return UNLINKABLE
    if not best.confirmed and (best.score is None or best.score < min_score):
        return BELOW_THRESHOLD
    if best.ambiguous:
        return AMBIGUOUS
    return LINK


def links_of(item: Mapping[str, Any], resource: Resource) -> tuple[int, ...]:
    """The assets an item of ``resource`` (as ``byids`` answers it) links to now."""
    value = item.get(resource.field)
    if value is None:
        return ()
    values = [value] if resource.single else value
    if not isinstance(values, list) or not all(is_integer(v) for v in values):
        raise MalformedResponse(f"CDF answered a {resource.name} item whose {resource.field} is not of asset ids")
    return tuple(values)


def against(link: Link, current: tuple[int, ...] | None, resource: Resource, overwrite: bool) -> str:
    """What a decided link needs, given the source's links in CDF (``None``: the source does not exist)."""
    if current is None:
        return SOURCE_MISSING
    if link.target in current:
        return IN_PLACE
    if resource.single and current and not overwrite:
        return CONFLICT
    return WRITE


def run_key(project: str, pipeline_id: int, run_id: int) -> str:
    return f"{project}/{pipeline_id}/{run_id}"


def provenance(run: str, score: float | None) -> dict[str, str]:
    """The metadata every written item gets, so links can be found and undone: the run and the score, the score in
    JSON's notation (``0.93``, ``1.0``; ``null`` for a confirmed match CDF gave no score)."""
    return {"matchrelay:run": run, "matchrelay:score": json.dumps(score)}


def update_item(link: Link, resource: Resource, run: str) -> dict[str, Any]:
    """The ``update`` item of one link: ``assetId`` set (one asset) or ``assetIds`` add (a list), with provenance."""
    change: dict[str, Any] = {"set": link.target} if resource.single else {"add": [link.target]}
    return {"id": link.source, "update": {resource.field: change, "metadata": {"add": provenance(run, link.score)}}}


def _id_of(side: Any) -> int | None:
    value = side.get("id") if isinstance(side, dict) else None
    return value if is_integer(value) else None


def _score(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
