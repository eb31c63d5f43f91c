"""Generated rules in the two shapes CDF is known to give, for the simulator's run bodies.

- documented: ``{matches, numConflicts, numOverlaps}``, as the API reference has it;
- with a definition: what Cognite's own application and its experimental Python
  SDK read: ``extractors``, ``conditions``, ``priority``, ``flags``, ``conflicts``,
  ``overlaps``, ``numberOfMatches``, and matches that carry their ``score``. The
  shapes of ``flags``, ``conflicts`` and ``overlaps`` are not documented: the
  ones here are guesses, and a relay passes them on whatever they are.

`make_run` alternates the two (even generated rules documented, odd ones with a
definition), so any body with two generated rules holds both. `heavy_rule` is a
rule whose definition alone pushes it past one message: its matches and counts
fit, the patterns of its extractors do not fit beside them.
"""

from __future__ import annotations

import json
from typing import Any

ENTITY_SETS = ("sources", "targets")


def with_definition(g: int) -> bool:
    """Whether generated rule ``g`` of a simulated run carries its definition."""
    return g % 2 == 1


def extractors(g: int, pattern_bytes: int = 0) -> list[dict[str, Any]]:
    """One regex extractor per side; ``pattern_bytes`` pads each pattern (alternatives that never match)."""
    padding = "|x" * (pattern_bytes // 2)
    return [
        {"entitySet": side, "extractorType": "regex", "field": "name", "pattern": rf"^\w+ (\d+)-?{g}?$" + padding}
        for side in ENTITY_SETS
    ]


def definition(g: int, count: int, pattern_bytes: int = 0) -> dict[str, Any]:
    """The fields of a generated rule beside its matches when CDF gives its definition."""
    return {
        "extractors": extractors(g, pattern_bytes),
        "conditions": [{"conditionType": "equals", "arguments": [[0, 0], [1, 0]]}],
        "priority": 100 + g,
        "flags": {"ignoreCase": g % 3 == 0, "fuzzy": False},
        "conflicts": [{"ruleIndex": g - 1, "count": g % 3}] if g else [],
        "overlaps": [],
        "numberOfMatches": count,
    }


def definition_rule(g: int, matches: Any, count: int) -> dict[str, Any]:
    """Generated rule ``g`` with its definition; ``matches`` (of ``count`` items) should carry their ``score``."""
    return {**definition(g, count), "matches": matches}


def scored_match(i: int) -> dict[str, Any]:
    """A rule match with a score, for rules built here."""
    return {
        "sourceKeyField": "name",
        "targetKeyField": "name",
        "source": {"id": 1_000_000 + i, "externalId": f"src-{i:07d}", "name": f"Pump {i}"},
        "target": {"id": 2_000_000 + i, "externalId": f"asset-{i:07d}", "name": f"Asset {i}"},
        "existingMatchType": "model",
        "consistentMatch": True,
        "score": round(0.9 + (i % 10) / 100, 2),
    }


def heavy_rule(message_bytes: int, g: int = 0) -> dict[str, Any]:
    """A generated rule whose matches fill about 60 % of ``message_bytes`` and whose definition about 50 % more.

    Without its definition it fits one message; with it, it does not, and neither half alone is too large.
    """
    match_bytes = len(json.dumps(scored_match(0))) + 2
    count = max(2, int(message_bytes * 0.6) // match_bytes)
    rule = definition(g, count, pattern_bytes=int(message_bytes * 0.25))  # two extractors: 50 % in all
    return {**rule, "matches": [scored_match(i) for i in range(count)]}
