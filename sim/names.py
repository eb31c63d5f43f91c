"""How a block of items is named, and the JSON of an item's fixed part, made once per block.

A `Describe` is any function of the index in a block; `Names` is one made of two
patterns of a number (`"ts-{:07d}"`, `"Pump {} pressure"`), which the simulator
also turns into a JSON template: an answer then writes an item's id and names
with one %-format instead of a call, two formats and two JSON quotings.
"""

from __future__ import annotations

import functools
import json
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sim.data import CREATED_MS

Describe = Callable[[int], tuple[str | None, str]]  # index in a block -> (externalId or None, name)
EXTRA: dict[str, dict[str, Any]] = {  # constant fields CDF also gives, so items look like CDF's
    "timeseries": {"isString": False, "isStep": False, "securityCategories": []},
    "files": {"mimeType": "application/pdf", "uploaded": True},
    "events": {"type": "alarm", "startTime": CREATED_MS},
    "sequences": {"columns": [{"externalId": "value", "valueType": "DOUBLE"}]},
}

_EXTRA_JSON = {kind: json.dumps(extra)[1:-1] for kind, extra in EXTRA.items()}  # as json.dumps writes them in a body


def name_key(kind: str) -> str:
    """The field holding an item's name: events have a description instead."""
    return "description" if kind == "events" else "name"


def extra_json(kind: str) -> str:
    """The constant fields of `kind` as json.dumps writes them inside an item, braces left out."""
    return _EXTRA_JSON[kind]


quote = json.encoder.encode_basestring_ascii  # a JSON string as json.dumps writes it (ensure_ascii)


def _unencodable(value: Any) -> Any:
    raise TypeError(f"metadata holds {type(value).__name__}, not strings")


# json.dumps's own C encoder, keys sorted, called directly: json.dumps itself costs twice as much for a small object
_make = getattr(json.encoder, "c_make_encoder", None)  # CPython's; not in the typeshed
_sorted = _make(None, _unencodable, quote, None, ": ", ", ", True, False, True) if _make else None


def sorted_json(metadata: dict[str, str]) -> str:
    """`json.dumps(metadata, sort_keys=True)`, cheaper: one text whatever the order of the pairs."""
    return "".join(_sorted(metadata, 0)) if _sorted else json.dumps(metadata, sort_keys=True)


_NUMBER = re.compile(r"0?\d*d?")  # the format specs a name's field may have: digits only come out


@dataclass(frozen=True)
class Names:
    """Item `i` of a block is `external_id` and `name` formatted with `start + i` (`external_id` None: has none)."""

    external_id: str | None
    name: str
    start: int = 0

    def __post_init__(self) -> None:
        for pattern in (self.external_id or "", self.name):
            _template(pattern)  # refuses fields other than plain numbers

    def __call__(self, i: int) -> tuple[str | None, str]:
        n = self.start + i
        return None if self.external_id is None else _format(self.external_id, n), _format(self.name, n)


def head(describe: Describe, name_key: str) -> tuple[str, int] | None:
    """For `Names`: `{"id": %d, "externalId": ..., "<name_key>": ..., "metadata": ` as a %-template of the id and,
    once per field of the names, `start + i`, exactly as json.dumps writes them; and how many such fields.
    None for other functions."""
    if not isinstance(describe, Names):
        return None
    external, fields = ("", 0) if describe.external_id is None else _template(describe.external_id)
    name, more = _template(describe.name)
    external = f'"externalId": {external}, ' if external else ""
    return f'{{"id": %d, {external}"{name_key}": {name}, "metadata": ', fields + more


def named(external_id: str | None, name: str, name_key: str) -> str:
    """The same part for names already made, with `%d` left for the id."""
    external = "" if external_id is None else f'"externalId": {_escape(quote(external_id))}, '
    return f'{{"id": %d, {external}"{name_key}": {_escape(quote(name))}, "metadata": '


def _format(pattern: str, n: int) -> str:
    return pattern.format(*(n,) * _template(pattern)[1])


@functools.lru_cache(maxsize=64)
def _template(pattern: str) -> tuple[str, int]:
    parts, fields = ['"'], 0
    for literal, field, spec, conversion in string.Formatter().parse(pattern):
        parts.append(_escape(quote(literal)[1:-1]))
        if field is None:
            continue
        if field or conversion or not _NUMBER.fullmatch(spec or ""):
            raise ValueError(f"a name's fields are plain numbers such as {{}} or {{:07d}}, not in {pattern!r}")
        parts.append(f"%{(spec or '').removesuffix('d')}d")
        fields += 1
    return "".join(parts) + '"', fields


def _escape(text: str) -> str:
    return text.replace("%", "%%")
