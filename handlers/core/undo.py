"""The undo of one run's links (contract, section 9.2): what is put back of each item the run's link wrote. Pure.

The unlink lists the items whose ``matchrelay:run`` names the run, and for each
one reads the provenance the link wrote (``handlers.core.provenance``) against
the item's link in CDF now:

| the item | what happens | count |
|---|---|---|
| no valid ``matchrelay:asset`` (before v4), or a ``matchrelay:previous`` naming no asset | left | ``unverified`` |
| ``--below S``, and ``matchrelay:score`` is not a number below S | left | ``kept`` |
| ``assetId`` is the asset, with ``matchrelay:previous`` | ``assetId`` set back to it | ``restored`` |
| ``assetId`` is the asset, no ``matchrelay:previous`` | ``assetId`` ``setNull`` | ``unlinked`` |
| ``assetIds`` holds the asset | that asset removed | ``unlinked`` |
| anything else (relinked or unlinked since) | left | ``changed`` |

An item put back also loses the four ``matchrelay:`` keys, so it is listed no
more: a second unlink finds nothing to do, and one that stopped goes on.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from handlers.core.decision import Resource, links_of
from handlers.core.models import MAX_ID
from handlers.core.provenance import ASSET_KEY, PREVIOUS_KEY, RUN_KEY, SCORE_KEY
from handlers.core.tally import Tally

UNLINKED, RESTORED, CHANGED, UNVERIFIED, KEPT = "unlinked", "restored", "changed", "unverified", "kept"
KEYS = (RUN_KEY, SCORE_KEY, ASSET_KEY, PREVIOUS_KEY)  # what an item put back loses
_DECIMAL = re.compile(r"[1-9][0-9]{0,15}")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")  # JSON's notation, as the link wrote it
_REMOVE = ',"metadata":{"remove":' + json.dumps(list(KEYS), separators=(",", ":")) + "}}}"


class PutBack(NamedTuple):
    """An item to put back: the asset the run's link set or added, and the one to set back (None: none)."""

    source: int
    asset: int
    restore: int | None

    @property
    def outcome(self) -> str:
        return UNLINKED if self.restore is None else RESTORED


@dataclass
class UndoCounts(Tally):
    """``run.unlinked``'s counts: each listed item once, pairs added to ``rejectedMatches``, and writes."""

    unlinked: int = 0
    restored: int = 0
    changed: int = 0
    unverified: int = 0
    kept: int = 0
    rejected: int = 0
    written: int = 0


def undo(item: Mapping[str, Any], resource: Resource, below: float | None = None) -> PutBack | str:
    """What the unlink does with one listed item (as ``list`` answers it): a ``PutBack``, or the count of an item
    left as it is."""
    metadata = item.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    asset, source = _decimal(metadata.get(ASSET_KEY)), _decimal(item.get("id"))
    previous = metadata.get(PREVIOUS_KEY)
    restore = None if previous is None else _decimal(previous)
    if asset is None or source is None or (previous is not None and restore is None):
        return UNVERIFIED
    if below is not None:
        score = _number(metadata.get(SCORE_KEY))
        if score is None or not score < below:
            return KEPT
    current = links_of(item, resource)
    if resource.single and current == (asset,):
        return PutBack(source, asset, restore)
    if not resource.single and asset in current:
        return PutBack(source, asset, None)
    return CHANGED


def update_item(put: PutBack, resource: Resource) -> str:
    """The ``update`` item that puts one item back, as JSON text: its asset set back, set to null or removed, and
    the provenance keys removed."""
    if not resource.single:
        change = f'{{"remove":[{put.asset}]}}'
    elif put.restore is None:
        change = '{"setNull":true}'
    else:
        change = f'{{"set":{put.restore}}}'
    return f'{{"id":{put.source},"update":{{"{resource.field}":{change}{_REMOVE}'


def _decimal(value: Any) -> int | None:
    """An id written as metadata text (decimal), or an integer id as CDF answers it; None for anything else."""
    if type(value) is int:
        return value if 0 < value <= MAX_ID else None
    if isinstance(value, str) and _DECIMAL.fullmatch(value) and int(value) <= MAX_ID:
        return int(value)
    return None


def _number(text: Any) -> float | None:
    """A score as the link wrote it (JSON's notation); None for ``null`` or anything that is no finite number."""
    if not isinstance(text, str) or not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None
