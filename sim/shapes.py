"""Shapes: each value with what a schema document's checks can tell apart, and nothing else.

Two values of one shape pass every check of the document alike, or fail it with the
same errors (at the same paths, relative to each). sim/openapi.py validates each item of
a body once per shape: 1000 items of one shape cost one jsonschema validation and the
shapes, computed a column at a time, in loops that run in C; only a column whose values
differ in structure (a metadata that adds one key more) is shaped value by value.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Hashable, Mapping
from itertools import repeat
from operator import itemgetter
from typing import Any

INT_FORMATS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}  # asserted as OpenAPI defines them
# Keywords whose schema(s) apply to the same instance, and those that apply to its members (the key they reach
# them by: a property's name, or None for any member of an array or object).
_SAME = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else")
_ELEMENTS = ("items", "prefixItems", "contains", "unevaluatedItems")
_MEMBERS = ("additionalProperties", "unevaluatedProperties")


class Shapes:
    """What a schema document's checks tell apart, from every schema reachable from `roots` (local `$ref`s only).

    Keys are compared as they are, and so are true, false, null and floats (rare here).
    An integer becomes its class: which bounds (minimum, maximum, exclusive ones, the int
    formats) it reaches; a string the bounds its length reaches; an array records whether
    its elements are unique. A string or integer that an `enum`, `const`, `pattern` or
    `multipleOf` may read stays as it is: one under a key such a schema is reached by.
    """

    def __init__(self, document: Mapping[str, Any], roots: list[Any]) -> None:
        self._document = document
        self._bounds: set[int] = set()  # an integer x's class: which of these x >= reaches
        self._lengths: set[int] = set()  # a string's: which of these its length reaches
        # Keys whose strings / integers are read as they are (an enum, const, pattern, multipleOf); None: elements.
        self._strings_read: set[str | None] = set()
        self._ints_read: set[str | None] = set()
        self._seen: set[tuple[str, str | None]] = set()
        for root in roots:
            self._walk(root, None)
        self.shape = self._shaper()
        self._sorted_bounds, self._sorted_lengths = sorted(self._bounds), sorted(self._lengths)

    def _walk(self, schema: Any, key: str | None) -> None:
        """Note the checks of `schema`, which applies to a value reached by `key`, and of all it applies."""
        if not isinstance(schema, dict):
            return
        self._note(schema, key)
        ref = schema.get("$ref")
        if isinstance(ref, str) and (ref, key) not in self._seen:
            self._seen.add((ref, key))
            self._walk(self._resolve(ref), key)
        for keyword, value in schema.items():
            subschemas = value if isinstance(value, list) else [value]
            if keyword in _SAME:
                for sub in subschemas:
                    self._walk(sub, key)
            elif keyword in _ELEMENTS or keyword in _MEMBERS or keyword == "patternProperties":
                for sub in value.values() if keyword == "patternProperties" else subschemas:
                    self._walk(sub, None)
            elif keyword in ("properties", "dependentSchemas"):
                for name, sub in value.items():
                    self._walk(sub, name if keyword == "properties" else key)

    def _note(self, schema: Mapping[str, Any], key: str | None) -> None:
        values = [*schema.get("enum", ()), *([schema["const"]] if "const" in schema else [])]
        if any(isinstance(v, dict | list) for v in values):
            raise ValueError(f"an enum or const of objects or arrays, under {key!r}: shapes do not keep those")
        if "pattern" in schema or any(type(v) is str for v in values):
            self._strings_read.add(key)
        if "multipleOf" in schema or any(type(v) in (int, float) for v in values):
            self._ints_read.add(key)
        number = {k: v for k, v in schema.items() if type(v) in (int, float)}
        for k in ("minimum", "exclusiveMaximum"):  # x >= m, x < m: for an integer, x >= ceil(m)
            if k in number:
                self._bounds.add(math.ceil(number[k]))
        for k in ("maximum", "exclusiveMinimum"):  # x <= m, x > m: for an integer, x >= floor(m) + 1
            if k in number:
                self._bounds.add(math.floor(number[k]) + 1)
        low_high = INT_FORMATS.get(schema.get("format", ""))
        if low_high is not None:
            self._bounds.update((low_high[0], low_high[1] + 1))
        if "minLength" in number:
            self._lengths.add(int(number["minLength"]))
        if "maxLength" in number:
            self._lengths.add(int(number["maxLength"]) + 1)

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise ValueError(f"only local references are followed: {ref}")
        found: Any = self._document
        for part in ref[2:].split("/"):
            found = found[part.replace("~1", "/").replace("~0", "~")]
        return found

    def _shaper(self) -> Callable[[Any], Hashable]:
        """`shape(value)`: hashable, equal for values every check of the document treats alike."""
        member = self._member

        # Flat tuples: this runs for every item of a column whose items differ in structure. An object is its keys
        # then its members' shapes; an array None, whether its elements are unique, then theirs.
        def shape(value: Any) -> Hashable:
            kind = type(value)
            if kind is dict:
                return (*value, *map(member, value, value.values()))
            if kind is list:
                return (None, len(value) < 2 or unique(value), *map(member, repeat(None), value))
            return (kind, value)

        return shape

    def _member(self, key: str | None, value: Any) -> Hashable:
        """The shape of a value reached by `key`: a string's class is >= 0, an integer's < 0; a string read is
        itself, an integer read (int, value), other scalars (type, value): no two kinds can be equal."""
        kind = type(value)
        if kind is str:
            return value if key in self._strings_read else bisect_right(self._sorted_lengths, len(value))
        if kind is int:
            return (int, value) if key in self._ints_read else ~bisect_right(self._sorted_bounds, value)
        if kind is dict or kind is list:
            return self.shape(value)
        return (kind, value)

    def shapes(self, values: list[Any]) -> tuple[Hashable, list[Hashable]]:
        """(what `values` share, each one's shape beyond it), a column at a time, so mostly in loops that run in C
        rather than in Python: a column whose values differ in structure is a column of their shapes."""
        structure: list[Any] = []
        columns: list[list[Any]] = []
        if values:
            self._columns(values, None, structure, columns)
        return tuple(structure), list(zip(*columns, strict=True)) if columns else [()] * len(values)

    def _columns(self, values: list[Any], key: str | None, structure: list[Any], columns: list[list[Any]]) -> None:
        """Add to `structure` what all `values` (reached by `key`) share, to `columns` what tells them apart."""
        kinds = set(map(type, values))
        kind = kinds.pop() if len(kinds) == 1 else None
        if kind is dict:
            names = set(map(tuple, values))
            if len(names) == 1:
                (keys,) = names
                structure += (dict, keys)
                for k in keys:
                    self._columns(list(map(itemgetter(k), values)), k, structure, columns)
                return
        elif kind is list:
            sizes = set(map(len, values))
            if len(sizes) == 1:
                (size,) = sizes
                structure += (list, size)
                if size > 1:
                    columns.append(list(map(unique, values)))
                for column in zip(*values, strict=True):
                    self._columns(list(column), None, structure, columns)
                return
        elif kind is str and key not in self._strings_read:
            structure.append(str)
            columns.append(list(map(bisect_right, repeat(self._sorted_lengths), map(len, values))))
            return
        elif kind is int and key not in self._ints_read:
            structure.append(int)
            columns.append(list(map(bisect_right, repeat(self._sorted_bounds), values)))
            return
        elif kind is not None:  # as they are: true, false, null, floats, and what an enum or a pattern reads
            structure.append(kind)
            columns.append(values)
            return
        structure.append(None)  # of kinds, keys or sizes that differ: each value's own shape
        columns.append(list(map(self._member, repeat(key), values)))


def unique(values: list[Any]) -> bool:
    """Whether no two of `values` are equal as JSON Schema compares them (1 and true differ, 1 and 1.0 do not)."""
    try:
        # Python's == merges a little more than JSON Schema's (True == 1), never less: all distinct here is final.
        if len({frozenset(v.items()) if type(v) is dict else v for v in values}) == len(values):
            return True
    except TypeError:  # an object or array within
        pass
    return len({_canonical(v) for v in values}) == len(values)


def _canonical(value: Any) -> Hashable:
    """`value` hashable, equal exactly when JSON Schema calls two values equal."""
    kind = type(value)
    if kind is dict:
        return ("object", frozenset((k, _canonical(v)) for k, v in value.items()))
    if kind is list:
        return ("array", tuple(map(_canonical, value)))
    return ("boolean", value) if kind is bool else value
