"""The quick way through `update` for bodies shaped as a link or an unlink sends them: few Python steps per item.

Checked field by field as sim/updates.py checks any body, a 1000-item update cost
the simulator more CPU than the 50 ms write it stands for. Here each item is
`{"id": N, "update": {...}}` whose update holds at most one link op and one metadata op:
- time series, sequences (`assetId`): `{"set": A}`, or `{"setNull": true}` (the unlink's);
- files, events (`assetIds`): `{"add": [A..]}` (the link's) or `{"remove": [A..]}` (the unlink's);
- `metadata`: `{"add": {k: v}}`, `{"add": {...}, "remove": [k..]}` or `{"remove": [k..]}`,
all well formed, no key both added and removed, no id twice. Any other body, and any item
missing or any asset set or added missing, goes the full way (sim/updates.py), which refuses
as CDF does. Both ways leave the same state and give the same answer. The items are
those the body's OpenAPI check read (sim/openapi.py `checked`): a body is read once.
"""

from __future__ import annotations

from typing import Any, cast

from sim.assets import Assets
from sim.blocks import Block
from sim.classic import Added, Links, Resource
from sim.data import MAX_ID

# An item's change: its id; the links to set (one asset; () to set null), to add or to remove (a list); the
# metadata to add (a key paired with None: to remove); whether the links are removed (a list's `remove`).
Quick = tuple[int, Links | None, Added | None, bool]
_NONE: Any = object()  # a field the op does not hold


def quick_changes(items: list[Any], single: bool) -> list[Quick] | None:
    """The changes when every item has the shape above; None when one has not (check them the full way). `items`
    as JSON reads them: an object's keys are strings. One loop, its checks inlined: it runs for every item written."""
    link_field, links_of = ("assetId", _set) if single else ("assetIds", _listed)
    changes: list[Quick] = []
    append = changes.append
    for item in items:
        if type(item) is not dict:
            return None
        item_id, update = item.get("id"), item.get("update")
        if type(item_id) is not int or not 0 < item_id <= MAX_ID or type(update) is not dict:
            return None
        op, metadata = update.get(link_field), update.get("metadata")
        if len(update) != (op is not None) + (metadata is not None):
            return None  # another field, or one that is null
        links, out = (None, False) if op is None else links_of(op)
        added = None if metadata is None else metadata_op(metadata)
        if (links is None and op is not None) or (added is None and metadata is not None):
            return None
        append((item_id, links, added, out))
    if len({change[0] for change in changes}) != len(changes):
        return None
    return changes


def _set(op: Any) -> tuple[Links | None, bool]:
    """An `assetId` op's asset, or () for `setNull`; None when it is neither."""
    if type(op) is dict and len(op) == 1:
        value = op.get("set")
        if type(value) is int and 0 < value <= MAX_ID:
            return (value,), False
        if op.get("setNull") is True:
            return (), False
    return None, False


def _listed(op: Any) -> tuple[Links | None, bool]:
    """An `assetIds` op's assets and whether they are removed; None when it is not an `add` or a `remove`."""
    if type(op) is not dict or len(op) != 1:
        return None, False
    name, values = next(iter(op.items()))
    if name in ("add", "remove") and type(values) is list and all(type(v) is int and 0 < v <= MAX_ID for v in values):
        return tuple(values), name == "remove"
    return None, False


def metadata_op(op: Any) -> Added | None:
    """A metadata op's keys to add (with their values) then to remove (with None); None when it is not one of the
    shapes above: an `add` of non-empty keys to strings and a `remove` of non-empty keys, each key once."""
    if type(op) is not dict:
        return None
    added, removed = op.get("add", _NONE), op.get("remove", _NONE)
    if len(op) != (added is not _NONE) + (removed is not _NONE) or not op:
        return None  # another field, or none
    if added is _NONE:
        added = {}
    elif type(added) is not dict or "" in added:
        return None
    for value in added.values():
        if type(value) is not str:
            return None
    if removed is _NONE:
        return tuple(added.items())
    if type(removed) is not list:
        return None
    for key in removed:
        if type(key) is not str or not key:
            return None
    gone = dict.fromkeys(removed)
    if len(gone) != len(removed) or not added.keys().isdisjoint(gone):
        return None  # a key removed twice, or both added and removed: the full way says what CDF does
    return (*added.items(), *gone.items())


def apply_quick(
    resource: Resource, assets: Assets, changes: list[Quick], now_ms: int
) -> tuple[list[str], list[int]] | None:
    """Apply every change: (the items as JSON, ids left unchanged); None, and nothing applied, if one is missing."""
    places = resource.places([change[0] for change in changes])
    if None in places or assets.missing({a for _, links, _, out in changes if links and not out for a in links}):
        return None
    found = cast(list[tuple[Block, int]], places)
    removing = [change[3] for change in changes] if not resource.single else None
    unchanged = resource.change(
        found, [change[1] for change in changes], [change[2] for change in changes], now_ms, removing
    )
    return resource.encode(found), unchanged
