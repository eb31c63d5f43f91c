"""The simulator's write side, for links, undo and review: pipelines by id and their update, classic resources'
byids, update and list, assets.

Endpoints (all behind the same token check as the runs, 403 for another project):
- `GET .../context/entitymatching/pipelines/{id}`: the pipeline as the list shows it
  (`sources`/`targets` with `dataSetIds` and `resource`); 404 when unknown.
- `POST .../context/entitymatching/pipelines/update`: set a pipeline's lists (and other
  fields) whole, sim/pipelineupdates.py.
- `POST .../{timeseries|files|events|sequences}/byids` and `.../assets/byids`.
- `POST .../{timeseries|files|events|sequences}/update`.
- `POST .../{timeseries|files|events|sequences}/list`: by metadata, paged by cursor, split
  by partition, sim/listing.py.
Every byids, update, list and pipelines/update body is first checked against CDF's own
OpenAPI (sim/openapi.py); sim/updates.py says what else the simulator's bodies may hold;
sim/writes.py how writes are limited, delayed, faulted and recorded.

`WriteSide` gives `CdfSimulator` these methods (kinds as in URLs, `timeseries`, or as
pipelines name them, `time_series`):
    sim.add_item("timeseries", 1_000_000_001, asset_id=5, metadata={"unit": "bar"})
    sim.add_items(kind, first, count, describe, links=..., metadata=...)  # a block
    sim.add_assets(1, 100)                                # assets 1..100
    sim.delete_item(kind, id), sim.delete_asset(id)
    sim.delete_after_next_byids(kind, items=(...), assets=(...))
    sim.script_writes(kind | None, [Step | Applied | None]), sim.script_byids(...)
    sim.script_pipeline(pipeline_id, [Step | None])
    sim.script_classic_list(kind | None, [Step | None])  # also sim.script_list("timeseries", ...)
    sim.script_pipeline_updates([Step | Applied | None])
    sim.race_pipeline_update(pipeline_id, change)         # change(lists) -> lists, before our next update
    sim.pipeline_updates() -> [PipelineWrite(pipeline, field, value)]
    sim.writes(kind=None) -> [Write], sim.item_state(kind, id), sim.item_states(kind)
    sim.request_counts() -> {"byids": 2, "update": 1, "list": 4, "timeseries/update": 1, "pipelines/update": 1, ...}
    sim.hold_writes(), sim.release_writes(), sim.wait_writes_in_flight(n)
    sim.classic.write_limit / write_latency_s / byids_latency_s / list_latency_s / peak_in_flight
    sim.classic.invalid -> [(endpoint, message)]          # bodies CDF's OpenAPI refused
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping

from sim.classic import Describe, ItemState, kind_of
from sim.data import MAX_ID, stream_json
from sim.lists import Catalog
from sim.names import Names
from sim.pipelineupdates import PIPELINES_UPDATE, PipelineUpdates
from sim.steps import Request, Step
from sim.writelog import Scripted, Write
from sim.writes import Classic

_PROJECT = r"/api/v1/projects/(?P<project>[^/]+)"
CLASSIC_PATH = re.compile(_PROJECT + r"/(?P<kind>timeseries|files|events|sequences|assets)/(?P<op>byids|update|list)")
PIPELINE_PATH = re.compile(_PROJECT + r"/context/entitymatching/pipelines/(?P<pipeline>[^/]+)")
_PIPELINES = _PROJECT + r"/context/entitymatching/pipelines"
_ENDPOINTS = (  # first match names a request in request_counts()
    ("token", re.compile(r"/oauth2/token")),
    ("pipelines", re.compile(_PIPELINES)),
    ("pipelines/update", PIPELINES_UPDATE),
    ("pipeline", PIPELINE_PATH),
    ("runs", re.compile(_PIPELINES + r"/[^/]+/runs")),
    ("latest", re.compile(_PIPELINES + r"/[^/]+/runs/latest")),
    ("results", re.compile(_PIPELINES + r"/[^/]+/runs/[^/]+")),
)
FORBIDDEN = "Resource not found. This may also be due to insufficient access rights."


def endpoint(path: str) -> str:
    """The endpoint a request went to: token, pipelines, pipelines/update, pipeline, runs, latest, results, byids,
    update, list, other."""
    found = CLASSIC_PATH.fullmatch(path)
    if found is not None:
        return str(found["op"])
    return next((name for name, pattern in _ENDPOINTS if pattern.fullmatch(path)), "other")


class WriteSide(PipelineUpdates):
    """Mixed into `CdfSimulator`: the endpoints above and their scripting (see the module's docstring)."""

    project: str
    catalog: Catalog
    requests: list[Request]
    _lock: threading.Lock
    _stopping: threading.Event
    classic: Classic
    _pipeline_scripts: dict[int, list[Step | None]]

    def _init_write_side(
        self, write_limit: int | None, write_latency_s: float, byids_latency_s: float, list_latency_s: float
    ) -> None:
        self.classic = Classic(
            self._stopping,
            write_limit=write_limit,
            write_latency_s=write_latency_s,
            byids_latency_s=byids_latency_s,
            list_latency_s=list_latency_s,
        )
        self._pipeline_scripts = {}
        self._init_pipeline_updates()

    def _reset_write_side(self) -> None:
        self.classic.reset()
        self._pipeline_scripts.clear()
        self._reset_pipeline_updates()

    # -- state ------------------------------------------------------------------

    def add_item(
        self,
        kind: str,
        item_id: int,
        *,
        external_id: str | None = None,
        name: str | None = None,
        asset_id: int | None = None,
        asset_ids: tuple[int, ...] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """One item of `kind` (its links need not exist as assets: CDF checks them only on writes)."""
        links = (asset_id,) if asset_id is not None else tuple(asset_ids)
        described = (external_id, name or f"{kind_of(kind)} {item_id}")
        self.add_items(kind, item_id, 1, lambda i: described, links=lambda i: links, metadata=lambda i: metadata or {})

    def add_items(
        self,
        kind: str,
        first: int,
        count: int,
        describe: Describe | None = None,
        *,
        links: Callable[[int], tuple[int, ...]] | None = None,
        metadata: Callable[[int], Mapping[str, str]] | None = None,
    ) -> None:
        """Items `first`..`first + count - 1`; the functions take the index in the block (0..count-1)."""
        with self.classic.lock:
            self.classic.resources[kind_of(kind)].add(
                first, count, describe or _describe(kind_of(kind), first), links=links, metadata=metadata
            )

    def add_assets(self, first: int, count: int = 1) -> None:
        """Assets `first`..`first + count - 1` exist (again, if deleted)."""
        with self.classic.lock:
            self.classic.assets.add(first, count)

    def delete_item(self, kind: str, item_id: int) -> bool:
        with self.classic.lock:
            return self.classic.resources[kind_of(kind)].delete(item_id)

    def delete_asset(self, asset_id: int) -> bool:
        with self.classic.lock:
            return self.classic.assets.delete(asset_id)

    def delete_after_next_byids(self, kind: str, items: tuple[int, ...] = (), assets: tuple[int, ...] = ()) -> None:
        """Right after answering the next byids of `kind`, delete `items` of that kind and `assets`."""
        self.classic.delete_after_next_byids(kind_of(kind), tuple(items), tuple(assets))

    def item_state(self, kind: str, item_id: int) -> ItemState | None:
        with self.classic.lock:
            return self.classic.resources[kind_of(kind)].get(item_id)

    def item_states(self, kind: str) -> dict[int, ItemState]:
        """Every existing item of `kind`: id -> its links and metadata."""
        with self.classic.lock:
            resource = self.classic.resources[kind_of(kind)]
            return {item_id: state for item_id in resource.ids() if (state := resource.get(item_id))}

    # -- scripting and records --------------------------------------------------

    def script_writes(self, kind: str | None, steps: list[Scripted]) -> None:
        """Answer the next updates of `kind` (any kind: None) with `steps`, in order, then normally."""
        self.classic.script("update", None if kind is None else kind_of(kind), steps)

    def script_byids(self, kind: str | None, steps: list[Step | None]) -> None:
        """Answer the next byids of `kind` (`assets` too; any: None) with `steps`, in order, then normally."""
        self.classic.script("byids", None if kind in (None, "assets") else kind_of(kind), list(steps))

    def script_classic_list(self, kind: str | None, steps: list[Step | None]) -> None:
        """Answer the next lists of `kind` (any kind: None) with `steps`, in order, then normally."""
        self.classic.script("list", None if kind is None else kind_of(kind), list(steps))

    def script_pipeline(self, pipeline_id: int, steps: list[Step | None]) -> None:
        """Answer the next GETs of the pipeline with `steps` (None: normally), then normally."""
        with self._lock:
            self._pipeline_scripts[pipeline_id] = list(steps)

    def writes(self, kind: str | None = None) -> list[Write]:
        """Every update request received, in order of answer."""
        with self.classic.lock:
            return [w for w in self.classic.writes if kind is None or w.kind == kind_of(kind)]

    def request_counts(self) -> dict[str, int]:
        """Requests per endpoint (see `endpoint`), and per kind for byids, update and list (`timeseries/list`)."""
        with self._lock:
            paths = [r.path for r in self.requests]
        counts: Counter[str] = Counter()
        for path in paths:
            counts[endpoint(path)] += 1
            if found := CLASSIC_PATH.fullmatch(path):
                counts[f"{found['kind']}/{found['op']}"] += 1
        return dict(counts)

    def cpu_per_request(self) -> dict[str, float]:
        """The simulator's thread CPU per request answered, in seconds, per op (byids, update, list)."""
        with self.classic.lock:
            return {op: self.classic.cpu[op] / n for op, n in self.classic.answered.items()}

    def hold_writes(self) -> None:
        """Keep every write admitted from now on in flight until `release_writes()`."""
        self.classic.gate.hold()

    def release_writes(self) -> None:
        self.classic.gate.release()

    def wait_writes_in_flight(self, count: int, timeout_s: float = 30.0) -> bool:
        """Wait until `count` writes are in flight; whether they were within `timeout_s`."""
        return self.classic.gate.wait_in_flight(count, timeout_s)

    # -- answering ----------------------------------------------------------------

    def _answer_write_side(self, request: Request) -> Step | None:
        """The answer if the request is for this side's endpoints, else None."""
        found = CLASSIC_PATH.fullmatch(request.path)
        if found is not None:
            if found["project"] != self.project:
                return Step.error(403, FORBIDDEN)
            return self.classic.answer(found["kind"], found["op"], request)
        found = PIPELINES_UPDATE.fullmatch(request.path)
        if found is not None:
            forbidden = found["project"] != self.project
            return Step.error(403, FORBIDDEN) if forbidden else self._answer_pipeline_update(request)
        found = PIPELINE_PATH.fullmatch(request.path)
        if found is None or request.method != "GET":
            return None
        if found["project"] != self.project:
            return Step.error(403, FORBIDDEN)
        text = found["pipeline"]
        if not (text.isascii() and text.isdecimal() and 1 <= int(text) <= MAX_ID):
            return Step.error(400, f"Invalid id in path: ids are integers in 1..{MAX_ID}")
        pipeline_id = int(text)
        with self._lock:
            steps = self._pipeline_scripts.get(pipeline_id)
            step = steps.pop(0) if steps else None
            item = self.catalog.pipeline_item(pipeline_id)
        if step is not None:
            return step
        if item is None:
            return Step.error(404, f"Pipeline not found: pipelines/{pipeline_id}")
        return Step.stream(lambda: stream_json(item))  # its lists may hold a million pairs, made as they go


def _describe(kind: str, first: int) -> Describe:
    return Names(f"{kind}-{{}}", f"{kind} {{}}", first)
