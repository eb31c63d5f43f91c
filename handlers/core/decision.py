"""The link's decision (contract, section 8): which source gets which asset, per source, table-driven. Pure.

Three steps, each a small table:

1. ``kind_of`` says what one match is: confirmed (either of CDF's spellings,
   or a pair of the pipeline's ``confirmedMatches``), a rule match (trusted
   unless ``LINK_TRUST_RULES=false``), a model match, or rejected (a pair of
   ``rejectedMatches``, dropped before anything else). ``rank`` orders them.
2. ``decide`` takes a source's best match (``handlers.core.plan`` keeps
   one per source as the run's matches stream in) and says ``rejected``,
   ``unlinkable``, ``below_threshold``, ``ambiguous``, or ``link``.
3. ``against`` sets a ``Link`` against what CDF holds for its source: found in
   place, a ``conflict``, ``source_missing``, or to write.

What a link writes (its ``update`` item and provenance) is ``handlers.core.provenance``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from handlers.core.errors import MalformedResponse
from handlers.core.models import is_integer
from handlers.core.pairs import CONFIRMED as LISTED_CONFIRMED
from handlers.core.pairs import REJECTED as LISTED_REJECTED
from handlers.core.tally import Tally, camel

CONFIRMED_TYPES = frozenset({"previously_mapped", "previously-confirmed"})  # CDF's OpenAPI's name, and one seen
RULE_PREFIX = "rule"  # CDF's OpenAPI: rule_{inputPattern}->{predictPattern}
TARGET_RESOURCE = "assets"
MAX_ITEMS = 1000  # CDF's largest byids and update request

# What the decision can say of one source.
LINK = "link"  # decided: link it (then ``against`` says how)
UNLINKABLE = "unlinkable"
BELOW_THRESHOLD = "below_threshold"
AMBIGUOUS = "ambiguous"
REJECTED = "rejected"
IN_PLACE = "in_place"  # linked already: nothing to write
CONFLICT = "conflict"
SOURCE_MISSING = "source_missing"
TARGET_MISSING = "target_missing"
WRITE = "write"


# What one match is (``kind_of``), as bits a column of a byte keeps; a higher kind ranks above a lower one.
MODEL, RULE, CONFIRMED, DROPPED = 0, 1, 2, 4
TRUSTED = RULE | CONFIRMED  # links whatever the score


def kind_of(match_type: Any, listed: int, trust_rules: bool) -> int:
    """What a match is, from its ``matchType`` (open text) and what the pipeline's lists say of its pair
    (``handlers.core.pairs.Pairs.of``): rejected before anything else, then confirmed,
    then a trusted rule match; anything else is a model match."""
    if listed & LISTED_REJECTED:
        return DROPPED
    if listed & LISTED_CONFIRMED or match_type in CONFIRMED_TYPES:
        return CONFIRMED
    if trust_rules and type(match_type) is str and match_type.startswith(RULE_PREFIX):
        return RULE
    return MODEL


def rank(kind: int, score: float | None) -> tuple[int, float]:
    """How a source's matches compare: a rejected one below all, then scores (none lowest), then a trusted rule
    match, then a confirmed one; two confirmed (or two rule) matches tie whatever their scores."""
    if kind & DROPPED:
        return (0, 0.0)
    if kind & TRUSTED:
        return (1 + kind, 0.0)
    return (1, -math.inf if score is None or score != score else score)


@dataclass(frozen=True)
class Resource:
    """A source resource links can be made on: its name in a pipeline, in URLs, and its asset field."""

    name: str  # as a pipeline names it: time_series
    path: str  # as CDF's URLs name it: timeseries
    field: str  # assetId (one asset) or assetIds (a list)
    single: bool = dataclasses.field(init=False)  # one asset; asked for every source of a chunk, so not a property

    def __post_init__(self) -> None:
        object.__setattr__(self, "single", self.field == "assetId")


RESOURCES: Mapping[str, Resource] = {
    r.name: r
    for r in (
        Resource("time_series", "timeseries", "assetId"),
        Resource("sequences", "sequences", "assetId"),
        Resource("files", "files", "assetIds"),
        Resource("events", "events", "assetIds"),
    )
}


def resources_named(pipeline: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """A pipeline's ``sources.resource`` and ``targets.resource`` as it names them (None where it names none)."""
    named = []
    for side in (pipeline.get("sources"), pipeline.get("targets")):
        resource = side.get("resource") if isinstance(side, dict) else None
        named.append(resource if isinstance(resource, str) else None)
    return named[0], named[1]


