"""Classic `list` in the simulator: `POST .../{timeseries|files|events|sequences}/list`, by metadata, paged, split.

Body `{"filter": {"metadata": {"k": "v", ...}}, "limit": 1..1000 (100), "cursor": "...", "partition": "m/n"}`;
answer `{"items": [...], "nextCursor": "..." | null}`, each item exactly as `byids` gives it.

In order, as `byids` (sim/writes.py): CDF's OpenAPI checks the body (refused: 400, kept in
`classic.invalid`), then sim/listquery.py reads it (a field no schema names is refused and kept
as invalid too; a filter the simulator does not implement is its own 400), then a script step
if one waits (`sim.script_classic_list(kind, ...)`: a 429, a 5xx, a dropped connection...),
then the page, built as the request arrives and answered once `list_latency_s`
has passed since (its own work included, as a write's is).

- The filter is exact: an item matches when its metadata holds every pair given.
- Pages go up by id, and a cursor says "after id N": an item that stops matching between
  pages (the caller removing the very key it lists by) cannot make a later page skip another,
  and one that starts matching beyond the cursor is listed. `nextCursor` is null exactly when
  no matching item follows the page.
- `partition: "m/n"` lists the matching items of partition m, `partition_of(id, n)`: a
  CRC-32 of the id, so that no pattern in ids (every third item matching, say) leaves a part
  empty. Each is paged with cursors of its own; the n parts are disjoint and together all the
  matching items, however items change between requests.

Speed, for the undo's benchmark (a million matching time series, pages of 1000, four in
flight): the store interns metadata (sim/classic.py), so whether metadata match is decided once
per distinct metadata, a byte in a mask over the pool that grows with the pool (the first
page of a new filter pays for the whole pool: 0.2 s for a million distinct metadata); an
item's partition is hashed once per n, a byte per item kept per block (`Listing` keeps both).
A page then walks its blocks' arrays with map, compress and translate, in C, and encodes its
items as byids does: about 1 ms a page of 1000 among a million, and 1 ms for the OpenAPI check.
"""

from __future__ import annotations

import json
import operator
import time
import zlib
from functools import cache
from itertools import compress, repeat
from typing import Any, Protocol

from sim.blocks import Block
from sim.classic import Resource
from sim.listquery import Pairs, Query, Unrecognized, parse_list
from sim.steps import Request, Step
from sim.updates import Refusal

_KEPT = 64  # masks (and partition bytes) kept; all are dropped when more are asked for
_MAX_PASS = 1 << 16  # items a pass over a block looks at, at most: its arrays' slices are copies
_EIGHT_BYTES = operator.methodcaller("to_bytes", 8, "little")
Places = list[tuple[Block, int]]


def partition_of(item_id: int, n: int) -> int:
    """The partition (1..n) an item is in when a list is split in n."""
    return zlib.crc32(item_id.to_bytes(8, "little")) % n + 1


