"""The undo of one run's links (contract, section 9): pipeline → the run's items → put back → reject → run.unlinked.

The run's results are not read: CDF holds what the link wrote, in each item's
metadata (``handlers.core.provenance``). The items whose ``matchrelay:run`` names
the run are listed in ``LINK_CONCURRENCY`` partitions at once, each page by
cursor; each page is decided item by item (``handlers.core.undo``) and what is
put back is written in one ``update`` before the next page is listed. An item
put back loses its ``matchrelay:`` keys and is listed no more, so CDF is the
progress record: a second unlink writes nothing, and one that stopped goes on.
A write is idempotent (a value set again, a key removed again), so a write whose
answer was lost is simply sent again.

Every ending is an ``UnlinkOutcome``: ``unlinked`` or ``refused``
(``run.unlinked`` published, with or without a reason) or ``handed_back``.
"""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from handlers.cdf.resources import Update
from handlers.cdf.results import read_fields
from handlers.cdf.turn import Turn
from handlers.core.deadline import Deadline
from handlers.core.decision import Resource, resource_of, resources_named
from handlers.core.errors import HandBack, OutOfTime, PermanentError, RelayError
from handlers.core.events import RunRef
from handlers.core.pair_lists import Pair
from handlers.core.provenance import RUN_KEY, run_key
from handlers.core.undo import CHANGED, PutBack, UndoCounts, undo, update_item
from handlers.core.undo_events import UndoFacts, unlinked_event
from handlers.flow.invocation import Counted, ended
from handlers.flow.lists import add_pairs
from handlers.flow.parts import LinkParts


@dataclass(frozen=True)
class UnlinkRequest:
    """A run whose links to put back, and how (the command's options)."""

    project: str
    pipeline_id: int
    run_id: int
    below: float | None = None  # only links whose score is below this
    reject: bool = False  # also add the pairs put back to the pipeline's rejectedMatches
    dry_run: bool = False


@dataclass
class UnlinkOutcome(Counted):
    """How one unlink ended."""

    kind: Literal["unlinked", "refused", "handed_back"]
    counts: UndoCounts = field(default_factory=UndoCounts)