def resource_of(source: Any, target: Any) -> Resource | None:
    """The source resource a pipeline links, or None when the pair is not one links are made for."""
    if target != TARGET_RESOURCE or not isinstance(source, str):
        return None
    return RESOURCES.get(source)


class Link(NamedTuple):
    """A source to link to a target asset, with the score that decided it (written into its provenance)."""

    source: int
    target: int
    score: float | None
    trusted: bool  # confirmed, or a trusted rule match: linked whatever the score
    previous: int | None = None  # the asset this link's write replaces (LINK_OVERWRITE), once CDF's state is read


@dataclass
class Counts(Tally):
    """One count per outcome, each source counted once, and the links written (contract, section 8.6)."""

    linked: int = 0
    below_threshold: int = 0
    conflict: int = 0
    ambiguous: int = 0
    rejected: int = 0
    unlinkable: int = 0
    source_missing: int = 0
    target_missing: int = 0
    reviews: int = 0  # link.review events published for the run (handlers.flow.handover)
    written: int = 0

    def add(self, outcome: str, n: int = 1) -> None:
        """Count ``n`` sources of ``outcome`` (in place and written both count as linked)."""
        super().add({IN_PLACE: "linked", WRITE: "linked"}.get(outcome, outcome), n)


#: run.linked's counts of sources, one per outcome (each source counted in exactly one); ``reviews`` and
#: ``written`` count other things.
OUTCOMES: tuple[str, ...] = tuple(
    camel(f.name) for f in dataclasses.fields(Counts) if f.name not in ("reviews", "written")
)


def decide(
    target: int | None, score: float | None, trusted: bool, ambiguous: bool, min_score: float, dropped: bool = False
) -> str:
    """Section 8's table for a source's best match (``target`` None: no integer id; ``trusted``: confirmed or a
    trusted rule match; ``ambiguous``: another match of the same rank names another target; ``dropped``: every
    match of the source was a rejected pair), in this order: ``rejected``; a sole best without an integer target id
    is ``unlinkable``; one neither trusted nor scored at least ``min_score`` is ``below_threshold``; a best tied
    with another target is ``ambiguous`` (a tie that would not link anyway counts as below the threshold); else
    link."""
    if dropped:
        return REJECTED
    if target is None and not ambiguous:
        return UNLINKABLE
    if not trusted and (score is None or score < min_score):
        return BELOW_THRESHOLD
    if ambiguous:
        return AMBIGUOUS
    return LINK


def links_of(item: Mapping[str, Any], resource: Resource) -> tuple[int, ...]:
    """The assets an item of ``resource`` (as ``byids`` answers it) links to now."""
    value = item.get(resource.field)
    if value is None:
        return ()
    if resource.single:
        if is_integer(value):
            return (value,)
    elif isinstance(value, list) and all(is_integer(v) for v in value):
        return tuple(value)
    raise MalformedResponse(f"CDF answered a {resource.name} item whose {resource.field} is not of asset ids")


def against(link: Link, current: tuple[int, ...] | None, resource: Resource, overwrite: bool) -> str:
    """What a decided link needs, given the source's links in CDF (``None``: the source does not exist)."""
    if current is None:
        return SOURCE_MISSING
    if link.target in current:
        return IN_PLACE
    if resource.single and current and not overwrite:
        return CONFLICT
    return WRITE