class Listing:
    """What lists keep between requests (use with the store's lock held).

    Masks: for a resource and a filter, whether each pooled metadata matches, a byte per pool
    entry. The pool only grows (a change interns new metadata rather than editing old), so a
    mask is extended by the new entries, never recomputed: a listing that removes the key it
    lists by costs one look at each metadata it makes. Parts: for a block and an n, each
    item's partition - 1, a byte per item, hashed as pages first reach them."""

    def __init__(self) -> None:
        self._masks: dict[tuple[str, Pairs], tuple[Resource, bytearray]] = {}
        self._parts: dict[tuple[int, int], tuple[Block, bytearray]] = {}

    def page(self, resource: Resource, query: Query) -> bytes:
        """The answer's body: the page's items as byids encodes them, and the cursor of the next page or null."""
        places, more = self.select(resource, query)
        texts = resource.encode(places)
        cursor = query.cursor(places[-1][0].first + places[-1][1]) if more else None
        return ('{"items": [' + ", ".join(texts) + '], "nextCursor": ' + json.dumps(cursor) + "}").encode()

    def select(self, resource: Resource, query: Query) -> tuple[Places, bool]:
        """The places of the page's items (at most `query.limit`), and whether a matching item follows them."""
        want, (m, n), after = query.limit + 1, query.part, query.after
        mask, places = self.mask(resource, query.pairs), Places()
        for block in resource.blocks(after) if not query.empty else ():
            meta, gone = block.meta, block.gone
            i, size = max(0, after + 1 - block.first), (want + want // 4) * n  # a page of matching items: one pass
            while i < len(gone) and len(places) < want:
                end = min(len(gone), i + size)
                if n == 1:  # listed: its metadata match and it is not gone, gt(1, 0), in C for the whole slice
                    ok = map(operator.gt, map(mask.__getitem__, meta[i:end]), gone[i:end])
                    places += zip(repeat(block), compress(range(i, end), ok))
                else:  # the partition's items first (a byte compare), then those of them that match
                    mine = list(compress(range(i, end), self._part(block, n, end)[i:end].translate(_is(m - 1))))
                    matching = map(mask.__getitem__, map(meta.__getitem__, mine))
                    places += zip(
                        repeat(block), compress(mine, map(operator.gt, matching, map(gone.__getitem__, mine)))
                    )
                i, size = end, min(size * 2, _MAX_PASS)
            if len(places) >= want:
                break
        return places[: query.limit], len(places) > query.limit

    def mask(self, resource: Resource, pairs: Pairs) -> bytearray:
        """Whether each metadata of `resource`'s pool holds every pair of `pairs`, 1 or 0."""
        kept = self._masks.get((resource.kind, pairs))
        if kept is None or kept[0] is not resource:  # new, or the store was reset since
            if len(self._masks) >= _KEPT:
                self._masks.clear()
            kept = self._masks[(resource.kind, pairs)] = (resource, bytearray())
        mask = kept[1]
        new = resource.pool(len(mask))
        if new and not pairs:
            mask += b"\x01" * len(new)
        elif new:
            found = bytes(map(operator.contains, new, repeat(pairs[0])))
            for pair in pairs[1:]:
                found = bytes(map(operator.and_, found, map(operator.contains, new, repeat(pair))))
            mask += found
        return mask

    def _part(self, block: Block, n: int, end: int) -> bytearray:
        """`partition_of - 1` of the block's items, for n, hashed at least up to index `end`."""
        kept = self._parts.get((id(block), n))
        if kept is None or kept[0] is not block:
            if len(self._parts) >= _KEPT:
                self._parts.clear()
            kept = self._parts[(id(block), n)] = (block, bytearray())
        parts = kept[1]
        if len(parts) < end:  # in steps of a pass at least, so a page hashes in one go
            ids = range(block.first + len(parts), block.first + min(block.count, max(end, len(parts) + _MAX_PASS)))
            parts += bytes(map(operator.mod, map(zlib.crc32, map(_EIGHT_BYTES, ids)), repeat(n)))
        return parts


@cache
def _is(part: int) -> bytes:
    """A `bytes.translate` table: `part` to 1, any other byte to 0."""
    return bytes(int(b == part) for b in range(256))


class Host(Protocol):
    """What a list request needs of the write side's state (sim/writes.py's ``Classic``), named here so that this
    module does not import the one that imports it."""

    lock: Any
    invalid: list[tuple[str, str]]
    listing: Listing
    resources: dict[str, Resource]
    list_latency_s: float
    stopping: Any

    def refused(self, endpoint: str, body: bytes) -> Step | None: ...

    def next_scripted(self, op: str, kind: str) -> Any: ...


def answer(classic: Host, kind: str, request: Request) -> Step:
    """A list request of `kind`, in the order the module's docstring gives."""
    endpoint = f"{kind}/list"
    invalid = classic.refused(endpoint, request.body)
    if invalid is not None:
        return invalid
    try:
        query = parse_list(kind, request.body)
    except Unrecognized as unknown:
        with classic.lock:
            classic.invalid.append((endpoint, str(unknown)))
        return unknown.step()
    except Refusal as refusal:
        return refusal.step()
    scripted = classic.next_scripted("list", kind)
    if isinstance(scripted, Step):
        return scripted
    with classic.lock:
        body = classic.listing.page(classic.resources[kind], query)
    if classic.list_latency_s:  # its own work included, as a write's is (sim/writes.py)
        classic.stopping.wait(max(0.0, request.time + classic.list_latency_s - time.monotonic()))
    return Step(body=body)
