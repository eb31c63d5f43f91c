"""CDF's words for a violation jsonschema found: its JSON path, then what the value must be.

`items[3].update.assetId must be an object`, `items size must be between 1 and 1000` (as
CDF words the latter), `items[0].update.confirmedMatches.set must not be null` (a missing
required field, in the words of CDF's Java validation).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_THAN = {
    "minimum": "greater than or equal to",
    "maximum": "less than or equal to",
    "exclusiveMinimum": "greater than",
    "exclusiveMaximum": "less than",
}
_ARTICLES = {"object": "an object", "array": "an array", "integer": "an integer", "null": "null"}


def words(error: Any) -> str:
    """One violation as CDF words it: the JSON path (`items[3].update.assetId`), then what it must be."""
    where = _path(error.absolute_path)
    value, schema = error.validator_value, error.schema if isinstance(error.schema, Mapping) else {}
    match error.validator:
        case "anyOf" | "oneOf":  # no branch came closest: what those that came deepest into the body wanted
            deepest = max((len(sub.path) for sub in error.context), default=0)
            found = dict.fromkeys(words(sub) for sub in error.context if len(sub.path) == deepest)
            return " or ".join(found) or f"{where} matches no allowed form"
        case "type":
            types = [value] if isinstance(value, str) else list(value)
            return f"{where} must be " + " or ".join(_ARTICLES.get(t, f"a {t}") for t in types)
        case "required":
            missing = next((name for name in value if name not in error.instance), value[0])
            return f"{_path([*error.absolute_path, missing])} must not be null"
        case "minItems" | "maxItems" | "minLength" | "maxLength" | "minProperties" | "maxProperties":
            noun = error.validator[3:]
            low, high = schema.get(f"min{noun}", 0), schema.get(f"max{noun}")
            return f"{where} size must be " + (f"between {low} and {high}" if high is not None else f"at least {low}")
        case "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum":
            return f"{where} must be {_THAN[error.validator]} {value}"
        case "enum" | "const":
            return f"{where} must be one of {json.dumps(value if error.validator == 'enum' else [value])}"
        case "format":
            return f"{where} must be a valid {value}"
        case "pattern":
            return f'{where} must match "{value}"'
        case "uniqueItems":
            return f"{where} must not hold duplicates"
        case _:
            return f"{where}: {error.message}"


def _path(parts: Any) -> str:
    """`items[3].update.assetId`; the request body itself is `body`."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts).lstrip(".")
    return text or "body"
