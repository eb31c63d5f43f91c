"""Pairs added to a pipeline's ``confirmedMatches`` or ``rejectedMatches`` without dropping any. Pure.

CDF's ``pipelines/update`` sets a list whole, so adding a pair is a read, a
merge and a write of the whole list; ``missing`` says which of our pairs a list
read from CDF lacks (before a write: what to add; after it: whether a racing
writer dropped them), ``merged`` the list to write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

Pair = tuple[int, int]  # (source id, target id)


def pair_of(entry: Any) -> Pair | None:
    """The ids of a list's entry named by ids (``sourceId``, ``targetId``); None for other forms."""
    if not isinstance(entry, dict):
        return None
    source, target = entry.get("sourceId"), entry.get("targetId")
    if type(source) is int and type(target) is int:
        return source, target
    return None


def missing(listed: Iterable[Any], pairs: Sequence[Pair]) -> list[Pair]:
    """``pairs`` the list does not hold (by ids), each once, in order."""
    held = {p for p in map(pair_of, listed) if p is not None}
    out: list[Pair] = []
    for p in pairs:
        if p not in held:
            held.add(p)
            out.append(p)
    return out


def merged(listed: Sequence[Any], added: Iterable[Pair]) -> list[Any]:
    """The list to write: every entry CDF holds, as it holds it, then ``added``."""
    return [*listed, *({"sourceId": s, "targetId": t} for s, t in added)]
