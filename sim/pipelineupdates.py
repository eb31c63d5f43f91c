"""`POST .../context/entitymatching/pipelines/update` in the simulator: a pipeline's lists, replaced whole.

Body `{"items": [{"id": N | "externalId": X, "update": {"confirmedMatches": {"set": [...]}, ...}}]}`,
1 to 100 items. As CDF: every field is `set` only (`scheduleInterval` also `{"setNull": true}`),
so a list is replaced whole and nothing guards a read-modify-write: two writers lose each
other's pairs, which `race_pipeline_update` lets a test show.

In order: CDF's OpenAPI checks the body (refused: 400, kept in `classic.invalid`), then a
script step if one waits (`Applied(step)`: applied, then answered `step`, e.g. a lost answer),
then every item is resolved: an unknown pipeline (or one named twice) refuses the whole
request with 400 and `missing` (`duplicated`), as classic update does. Then the racing
writer's change if one waits, then the update: each field given is set on the pipeline
`GET .../pipelines/{id}` serves (a `Lazy` list of sim/linkworld.py is replaced by the list
given), `lastUpdatedTime` moves, and each (pipeline, field, value) is recorded. The answer
is `{"items": [...]}` with the pipelines updated, without their match lists (the schema
requires none of them, and `trueMatches` may hold 2,000,000 pairs).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

from sim.data import materialize
from sim.lists import Catalog
from sim.steps import Request, Step
from sim.writelog import Applied, Scripted
from sim.writes import Classic

PIPELINES_UPDATE = re.compile(r"/api/v1/projects/(?P<project>[^/]+)/context/entitymatching/pipelines/update")
MATCH_LISTS = ("confirmedMatches", "rejectedMatches", "trueMatches")
Lists = dict[str, list[dict[str, Any]]]  # a pipeline's MATCH_LISTS, by name


class PipelineWrite(NamedTuple):
    """One field set by a pipelines/update that was applied."""

    pipeline: int
    field: str
    value: Any  # as set; None for `setNull`


class PipelineUpdates:
    """Mixed into `WriteSide`: the endpoint above, its scripts, its racing writer and its record."""

    catalog: Catalog
    classic: Classic
    _lock: threading.Lock

    def _init_pipeline_updates(self) -> None:
        self._pipeline_update_steps: list[Scripted] = []
        self._races: dict[int, list[tuple[Callable[[Lists], Lists] | None, bool]]] = {}
        self._pipeline_writes: list[PipelineWrite] = []

    def _reset_pipeline_updates(self) -> None:
        with self._lock:
            self._init_pipeline_updates()

    def script_pipeline_updates(self, steps: list[Scripted]) -> None:
        """Answer the next pipelines/update requests with `steps` in order (None: normally; `Applied(step)`:
        applied, then answered `step`), then normally."""
        with self._lock:
            self._pipeline_update_steps = list(steps)

    def race_pipeline_update(self, pipeline_id: int, change: Callable[[Lists], Lists], *, after: bool = False) -> None:
        """Just before the next pipelines/update naming `pipeline_id` is applied (`after`: just after it), let another
        writer replace its lists with `change(lists)` (lists by name, as MATCH_LISTS; a name left out of the result
        stays). Races wait in order, one for each update: call it three times for three updates in a row."""
        with self._lock:
            self._races.setdefault(pipeline_id, []).append((change, after))

    def pipeline_updates(self) -> list[PipelineWrite]:
        """Every field our pipelines/update requests set, in order (the racing writer's changes are not ours)."""
        with self._lock:
            return list(self._pipeline_writes)

    def _answer_pipeline_update(self, request: Request) -> Step:
        if request.method != "POST":
            return Step.error(405, "Use POST for pipelines/update")
        invalid = self.classic.refused("pipelines/update", request.body)
        if invalid is not None:
            return invalid
        with self._lock:
            scripted = self._pipeline_update_steps.pop(0) if self._pipeline_update_steps else None
        if isinstance(scripted, Step):
            return scripted
        items: list[dict[str, Any]] = json.loads(request.body)["items"]
        with self._lock:
            step = self._apply_pipeline_updates(items)
        return scripted.step if isinstance(scripted, Applied) and step.code == 200 else step

    def _apply_pipeline_updates(self, items: list[dict[str, Any]]) -> Step:
        """Resolve every item, then set every field, or refuse the whole request (with the lock held)."""
        pipelines = self.catalog.pipelines
        by_external_id = {p["externalId"]: n for n, p in pipelines.items() if p.get("externalId") is not None}
        named = [item["id"] if "id" in item else by_external_id.get(item["externalId"]) for item in items]
        missing = [_identity(item) for item, n in zip(items, named, strict=True) if n not in pipelines]
        if missing:
            return _refusal(f"Pipelines not found: {len(missing)}", missing=missing)
        twice = [n for n, times in Counter(named).items() if times > 1]
        if twice:
            return _refusal("Duplicate pipelines in the request", duplicated=[{"id": n} for n in twice])
        now_ms, answered = int(time.time() * 1000), []
        for item, pipeline_id in zip(items, named, strict=True):
            assert pipeline_id is not None  # resolved above
            pipeline = pipelines[pipeline_id]
            races = self._races.get(pipeline_id) or [(None, False)]
            change, after = races.pop(0)
            if not after:
                _race(pipeline, change)
            for field, op in item["update"].items():
                if "set" in op:
                    pipeline[field] = op["set"]
                elif op.get("setNull"):
                    pipeline.pop(field, None)
                else:  # {"setNull": false}: nothing to do
                    continue
                self._pipeline_writes.append(PipelineWrite(pipeline_id, field, op.get("set")))
            if after:
                _race(pipeline, change)
            pipeline["lastUpdatedTime"] = now_ms
            answered.append({k: v for k, v in pipeline.items() if k not in MATCH_LISTS})
        return Step.run({"items": answered})


def _race(pipeline: dict[str, Any], change: Callable[[Lists], Lists] | None) -> None:
    """Another writer replaces the pipeline's lists with what ``change`` makes of them."""
    if change is not None:
        lists = {name: list(materialize(pipeline.get(name, []))) for name in MATCH_LISTS}
        pipeline.update({name: list(value) for name, value in change(lists).items() if name in MATCH_LISTS})


def _identity(item: dict[str, Any]) -> dict[str, Any]:
    return {"id": item["id"]} if "id" in item else {"externalId": item["externalId"]}


def _refusal(message: str, **named: list[dict[str, Any]]) -> Step:
    body = {"error": {"code": 400, "message": message, **named}}
    return Step.raw(400, json.dumps(body).encode())
