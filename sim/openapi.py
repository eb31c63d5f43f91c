"""Request bodies checked against CDF's own OpenAPI: `problem(endpoint, body)`.

The schemas are the request bodies of CDF's OpenAPI, cut into sim/openapi/cdf-requests.json
(its README says from where and how). A body is refused when it is not JSON (NaN and
Infinity included, which Python would read) or when it does not validate as JSON Schema
2020-12, OpenAPI 3.1's dialect, read with two choices that follow CDF rather than the letter:

- every `oneOf` is an `anyOf`: the specs write `oneOf` where several branches match one
  item (`{"id": 1}` is both a by-id and a by-external-id item), so a strict reading would
  refuse what CDF takes;
- the `int32` / `int64` formats are asserted, as OpenAPI defines them: CDF reads those
  fields as Java ints and longs.

The answer is CDF's 400 message for constraint violations, naming the best by its JSON path
(sim/violations.py): `Request had 1 constraint violations. Please fix the request and try
again. [items size must be between 1 and 1000]`.

Speed: plain jsonschema walks every keyword of every item. A 1000-item `timeseries/update`
body cost it ~180 ms and a 1000-id `timeseries/byids` ~900 ms (its `uniqueItems` compares
every pair of objects): more CPU than the simulator spends on the request, on the cores the
link's benchmark shares with it. Two keywords are replaced (at the end), with the same answer:
`items` validates each element once per shape (sim/shapes.py: elements of one shape pass, or
fail with the same errors, alike), and `uniqueItems` hashes. The same bodies now cost 2-3 ms
and under 1 ms, about half of it reading the JSON (sim/jsonread.py). tests/sim/test_openapi.py checks the answers
against plain jsonschema's.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sim.jsonread import loads
from sim.shapes import INT_FORMATS, Shapes, unique
from sim.violations import words

SPEC = Path(__file__).with_name("openapi") / "cdf-requests.json"
ENDPOINTS = (
    *(f"{kind}/{op}" for op in ("byids", "update", "list") for kind in ("timeseries", "files", "events", "sequences")),
    "assets/byids",
    "pipelines/update",
)
URI = "urn:matchrelay:cdf-requests"  # the document's name in the registry: its `#/...` references resolve in it
_CACHED = 20_000  # shapes whose errors are kept, per schema and structure; emptied when it grows past this
_VIOLATIONS = "Request had {} constraint violations. Please fix the request and try again. [{}]"


def problem(endpoint: str, body: bytes) -> str | None:
    """None when `body` is what CDF's OpenAPI allows `endpoint` (a key of ENDPOINTS), else why not, as CDF says it."""
    return checked(endpoint, body)[1]


def checked(endpoint: str, body: bytes) -> tuple[Any, str | None]:
    """`body` as read (None when it is not JSON) and `problem`'s answer: a write is then applied from the document
    its check read, not read a second time."""
    found = validator(endpoint)
    try:
        document = loads(body, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return None, "Request body is not valid JSON"
    try:
        errors = list(found.iter_errors(document))
    except RecursionError:
        return document, "Request body is nested too deeply"
    if not errors:
        return document, None
    from jsonschema.exceptions import best_match

    return document, _VIOLATIONS.format(len(errors), words(best_match(errors)))


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def ready() -> None:
    """Load the schemas and make every endpoint's validator now, once a process, rather than on the first body."""
    _validators()


def validator(endpoint: str) -> Any:
    """The jsonschema validator `problem` uses for `endpoint`: the shape cache's, with plain jsonschema's answers."""
    return _validators()[endpoint]


@functools.cache
def document() -> dict[str, Any]:
    """The schemas as validated: cdf-requests.json with every `oneOf` an `anyOf`."""
    found: dict[str, Any] = _any_of(json.loads(SPEC.read_text(encoding="utf-8")))
    if sorted(found["endpoints"]) != sorted(ENDPOINTS):
        raise ValueError(f"{SPEC.name} holds {sorted(found['endpoints'])}, not ENDPOINTS")
    return found


def schema(endpoint: str) -> dict[str, str]:
    """The body schema of `endpoint`, to validate with `registry()` and `formats()`."""
    return {"$ref": f"{URI}#/endpoints/{endpoint.replace('/', '~1')}"}


@functools.cache
def registry() -> Any:
    """`document()` under its URI, where the `#/components/...` references resolve (jsonschema's `registry=`)."""
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    return Registry().with_resource(URI, DRAFT202012.create_resource(document()))


@functools.cache
def formats() -> Any:
    """The int32 / int64 formats as OpenAPI defines them, and no other (jsonschema's `format_checker=`)."""
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())
    for name, (low, high) in INT_FORMATS.items():
        checker.checks(name)(functools.partial(_within, low, high))
    return checker


