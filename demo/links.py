"""The demo's link: what it is told, and the links it made, read back from the CDF simulator.

Run 456 of pipeline 1 has five matches (make_run's): two the link is
confident of (a score of 0.919, and a previously confirmed one, whose time
series is linked to its asset already) and three below ``LINK_MIN_SCORE``
(0.9). The demo links pipeline 1 only (``LINK_PIPELINES``): the sweep's runs of
pipeline 3 complete too, and their ``run.completed`` are acked untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from demo.bus import Received
from handlers.core.decision import OUTCOMES

LINK_ENV = {"LINK_PIPELINES": "1"}
RUN = "demo/1/456"
SOURCES = range(1_000_000, 1_000_005)  # run 456's time series
COUNTS = OUTCOMES


def linked_events(received: Iterable[Received]) -> list[Received]:
    """Every ``run.linked`` of run 456 received so far (a replay brings the same ``ce-id`` again)."""
    return [r for r in received if r.short_type == "run.linked" and r.id.startswith(f"{RUN}/linked/")]


def outcome(event: Received) -> str:
    """One line: the run.linked's id and its counts (those above 0), and what it wrote."""
    data: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
    counts = ", ".join(f"{name} {data[name]}" for name in COUNTS if data.get(name))
    line = f"run.linked {event.id}: {counts or 'nothing to link'}; written {data.get('written')}"
    if data.get("reviews"):  # what the link left for people, each as a link.review (examples/review shows them)
        line += f"; {data['reviews']} handed to people as link.review"
    return line


def unlinked(event: dict[str, Any]) -> str:
    """One line: the run.unlinked's id and its counts (those above 0), and what it wrote."""
    data: dict[str, Any] = event.get("data") or {}
    names = ("unlinked", "restored", "changed", "unverified", "kept", "rejected")
    counts = ", ".join(f"{name} {data[name]}" for name in names if data.get(name))
    return f"run.unlinked {event['attributes']['ce-id']}: {counts or 'nothing to undo'}; written {data.get('written')}"


def links(cdf_url: str, token: str) -> list[str]:
    """Run 456's time series as CDF holds them now: the asset each links to, and the link's provenance."""
    response = httpx.post(
        f"{cdf_url}/api/v1/projects/demo/timeseries/byids",
        json={"items": [{"id": n} for n in SOURCES], "ignoreUnknownIds": True},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    response.raise_for_status()
    lines = []
    for item in sorted(response.json()["items"], key=lambda i: int(i["id"])):
        metadata = item.get("metadata") or {}
        asset = item.get("assetId")
        head = f"  time series {item['id']} ({item.get('externalId')}) → " + (f"asset {asset}" if asset else "no asset")
        if "matchrelay:run" in metadata:
            head += f"  written by the link: matchrelay:run={metadata['matchrelay:run']}"
            head += f", matchrelay:score={metadata.get('matchrelay:score')}"
        elif asset:
            head += "  (in place before: left as it was)"
        lines.append(head)
    return lines
