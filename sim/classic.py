"""CDF's classic resources in the simulator: time series, files, events and sequences.

State only; sim/writeside.py serves it over HTTP. Items live in blocks of
consecutive ids (sim/blocks.py): a block's external ids and names come from a
function of the index, its links and metadata sit in arrays (a metadata by its
number in sim/pool.py), so a million items cost a few megabytes and a scenario
of any size is built in one pass. The assets they link to are in sim/assets.py.

Time series and sequences link to one asset (`assetId`); files and events to a
list (`assetIds`). `ItemState` is how tests see an item: its link(s) and its
metadata, nothing else.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from sim.blocks import MORE, Block, encode
from sim.blocks import SINGLE as SINGLE
from sim.data import CREATED_MS, MAX_ID
from sim.names import EXTRA, name_key
from sim.names import Describe as Describe
from sim.pool import Added as Added
from sim.pool import MetadataPool

KINDS = ("timeseries", "files", "events", "sequences")
RESOURCE_KINDS = {"time_series": "timeseries", "files": "files", "events": "events", "sequences": "sequences"}
Links = tuple[int, ...]


def kind_of(name: str) -> str:
    """The URL kind (`timeseries`) for a kind or a pipeline's resource name (`time_series`)."""
    kind = RESOURCE_KINDS.get(name, name)
    if kind not in KINDS:
        raise ValueError(f"not a classic resource: {name!r}")
    return kind


@dataclass(frozen=True)
class ItemState:
    """One item's links and metadata: `asset_id` for time series and sequences, `asset_ids` for files and events."""

    asset_id: int | None = None
    asset_ids: tuple[int, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)

    def links(self) -> tuple[int, ...]:
        """The assets linked, whichever field holds them."""
        return self.asset_ids if self.asset_id is None else (self.asset_id,)


