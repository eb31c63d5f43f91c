"""The link's writes (contract, section 8.4-8.5): one chunk of at most 1000 sources at a time, from CDF's state.

A chunk reads its sources' links with ``byids``, sets each decided link against
them (``handlers.core.decision.against``) and writes what is missing in one
``update``. ``READS`` chunks read at once, ``LINK_CONCURRENCY`` of them write at
once: CDF limits concurrent writes, not reads, and a redelivery mostly re-reads
links already in place, so reading wider is what lets it reach the missing ones
before its deadline. CDF answering transiently retries the whole chunk after the
backoff of section 4: its links are read again first, so a write whose answer
was lost (CDF took it, the answer never came) is found in place and not sent
twice. Under a dry run a chunk reads its targets with ``assets/byids`` instead of
writing, so that its counts are those the real link would reach.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter

from handlers.cdf.resources import Resources, Update
from handlers.cdf.turn import Turn
from handlers.core.deadline import Deadline
from handlers.core.decision import (
    CONFLICT,
    SOURCE_MISSING,
    TARGET_MISSING,
    TARGET_RESOURCE,
    WRITE,
    Counts,
    Link,
    Resource,
    against,
    links_of,
)
from handlers.core.errors import HandBack, OutOfTime, PermanentError, RelayError
from handlers.core.poll import Backoff, Clock
from handlers.core.progress import NO_PROGRESS, Progress
from handlers.core.provenance import UpdateItems
from handlers.core.retry import retried

READS = 8  # chunks reading their links at once per invocation (byids is a read: no write limit applies)
_SOURCE, _TARGET = attrgetter("source"), attrgetter("target")


@dataclass
class ChunkWriter:
    """Writes the chunks of one link; ``stop`` is set by the first refusal, and no chunk starts after it."""

    resources: Resources
    backoff: Backoff  # section 4's, between a chunk's tries
    clock: Clock
    project: str
    run: str  # {project}/{pipelineId}/{runId}, the provenance
    resource: Resource
    deadline: Deadline
    overwrite: bool
    dry_run: bool
    stop: threading.Event
    writes: threading.Semaphore  # LINK_CONCURRENCY: writes in flight (``Turn``); reads are not CDF's write limit's
    progress: Progress = NO_PROGRESS  # sources checked, links written, decisions: the command's display
    conflicted: Callable[[int, float | None, int], None] | None = None  # a source left in conflict, its asset in place
    items: UpdateItems = field(init=False)

    def __post_init__(self) -> None:
        self.items = UpdateItems(self.resource, self.run)

    def __call__(self, links: list[Link]) -> tuple[Counts, RelayError | None]:
        """This chunk's counts, and why it did not finish (None when it did)."""
        counts = Counts()

        def attempt() -> bool:
            nonlocal counts
            counts = Counts()  # each attempt counts afresh from what CDF holds then
            self._attempt(links, counts)
            return True

        error: RelayError | None = None
        try:
            late = "the deadline came before CDF took every write"
            retried(attempt, self.backoff, self.clock, self.deadline.cutoff, late)
        except PermanentError as exc:
            self.stop.set()
            error = exc
        except HandBack as exc:
            error = exc
        self.progress.linking(sources=len(links) if error is None else 0)
        self.progress.decided(outcomes(counts))
        return counts, error

    def _attempt(self, links: list[Link], counts: Counts) -> None:
        if self.stop.is_set():
            return
        self._in_time()
        writes = self._to_write(links, counts)
        if not writes or self.stop.is_set():
            return
        if self.dry_run:
            self._plan_writes(writes, counts)
            return
        self._write(writes, counts)

    def _to_write(self, links: list[Link], counts: Counts) -> list[Link]:
        """The links CDF does not hold yet, from the sources' links as ``byids`` reads them; the others counted."""
        items = self.resources.by_ids(self.project, self.resource.path, [link.source for link in links], self.deadline)
        resource, overwrite, field = self.resource, self.overwrite, self.resource.field
        writes, others = [], Counter[str]()
        for link in links:
            item = items.get(link.source)
            if item is not None and item.get(field) is None:  # most sources: there, linked to nothing yet
                writes.append(link)
                continue
            current = None if item is None else links_of(item, resource)
            outcome = against(link, current, resource, overwrite)
            if outcome == WRITE:  # replacing an asset (LINK_OVERWRITE): the undo will want it back
                writes.append(link._replace(previous=current[0]) if resource.single and current else link)
            else:
                others[outcome] += 1
                if outcome == CONFLICT and self.conflicted is not None and current:
                    self.conflicted(link.source, link.score, current[0])
        for outcome, n in others.items():
            counts.add(outcome, n)
        return writes

    def _write(self, writes: list[Link], counts: Counts) -> None:
        """One ``update`` of ``writes`` in a write's turn; a refusal stops every chunk not started."""
        # Update._make is tuple.__new__ itself (a namedtuple's own __new__ is a Python function, per item)
        columns = zip(map(_SOURCE, writes), map(_TARGET, writes), self.items.items(writes), strict=True)
        updates = list(map(Update._make, columns))
        turn = Turn(self.writes, self.deadline.until_cutoff())
        if not turn.take():
            raise OutOfTime("the deadline came while other writes were in flight")
        try:
            if self.stop.is_set():  # refused while this chunk waited for its turn: it writes nothing more
                return
            self._in_time()
            path = self.resource.path
            written = self.resources.update(self.project, path, updates, self.deadline, retry=False, turn=turn)
        except PermanentError:
            self.stop.set()  # before the turn is given back: the write waiting for it must not start
            raise
        finally:
            turn.give()
        self.progress.linking(written=len(written.written))
        counts.add(WRITE, len(written.written))
        counts.written += len(written.written)
        counts.add(SOURCE_MISSING, len(written.source_missing))
        counts.add(TARGET_MISSING, len(written.target_missing))

    def _plan_writes(self, writes: list[Link], counts: Counts) -> None:
        """Under a dry run: each write would link, unless CDF has no such asset."""
        targets = sorted({w.target for w in writes})
        existing = self.resources.by_ids(self.project, TARGET_RESOURCE, targets, self.deadline)
        for w in writes:
            counts.add(WRITE if w.target in existing else TARGET_MISSING)

    def _in_time(self) -> None:
        if not self.deadline.producing():
            raise OutOfTime("the deadline came before every link was written")


def outcomes(counts: Counts) -> dict[str, int]:
    """The counts per outcome under ``run.linked``'s names, ``written`` aside: what ``Progress.decided`` takes."""
    return {name: n for name, n in counts.data().items() if name != "written"}
