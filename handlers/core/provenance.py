"""What a link writes (contract, section 8.4): the ``update`` item of each link, with its provenance. Pure.

``update_item`` says it as a dict; ``UpdateItems`` says the same as the JSON
text sent to CDF, from a template made once per run: a chunk of 1000 items is
then one string operation an item rather than 1000 dicts passed through ``json``.
Both write the score as ``json.dumps`` does (``0.93``, ``1.0``; ``null`` when a
confirmed match had none): for a finite float that is ``float.__repr__``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from handlers.core.decision import Link, Resource

RUN_KEY, SCORE_KEY = "matchrelay:run", "matchrelay:score"
ASSET_KEY, PREVIOUS_KEY = "matchrelay:asset", "matchrelay:previous"
_TEXTS = 10_000  # scores whose text is kept: a run's distinct scores, or a bound on what they cost


def run_key(project: str, pipeline_id: int, run_id: int) -> str:
    return f"{project}/{pipeline_id}/{run_id}"


def provenance(run: str, score: float | None, asset: int, previous: int | None = None) -> dict[str, str]:
    """The metadata every written item gets, so links can be found and undone exactly: the run, the score in JSON's
    notation (``0.93``, ``1.0``; ``null`` for a match CDF gave no score), the asset set or added, and the asset it
    replaced, if any (all decimal text: metadata values are strings)."""
    added = {RUN_KEY: run, SCORE_KEY: score_text(score), ASSET_KEY: str(asset)}
    if previous is not None:
        added[PREVIOUS_KEY] = str(previous)
    return added


def score_text(score: float | None) -> str:
    """``json.dumps(score)`` for the scores a link has (finite floats, or None), without the call."""
    return "null" if score is None else float.__repr__(score)


def update_item(link: Link, resource: Resource, run: str) -> dict[str, Any]:
    """The ``update`` item of one link: ``assetId`` set (one asset) or ``assetIds`` add (a list), with provenance;
    a write that replaces no asset removes a ``matchrelay:previous`` an earlier overwrite may have left."""
    change: dict[str, Any] = {"set": link.target} if resource.single else {"add": [link.target]}
    metadata: dict[str, Any] = {"add": provenance(run, link.score, link.target, link.previous)}
    if link.previous is None:
        metadata["remove"] = [PREVIOUS_KEY]
    return {"id": link.source, "update": {resource.field: change, "metadata": metadata}}


class UpdateItems:
    """``update_item`` as JSON text, for every link of one run and resource."""

    def __init__(self, resource: Resource, run: str) -> None:
        # The constant text between the values (source, target, score, asset, previous), escaped by json once.
        change = '{"set":' if resource.single else '{"add":['
        self._field = f',"update":{{{json.dumps(resource.field)}:{change}'
        close = "}" if resource.single else "]}"
        self._score = f'{close},"metadata":{{"add":{{{json.dumps(RUN_KEY)}:{json.dumps(run)},{json.dumps(SCORE_KEY)}:"'
        self._asset = f'",{json.dumps(ASSET_KEY)}:"'
        self._end = f'"}},"remove":[{json.dumps(PREVIOUS_KEY)}]}}}}}}'
        self._previous = f'",{json.dumps(PREVIOUS_KEY)}:"'
        self._previous_end = '"}}}}'  # no remove: the write names the asset it replaces
        # Each score's text, once: float.__repr__ takes about 1 µs, and a run's scores repeat (CDF gives a few digits).
        self._texts: dict[float | None, str] = {}

    def item(self, link: Link) -> str:
        """One link's item."""
        return self.items([link])[0]

    def items(self, links: Iterable[Link]) -> list[str]:
        """The items of ``links``, in order (one loop for a chunk: this runs for every link written)."""
        field, score, asset, end, texts = self._field, self._score, self._asset, self._end, self._texts
        replaced, replaced_end = self._previous, self._previous_end
        out: list[str] = []
        append = out.append
        for source, target, s, _, previous in links:
            text = texts.get(s)
            if text is None:
                text = score_text(s)
                if s and len(texts) < _TEXTS:  # never 0.0, which would answer for -0.0 too
                    texts[s] = text
            if previous is None:
                append(f'{{"id":{source}{field}{target}{score}{text}{asset}{target}{end}')
            else:
                append(f'{{"id":{source}{field}{target}{score}{text}{asset}{target}{replaced}{previous}{replaced_end}')
        return out

    @staticmethod
    def body(items: Iterable[str]) -> bytes:
        """The request body of an ``update`` of ``items``."""
        return ('{"items":[' + ",".join(items) + "]}").encode()
