"""Link scenarios: a pipeline, a completed run's matches, the items and assets they name, and what to expect.

    world = link_world(sim, 7, 70, kind="time_series", matches=1000, below=0.4, linked=0.05, seed=7)
    world.expected().counts()   # {"linked": ..., "belowThreshold": ..., ..., "written": ...}
    world.expected(0.8, overwrite=True)
    world.differences(sim)      # [] once CDF holds what linking the run leaves
    world.differences(sim, untouched=True)  # [] while nothing was written (a dry run)

Deterministic from `seed`. One source per case; `matches` counts the run's entries.
Counted cases take sources first: `ambiguous` (two entries, best two tie on
different targets; half of them both confirmed), `runners_up` (a second, lower
entry for another target), `unlinkable` (a source or target id missing, a string,
null or a fraction), `missing_sources` (not in CDF), `missing_targets` (the asset
is not there), `confirmed` (`previously_mapped` and `previously-confirmed` in
turn, half without a score, half scored below the threshold), `rules` (a rule's
match, `rule_...`, scored as confirmed ones), `listed` (a model match scored as
confirmed ones, whose pair is in the pipeline's `confirmedMatches`), `rejected`
(one match scored above the threshold, its pair in `rejectedMatches`),
`rejected_best` (that, and a second match for another target that links).
Listed pairs name their sides by ids and external ids in turn. `noise` adds
(confirmed, rejected) pairs naming items of no run, as a pipeline's history
holds them: the lists are served as they stream, never held whole. Of the other
sources, `below` scores under `min_score`, `linked` are linked to their target
already, `conflicts` linked to another asset (for files and events: holding
another one), the rest link fresh. Second entries come after
every first one, so a link must group a source's matches across the whole body.

Sources get ids from 1_000_000_000 (or past the kind's highest), assets from 1
(or past the highest): source s targets asset `asset_base + s`, its other asset is
`asset_base + n_sources + s`. A third of the sources hold metadata `{"unit": "bar"}`.
The run's body is streamed, as `stream_run_body`'s, never held whole.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from sim.classic import RESOURCE_KINDS, SINGLE, ItemState, kind_of
from sim.data import CREATED_MS, Lazy, materialize, run_summary, stream_json
from sim.linkoracle import Lists, Outcome, after, choose, settle
from sim.names import Names
from sim.server import CdfSimulator
from sim.steps import Step
from sim.worldcases import Cases, plan

SOURCE_BASE = 1_000_000_000
RUN_KEY, SCORE_KEY = "matchrelay:run", "matchrelay:score"
ASSET_KEY, PREVIOUS_KEY = "matchrelay:asset", "matchrelay:previous"
REVIEW_MIN_SCORE, REVIEW_MAX_EVENTS = 0.5, 10_000  # the link's defaults: what its link.review events count
NOISE_BASE = 8_000_000_000_000  # ids of the sources and targets that noise pairs name: no world's
_NAMES = {
    "timeseries": ("ts", "Pump {} pressure"),
    "files": ("doc", "P&ID sheet {}.pdf"),
    "events": ("evt", "Alarm {}"),
    "sequences": ("seq", "Pump {} curve"),
}


@dataclass
class LinkWorld:
    """A built scenario: where its items are and what linking its run should do."""

    project: str
    pipeline_id: int
    run_id: int
    resource: str  # the pipeline's source resource, e.g. time_series
    kind: str  # the same as classic resources' URLs name it, e.g. timeseries
    min_score: float
    cases: Cases
    source_base: int
    asset_base: int
    noise: tuple[int, int] = (0, 0)
    trust_rules: bool = True
    _expected: dict[tuple[float, bool], tuple[Outcome, list[tuple[str, float | None]]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def n_sources(self) -> int:
        return self.cases.n_sources

    @property
    def provenance(self) -> str:
        return f"{self.project}/{self.pipeline_id}/{self.run_id}"

    def source_id(self, s: int) -> int:
        return self.source_base + s

    # -- the run ---------------------------------------------------------------

    def match(self, i: int) -> dict[str, Any]:
        """Entry `i` of the run's matches: the first entry of every source, then the second ones."""
        if i < self.n_sources:
            return self._entry(i, second=False)
        return self._entry(self.cases.seconds[i - self.n_sources], second=True)

    def entries(self, s: int) -> list[dict[str, Any]]:
        """Every match of source `s`."""
        first = self._entry(s, second=False)
        return [first, self._entry(s, second=True)] if self.cases.has_second(s) else [first]

    def describe(self) -> dict[str, Any]:
        body = run_summary("Completed", self.run_id)
        body.update(matches=Lazy(self.cases.n_matches, self.match), suggestedRules=[], generatedRules=[], errors=[])
        return body

    def results(self) -> dict[str, Any]:
        """The run's results as one dict (small worlds)."""
        found: dict[str, Any] = materialize(self.describe())
        return found

    def stream(self) -> Iterator[bytes]:
        """The run's results as JSON bytes in chunks, built as they go."""
        return stream_json(self.describe())

    def _entry(self, s: int, second: bool) -> dict[str, Any]:
        prefix, name = _NAMES[self.kind]
        source = {"id": self.source_id(s), "externalId": f"{prefix}-{s:07d}", "name": name.format(s)}
        asset = self.asset_base + s + (self.n_sources if second else 0)
        entry: dict[str, Any] = {"source": source, "target": _asset(asset)}
        score = self.cases.score(s, second)
        if score is not None:
            entry["score"] = score
        entry["matchType"] = self.cases.match_type(s, prefix, second)
        self.cases.spoil(s, entry)
        return entry

    # -- the pipeline's lists ------------------------------------------------------

    def pairs(self, which: str) -> Lazy:
        """The pipeline's `confirmedMatches` or `rejectedMatches`: the listed sources' pairs, then the noise."""
        sources = [s for s in range(self.n_sources) if self.cases.listed(s) == which]
        noise = self.noise[0 if which == "confirmed" else 1]
        return Lazy(len(sources) + noise, lambda i: self.pair(sources[i]) if i < len(sources) else _noise(i, which))

    def pair(self, s: int) -> dict[str, Any]:
        """Source `s`'s first match as a pair, its sides named as the case's form says."""
        entry, form = self._entry(s, second=False), self.cases.form(s)
        source, target = entry["source"], entry["target"]
        source = {"sourceExternalId": source["externalId"]} if form & 2 else {"sourceId": source["id"]}
        return source | ({"targetExternalId": target["externalId"]} if form & 1 else {"targetId": target["id"]})

    def lists(self, s: int) -> Lists:
        """What the pipeline's lists say of source `s`, as the oracle reads them."""
        listed = self.cases.listed(s)
        pairs = [self.pair(s)] if listed else []
        return Lists(pairs if listed == "confirmed" else [], pairs if listed == "rejected" else [], self.trust_rules)

    # -- CDF as built ------------------------------------------------------------

    def initial(self, s: int) -> ItemState | None:
        """Source `s` as the world was built (None: not in CDF)."""
        if not self.cases.exists(s):
            return None
        links = self.links(s)
        if self.kind in SINGLE:
            return ItemState(asset_id=links[0] if links else None, metadata=self.metadata(s))
        return ItemState(asset_ids=links, metadata=self.metadata(s))

    def links(self, s: int) -> tuple[int, ...]:
        return self.cases.links(s, self.asset_base, self.n_sources)

    def metadata(self, s: int) -> dict[str, str]:
        return {"unit": "bar"} if s % 3 == 0 else {}

    # -- expectations ------------------------------------------------------------

    def decisions(self, min_score: float | None = None, overwrite: bool = False) -> Iterator[tuple[int, str, Any]]:
        """Per source: (s, outcome, the score of the link written, or None when nothing is written)."""
        for s, outcome, written, _ in self._decided(min_score, overwrite):
            yield s, outcome, written

    def _decided(self, min_score: float | None, overwrite: bool) -> Iterator[tuple[int, str, Any, float | None]]:
        """``decisions``, with each source's best score (None without one)."""
        threshold = self.min_score if min_score is None else min_score
        for s in range(self.n_sources):
            choice = choose(self.entries(s), threshold, self.lists(s))
            target_exists = choice.target is not None and self.cases.asset_exists(choice.target - self.asset_base)
            outcome, written = settle(choice, self.initial(s), target_exists, overwrite)
            yield s, outcome, (choice.target, choice.score) if written else None, choice.score

    def expected(
        self,
        min_score: float | None = None,
        *,
        overwrite: bool = False,
        review_min: float = REVIEW_MIN_SCORE,
        review_max: int = REVIEW_MAX_EVENTS,
    ) -> Outcome:
        """The counts a link of the run reports at `min_score` (the world's own by default), `reviews` with them:
        the sources left below the threshold at or above `review_min`, ambiguous or in conflict, `review_max` at most.

        Worked out once per threshold and overwrite (a million sources take half a minute), as they depend on
        the world as built only."""
        key = (self.min_score if min_score is None else min_score, overwrite)
        if key not in self._expected:
            outcome, reviewable = Outcome(), []
            for _, name, written, score in self._decided(*key):
                setattr(outcome, name, getattr(outcome, name) + 1)
                outcome.written += written is not None
                if name in ("ambiguous", "conflict") or (name == "below_threshold" and score is not None):
                    reviewable.append((name, score))
            self._expected[key] = (outcome, reviewable)
        outcome, reviewable = self._expected[key]
        kept = [
            1 for name, score in reviewable if name != "below_threshold" or (score is not None and score >= review_min)
        ]
        return replace(outcome, reviews=min(len(kept), review_max))

    def differences(
        self, sim: CdfSimulator, min_score: float | None = None, *, overwrite: bool = False, untouched: bool = False
    ) -> list[str]:
        """How CDF differs from what the link should leave (or, `untouched`, from the world as built); [] if not.

        Links and metadata must be exact, except `matchrelay:score`, compared as a number (any value
        when the match had no score).
        """
        found: list[str] = []
        for s, _, written in self.decisions(min_score, overwrite):
            item_id, state = self.source_id(s), self.initial(s)
            actual = sim.item_state(self.kind, item_id)
            if state is None or actual is None:
                if actual != state:
                    found.append(f"{item_id}: expected {state}, found {actual}")
                continue
            if written is not None and not untouched:
                target, score = written
                expected = after(state, target, self.kind in SINGLE)
                metadata = {**state.metadata, RUN_KEY: self.provenance, ASSET_KEY: str(target)}
                if self.kind in SINGLE and state.asset_id is not None:  # replaced (overwrite): the undo's way back
                    metadata[PREVIOUS_KEY] = str(state.asset_id)
                problem = _compare(expected, actual, metadata, score)
            else:
                problem = _compare(state, actual, dict(state.metadata), None, provenance=False)
            if problem:
                found.append(f"{item_id}: {problem}")
        return found


