"""Pairs added to a pipeline's lists (contract, sections 9.4 and 10), so that no writer's pairs are lost.

CDF's ``pipelines/update`` replaces a list whole and nothing guards a
read-modify-write, so: read the lists, merge what is missing, write, and read
again. A racing writer that replaced the list in between has dropped our pairs
(or theirs, had we not read after them): we merge again from what CDF holds,
at most ``WRITES`` times, then hand the message back (``ListsRaced``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from handlers.cdf.resources import Resources
from handlers.cdf.results import read_lists
from handlers.core.deadline import Deadline
from handlers.core.errors import ListsRaced
from handlers.core.pair_lists import Pair, merged, missing

log = logging.getLogger("matchrelay")
WRITES = 3


def add_pairs(
    resources: Resources,
    project: str,
    pipeline_id: int,
    name: str,
    pairs: Sequence[Pair],
    deadline: Deadline,
    *,
    dry_run: bool = False,
) -> int:
    """Add ``pairs`` to the pipeline's list ``name`` (``rejectedMatches``, ``confirmedMatches``); how many it did
    not hold. ``dry_run``: how many it would add, nothing written."""
    added: int | None = None
    for write in range(WRITES + 1):
        listed = _read(resources, project, pipeline_id, deadline)[name]
        absent = missing(listed, pairs)
        added = len(absent) if added is None else added  # what the first read lacked: what this call adds
        if not absent or dry_run:
            return added
        if write == WRITES:
            break
        if write:
            log.warning("another writer replaced %s of pipeline %s: merging again", name, pipeline_id)
        resources.update_pipeline(project, pipeline_id, {name: merged(listed, absent)}, deadline)
    raise ListsRaced(f"another writer replaced {name} after each of {WRITES} writes")


def _read(resources: Resources, project: str, pipeline_id: int, deadline: Deadline) -> dict[str, list[Any]]:
    return resources.pipeline(project, pipeline_id, deadline, read_lists)[1]
