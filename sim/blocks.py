"""Blocks of consecutive items, and their JSON.

A block holds its items' links, pooled metadata and update times in arrays,
and makes the JSON of their fixed parts once (sim/names.py); `encode` then
writes an item with one %-format and one f-string, as answers of 1000 items
need: exactly the bytes json.dumps writes of the item's body.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence

from sim.names import Describe, Names, extra_json, head, name_key, named

SINGLE = frozenset({"timeseries", "sequences"})  # one assetId; files and events hold assetIds
MORE = -1  # in a block's link array: the links are elsewhere (other than one asset)


class Block:
    """Items `first`..`first + count - 1`: how they are named, their links, metadata and times in arrays, whether
    each is gone, and the JSON of their fixed parts (the `head` and `tail` around metadata, links, update time)."""

    __slots__ = (
        "count",
        "created",
        "describe",
        "fields",
        "first",
        "gone",
        "head",
        "link",
        "meta",
        "start",
        "tail",
        "updated",
    )

    def __init__(self, first: int, count: int, describe: Describe, created: int, kind: str) -> None:
        self.first, self.count, self.describe, self.created = first, count, describe, created
        # The JSON of an item but its metadata, links and update time, made once (sim/names.py).
        self.head: str | None
        self.head, self.fields = head(describe, name_key(kind)) or (None, 0)
        self.start = describe.start if isinstance(describe, Names) else 0
        self.tail = f', {extra_json(kind)}, "createdTime": {created}, "lastUpdatedTime": '
        self.link = array("q", bytes(8 * count))
        self.meta = array("q", bytes(8 * count))
        self.updated = array("q", [created]) * count
        self.gone = bytearray(count)


def encode(
    places: Iterable[tuple[Block, int]], kind: str, more: Mapping[int, tuple[int, ...]], pool_json: Sequence[str]
) -> list[str]:
    """Items of `kind` at blocks' places as JSON, exactly as json.dumps writes their bodies; `more` holds the links
    of items with other than one, `pool_json` each pooled metadata's JSON. A hot loop: a block's fields are looked
    up once per run of items in it, and the usual two name fields get their tuple directly."""
    texts, single, last = [], kind in SINGLE, None
    for block, i in places:
        if block is not last:
            last, first, head, start, fields = block, block.first, block.head, block.start, block.fields
            link_at, meta_at, updated_at, tail = block.link, block.meta, block.updated, block.tail
        item_id, n = first + i, start + i
        if head is None:
            text = named(*block.describe(i), name_key(kind)) % item_id
        else:
            text = head % ((item_id, n, n) if fields == 2 else (item_id, *(n,) * fields))
        value = link_at[i]
        if value == MORE:
            link = _link_json(more.get(item_id, ()), single)
        else:
            link = "" if not value else f', "assetId": {value}' if single else f', "assetIds": [{value}]'
        texts.append(f"{text}{pool_json[meta_at[i]]}{link}{tail}{updated_at[i]}}}")
    return texts


def _link_json(links: tuple[int, ...], single: bool) -> str:
    if not links:
        return ""
    return f', "assetId": {links[0]}' if single else f', "assetIds": [{", ".join(map(str, links))}]'