def _compare(
    expected: ItemState, actual: ItemState, metadata: dict[str, str], score: float | None, provenance: bool = True
) -> str | None:
    if expected.links() != actual.links():
        return f"links {actual.links()} instead of {expected.links()}"
    written = dict(actual.metadata)
    scored = written.pop(SCORE_KEY, None) if provenance else None
    if written != metadata:
        return f"metadata {dict(actual.metadata)} instead of {metadata}"
    if provenance and score is not None and (scored is None or not _same(scored, score)):
        return f"{SCORE_KEY} {scored!r} instead of {score}"
    return None


def _same(text: str, score: float) -> bool:
    try:
        return math.isclose(float(text), score, abs_tol=1e-9)
    except ValueError:
        return False


def _noise(i: int, which: str) -> dict[str, Any]:
    """A pair of the pipeline's history that names no world's items, its sides named each way in turn."""
    k = NOISE_BASE + 2 * i + (which == "rejected")
    source = {"sourceExternalId": f"old-{k}"} if i % 4 >= 2 else {"sourceId": k}
    return source | ({"targetExternalId": f"old-asset-{k}"} if i % 2 else {"targetId": k})


def _asset(asset_id: int) -> dict[str, Any]:
    return {"id": asset_id, "externalId": f"asset-{asset_id:07d}", "name": f"Asset {asset_id}"}