class Resource:
    """The items of one kind, by id: add blocks, read, write and delete items."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.single = kind in SINGLE
        self._blocks: list[Block] = []
        self._starts: list[int] = []
        self._more: dict[int, tuple[int, ...]] = {}
        self._meta = MetadataPool()  # distinct metadata, shared by items: blocks' `meta` number them

    def add(
        self,
        first: int,
        count: int,
        describe: Describe,
        *,
        links: Callable[[int], tuple[int, ...]] | None = None,
        metadata: Callable[[int], Mapping[str, str]] | None = None,
        created_ms: int = CREATED_MS,
    ) -> None:
        """Items `first`..`first + count - 1`; `links` and `metadata` give each index's initial state."""
        if count < 1 or first < 1 or first + count - 1 > MAX_ID:
            raise ValueError(f"ids {first}..{first + count - 1} are not CDF ids")
        at = bisect.bisect_left(self._starts, first)
        before = self._blocks[at - 1] if at else None
        if (before and before.first + before.count > first) or (
            at < len(self._starts) and self._starts[at] < first + count
        ):
            raise ValueError(f"ids {first}..{first + count - 1} overlap items already there")
        block = Block(first, count, describe, created_ms, self.kind)
        self._blocks.insert(at, block)
        self._starts.insert(at, first)
        for i in range(count) if links or metadata else ():
            linked, meta = links(i) if links else (), self._meta.intern(metadata(i)) if metadata else 0
            if linked or meta:  # a new block holds no links and no metadata already
                self._store(block, i, linked, meta)

    def end(self) -> int:
        """One past the highest id of any block (1 when empty): where a new block can start."""
        last = self._blocks[-1] if self._blocks else None
        return last.first + last.count if last else 1

    def get(self, item_id: int) -> ItemState | None:
        found = self._find(item_id)
        if found is None:
            return None
        block, i = found
        links = self._links(block, i)
        metadata = dict(sorted(self._meta.pairs[block.meta[i]]))  # as its JSON has them: in the order of its keys
        if self.single:
            return ItemState(asset_id=links[0] if links else None, metadata=metadata)
        return ItemState(asset_ids=links, metadata=metadata)

    def put(self, item_id: int, state: ItemState, now_ms: int) -> bool:
        """Store `state` for an existing item; whether anything changed."""
        found = self._find(item_id)
        if found is None:
            raise KeyError(item_id)
        return self._put_at(*found, state.links(), self._meta.intern(state.metadata), now_ms)

    def _put_at(self, block: Block, i: int, links: tuple[int, ...], meta: int, now_ms: int) -> bool:
        """Store links and pooled metadata `meta` at a place; whether anything changed."""
        if links == self._links(block, i) and meta == block.meta[i]:
            return False
        self._store(block, i, links, meta)
        block.updated[i] = now_ms
        return True

    def places(self, ids: Iterable[int]) -> list[tuple[Block, int] | None]:
        """Where each of `ids` is: its block and index, None if it does not exist (a block is looked up again only
        when an id falls outside the last one)."""
        places: list[tuple[Block, int] | None] = []
        starts, blocks, block, gone, low, high = self._starts, self._blocks, None, bytearray(), 0, 0
        for n in ids:
            if not low <= n < high:
                at = bisect.bisect_right(starts, n) - 1
                if at < 0:
                    places.append(None)
                    continue
                block = blocks[at]
                gone, low, high = block.gone, block.first, block.first + block.count
                if n >= high:
                    places.append(None)
                    continue
            places.append(None if gone[n - low] else (block, n - low))  # type: ignore[arg-type]
        return places

    def change(
        self,
        places: list[tuple[Block, int]],
        links: list[Links | None],
        added: list[Added | None],
        now_ms: int,
        removing: list[bool] | None = None,
    ) -> list[int]:
        """At `places`, set the link (one asset; () sets null) or add links (a list; or remove them where
        `removing` says so), and add (or remove) metadata; the ids of the items left as they were. A link's and an
        unlink's updates are most of their benchmarks' work, hence one tight loop."""
        unchanged, single, merge, remove = [], self.single, self._meta.merge, self._meta.remove
        for (block, i), linked, more, out in zip(
            places, links, added, removing or repeat(False, len(places)), strict=True
        ):
            meta = old_meta = block.meta[i]
            if more and more[0][1] is not None:  # adds first: a link's values are new for nearly every item
                meta = merge(old_meta, more)
            elif more is not None:  # removals only (0, no metadata left, is a merge too): an unlink's repeat
                meta = remove(old_meta, more)
            value = block.link[i]
            if single and value != MORE:
                new = value if linked is None else linked[0] if linked else 0
                if new == value and meta == old_meta:
                    unchanged.append(block.first + i)
                    continue
                block.link[i], block.meta[i], block.updated[i] = new, meta, now_ms
                continue
            now = self._links(block, i)
            if linked is not None and out:
                now = tuple(a for a in now if a not in linked)
            elif linked is not None:
                now = linked if single else now + tuple(a for a in dict.fromkeys(linked) if a not in now)
            if not self._put_at(block, i, now, meta, now_ms):
                unchanged.append(block.first + i)
        return unchanged

    def delete(self, item_id: int) -> bool:
        """Make an item gone, as a delete in CDF does; whether it was there."""
        found = self._find(item_id)
        if found is None:
            return False
        block, i = found
        block.gone[i] = 1
        self._more.pop(item_id, None)
        return True

    def ids(self) -> Iterator[int]:
        """Every existing item's id, ascending."""
        for block in self._blocks:
            yield from (block.first + i for i in range(block.count) if not block.gone[i])

    def blocks(self, after: int = 0) -> list[Block]:
        """The blocks that may hold ids above `after`, ascending (what a list reads, sim/listing.py)."""
        return self._blocks[max(0, bisect.bisect_right(self._starts, after) - 1) :]

    def pool(self, start: int = 0) -> list[tuple[tuple[str, str], ...]]:
        """The distinct metadata (its pairs) from index `start` on, as blocks' `meta` number them; it only grows."""
        return self._meta.pairs[start:]

    def body(self, item_id: int) -> dict[str, Any] | None:
        """The item as CDF's byids gives it, or None if it does not exist."""
        found, state = self._find(item_id), self.get(item_id)
        if found is None or state is None:
            return None
        block, i = found
        external_id, name = block.describe(i)
        item: dict[str, Any] = {"id": item_id}
        if external_id is not None:
            item["externalId"] = external_id
        item[name_key(self.kind)] = name
        item["metadata"] = dict(state.metadata)
        if state.asset_id is not None:
            item["assetId"] = state.asset_id
        if state.asset_ids:
            item["assetIds"] = list(state.asset_ids)
        item.update(EXTRA[self.kind])
        item["createdTime"], item["lastUpdatedTime"] = block.created, block.updated[i]
        return item

    def encode(self, places: Iterable[tuple[Block, int]]) -> list[str]:
        """The items at `places` as JSON, exactly as `json.dumps` writes their `body`, but far cheaper."""
        return encode(places, self.kind, self._more, self._meta.json)

    def _find(self, item_id: int) -> tuple[Block, int] | None:
        at = bisect.bisect_right(self._starts, item_id) - 1
        if at < 0:
            return None
        block = self._blocks[at]
        i = item_id - block.first
        return (block, i) if i < block.count and not block.gone[i] else None

    def _links(self, block: Block, i: int) -> tuple[int, ...]:
        value = block.link[i]
        if value == MORE:
            return self._more.get(block.first + i, ())
        return (value,) if value else ()

    def _store(self, block: Block, i: int, links: tuple[int, ...], meta: int) -> None:
        item_id = block.first + i
        self._more.pop(item_id, None)
        if len(links) == 1:
            block.link[i] = links[0]
        elif links:
            block.link[i] = MORE
            self._more[item_id] = links
        else:
            block.link[i] = 0
        block.meta[i] = meta
