"""The bodies of `byids` and `update` on classic resources: checked as CDF checks them, applied all or nothing.

`byids`: `{"items": [{"id": N}, ...], "ignoreUnknownIds": bool}`, 1 to 1000 items.
`update`: `{"items": [{"id": N, "update": {...}}, ...]}`, 1 to 1000 items, where `update` holds
  - `assetId: {"set": A} | {"setNull": true}` (time series, sequences),
  - `assetIds: {"add": [A..], "remove": [A..]} | {"set": [A..]}` (files, events),
  - `metadata: {"add": {k: v}, "remove": [k..]} | {"set": {k: v}}` (string keys and values).
Anything else is a 400, as is an item twice in one request (`duplicated`). Unknown items and
unknown assets (those set or added) fail the whole request with 400 and `missing`: the items
first, then the assets, each once, in the order the request names them. The simulator looks
items up by `id` only (an `externalId` identity is refused with 400).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sim.assets import Assets
from sim.classic import ItemState, Resource
from sim.data import MAX_ID
from sim.jsonread import loads
from sim.steps import Step

MAX_ITEMS = 1000


class Refusal(Exception):
    """A 400 with CDF's error body; `missing` and `duplicated` are ids."""

    def __init__(self, message: str, *, missing: Sequence[int] = (), duplicated: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.missing, self.duplicated = list(missing), list(duplicated)

    def step(self) -> Step:
        error: dict[str, Any] = {"code": 400, "message": str(self)}
        if self.missing:
            error["missing"] = [{"id": n} for n in self.missing]
        if self.duplicated:
            error["duplicated"] = [{"id": n} for n in self.duplicated]
        return Step.raw(400, json.dumps({"error": error}).encode())


@dataclass(frozen=True)
class Change:
    """One item's update, checked."""

    item_id: int
    set_links: tuple[int, ...] | None = None  # assetId set / setNull, or assetIds set
    add_links: tuple[int, ...] = ()
    remove_links: tuple[int, ...] = ()
    set_metadata: Mapping[str, str] | None = None
    add_metadata: Mapping[str, str] | None = None
    remove_metadata: tuple[str, ...] = ()

    def assets(self) -> tuple[int, ...]:
        """The assets this change links to, which must exist."""
        return (self.set_links or ()) + self.add_links

    def apply(self, state: ItemState, single: bool) -> ItemState:
        links = self.set_links if self.set_links is not None else state.links()
        links = tuple(a for a in links if a not in self.remove_links)
        links += tuple(a for a in dict.fromkeys(self.add_links) if a not in links)
        metadata = dict(state.metadata if self.set_metadata is None else self.set_metadata)
        for key in self.remove_metadata:
            metadata.pop(key, None)
        metadata.update(self.add_metadata or {})
        if single:
            return ItemState(asset_id=links[0] if links else None, metadata=metadata)
        return ItemState(asset_ids=links, metadata=metadata)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def _items(body: bytes, document: Any = None) -> tuple[dict[str, Any], list[Any]]:
    """The body's object and its 1 to 1000 items, else a `Refusal`; `document`: the body as its OpenAPI check read it
    (read here when None), so that a body is read once."""
    try:
        parsed = loads(body) if document is None else document
    except (ValueError, UnicodeDecodeError):
        raise Refusal("Request body is not valid JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("items"), list):
        raise Refusal("Request body must be an object with an items array")
    items = parsed["items"]
    if not 1 <= len(items) <= MAX_ITEMS:
        raise Refusal(f"items must hold 1 to {MAX_ITEMS} items, got {len(items)}")
    return parsed, items


def _item_id(item: Any) -> int:
    if not isinstance(item, dict):
        raise Refusal("Each item must be an object")
    if "id" not in item and "externalId" in item:
        raise Refusal("The simulator looks items up by id only")
    if not _is_id(item.get("id")):
        raise Refusal(f"id must be an integer in 1..{MAX_ID}, got {item.get('id')!r}")
    found: int = item["id"]
    return found


def _no_duplicates(ids: list[int]) -> None:
    twice = [n for n, times in Counter(ids).items() if times > 1]
    if twice:
        raise Refusal("Duplicate ids in the request", duplicated=twice)


def parse_byids(body: bytes, document: Any = None) -> tuple[list[int], bool]:
    """The ids asked for and `ignoreUnknownIds`; `document`: the body as its OpenAPI check read it (`_items`)."""
    parsed, items = _items(body, document)
    ignore = parsed.get("ignoreUnknownIds", False)
    if not isinstance(ignore, bool):
        raise Refusal("ignoreUnknownIds must be a boolean")
    ids = _quick_ids(items)
    if ids is None:
        ids = [_item_id(item) for item in items]
        _no_duplicates(ids)
    return ids, ignore


def _quick_ids(items: list[Any]) -> list[int] | None:
    """The ids when every item has a good one and none is there twice; None to check item by item instead."""
    try:
        ids = [item["id"] for item in items]
    except (TypeError, KeyError):  # an item not an object, or without an id
        return None
    if all(type(n) is int for n in ids) and min(ids) >= 1 and max(ids) <= MAX_ID and len(set(ids)) == len(ids):
        return ids
    return None


def duplicated_ids(body: bytes) -> list[int]:
    """The ids a body's items name more than once, each once; none when it holds no such list."""
    try:
        items = loads(body)["items"]
        ids = [item["id"] for item in items if isinstance(item, dict) and _is_id(item.get("id"))]
    except (ValueError, RecursionError, TypeError, KeyError):
        return []
    return [n for n, times in Counter(ids).items() if times > 1]


def lookup(resource: Resource | Assets, ids: list[int], ignore_unknown: bool) -> bytes:
    """The answer's body: the items of `ids` that exist, in order; unknown ones refused unless ignored."""
    texts, missing = _found_assets(resource, ids) if isinstance(resource, Assets) else _found(resource, ids)
    if missing and not ignore_unknown:
        raise Refusal(f"Ids not found: {len(missing)}", missing=missing)
    return items_body(texts)


def _found(resource: Resource, ids: list[int]) -> tuple[list[str], list[int]]:
    places = resource.places(ids)
    missing = [n for n, place in zip(ids, places, strict=True) if place is None]
    return resource.encode(place for place in places if place is not None), missing


def _found_assets(assets: Assets, ids: list[int]) -> tuple[list[str], list[int]]:
    texts = [assets.encode(n) for n in ids]
    return [t for t in texts if t is not None], [n for n, t in zip(ids, texts, strict=True) if t is None]


def items_body(texts: list[str]) -> bytes:
    """`{"items": [...]}` of items already JSON, as `json.dumps` writes it."""
    return ('{"items": [' + ", ".join(texts) + "]}").encode()


def update_items(body: bytes, document: Any = None) -> list[Any]:
    """The items of an update request, not yet checked one by one; `document`: as `_items` takes it."""
    return _items(body, document)[1]


def parse_update(body: bytes, single: bool) -> list[Change]:
    """The changes of an update request for a kind with one asset (`single`) or a list."""
    return changes_of(update_items(body), single)


def changes_of(items: list[Any], single: bool) -> list[Change]:
    """The changes of an update request's items, each checked."""
    changes = [_change(item, single) for item in items]
    _no_duplicates([c.item_id for c in changes])
    return changes


def _change(item: Any, single: bool) -> Change:
    item_id = _item_id(item)
    update = item.get("update")
    if not isinstance(update, dict):
        raise Refusal(f"Item {item_id}: update must be an object")
    link_field = "assetId" if single else "assetIds"
    unknown = sorted(set(update) - {link_field, "metadata"})
    if unknown:
        raise Refusal(f"Item {item_id}: the simulator does not update {', '.join(unknown)}")
    fields: dict[str, Any] = {}
    if link_field in update:
        fields.update(_asset_id(update[link_field]) if single else _asset_ids(update[link_field]))
    if "metadata" in update:
        fields.update(_metadata(update["metadata"]))
    return Change(item_id, **fields)


def _asset_id(op: Any) -> dict[str, Any]:
    if op == {"setNull": True}:
        return {"set_links": ()}
    if isinstance(op, dict) and set(op) == {"set"} and _is_id(op["set"]):
        return {"set_links": (op["set"],)}
    raise Refusal(f"assetId takes {{'set': id}} or {{'setNull': true}}, got {op!r}")


def _id_list(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_is_id(a) for a in value):
        raise Refusal(f"assetIds.{name} must be a list of ids")
    return tuple(value)


def _asset_ids(op: Any) -> dict[str, Any]:
    if isinstance(op, dict) and set(op) == {"set"}:
        return {"set_links": _id_list(op["set"], "set")}
    if isinstance(op, dict) and op and set(op) <= {"add", "remove"}:
        return {
            "add_links": _id_list(op.get("add", []), "add"),
            "remove_links": _id_list(op.get("remove", []), "remove"),
        }
    raise Refusal(f"assetIds takes set, or add and remove, got {op!r}")


def _strings(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise Refusal(f"metadata.{name} must map non-empty strings to strings")
    return dict(value)


def _metadata(op: Any) -> dict[str, Any]:
    if isinstance(op, dict) and set(op) == {"set"}:
        return {"set_metadata": _strings(op["set"], "set")}
    if isinstance(op, dict) and op and set(op) <= {"add", "remove"}:
        remove = op.get("remove", [])
        if not isinstance(remove, list) or not all(isinstance(k, str) for k in remove):
            raise Refusal("metadata.remove must be a list of keys")
        return {"add_metadata": _strings(op.get("add", {}), "add"), "remove_metadata": tuple(remove)}
    raise Refusal(f"metadata takes set, or add and remove, got {op!r}")


def apply_all(resource: Resource, assets: Assets, changes: list[Change], now_ms: int) -> tuple[list[int], list[int]]:
    """Apply every change or none: (ids updated, ids whose update changed nothing); `Refusal` with `missing`."""
    states = [resource.get(c.item_id) for c in changes]
    missing = [c.item_id for c, state in zip(changes, states, strict=True) if state is None]
    wanted = dict.fromkeys(a for c in changes for a in c.assets())
    absent = [a for a in wanted if not assets.exists(a)]
    if missing or absent:
        message = f"Ids not found: {len(missing)} {resource.kind} and {len(absent)} assets"
        raise Refusal(message, missing=missing + absent)
    unchanged = []
    for change, state in zip(changes, states, strict=True):
        assert state is not None  # checked above
        if not resource.put(change.item_id, change.apply(state, resource.single), now_ms):
            unchanged.append(change.item_id)
    return [c.item_id for c in changes], unchanged