@functools.cache
def _validators() -> dict[str, Any]:
    """A validator per endpoint, made once a process (jsonschema is imported here, as the first simulator starts)."""
    import jsonschema

    found = {}
    for key in ENDPOINTS:  # shapes of its own for each endpoint: only its own bounds split integers and strings
        shapes = Shapes(document(), [document()["endpoints"][key]])
        plain = jsonschema.Draft202012Validator.VALIDATORS["items"]
        kind = jsonschema.validators.extend(
            jsonschema.Draft202012Validator,
            validators={"items": _items_by_shape(shapes, plain), "uniqueItems": _unique_items},
        )
        found[key] = kind(schema(key), registry=registry(), format_checker=formats())
    return found


def _within(low: int, high: int, value: Any) -> bool:
    """An int format's check: true for what is not a number (that is `type`'s to refuse)."""
    return isinstance(value, bool) or not isinstance(value, int | float) or low <= value <= high


def _any_of(node: Any) -> Any:
    """`node` with every `oneOf` read as `anyOf` (property names, `properties`' keys, are left alone)."""
    if isinstance(node, list):
        return [_any_of(v) for v in node]
    if not isinstance(node, dict):
        return node
    return {
        ("anyOf" if key == "oneOf" else key): (
            {name: _any_of(v) for name, v in value.items()} if key == "properties" else _any_of(value)
        )
        for key, value in node.items()
    }


# -- two keywords of jsonschema's, faster and with the same answer -----------------------------------------------

Keyword = Callable[[Any, Any, Any, Mapping[str, Any]], Iterator[Any]]  # (validator, value, instance, schema)


def _items_by_shape(shapes: Shapes, plain: Keyword) -> Keyword:
    """`items` that validates each element once per shape (`plain`, jsonschema's own, for what it leaves)."""
    caches = dict[tuple[int, Hashable], dict[Hashable, tuple[Any, ...]]]()

    def items(validator: Any, schema: Any, instance: Any, parent: Mapping[str, Any]) -> Iterator[Any]:
        if not isinstance(schema, dict) or "prefixItems" in parent or not validator.is_type(instance, "array"):
            yield from plain(validator, schema, instance, parent)
            return
        # Per schema (one object of the loaded document, for good) and shared structure: each shape's errors, as
        # found on one element of it (their jsonschema messages quote that one; sim/violations.py never does).
        shared, found = shapes.shapes(instance)
        if len(caches) >= _CACHED:
            caches.clear()
        cache = caches.setdefault((id(schema), shared), {})
        known = {shape: cache.get(shape) for shape in set(found)}
        missing = [shape for shape, errors in known.items() if errors is None]
        if missing:
            some = dict(zip(found, instance, strict=True))  # an element of each shape: any one answers for all
            if len(cache) + len(missing) > _CACHED:
                cache.clear()
            for shape in missing:
                known[shape] = cache[shape] = tuple(validator.descend(some[shape], schema))
        if any(known.values()):
            for index, shape in enumerate(found):
                for error in known[shape] or ():
                    copied = _copy(error, validator.TYPE_CHECKER)
                    copied.path.appendleft(index)
                    yield copied

    return items


def _copy(error: Any, types: Any) -> Any:
    """A fresh copy of a kept error and of those under it: jsonschema prefixes paths in place as errors rise."""
    return type(error)(
        error.message,
        validator=error.validator,
        path=error.relative_path,
        cause=error.cause,
        context=[_copy(sub, types) for sub in error.context],
        validator_value=error.validator_value,
        instance=error.instance,
        schema=error.schema,
        schema_path=error.relative_schema_path,
        type_checker=types,  # best_match ranks errors by whether the instance has the type they wanted
    )


def _unique_items(validator: Any, wanted: Any, instance: Any, schema: Mapping[str, Any]) -> Iterator[Any]:
    """`uniqueItems` as jsonschema's, by hashing (jsonschema compares every pair of objects: 0.9 s for 1000)."""
    if wanted and validator.is_type(instance, "array") and not unique(instance):
        from jsonschema import ValidationError

        yield ValidationError(f"{instance!r} has non-unique elements")
