"""The simulator's list endpoints: the project's pipelines and each pipeline's runs, paged as CDF pages them.

The same pipelines answer `GET .../pipelines/{id}` (sim/writeside.py); each has a source and a
target resource (`time_series` to `assets` unless set), as CDF's pipelines do.

`GET .../pipelines?limit=1..100&cursor=` and `GET .../pipelines/{id}/runs?limit=&cursor=`
answer `{"items": [...], "nextCursor": "..."}`, `nextCursor` absent on the last
page. CDF documents no order, so items come in an order shuffled with a seed
(the same on every request, so paging is consistent, but neither by id nor by
time). Cursors are opaque tokens tied to one list.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sim.data import CREATED_MS, Lazy, materialize, run_summary
from sim.steps import Step

MAX_LIMIT = 100
DEFAULT_LIMIT = 100  # CDF documents 1..100 and no default; its lists commonly default to their maximum


@dataclass
class Catalog:
    """Pipelines (by id) and their run summaries, as the list endpoints show them."""

    seed: int = 0
    pipelines: dict[int, dict[str, Any]] = field(default_factory=dict)
    runs: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)

    def add_pipeline(
        self,
        pipeline_id: int,
        *,
        external_id: str | None = None,
        name: str | None = None,
        schedule_interval: int | None = None,
        source_resource: str = "time_series",
        target_resource: str = "assets",
        confirmed: Iterable[dict[str, Any]] = (),
        rejected: Iterable[dict[str, Any]] = (),
    ) -> None:
        pipeline: dict[str, Any] = {
            "id": pipeline_id,
            "createdTime": CREATED_MS - 86_400_000,  # required by CDF's schema: a day before the runs
            "lastUpdatedTime": CREATED_MS - 3_600_000,
            "externalId": external_id or f"pipeline-{pipeline_id}",
            "name": name or f"Pipeline {pipeline_id}",
            "description": f"entity matching of {source_resource} to {target_resource}",
            "sources": {"dataSetIds": [{"id": 1}], "resource": source_resource},
            "targets": {"dataSetIds": [{"id": 2}], "resource": target_resource},
            "matchFields": [{"source": "name", "target": "name"}],
            "modelParameters": {"featureType": "bigram", "classifier": "randomforest"},
            "confirmedMatches": confirmed if isinstance(confirmed, Lazy) else list(confirmed),
            "rejectedMatches": rejected if isinstance(rejected, Lazy) else list(rejected),
            "trueMatches": [],
            "rules": [],
            "scoreThreshold": 0.5,
        }
        if schedule_interval is not None:
            pipeline["scheduleInterval"] = schedule_interval
        self.pipelines[pipeline_id] = pipeline
        self.runs.setdefault(pipeline_id, {})

    def add_run(
        self, pipeline_id: int, job_id: int, created_ms: int, status: str, error_message: str | None
    ) -> dict[str, Any]:
        if pipeline_id not in self.pipelines:
            self.add_pipeline(pipeline_id)
        summary = run_summary(status, job_id, created=created_ms, error_message=error_message)
        self.runs[pipeline_id][job_id] = summary
        return summary

    def pipeline_items(self) -> list[dict[str, Any]]:
        return [item for pipeline_id in sorted(self.pipelines) if (item := self.pipeline_item(pipeline_id))]

    def pipeline_item(self, pipeline_id: int) -> dict[str, Any] | None:
        """One pipeline as the list shows it (with `lastRun` once it has runs), or None."""
        pipeline = self.pipelines.get(pipeline_id)
        if pipeline is None:
            return None
        runs = self.runs.get(pipeline_id) or {}
        last = max(runs.values(), key=lambda r: (r["createdTime"], r["jobId"]), default=None)
        return {**pipeline, "lastRun": last} if last else dict(pipeline)

    def run_items(self, pipeline_id: int) -> list[dict[str, Any]]:
        return [summary for _, summary in sorted(self.runs[pipeline_id].items())]

    def page(self, key: str, items: list[dict[str, Any]], query: dict[str, str]) -> Step:
        """One page of `items` (listed under `key`), shuffled with the seed, from the query's cursor."""
        limit, offset = _limit(query.get("limit")), _offset(query.get("cursor"), key)
        if limit is None:
            return Step.error(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
        if offset is None:
            return Step.error(400, "Invalid cursor")
        random.Random(f"{self.seed}/{key}").shuffle(items)
        body: dict[str, Any] = {"items": materialize(items[offset : offset + limit])}
        if offset + limit < len(items):
            body["nextCursor"] = _cursor(key, offset + limit)
        return Step.run(body)


def _limit(text: str | None) -> int | None:
    if text is None:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdecimal()) or not 1 <= int(text) <= MAX_LIMIT:
        return None
    return int(text)


def _cursor(key: str, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([key, offset]).encode()).decode().rstrip("=")


def _offset(cursor: str | None, key: str) -> int | None:
    """Where a cursor points in the list `key`; None for a cursor of another list or no cursor at all."""
    if cursor is None:
        return 0
    try:
        found = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        return None
    if not (isinstance(found, list) and len(found) == 2 and found[0] == key and isinstance(found[1], int)):
        return None
    return found[1] if found[1] >= 0 else None
