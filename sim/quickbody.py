"""The quick way's reader (sim/quick.py) for bodies exactly as httpx writes a link's or an unlink's: no json.loads.

The body as compact JSON, fields in the order the link and the unlink write them: one
regex split gives every item's fields and what lies between items, which must be commas
only; far cheaper than json.loads making seven objects an item. Each item is
`{"id":N,"update":{<link op>[,"metadata":{...}]}}` with one of the link ops sim/quick.py
names; the metadata op's text is decoded (sim/jsonread.py) once per distinct text and checked
as sim/quick.py checks a parsed one. Anything else: None, and the body is parsed instead.
"""

from __future__ import annotations

import re

from sim.classic import Added, Links
from sim.data import MAX_ID
from sim.jsonread import loads
from sim.quick import Quick, metadata_op
from sim.updates import MAX_ITEMS

_ID = rb"[1-9][0-9]{0,15}"
_LINK = {  # two groups: the op's name, then its value (checked below: `set` takes an id, `setNull` true)
    True: rb'"assetId":\{"(set|setNull)":(%s|true)\}' % _ID,
    False: rb'"assetIds":\{"(add|remove)":\[(%s(?:,%s)*)\]\}' % (_ID, _ID),
}
_KEYS = rb"\[[^\[\]{}]*\]"
_METADATA = rb'(?:,"metadata":(\{(?:"add":\{[^{}]*\}(?:,"remove":%s)?|"remove":%s)\}))?' % (_KEYS, _KEYS)
_ITEMS = {
    single: re.compile(rb'\{"id":(%s),"update":\{%s%s\}\}' % (_ID, link, _METADATA)) for single, link in _LINK.items()
}
_STRIDE = 5  # what split gives for each item: id, op, value, metadata (or None), what follows
_TEXTS_KEPT = 10_000
_NOT_QUICK: Added = (("", ""),)  # in _texts: the text is not a quick metadata op
_texts: dict[bytes, Added] = {}  # a metadata op's text: what it adds and removes (shared by threads: get and set)
_NULL = b"true"


def quick_body(body: bytes, single: bool) -> list[Quick] | None:
    """The changes when `body` is exactly as a link or an unlink writes it; None when it is not (parse it, then
    sim/quick.py's quick_changes)."""
    parts = _ITEMS[single].split(body)  # before, (id, op, value, metadata, between) for each item, the last after
    between = parts[5:-1:_STRIDE]
    if not 1 <= len(between) + 1 <= MAX_ITEMS or parts[0] != b'{"items":[' or parts[-1] != b"]}":
        return None
    if between.count(b",") != len(between):
        return None
    ids = list(map(int, parts[1::_STRIDE]))
    ops, values = parts[2::_STRIDE], parts[3::_STRIDE]
    links: list[Links]
    if single:  # set takes an id, setNull true: the regex lets either take both
        if [op == b"setNull" for op in ops] != [value == _NULL for value in values]:
            return None
        links = [() if value == _NULL else (int(value),) for value in values]
        removing = [False] * len(ids)
    else:
        links = [tuple(map(int, value.split(b","))) for value in values]
        removing = [op == b"remove" for op in ops]
    added = [None if text is None else _metadata(text) for text in parts[4::_STRIDE]]
    if any(a is _NOT_QUICK for a in added) or len(set(ids)) != len(ids):
        return None
    if max(ids) > MAX_ID or max((a for linked in links for a in linked), default=0) > MAX_ID:
        return None
    return list(zip(ids, links, added, removing, strict=True))


def _metadata(text: bytes) -> Added:
    """What a metadata op's text adds and removes, or `_NOT_QUICK`."""
    found = _texts.get(text)
    if found is None:
        try:
            found = metadata_op(loads(text))
        except (ValueError, UnicodeDecodeError):
            found = None
        if len(_texts) >= _TEXTS_KEPT:
            _texts.clear()
        found = _texts[text] = _NOT_QUICK if found is None else found
    return found
