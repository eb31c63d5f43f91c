"""The body of a classic `list`, read as the simulator serves it (sim/listing.py): `Query`, or a 400.

Read only after CDF's OpenAPI has taken the body (sim/writes.py checks that first), so the
types are right; what is left:

- A field no schema names, at the top or in `filter`, is `Unrecognized`: counted as invalid,
  like a body the OpenAPI refuses. The schemas set no `additionalProperties: false`, but a
  misspelt `filter` would otherwise list every item, and the product lists to remove its own
  metadata: a test must see it.
- What the schema names but the simulator does not implement (`filter.name`, `assetIds`,
  `advancedFilter`, `sort`, ...) is its own 400 that says so: the product filters by
  metadata only. Metadata values must be strings (sequences' schema leaves them open).
- `partition: "m/n"` with 1 <= m <= n. As CDF documents: files and events refuse n > 10;
  time series and sequences take n > 10 as 10, and answer m > 10 with no items and no cursor.
- A cursor is opaque text holding the id the next page starts after, and the filter and
  partition it was made for: one given with another filter or partition is a 400, as a
  product that mixed its partitions' cursors would skip or repeat items.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import zlib
from dataclasses import dataclass, replace
from typing import Any

from sim.openapi import document
from sim.updates import Refusal

DEFAULT_LIMIT = 100  # the schemas' default
MAX_PARTITIONS = 10
LIMITED = frozenset({"files", "events"})  # PartitionLimited10: more than 10 partitions is a 400
_PARTITION = re.compile(r"([1-9][0-9]{0,8})/([1-9][0-9]{0,8})")
Pairs = tuple[tuple[str, str], ...]


class Unrecognized(Refusal):
    """A 400 for a field no schema names: kept in `classic.invalid` as a body CDF's OpenAPI refuses is."""


@dataclass(frozen=True)
class Query:
    """One list request: the metadata pairs all matching items hold, the page size, the id the page starts after,
    and the partition (m, n) (sim/listing.py); `empty` for a partition CDF serves no items of."""

    kind: str
    pairs: Pairs = ()
    limit: int = DEFAULT_LIMIT
    after: int = 0
    part: tuple[int, int] = (1, 1)
    empty: bool = False

    def cursor(self, after: int) -> str:
        """The cursor of the page after id `after`, for this filter and partition."""
        text = json.dumps([after, self._digest()], separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    def _digest(self) -> int:
        return zlib.crc32(json.dumps([self.kind, self.pairs, self.part]).encode())

    def reading(self, cursor: str) -> int:
        """The id a cursor of this filter and partition starts after; `Refusal` for any other cursor."""
        try:
            found: Any = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except ValueError:  # not base64, not UTF-8 or not JSON
            found = None
        if not (isinstance(found, list) and len(found) == 2 and all(type(n) is int for n in found) and found[0] >= 0):
            raise Refusal("Invalid cursor")
        after, digest = found
        if digest != self._digest():
            raise Refusal("Invalid cursor: it was given for another filter or partition")
        return int(after)


def parse_list(kind: str, body: bytes) -> Query:
    """The query of a list body that CDF's OpenAPI took; `Unrecognized` or `Refusal` (a 400) if the simulator
    cannot answer it as CDF would."""
    parsed: dict[str, Any] = json.loads(body)
    top, filters = known_fields(kind)
    _recognized(parsed, top, "")
    for name in ("advancedFilter", "sort"):
        if name in parsed:
            raise Refusal(f"The simulator does not implement {name}: it lists by filter.metadata only")
    given = parsed.get("filter") or {}
    _recognized(given, filters, "filter.")
    other = sorted(set(given) - {"metadata"})
    if other:
        raise Refusal(f"The simulator does not implement the filter {', '.join(other)}: it filters by metadata only")
    metadata = given.get("metadata") or {}
    if not all(isinstance(value, str) for value in metadata.values()):
        raise Refusal("filter.metadata maps keys to string values")
    part, empty = _partition(kind, parsed.get("partition"))
    query = Query(kind, tuple(sorted(metadata.items())), parsed.get("limit", DEFAULT_LIMIT), 0, part, empty)
    cursor = parsed.get("cursor")
    return query if cursor is None else replace(query, after=query.reading(cursor))


def _recognized(given: dict[str, Any], known: frozenset[str], prefix: str) -> None:
    unknown = sorted(set(given) - known)
    if unknown:
        names = ", ".join(f'"{prefix}{name}"' for name in unknown)
        raise Unrecognized(f"Unrecognized field {names}: not one of {', '.join(sorted(known))}")


def _partition(kind: str, text: str | None) -> tuple[tuple[int, int], bool]:
    """(m, n) and whether CDF answers it with no items; `Refusal` for what is not "m/n" with 1 <= m <= n."""
    if text is None:
        return (1, 1), False
    found = _PARTITION.fullmatch(text)
    if found is None or int(found[1]) > int(found[2]):
        raise Refusal(f'Invalid partition "{text}": expected "m/n" with 1 <= m <= n')
    m, n = int(found[1]), int(found[2])
    if n > MAX_PARTITIONS and kind in LIMITED:
        raise Refusal(f"partition: at most {MAX_PARTITIONS} partitions, got {n}")
    if n > MAX_PARTITIONS:  # CDF's documented reduction: N becomes 10, and an m beyond it gets nothing
        return (min(m, MAX_PARTITIONS), MAX_PARTITIONS), m > MAX_PARTITIONS
    return (m, n), False


@functools.cache
def known_fields(kind: str) -> tuple[frozenset[str], frozenset[str]]:
    """The fields CDF's OpenAPI names for `kind`'s list body, at the top and in its `filter`."""
    top = _properties(document()["endpoints"][f"{kind}/list"])
    return frozenset(top), frozenset(_properties(top["filter"]))


def _properties(node: dict[str, Any]) -> dict[str, Any]:
    """A schema's properties, through `$ref`s and `allOf`s."""
    while "$ref" in node:
        node = _at(node["$ref"])
    found = dict(node.get("properties", {}))
    for part in node.get("allOf", ()):
        found.update(_properties(part))
    return found


def _at(reference: str) -> dict[str, Any]:
    node: Any = document()
    for name in reference.removeprefix("#/").split("/"):
        node = node[name.replace("~1", "/").replace("~0", "~")]
    found: dict[str, Any] = node
    return found