def link_world(
    sim: CdfSimulator,
    pipeline_id: int,
    run_id: int,
    kind: str = "time_series",
    matches: int = 100,
    *,
    below: float = 0.4,
    linked: float = 0.05,
    conflicts: float = 0.0,
    ambiguous: int = 0,
    runners_up: int = 0,
    missing_sources: int = 0,
    missing_targets: int = 0,
    unlinkable: int = 0,
    confirmed: int = 0,
    rules: int = 0,
    listed: int = 0,
    rejected: int = 0,
    rejected_best: int = 0,
    noise: tuple[int, int] = (0, 0),
    trust_rules: bool = True,
    seed: int = 7,
    min_score: float = 0.9,
    created_ms: int = CREATED_MS,
) -> LinkWorld:
    """Build the scenario in `sim`: pipeline (source resource `kind`), its Completed run, items and assets."""
    resource = next((name for name, url in RESOURCE_KINDS.items() if kind in (name, url)), kind)
    counts = {"ambiguous": ambiguous, "runners_up": runners_up, "unlinkable": unlinkable}
    counts |= {"missing_sources": missing_sources, "missing_targets": missing_targets, "confirmed": confirmed}
    counts |= {"rules": rules, "listed": listed, "rejected": rejected, "rejected_best": rejected_best}
    cases = plan(
        random.Random(seed), matches, min_score, {"below": below, "linked": linked, "conflicts": conflicts}, counts
    )
    url_kind = kind_of(resource)
    source_base = max(SOURCE_BASE, sim.classic.resources[url_kind].end())
    asset_base = sim.classic.assets.end()
    world = LinkWorld(sim.project, pipeline_id, run_id, resource, url_kind, min_score, cases, source_base, asset_base)
    world.noise, world.trust_rules = noise, trust_rules
    _populate(sim, world)
    sim.add_pipeline(
        pipeline_id, source_resource=resource, confirmed=world.pairs("confirmed"), rejected=world.pairs("rejected")
    )
    sim.add_run(pipeline_id, run_id, created_ms, "Completed", steps=[Step.stream(world.stream)])
    return world


def _populate(sim: CdfSimulator, world: LinkWorld) -> None:
    n, prefix_name = world.n_sources, _NAMES[world.kind]
    if n == 0:
        return
    sim.add_assets(world.asset_base, 2 * n)
    for s in world.cases.missing_target_indices():
        sim.delete_asset(world.asset_base + s)

    sim.add_items(
        world.kind,
        world.source_base,
        n,
        Names(f"{prefix_name[0]}-{{:07d}}", prefix_name[1]),
        links=world.links,
        metadata=world.metadata,
    )
    for s in world.cases.missing_source_indices():
        sim.delete_item(world.kind, world.source_id(s))
