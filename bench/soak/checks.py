"""The checks on every event received: by the contract alone, and against the body CDF answered."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tests.support.contract import COMMON_ATTRIBUTES, DATA_FIELDS, TYPE_ATTRIBUTES, TYPE_PREFIX, contract_problems


def event_problems(topic: str, attributes: Mapping[str, str], raw: bytes, cdf_url: str) -> list[str]:
    """What is wrong with one received event by the contract alone (section 5); empty when nothing.

    Beyond ``contract_problems``: each type on its topic; every trigger names its run, so every event has
    all the attributes and its ``ce-id`` is the run's.
    """
    problems = contract_problems(attributes, raw, cdf_url)
    kind = attributes.get("ce-type", "").removeprefix(TYPE_PREFIX)
    if kind not in DATA_FIELDS:
        return problems
    if (topic == "errors") != (kind == "run.failed"):
        problems.append(f"{kind} on the {topic} topic")
    wanted = COMMON_ATTRIBUTES | TYPE_ATTRIBUTES[kind]
    if set(attributes) != wanted:
        problems.append(f"attributes {sorted(set(attributes) ^ wanted)} differ")
    run = "/".join(attributes.get(name, "") for name in ("ce-cdfproject", "ce-pipelineid", "ce-runid", "ce-subject"))
    if attributes.get("ce-id") != run:
        problems.append(f"ce-id {attributes.get('ce-id')!r} is not {run!r}")
    return problems


def content_problems(kind: str, raw: bytes, owed: tuple[str, dict[str, Any]]) -> list[str]:
    """What differs between a received event and what the run's CDF answer calls for."""
    want_kind, want = owed
    if kind != want_kind:
        return [f"{kind} where {want_kind} is owed"]
    try:
        data = json.loads(raw)
    except ValueError:
        return []  # already counted by event_problems
    return [f"{kind} {key}: {data.get(key)!r} != {value!r}" for key, value in want.items() if data.get(key) != value]