@dataclass
class UnlinkJob:
    """The undo of one run's links, in one invocation."""

    parts: LinkParts
    request: UnlinkRequest
    deadline: Deadline
    counts: UndoCounts = field(default_factory=UndoCounts)
    facts: UndoFacts = field(init=False)
    put_back: list[Pair] = field(default_factory=list)  # (item, asset): what --reject adds
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)  # set by the first refusal: no write starts after

    def __post_init__(self) -> None:
        self.facts = UndoFacts(self.request.dry_run, self.request.below)

    def run(self) -> UnlinkOutcome:
        """The whole unlink; a refusal is reported on ``run.unlinked``, a ``HandBack`` hands back the counts."""
        return ended(self._run, self._handed_back, lambda exc: self._report(exc.reason, str(exc)))

    def _run(self) -> UnlinkOutcome:
        r = self.request
        fields = self.parts.resources.pipeline(r.project, r.pipeline_id, self.deadline, read_fields)
        source, target = resources_named(fields)
        self.facts = UndoFacts(r.dry_run, r.below, source)
        resource = resource_of(source, target)
        if resource is None:
            return self._report("unsupported_resource", f"the pipeline links {source} to {target}: nothing to undo")
        if r.reject:  # the pairs first: an unlink stopped after it still finds the links to put back, and their pairs
            self._partitions(resource, write=False)
            args = (r.project, r.pipeline_id, "rejectedMatches", self.put_back, self.deadline)
            rejected = add_pairs(self.parts.resources, *args, dry_run=r.dry_run) if self.put_back else 0
            if r.dry_run:
                self.counts.rejected = rejected
                return self._report(None, "")
            self.counts, self.put_back = UndoCounts(rejected=rejected), []
        self._partitions(resource, write=not r.dry_run)
        return self._report(None, "")

    def _partitions(self, resource: Resource, *, write: bool) -> None:
        """Every page of the run's items, ``LINK_CONCURRENCY`` partitions at once, put back (``write``) or only
        decided (a dry run, or the pairs ``--reject`` adds first); the first refusal stops the rest."""
        n = max(1, min(self.parts.settings.link_concurrency, 10))
        stop, writes = self._stop, threading.Semaphore(n)
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="unlink") as pool:
            jobs = [
                pool.submit(contextvars.copy_context().run, self._partition, f"{k}/{n}", resource, write, stop, writes)
                for k in range(1, n + 1)
            ]
            errors = [e for e in (job.result() for job in jobs) if e is not None]
        first = next((e for e in errors if isinstance(e, PermanentError)), None) or next(iter(errors), None)
        if first is not None:
            raise first

    def _partition(
        self, partition: str, resource: Resource, write: bool, stop: threading.Event, writes: threading.Semaphore
    ) -> RelayError | None:
        """One partition's pages, each decided and written before the next is listed."""
        r, resources = self.request, self.parts.resources
        metadata, cursor = {RUN_KEY: run_key(r.project, r.pipeline_id, r.run_id)}, None
        try:
            while not stop.is_set():
                if not self.deadline.producing():
                    raise OutOfTime("the deadline came before every item was listed")
                items, cursor = resources.list_page(
                    r.project, resource.path, metadata, self.deadline, cursor, partition
                )
                self._page(items, resource, Turn(writes, self.deadline.until_cutoff()) if write else None)
                if cursor is None:
                    return None
        except PermanentError as exc:
            stop.set()
            return exc
        except HandBack as exc:
            return exc
        return None

    def _page(self, items: list[dict[str, Any]], resource: Resource, turn: Turn | None) -> None:
        """One page decided, and put back in one ``update`` when there is a ``turn`` to write in."""
        counts, puts = UndoCounts(), []
        for item in items:
            decided = undo(item, resource, self.request.below)
            if isinstance(decided, PutBack):
                puts.append(decided)
            else:
                counts.add(decided)
        done = self._write(puts, resource, turn) if puts and turn else {p.source for p in puts}
        if done is None:
            return
        for put in puts:
            counts.add(put.outcome if put.source in done else CHANGED)  # gone since it was listed: changed
        counts.written = len(done) if turn else 0
        with self._lock:
            self.counts.merge(counts)
            if self.request.reject and not turn:  # only where wanted: a million pairs would be a million tuples
                self.put_back += [(p.source, p.asset) for p in puts]
        if turn is not None or self.request.dry_run:  # --reject's first pass is counted again by the second
            self.parts.progress.linking(sources=len(items), written=counts.written)
            self.parts.progress.decided({k: n for k, n in counts.data().items() if k != "written"})  # this page's

    def _write(self, puts: list[PutBack], resource: Resource, turn: Turn) -> set[int] | None:
        """The items CDF took (one missing, deleted since, or whose asset to restore is gone, is left out); None when
        another partition was refused meanwhile, and nothing was sent."""
        updates = put_back_updates(puts, resource)
        if not turn.take():
            raise OutOfTime("the deadline came while other writes were in flight")
        try:
            if self._stop.is_set():  # refused while this page waited for its turn: it writes nothing more
                return None
            written = self.parts.resources.update(
                self.request.project, resource.path, updates, self.deadline, turn=turn
            )
        except PermanentError:
            self._stop.set()  # before the turn is given back: the write waiting for it must not start
            raise
        finally:
            turn.give()
        return set(written.written)

    def _handed_back(self, exc: HandBack) -> UnlinkOutcome:
        return UnlinkOutcome("handed_back", exc.code, self.request.dry_run, self.counts, str(exc))

    def _report(self, reason: str | None, detail: str) -> UnlinkOutcome:
        """Publish ``run.unlinked`` with the counts reached; raises ``PublishFailed`` when it is not confirmed."""
        r, parts = self.request, self.parts
        ref = RunRef(parts.settings.base_url, r.project, r.pipeline_id, r.run_id)
        facts = UndoFacts(r.dry_run, r.below, self.facts.source_resource, reason)
        event = unlinked_event(ref, facts, self.counts, parts.now_ms())
        parts.sink.publish(parts.topic, [event], self.deadline)
        return UnlinkOutcome("unlinked" if reason is None else "refused", reason, r.dry_run, self.counts, detail)


def put_back_updates(puts: list[PutBack], resource: Resource) -> list[Update]:
    """The ``update`` items that put ``puts`` back; the asset set back is the target a 400 ``missing`` may name."""
    return [Update(p.source, p.restore or 0, update_item(p, resource)) for p in puts]
