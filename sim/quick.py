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


def quick_changes(items: list[Any], single: bool) -> list[Quick] | None:
    """The changes when every item has the shape above; None when one has not (check them the full way)."""
    link_field = "assetId" if single else "assetIds"
    changes: list[Quick] = []
    for item in items:
        if type(item) is not dict:
            return None
        item_id, update = item.get("id"), item.get("update")
        if type(item_id) is not int or not 1 <= item_id <= MAX_ID or type(update) is not dict:
            return None
        op, metadata = update.get(link_field), update.get("metadata")
        if len(update) != (op is not None) + (metadata is not None):
            return None  # another field, or one that is null
        links = None if op is None else _links(op, single)
        if links is None and op is not None:
            return None
        added = None if metadata is None else metadata_op(metadata)
        if added is None and metadata is not None:
            return None
        changes.append((item_id, None, added, False) if links is None else (item_id, links[0], added, links[1]))
    if len({change[0] for change in changes}) != len(changes):
        return None
    return changes


def _links(op: Any, single: bool) -> tuple[Links, bool] | None:
    """A link op's assets and whether they are removed; None when it is not one of the shapes above."""
    if type(op) is not dict or len(op) != 1:
        return None
    if single:
        if op.get("setNull") is True:
            return (), False
        value = op.get("set")
        return ((value,), False) if type(value) is int and 1 <= value <= MAX_ID else None
    name, values = next(iter(op.items()))
    if name in ("add", "remove") and type(values) is list and all(type(v) is int and 1 <= v <= MAX_ID for v in values):
        return tuple(values), name == "remove"
    return None


def metadata_op(op: Any) -> Added | None:
    """A metadata op's keys to add (with their values) then to remove (with None); None when it is not one of the
    shapes above."""
    if type(op) is not dict or not op or not set(op) <= {"add", "remove"}:
        return None
    return _strings(op.get("add", {}), op.get("remove", []))


def _strings(added: Any, removed: Any) -> Added | None:
    """An add object of strings, then its removed keys (paired with None), each key once; else None."""
    if type(added) is not dict or not all(type(k) is str and k and type(v) is str for k, v in added.items()):
        return None
    if type(removed) is not list or not all(type(k) is str and k for k in removed):
        return None
    if set(removed) & set(added) or len(set(removed)) != len(removed):
        return None  # a key both added and removed, or removed twice: the full way says what CDF does
    return (*added.items(), *((key, None) for key in removed))


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
