"""A pipeline's lists written so that no writer's pairs are lost (contract, sections 9.4 and 10).

CDF's ``pipelines/update`` replaces a list whole and nothing guards a
read-modify-write, so: read the lists, work out the lists to set, write them,
and read again. A racing writer that replaced a list in between has dropped our
pairs (or theirs, had we not read after them): we merge again from what CDF
holds, at most ``WRITES`` times, then hand the message back (``ListsRaced``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from handlers.cdf.resources import Resources
from handlers.cdf.results import read_lists
from handlers.core.deadline import Deadline
from handlers.core.errors import ListsRaced
from handlers.core.pair_lists import Pair, merged, missing

log = logging.getLogger("matchrelay")
WRITES = 3
Lists = dict[str, list[Any]]


def settle(
    resources: Resources,
    project: str,
    pipeline_id: int,
    changes: Callable[[Lists], Lists],
    deadline: Deadline,
    *,
    dry_run: bool = False,
) -> tuple[dict[str, Any], Lists]:
    """Write what ``changes`` makes of the lists CDF holds (the lists to set whole; none once ours all hold) until
    none is left; the pipeline's fields and lists as first read. ``dry_run``: read once, write nothing."""
    first: tuple[dict[str, Any], Lists] | None = None
    for write in range(WRITES + 1):
        fields, lists = resources.pipeline(project, pipeline_id, deadline, read_lists)
        first = first or (fields, lists)
        wanted = changes(lists)
        if not wanted or dry_run:
            return first
        if write == WRITES:
            break
        if write:
            log.warning("another writer replaced the lists of pipeline %s: merging again", pipeline_id)
        resources.update_pipeline(project, pipeline_id, wanted, deadline)
    raise ListsRaced(f"another writer replaced the pipeline's lists after each of {WRITES} writes")


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

    def changes(lists: Lists) -> Lists:
        absent = missing(lists[name], pairs)
        return {name: merged(lists[name], absent)} if absent else {}

    _, lists = settle(resources, project, pipeline_id, changes, deadline, dry_run=dry_run)
    return len(missing(lists[name], pairs))
