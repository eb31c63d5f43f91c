"""The quick way through `update` for bodies shaped as a link sends them: few Python steps per item.

Checked field by field as sim/updates.py checks any body, a 1000-item update cost
the simulator more CPU than the 50 ms write it stands for. Here each item is
`{"id": N, "update": {...}}` whose update holds at most `assetId: {"set": A}`
(time series, sequences) or `assetIds: {"add": [A..]}` (files, events), and
`metadata: {"add": {k: v}}` with, maybe, `"remove": [k..]`, all well formed, no
id twice. Any other body, and
any item or asset missing, goes the full way (sim/updates.py), which refuses as
CDF does. Both ways leave the same state and give the same answer.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

from sim.assets import Assets
from sim.blocks import Block
from sim.classic import Added, Links, Resource
from sim.data import MAX_ID
from sim.updates import MAX_ITEMS

# An item's change: its id, the links to set (one asset) or to add (a list), the metadata to add (a key paired with
# None: to remove).
Quick = tuple[int, Links | None, Added | None]

# The body exactly as a link writes it (httpx's compact JSON, fields in its order): one regex split gives every
# item's fields and what lies between items, which must be commas only; far cheaper than json.loads making seven
# objects an item. The fields are checked as quick_changes checks them; metadata is decoded by json.loads, once
# per distinct text.
_ID = rb"[1-9][0-9]{0,15}"
_LINK = {True: rb'"assetId":\{"set":(%s)\}' % _ID, False: rb'"assetIds":\{"add":\[(%s(?:,%s)*)\]\}' % (_ID, _ID)}
_ITEMS = {
    single: re.compile(
        rb'\{"id":(%s),"update":\{%s,"metadata":\{"add":(\{[^{}]*\})(?:,"remove":(\[[^\[\]{}]*\]))?\}\}\}' % (_ID, link)
    )
    for single, link in _LINK.items()
}
_STRIDE = 5  # what split gives for each item: id, links, added, removed (or None), what follows
_ADDED_CACHE = 10_000
_added_texts: dict[bytes, Added] = {}  # shared by the server's threads: get and set only
_NOT_STRINGS: Added = (("", ""),)  # in _added_texts: the text is not an object of strings
_removed_texts: dict[bytes, tuple[str, ...]] = {}  # a remove list's text: its keys (("",): not a list of keys)


def quick_body(body: bytes, single: bool) -> list[Quick] | None:
    """The changes when `body` is exactly as a link writes it; None when it is not (parse it, then quick_changes)."""
    parts = _ITEMS[single].split(body)  # before, (id, links, added, removed, between) for each item, the last after
    between = parts[5:-1:_STRIDE]
    if not 1 <= len(between) + 1 <= MAX_ITEMS or parts[0] != b'{"items":[' or parts[-1] != b"]}":
        return None
    if between.count(b",") != len(between):
        return None
    ids = list(map(int, parts[1::_STRIDE]))
    texts, removes = parts[3::_STRIDE], parts[4::_STRIDE]
    cached = list(map(_added_texts.get, texts))
    added = [found or _added_text(text) for found, text in zip(cached, texts, strict=True)]
    if any(removes):  # the same few texts ("matchrelay:previous"), each read once
        added = [_with_removed(a, removed) if removed else a for a, removed in zip(added, removes, strict=True)]
    links: list[tuple[int, ...]] = (
        [(a,) for a in map(int, parts[2::_STRIDE])]
        if single
        else [tuple(map(int, a.split(b","))) for a in parts[2::_STRIDE]]
    )
    if _NOT_STRINGS in added or max(ids) > MAX_ID or max(map(max, links)) > MAX_ID or len(set(ids)) != len(ids):
        return None
    return list(zip(ids, links, added, strict=True))


def _with_removed(added: Added, text: bytes) -> Added:
    """An item's metadata to add, then the keys its ``remove`` list names (paired with None); ``_NOT_STRINGS``
    when that list is not of keys, or names one that is added too (the full way says what CDF does then)."""
    removed = _removed_texts.get(text)
    if removed is None:
        try:
            keys = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            keys = None
        ok = type(keys) is list and all(type(k) is str and k for k in keys) and len(set(keys)) == len(keys)
        removed = _removed_texts[text] = tuple(keys) if ok and keys is not None else ("",)
    if added is _NOT_STRINGS or "" in removed or any(key in removed for key, _ in added):
        return _NOT_STRINGS
    return (*added, *((key, None) for key in removed))


def _added_text(text: bytes) -> Added:
    """The metadata to add of an item's ``add`` text, or ``_NOT_STRINGS``."""
    try:
        found = _strings(json.loads(text))
    except (ValueError, UnicodeDecodeError):
        found = None
    if len(_added_texts) >= _ADDED_CACHE:
        _added_texts.clear()
    _added_texts[text] = _NOT_STRINGS if found is None else found
    return _added_texts[text]


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
        added = None if metadata is None else _added(metadata)
        if added is None and metadata is not None:
            return None
        changes.append((item_id, links, added))
    if len({change[0] for change in changes}) != len(changes):
        return None
    return changes


def _links(op: Any, single: bool) -> tuple[int, ...] | None:
    if type(op) is not dict or len(op) != 1:
        return None
    if single:
        value = op.get("set")
        return (value,) if type(value) is int and 1 <= value <= MAX_ID else None
    values = op.get("add")
    if type(values) is list and all(type(v) is int and 1 <= v <= MAX_ID for v in values):
        return tuple(values)
    return None


def _added(op: Any) -> Added | None:
    if type(op) is not dict or "add" not in op or not set(op) <= {"add", "remove"}:
        return None
    return _strings(op["add"], op.get("remove", []))


def _strings(added: Any, removed: Any = ()) -> Added | None:
    """An add object of strings, then its removed keys (paired with None), each key once; else None."""
    if type(added) is not dict or not all(type(k) is str and k and type(v) is str for k, v in added.items()):
        return None
    if type(removed) not in (list, tuple) or not all(type(k) is str and k for k in removed):
        return None
    if set(removed) & set(added) or len(set(removed)) != len(removed):
        return None  # a key both added and removed, or removed twice: the full way says what CDF does
    return (*added.items(), *((key, None) for key in removed))


def apply_quick(
    resource: Resource, assets: Assets, changes: list[Quick], now_ms: int
) -> tuple[list[str], list[int]] | None:
    """Apply every change: (the items as JSON, ids left unchanged); None, and nothing applied, if one is missing."""
    places = resource.places([change[0] for change in changes])
    if None in places or assets.missing({a for _, links, _ in changes if links for a in links}):
        return None
    found = cast(list[tuple[Block, int]], places)
    unchanged = resource.change(found, [change[1] for change in changes], [change[2] for change in changes], now_ms)
    return resource.encode(found), unchanged
